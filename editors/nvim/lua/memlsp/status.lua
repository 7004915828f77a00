--- :MemlspStatus (the server's `memlsp/status` request, shown in a float) and :MemlspReindex.
local api = vim.api

local M = {}

--- The memlsp client of a buffer, else any running memlsp client.
---@param bufnr? integer
---@return vim.lsp.Client|nil
function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = 'memlsp', bufnr = bufnr or 0 })
  if #clients == 0 then
    clients = vim.lsp.get_clients({ name = 'memlsp' })
  end
  return clients[1]
end

local function mib(bytes)
  if type(bytes) ~= 'number' then
    return '?'
  end
  return ('%d MiB'):format(math.floor(bytes / 1048576 + 0.5))
end

local function scalar(v)
  if v == nil or v == vim.NIL then
    return '-'
  end
  if type(v) == 'table' then
    if next(v) == nil then
      return '{}'
    end
    return vim.inspect(v, { newline = ' ', indent = '' })
  end
  return tostring(v)
end

local function is_empty(v)
  return type(v) == 'table' and next(v) == nil
end

--- Append `key: value` lines for any JSON value: nested objects indented, lists of records one
--- record a line.
---@param key string
---@param value any
---@param indent string
---@param out string[]
function M.pretty(key, value, indent, out)
  if type(value) ~= 'table' then
    out[#out + 1] = ('%s%s: %s'):format(indent, key, scalar(value))
  elseif is_empty(value) then
    out[#out + 1] = ('%s%s: (none)'):format(indent, key)
  elseif vim.islist(value) then
    local simple = vim.iter(value):all(function(v)
      return type(v) ~= 'table'
    end)
    if simple then
      local joined = table.concat(vim.tbl_map(scalar, value), ', ')
      out[#out + 1] = ('%s%s: %s'):format(indent, key, joined)
      return
    end
    out[#out + 1] = ('%s%s:'):format(indent, key)
    for _, item in ipairs(value) do
      if type(item) == 'table' and not vim.islist(item) then
        local keys = vim.tbl_keys(item)
        table.sort(keys)
        local parts = vim.tbl_map(function(k)
          return ('%s=%s'):format(k, scalar(item[k]))
        end, keys)
        out[#out + 1] = ('%s  - %s'):format(indent, table.concat(parts, ', '))
      else
        out[#out + 1] = ('%s  - %s'):format(indent, scalar(item))
      end
    end
  else
    out[#out + 1] = ('%s%s:'):format(indent, key)
    local keys = vim.tbl_keys(value)
    table.sort(keys)
    for _, k in ipairs(keys) do
      M.pretty(tostring(k), value[k], indent .. '  ', out)
    end
  end
end

--- Human-readable lines for a `memlsp/status` result.
---@param status table
---@param client? vim.lsp.Client
---@return string[]
function M.format(status, client)
  local lines = {}
  local function add(fmt, ...)
    lines[#lines + 1] = fmt:format(...)
  end
  if type(status) ~= 'table' then
    return { 'memlsp status: ' .. scalar(status) }
  end
  add('memlsp %s', scalar(status.version))
  if client then
    add('client:     id %d, root %s', client.id, scalar(client.root_dir))
  end
  add('workspace:  %s', scalar(status.workspace))
  local issues = status.config_issues
  if type(issues) == 'table' and #issues > 0 then
    add('config issues:')
    for _, issue in ipairs(issues) do
      add('  ! %s', scalar(issue))
    end
  end
  local pool = status.pool
  if type(pool) == 'table' then
    add(
      'memory:     %s reserved of a %s budget; idle unload after %s s',
      mib(pool.reserved_bytes),
      mib(pool.budget_bytes),
      scalar(pool.idle_timeout_s)
    )
    local models = pool.models
    if type(models) == 'table' then
      add('models:')
      -- A list of records (current servers) or a map by name (older ones).
      local list = vim.islist(models) and models
        or vim.tbl_map(function(name)
          return vim.tbl_extend('force', { name = name }, models[name])
        end, vim.tbl_keys(models))
      for _, m in ipairs(list) do
        local state = m.loaded == true and (m.in_use == true and 'in use' or 'loaded')
          or 'not loaded'
        local flags = {}
        if m.pinned == true then
          flags[#flags + 1] = 'pinned'
        end
        if type(m.n_gpu_layers) == 'number' and m.n_gpu_layers > 0 then
          flags[#flags + 1] = ('%d GPU layers'):format(m.n_gpu_layers)
        end
        flags[#flags + 1] = ('hits %s, misses %s, loads %s'):format(
          scalar(m.hits),
          scalar(m.misses),
          scalar(m.loads)
        )
        add(
          '  %-22s %-10s %8s  %s',
          scalar(m.name),
          state,
          m.loaded == true and mib(m.bytes) or '',
          table.concat(flags, ', ')
        )
        if type(m.last_error) == 'string' and m.last_error ~= '' then
          add('    ! %s', scalar(m.last_error))
        end
      end
    end
  end
  local gen = status.generator
  if type(gen) == 'table' then
    add(
      'completions: model %s, %s requests, %s model calls, %s cache hits, %s typed-through, '
        .. '%s cancelled',
      scalar(gen.model),
      scalar(gen.requests),
      scalar(gen.model_calls),
      scalar(gen.cache_hits),
      scalar(gen.typed_through),
      scalar(gen.cancelled)
    )
  end
  local acceptance = status.acceptance
  if type(acceptance) == 'table' and vim.islist(acceptance) then
    for _, row in ipairs(acceptance) do
      if type(row) == 'table' then
        add(
          'accepted (%s, %s): %s full + %s partial of %s shown',
          scalar(row.language),
          scalar(row.model),
          scalar(row.accepted),
          scalar(row.partially_accepted),
          scalar(row.shown)
        )
      end
    end
  end
  local requests = status.requests
  if type(requests) == 'table' and type(requests.latency) == 'table' then
    local names = vim.tbl_keys(requests.latency)
    table.sort(names)
    for _, name in ipairs(names) do
      local l = requests.latency[name]
      if type(l) == 'table' and type(l.count) == 'number' and l.count > 0 then
        add(
          'latency %s: %d requests, mean %.2f s',
          name,
          l.count,
          (type(l.sum_s) == 'number' and l.sum_s or 0) / l.count
        )
      end
    end
  end
  local known = {
    requests = type(requests) == 'table' and type(requests.latency) == 'table',
    version = true,
    workspace = true,
    config_issues = true,
    pool = true,
    generator = true,
    acceptance = true,
  }
  local rest = vim.tbl_filter(function(k)
    return not known[k]
  end, vim.tbl_keys(status))
  table.sort(rest)
  for _, key in ipairs(rest) do
    M.pretty(key, status[key], '', lines)
  end
  local ghost = require('memlsp.ghost')
  local s = ghost.stats
  add(
    'this editor: %d requests, %d shown, %d stale, %d accepted, %d dismissed (engine: %s)',
    s.requests,
    s.shown,
    s.stale,
    s.accepted,
    s.dismissed,
    require('memlsp.inline').engine
  )
  return lines
end

--- Ask for `memlsp/status`; `callback(err, result, client)` runs on the main loop.
---@param callback fun(err: any, result: any, client: vim.lsp.Client|nil)
function M.request(callback)
  local client = M.client()
  if not client then
    callback('no memlsp client is running (open a file of a configured filetype)', nil, nil)
    return
  end
  client:request('memlsp/status', vim.empty_dict(), function(err, result)
    callback(err, result, client)
  end, 0)
end

--- Show lines in a centred float (q or <Esc> closes it).
---@param lines string[]
---@return integer bufnr, integer winid
function M.float(lines)
  local buf = api.nvim_create_buf(false, true)
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].filetype = 'memlsp-status'
  local width = 20
  for _, line in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(line))
  end
  width = math.min(width + 2, math.max(20, vim.o.columns - 4))
  local height = math.min(#lines, math.max(1, vim.o.lines - 6))
  local win = api.nvim_open_win(buf, true, {
    relative = 'editor',
    width = width,
    height = height,
    row = math.max(0, math.floor((vim.o.lines - height) / 2) - 1),
    col = math.max(0, math.floor((vim.o.columns - width) / 2)),
    style = 'minimal',
    border = 'rounded',
    title = ' memlsp status ',
    title_pos = 'center',
  })
  for _, key in ipairs({ 'q', '<Esc>' }) do
    vim.keymap.set('n', key, '<Cmd>close<CR>', { buffer = buf, nowait = true, silent = true })
  end
  return buf, win
end

--- :MemlspStatus[!] — a float, or with ! the raw result echoed.
---@param raw? boolean
function M.show(raw)
  M.request(function(err, result, client)
    if err then
      local message = type(err) == 'table' and (err.message or vim.inspect(err)) or tostring(err)
      vim.notify('memlsp status: ' .. message, vim.log.levels.WARN)
      return
    end
    M.last = result
    if raw then
      vim.print(result)
      return
    end
    M.float(M.format(result, client))
  end)
end

--- :MemlspReindex — `workspace/executeCommand` memlsp.reindex, tolerant of servers without it.
function M.reindex()
  local client = M.client()
  if not client then
    vim.notify('memlsp: no memlsp client is running', vim.log.levels.WARN)
    return
  end
  local provider = client.server_capabilities.executeCommandProvider
  local commands = type(provider) == 'table' and provider.commands or {}
  if not vim.list_contains(commands, 'memlsp.reindex') then
    vim.notify(
      'memlsp: this server does not offer memlsp.reindex (update memlsp for workspace indexing)',
      vim.log.levels.WARN
    )
    return
  end
  vim.notify('memlsp: reindexing the workspace…', vim.log.levels.INFO)
  local params = { command = 'memlsp.reindex', arguments = {} }
  client:request('workspace/executeCommand', params, function(err, result)
    if err then
      local message = err.message or vim.inspect(err)
      vim.notify('memlsp: reindex failed: ' .. message, vim.log.levels.WARN)
      return
    end
    local detail = ''
    if type(result) == 'table' then
      detail = ': ' .. vim.inspect(result, { newline = ' ', indent = '' })
    elseif result ~= nil and result ~= vim.NIL then
      detail = ': ' .. tostring(result)
    end
    vim.notify('memlsp: reindex done' .. detail, vim.log.levels.INFO)
  end, 0)
end

return M

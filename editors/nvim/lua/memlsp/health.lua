--- :checkhealth memlsp
local health = vim.health
local server = require('memlsp.server')

local M = {}

local function mib(bytes)
  return type(bytes) == 'number' and ('%d MiB'):format(math.floor(bytes / 1048576 + 0.5)) or '?'
end

local function trim(s)
  return (s or ''):gsub('^%s+', ''):gsub('%s+$', '')
end

local function check_nvim(memlsp)
  health.start('memlsp: Neovim and setup')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. version)
  else
    health.error('Neovim ' .. version .. ': memlsp.nvim needs Neovim 0.11 or newer')
  end
  if not memlsp.options then
    health.warn('require("memlsp").setup() has not been called', {
      'Call it from your config, e.g. require("memlsp").setup({})',
    })
    return
  end
  health.ok('setup() called; filetypes: ' .. table.concat(memlsp.options.filetypes, ', '))
  local inline = require('memlsp.inline')
  if not memlsp.options.inline.enabled then
    health.info('inline suggestions are disabled (inline.enabled = false)')
  elseif inline.engine == 'builtin' then
    health.ok('inline suggestions: Neovim’s vim.lsp.inline_completion')
  else
    health.ok(
      ('inline suggestions: memlsp ghost text (debounce %d ms)'):format(
        memlsp.options.inline.debounce_ms
      )
    )
  end
end

---@return string[]|nil cmd
local function check_server(memlsp)
  health.start('memlsp: server')
  local resolved = memlsp.server
    or server.resolve(memlsp.options and memlsp.options.cmd or nil)
  if not resolved.cmd then
    health.error(
      'memlsp executable not found (looked at: ' .. table.concat(resolved.tried, '; ') .. ')',
      vim.split(server.install_hint, '\n')
    )
    return nil
  end
  local cmd = resolved.cmd
  if type(cmd) == 'function' then
    health.ok('server command: ' .. resolved.how)
    -- The CLI checks below need an executable: use the one on $PATH if there is one.
    cmd = server.resolve(nil).cmd
    if not cmd then
      health.info('no memlsp executable found for the version and model checks')
      return nil
    end
  elseif vim.fn.executable(cmd[1]) == 1 then
    health.ok(('server command: %s (from %s)'):format(table.concat(cmd, ' '), resolved.how))
  else
    health.error(('server command %s is not executable'):format(cmd[1]), {
      'Fix the cmd option or install memlsp (see :help memlsp-install)',
    })
    return nil
  end
  local env = memlsp.options and memlsp.options.cmd_env or nil
  local result, err = server.run_cli(cmd, { '--version' }, env, 20000)
  local running = vim.lsp.get_clients({ name = 'memlsp' })[1]
  local running_version = running and running.server_info and running.server_info.version
  if result and result.code == 0 and trim(result.stdout) ~= '' then
    health.ok('version: ' .. trim(result.stdout))
  elseif running_version then
    health.ok(
      ('version: %s (from the running server; this memlsp CLI has no --version)'):format(
        running_version
      )
    )
  else
    health.info(
      'version: unknown (this memlsp CLI has no --version'
        .. (err and (': ' .. err) or '')
        .. '; open a file to start the server and run :checkhealth memlsp again)'
    )
  end
  return cmd
end

local function check_models(memlsp, cmd)
  health.start('memlsp: models')
  local env = memlsp.options and memlsp.options.cmd_env or nil
  local result, err = server.run_cli(cmd, { 'models', 'list' }, env, 30000)
  if not result then
    health.warn('could not run `memlsp models list`: ' .. tostring(err))
    return
  end
  if result.code ~= 0 then
    health.error('`memlsp models list` failed (exit ' .. result.code .. ')', {
      trim(result.stderr) ~= '' and trim(result.stderr) or 'see its output in a terminal',
    })
    return
  end
  local any = false
  for _, line in ipairs(vim.split(result.stdout, '\n', { trimempty = true })) do
    any = true
    local name, role, rest = line:match('^(%S+)%s+(%S+)%s+(.*)$')
    if not name then
      health.info(line)
    elseif rest:find('ready', 1, true) and not rest:find('not', 1, true) then
      health.ok(('%s (%s): ready'):format(name, role))
    else
      local state = rest:gsub('^n_ctx=%S+%s*', '')
      local advice = { 'Run: memlsp models install ' .. name }
      local how = state:match('%((.*)%)')
      if how then
        table.insert(advice, 1, how)
      end
      if role == 'fim' then
        health.warn(('%s (%s): %s'):format(name, role, state), advice)
      else
        health.info(('%s (%s): %s'):format(name, role, state))
      end
    end
  end
  if not any then
    health.warn('`memlsp models list` printed no models')
  end
end

local CAPABILITIES = {
  { 'inlineCompletionProvider', 'inline suggestions', true },
  { 'completionProvider', 'completion item', false },
  { 'diagnosticProvider', 'diagnostics (pull)', false },
  { 'codeActionProvider', 'code actions', false },
}

---@return vim.lsp.Client|nil
local function check_client(memlsp)
  health.start('memlsp: LSP client')
  local clients = vim.lsp.get_clients({ name = 'memlsp' })
  if #clients == 0 then
    health.warn('no memlsp client is running', {
      'Open a file whose filetype is in the filetypes option ('
        .. table.concat(memlsp.options and memlsp.options.filetypes or {}, ', ')
        .. ')',
      'If the server fails to start, read the LSP log: ' .. vim.lsp.log.get_filename(),
    })
    return nil
  end
  for _, client in ipairs(clients) do
    local buffers = vim.tbl_keys(client.attached_buffers)
    table.sort(buffers)
    local names = vim.tbl_map(function(b)
      return vim.fn.fnamemodify(vim.api.nvim_buf_get_name(b), ':~:.')
    end, buffers)
    local info = client.server_info or {}
    health.ok(
      ('client %d: %s %s, root %s, attached to %s'):format(
        client.id,
        info.name or 'memlsp',
        info.version or '',
        client.root_dir or '(single file)',
        #names > 0 and table.concat(names, ', ') or 'no buffer'
      )
    )
    if client:is_stopped() then
      health.error('client ' .. client.id .. ' has stopped: see ' .. vim.lsp.log.get_filename())
    end
    local caps = client.server_capabilities or {}
    for _, cap in ipairs(CAPABILITIES) do
      if caps[cap[1]] then
        health.ok('server offers ' .. cap[2])
      elseif cap[3] then
        health.warn('server does not offer ' .. cap[2] .. ' (' .. cap[1] .. ')')
      else
        health.info('server does not offer ' .. cap[2] .. ' yet')
      end
    end
    local provider = caps.executeCommandProvider
    local commands = type(provider) == 'table' and provider.commands or {}
    if #commands > 0 then
      health.ok('server commands: ' .. table.concat(commands, ', '))
    end
  end
  local last = memlsp.last_buffer
  if last and vim.api.nvim_buf_is_valid(last) then
    if #vim.lsp.get_clients({ name = 'memlsp', bufnr = last }) > 0 then
      health.ok('attached to the buffer you were in (' .. vim.fn.bufname(last) .. ')')
    end
  end
  return clients[1]
end

local function check_memory(client)
  health.start('memlsp: memory (memlsp/status)')
  if not client then
    health.info('no client running: start one to see the memory status')
    return
  end
  local response, err = client:request_sync('memlsp/status', vim.empty_dict(), 10000, 0)
  if not response then
    health.warn('memlsp/status got no answer: ' .. tostring(err))
    return
  end
  if response.err then
    health.warn('memlsp/status failed: ' .. (response.err.message or vim.inspect(response.err)))
    return
  end
  local status = response.result
  if type(status) ~= 'table' then
    health.warn('memlsp/status returned ' .. vim.inspect(status))
    return
  end
  if status.workspace and status.workspace ~= vim.NIL then
    health.ok('workspace: ' .. status.workspace)
  end
  local pool = status.pool
  if type(pool) == 'table' then
    health.ok(
      ('model pool: %s reserved of a %s budget'):format(
        mib(pool.reserved_bytes),
        mib(pool.budget_bytes)
      )
    )
    local loaded = {}
    for _, m in ipairs(vim.islist(pool.models or {}) and pool.models or {}) do
      if m.loaded then
        loaded[#loaded + 1] = ('%s (%s)'):format(m.name, mib(m.bytes))
      end
      if type(m.last_error) == 'string' and m.last_error ~= '' then
        health.warn(('%s: %s'):format(m.name, m.last_error))
      end
    end
    local names = #loaded > 0 and table.concat(loaded, ', ') or 'none (loaded on first use)'
    health.info('loaded models: ' .. names)
  end
  for _, issue in ipairs(type(status.config_issues) == 'table' and status.config_issues or {}) do
    health.warn('config: ' .. tostring(issue))
  end
end

function M.check()
  local memlsp = require('memlsp')
  check_nvim(memlsp)
  local cmd = check_server(memlsp)
  if cmd then
    check_models(memlsp, cmd)
  end
  local client = check_client(memlsp)
  check_memory(client)
end

return M

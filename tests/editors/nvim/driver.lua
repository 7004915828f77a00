-- Drives a real headless Neovim through memlsp.nvim against the real server, step by step, and
-- writes what it saw to a JSON file for tests/editors/test_nvim.py. Runs as a coroutine that yields to
-- Nvim's main loop between steps, so typed keys go through insert mode, mappings and autocmds
-- exactly as when a person types them.
--
-- The plan (JSON, path in $MEMLSP_NVIM_PLAN): { out, files = { add, sub, point, unused, refactor },
-- timeout_ms, steps = { ... } }.
local api = vim.api
local plan_file = assert(os.getenv('MEMLSP_NVIM_PLAN'), 'MEMLSP_NVIM_PLAN is not set')
local plan = vim.json.decode(table.concat(vim.fn.readfile(plan_file), '\n'))

local fake = package.loaded.fake_server -- the fake suite's server (nil for the real one)
local results = { steps = {}, order = {}, notifications = {}, nvim = tostring(vim.version()) }
local T0 = vim.uv.hrtime()

local function now_ms()
  return (vim.uv.hrtime() - T0) / 1e6
end

-- Keep every notification (the plugin reports problems through vim.notify).
local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(results.notifications, { msg = tostring(msg), level = level or 2, at_ms = now_ms() })
  return notify(msg, level, opts)
end

local function sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      results.crash = tostring(err)
    end
  end, ms)
  coroutine.yield()
end

--- Poll `cond` every `interval` ms until it returns a truthy value or `timeout_ms` passes.
local function wait_for(cond, timeout_ms, interval)
  local deadline = now_ms() + timeout_ms
  while true do
    local ok, value = pcall(cond)
    if ok and value then
      return value
    end
    if now_ms() > deadline then
      return nil
    end
    sleep(interval or 50)
  end
end

local function feed(keys)
  api.nvim_feedkeys(api.nvim_replace_termcodes(keys, true, false, true), 'm', false)
  sleep(20) -- let the main loop take them
end

local function lines(buf)
  return api.nvim_buf_get_lines(buf or 0, 0, -1, false)
end

local function mode()
  return api.nvim_get_mode().mode
end

--- The ghost text as rendered: extmarks of the memlsp.ghost namespace.
local function ghost(buf)
  local ns = api.nvim_get_namespaces()['memlsp.ghost']
  if not ns then
    return nil
  end
  local marks = api.nvim_buf_get_extmarks(buf or 0, ns, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  local mark = marks[1]
  local details = mark[4]
  local inline = {}
  for _, chunk in ipairs(details.virt_text or {}) do
    inline[#inline + 1] = chunk[1]
  end
  local below = {}
  for _, vl in ipairs(details.virt_lines or {}) do
    local parts = {}
    for _, chunk in ipairs(vl) do
      parts[#parts + 1] = chunk[1]
    end
    below[#below + 1] = table.concat(parts)
  end
  local text = table.concat(inline)
  if #below > 0 then
    text = text .. '\n' .. table.concat(below, '\n')
  end
  return {
    count = #marks,
    row = mark[2],
    col = mark[3],
    inline = table.concat(inline),
    virt_lines = below,
    text = text,
    virt_text_pos = details.virt_text_pos,
    hl = details.virt_text and details.virt_text[1] and details.virt_text[1][2] or nil,
  }
end

local function memlsp_client(buf)
  local c = vim.lsp.get_clients({ name = 'memlsp', bufnr = buf or 0 })[1]
  if c and c.initialized then
    return c
  end
end

local function open(path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  return wait_for(function()
    return memlsp_client(0)
  end, plan.timeout_ms)
end

--- Put the cursor at the end of `row` (1-based) and start typing there with `A`.
local function type_at_end(row, keys)
  api.nvim_win_set_cursor(0, { row, 0 })
  feed('A' .. keys)
end

local function leave_insert()
  feed('<Esc>')
  wait_for(function()
    return mode() == 'n'
  end, 5000)
end

local steps = {}
local suite = 'real' -- steps below belong to this suite until it is changed
local function step(name, fn)
  table.insert(steps, { name = name, fn = fn, suite = suite })
end

step('attach', function(r)
  local client = wait_for(function()
    return memlsp_client(0)
  end, plan.timeout_ms)
  assert(client, 'no memlsp client attached to ' .. api.nvim_buf_get_name(0))
  r.attach_ms = now_ms()
  r.server_info = client.server_info
  r.root_dir = client.root_dir
  r.cmd = client.config.cmd
  local caps = client.server_capabilities
  r.capabilities = {
    inlineCompletionProvider = caps.inlineCompletionProvider ~= nil,
    completionProvider = caps.completionProvider ~= nil,
    diagnosticProvider = caps.diagnosticProvider ~= nil,
    codeActionProvider = caps.codeActionProvider ~= nil and caps.codeActionProvider ~= false,
    executeCommandProvider = caps.executeCommandProvider,
  }
  r.init_options = client.config.init_options
  r.settings = client.settings
  r.engine = require('memlsp.inline').engine
end)

step('ghost', function(r)
  assert(memlsp_client(0), 'not in the add.py buffer')
  type_at_end(2, ' ')
  r.mode = mode()
  r.typed_at_ms = now_ms()
  local g = wait_for(function()
    return ghost(0)
  end, plan.timeout_ms, 25)
  r.shown_after_ms = now_ms() - r.typed_at_ms
  r.ghost = g
  r.suggestion = require('memlsp').suggestion()
  r.lines = lines(0)
  r.cursor = api.nvim_win_get_cursor(0)
  assert(g, 'no ghost text appeared')
end)

step('dismiss', function(r)
  -- Same buffer, still in insert mode, the suggestion from the ghost step on screen.
  assert(ghost(0), 'no ghost text to dismiss')
  r.before = lines(0)
  feed('<C-]>')
  r.cleared = wait_for(function()
    return ghost(0) == nil
  end, 5000, 10) or false
  -- It must stay away (no new request without a change) and leave the text alone.
  sleep(require('memlsp').options.inline.debounce_ms * 3 + 300)
  r.ghost_after_wait = ghost(0)
  r.lines = lines(0)
  r.mode = mode()
end)

step('trigger', function(r)
  -- <M-\> asks again at the same place: the server answers from its cache.
  local requests = require('memlsp.ghost').stats.requests
  r.at_ms = now_ms()
  feed('<M-\\>')
  r.ghost = wait_for(function()
    return ghost(0)
  end, plan.timeout_ms, 25)
  r.shown_after_ms = now_ms() - r.at_ms
  r.new_requests = require('memlsp.ghost').stats.requests - requests
  r.suggestion = require('memlsp').suggestion()
  assert(r.ghost, 'no ghost text after <M-\\>')
end)

step('accept', function(r)
  local sug = assert(require('memlsp').suggestion(), 'nothing to accept')
  r.suggestion = sug
  r.before = lines(0)
  local tick = api.nvim_buf_get_changedtick(0)
  feed('<Tab>')
  wait_for(function()
    return api.nvim_buf_get_changedtick(0) ~= tick
  end, 10000)
  r.lines = lines(0)
  r.cursor = api.nvim_win_get_cursor(0)
  r.stats = vim.deepcopy(require('memlsp.ghost').stats)
  leave_insert()
end)

step('partial', function(r)
  assert(open(plan.files.point), 'memlsp did not attach to point.py')
  type_at_end(3, ' ')
  local g = wait_for(function()
    local seen = ghost(0)
    return seen and seen or nil
  end, plan.timeout_ms, 25)
  assert(g, 'no ghost text in point.py')
  r.ghost = g
  r.initial = lines(0)
  r.suggestion = require('memlsp').suggestion()
  local function accept(keys, name)
    local tick = api.nvim_buf_get_changedtick(0)
    feed(keys)
    wait_for(function()
      return api.nvim_buf_get_changedtick(0) ~= tick
    end, 10000)
    sleep(50)
    r[name] = { lines = lines(0), rest = require('memlsp').suggestion(), ghost = ghost(0) }
  end
  accept('<M-Right>', 'after_word')
  accept('<M-l>', 'after_line')
  if require('memlsp').suggestion() then
    accept('<Tab>', 'after_full')
  end
  r.final = lines(0)
  leave_insert()
end)

step('status', function(r)
  local before = api.nvim_get_current_win()
  vim.cmd('MemlspStatus')
  local win = wait_for(function()
    for _, w in ipairs(api.nvim_list_wins()) do
      if vim.bo[api.nvim_win_get_buf(w)].filetype == 'memlsp-status' then
        return w
      end
    end
  end, plan.timeout_ms)
  assert(win, 'no status window appeared')
  r.float = api.nvim_win_get_config(win).relative ~= ''
  r.lines = lines(api.nvim_win_get_buf(win))
  r.raw = require('memlsp.status').last
  api.nvim_win_close(win, true)
  api.nvim_set_current_win(before)
end)

step('health', function(r)
  local buf, win = api.nvim_get_current_buf(), api.nvim_get_current_win()
  vim.cmd('checkhealth memlsp')
  r.lines = wait_for(function()
    local l = lines(0)
    for _, line in ipairs(l) do
      if line:find('memlsp: memory', 1, true) then
        return l
      end
    end
  end, plan.timeout_ms) or lines(0)
  if #api.nvim_list_tabpages() > 1 then
    vim.cmd('tabclose')
  end
  if api.nvim_win_is_valid(win) then
    api.nvim_set_current_win(win)
  end
  api.nvim_set_current_buf(buf)
end)

local function notes_matching(pattern, since)
  local found = {}
  for i = since + 1, #results.notifications do
    if results.notifications[i].msg:find(pattern) then
      found[#found + 1] = results.notifications[i].msg
    end
  end
  return found
end

step('reindex', function(r)
  local client = assert(memlsp_client(0) or vim.lsp.get_clients({ name = 'memlsp' })[1])
  local provider = client.server_capabilities.executeCommandProvider
  r.advertised = type(provider) == 'table'
    and vim.list_contains(provider.commands or {}, 'memlsp.reindex')
  local since = #results.notifications
  vim.cmd('MemlspReindex')
  r.notes = wait_for(function()
    local notes = notes_matching('reindex done', since)
    vim.list_extend(notes, notes_matching('reindex failed', since))
    vim.list_extend(notes, notes_matching('does not offer', since))
    return #notes > 0 and notes or nil
  end, plan.timeout_ms) or notes_matching('reindex', since)
end)

-- Shared by the real and the fake suites.
local function diagnostics_step(r)
  local pulls = fake and fake.count('textDocument/diagnostic') or 0
  local client = assert(open(plan.files.unused), 'memlsp did not attach to unused.py')
  local buf = api.nvim_get_current_buf()
  if fake then -- let Neovim's own pull after didOpen go first: the one after the save is ours
    wait_for(function()
      return fake.count('textDocument/diagnostic') > pulls
    end, 5000)
    sleep(100)
    r.before_write = #vim.diagnostic.get(buf)
  end
  vim.cmd('write')
  r.advertised = client.server_capabilities.diagnosticProvider ~= nil
  local ours = function(d)
    local ns = vim.diagnostic.get_namespace(d.namespace)
    local source = (d.source or '') .. ' ' .. ((ns and ns.name) or '')
    return source:lower():find('memlsp') or source:lower():find('ruff')
  end
  local found = wait_for(function()
    for _, d in ipairs(vim.diagnostic.get(buf)) do
      if ours(d) then
        return true
      end
    end
  end, r.advertised and plan.timeout_ms or plan.push_wait_ms or 3000, 100)
  r.found = found or false
  r.pulls = fake and (fake.count('textDocument/diagnostic') - pulls) or nil
  r.diagnostics = vim.tbl_map(function(d)
    return {
      lnum = d.lnum,
      col = d.col,
      message = d.message,
      source = d.source,
      code = d.code,
      severity = d.severity,
      namespace = (vim.diagnostic.get_namespace(d.namespace) or {}).name,
    }
  end, vim.diagnostic.get(buf))
end

local function code_action_step(r)
  local client = assert(open(plan.files.refactor), 'memlsp did not attach to refactor.py')
  local provider = client.server_capabilities.codeActionProvider
  r.advertised = provider ~= nil and provider ~= false
  if not r.advertised then
    return
  end
  api.nvim_win_set_cursor(0, { 1, 4 })
  r.before = lines(0)
  local tick = api.nvim_buf_get_changedtick(0)
  local offered = {}
  local chosen = false
  vim.lsp.buf.code_action({
    context = { only = { 'refactor' }, diagnostics = {} },
    filter = function(action)
      offered[#offered + 1] = { title = action.title, kind = action.kind }
      if not chosen and type(action.kind) == 'string' and action.kind:find('^refactor') then
        chosen = true
        return true
      end
      return false
    end,
    apply = true,
  })
  r.changed = wait_for(function()
    return api.nvim_buf_get_changedtick(0) ~= tick
  end, plan.timeout_ms, 100) or false
  r.offered = offered
  r.lines = lines(0)
end

step('diagnostics', diagnostics_step)
step('code_action', code_action_step)

-- The fake suite: tests/editors/nvim/fake_server.lua instead of memlsp, answers held until released.
suite = 'fake'
local ghost_mod = require('memlsp.ghost')

local function last_message(method)
  for i = #fake.messages, 1, -1 do
    if fake.messages[i].method == method then
      return fake.messages[i], i
    end
  end
end

local function show_now(r)
  assert(wait_for(function()
    return #fake.pending > 0
  end, 10000), 'no inline request reached the server')
  fake.release()
  r.ghost = wait_for(function()
    return ghost(0)
  end, 5000, 10)
  return r.ghost
end

step('fake_attach', function(r)
  local client = wait_for(function()
    return memlsp_client(0)
  end, 20000)
  assert(client, 'the fake server did not attach')
  r.server = client.server_info.name
end)

step('fake_show', function(r)
  type_at_end(2, ' ')
  assert(show_now(r), 'no ghost text')
  local request, at = last_message('textDocument/inlineCompletion')
  r.params = request.params
  local _, change_at = last_message('textDocument/didChange')
  r.change_before_request = change_at ~= nil and change_at < at
  r.cursor = api.nvim_win_get_cursor(0)
end)

step('fake_typed_through', function(r)
  local before = fake.count('textDocument/inlineCompletion')
  feed('ret')
  sleep(ghost_mod.options.debounce_ms * 3 + 100)
  r.new_requests = fake.count('textDocument/inlineCompletion') - before
  r.ghost = ghost(0)
  r.suggestion = require('memlsp').suggestion()
  r.line = api.nvim_get_current_line()
end)

step('fake_move_clears', function(r)
  feed('<Left>')
  r.cleared = ghost(0) == nil
  -- ...and asks again for the new position.
  assert(show_now(r), 'no new suggestion after the move')
  r.cursor = api.nvim_win_get_cursor(0)
end)

step('fake_stale', function(r)
  local debounce = ghost_mod.options.debounce_ms
  ghost_mod.options.debounce_ms = 60000 -- no automatic request while we stage this
  local stale = ghost_mod.stats.stale
  feed('<End>')
  ghost_mod.request()
  assert(#fake.pending == 1, 'no request in flight')
  feed('x') -- the buffer changes while the request is out
  fake.release()
  sleep(50)
  r.after_change = { stale = ghost_mod.stats.stale - stale, ghost = ghost(0) }
  ghost_mod.request()
  feed('<Left>') -- only the cursor moves while the request is out
  fake.release()
  sleep(50)
  r.after_move = { stale = ghost_mod.stats.stale - stale, ghost = ghost(0) }
  ghost_mod.options.debounce_ms = debounce
  ghost_mod.request()
  assert(show_now(r), 'no ghost text for a fresh request')
  r.cursor = api.nvim_win_get_cursor(0)
end)

step('fake_partial_command', function(r)
  local before = #fake.commands
  r.suggestion = require('memlsp').suggestion()
  local line = api.nvim_get_current_line()
  local col = api.nvim_win_get_cursor(0)[2]
  feed('<M-Right>')
  local after = api.nvim_get_current_line()
  r.inserted = after:sub(col + 1, col + #after - #line)
  r.commands_before_leaving = #fake.commands - before
  leave_insert()
  r.ghost_after_leave = ghost(0)
  wait_for(function()
    return #fake.commands > before
  end, 5000)
  r.command = fake.commands[before + 1]
end)

step('fake_full_command', function(r)
  local before = #fake.commands
  type_at_end(2, ' ')
  assert(show_now(r), 'no ghost text')
  feed('<Tab>')
  wait_for(function()
    return #fake.commands > before
  end, 5000)
  r.command = fake.commands[before + 1]
  r.line = api.nvim_get_current_line()
  leave_insert()
end)

step('fake_fallthrough', function(r)
  vim.cmd('MemlspToggle') -- no suggestion may show up while the keys are tried
  type_at_end(2, '')
  r.before = api.nvim_get_current_line()
  feed('<M-l>')
  r.previous_map = vim.g.previous_map
  feed('<C-]>')
  r.dismiss_line = api.nvim_get_current_line()
  feed('<Tab>')
  r.tab_line = api.nvim_get_current_line()
  leave_insert()
  vim.cmd('MemlspToggle')
end)

step('fake_reindex', function(r)
  local since = #results.notifications
  local before = #fake.commands
  vim.cmd('MemlspReindex')
  r.notes = notes_matching('memlsp', since)
  r.commands_sent = #fake.commands - before
end)

step('fake_diagnostics', diagnostics_step)
step('fake_code_action', code_action_step)

step('fake_toggle', function(r)
  vim.cmd('MemlspToggle')
  local before = fake.count('textDocument/inlineCompletion')
  type_at_end(2, 'y')
  sleep(ghost_mod.options.debounce_ms * 3 + 100)
  r.requests_while_off = fake.count('textDocument/inlineCompletion') - before
  leave_insert()
  vim.cmd('MemlspToggle')
  type_at_end(2, 'z')
  r.request_when_on = wait_for(function()
    return fake.count('textDocument/inlineCompletion') > before
  end, 5000) or false
  fake.release()
  leave_insert()
end)

step('units', function(r)
  local portion = ghost_mod.portion
  r.portion = {
    portion('return a + b', 'word'),
    portion('.x = x', 'word'),
    portion(' = x', 'word'),
    portion('self.x = x\n        self.y = y', 'line'),
    portion('\n        self.y = y', 'line'),
    portion('\n        self.y = y', 'word'),
    portion('abc', 'full'),
  }
  local cmd = { command = 'memlsp.accepted', arguments = { 'python', 'm', 12, 'full' } }
  r.partial_command = ghost_mod.acceptance_command(cmd, 'partial', 3)
  r.full_command = ghost_mod.acceptance_command(cmd, 'full', 3)
  r.other_partial = ghost_mod.acceptance_command({ command = 'x.y' }, 'partial', 3) or vim.NIL
  local config = require('memlsp.config')
  local function err(opts)
    local ok, e = pcall(config.resolve, opts)
    return ok and vim.NIL or tostring(e)
  end
  r.config_errors = {
    err({ inline = { engine = 'nope' } }),
    err({ keymaps = { acept = '<Tab>' } }),
    err({ filetypes = 'python' }),
    err({ inline = { debounce_ms = 'soon' } }),
  }
  local resolved = config.resolve({ filetypes = { 'lua' }, keymaps = { accept_word = false } })
  r.config = {
    filetypes = resolved.filetypes,
    accept = resolved.keymaps.accept,
    accept_word = resolved.keymaps.accept_word,
    debounce = resolved.inline.debounce_ms,
  }
  local server = require('memlsp.server')
  r.cli = server.cli({ 'py', '-m', 'memlsp.server.cli', 'serve', '--stdio' }, { 'models', 'list' })
  r.string_cmd = server.resolve('/opt/memlsp').cmd
  -- The Neovim 0.12 engine's wiring, with a stand-in for vim.lsp.inline_completion.
  local inline = require('memlsp.inline')
  local calls = {}
  inline._builtin_override = {
    enable = function(on, filter)
      table.insert(calls, { 'enable', on, filter and filter.bufnr or vim.NIL })
    end,
    get = function(o)
      local item = {
        insert_text = 'return a + b',
        command = { command = 'memlsp.accepted', arguments = { 'python', 'm', 12, 'full' } },
      }
      if o.on_accept then
        item = o.on_accept(item)
      end
      table.insert(calls, { 'get', item or vim.NIL })
      return true
    end,
  }
  inline.configure(vim.tbl_extend('force', require('memlsp').options.inline, { engine = 'auto' }))
  r.builtin = {
    engine = inline.engine,
    full = inline.accept_keys('full'),
    word = inline.accept_keys('word'),
    line = inline.accept_keys('line'),
    dismiss = inline.dismiss_keys(),
    trigger = inline.trigger_keys() or vim.NIL,
  }
  inline.attach(api.nvim_get_current_buf())
  r.builtin.calls = calls
  inline._builtin_override = nil
  inline.configure(require('memlsp').options.inline)
  r.engine_after = inline.engine
  -- setup() again without <M-l>: the mapping from before the first setup() comes back.
  local memlsp = require('memlsp')
  local again = vim.deepcopy(memlsp.options)
  again.cmd = fake.cmd
  again.keymaps.accept_line = false
  memlsp.setup(again)
  r.resetup = {
    accept_line = type(vim.fn.maparg('<M-l>', 'i', false, true).callback),
    accept = vim.fn.maparg('<Tab>', 'i', false, true).desc or vim.NIL,
    clients = #vim.lsp.get_clients({ name = 'memlsp' }),
  }
  -- No server anywhere: setup() says how to install one.
  local server_mod = require('memlsp.server')
  local plugin_root, path, cwd = server_mod.plugin_root, vim.env.PATH, vim.fn.getcwd()
  server_mod.plugin_root = function()
    return '/nonexistent/editors/nvim'
  end
  vim.env.PATH = '/nonexistent'
  vim.cmd.cd('/')
  local since = #results.notifications
  r.missing_cmd = server_mod.resolve(nil).cmd or vim.NIL
  memlsp.setup({ keymaps = false })
  r.missing_notes = notes_matching('not found', since)
  server_mod.plugin_root, vim.env.PATH = plugin_root, path
  vim.cmd.cd(vim.fn.fnameescape(cwd))
  r.status_lines = require('memlsp.status').format({
    version = '9.9',
    workspace = '/w',
    config_issues = { 'bad key' },
    pool = {
      budget_bytes = 2 * 1048576,
      reserved_bytes = 1048576,
      models = { { name = 'm1', loaded = true, bytes = 1048576, pinned = true, hits = 1 } },
    },
    memory = { folders = { { root = '/w', chunks = 3 } } },
    extra = vim.empty_dict(),
  })
end)

local function finish()
  results.elapsed_ms = now_ms()
  results.messages = api.nvim_exec2('messages', { output = true }).output
  results.lsp_log = vim.lsp.log.get_filename()
  results.ghost_stats = require('memlsp.ghost').stats
  local file = assert(io.open(plan.out, 'w'))
  file:write(vim.json.encode(results))
  file:close()
  vim.cmd('qa!')
end

local function run()
  local wanted = {}
  for _, name in ipairs(plan.steps or {}) do
    wanted[name] = true
  end
  for _, s in ipairs(steps) do
    if s.suite == (plan.suite or 'real') and (plan.steps == nil or wanted[s.name]) then
      local r = { started_ms = now_ms() }
      results.steps[s.name] = r
      table.insert(results.order, s.name)
      local ok, err = pcall(s.fn, r)
      r.ok = ok
      r.error = not ok and tostring(err) or nil
      r.seconds = (now_ms() - r.started_ms) / 1000
      if not ok and mode() ~= 'n' then
        pcall(leave_insert) -- steps that pass leave the mode the next one expects
      end
    end
  end
end

api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(function()
      local co = coroutine.create(function()
        local ok, err = pcall(run)
        if not ok then
          results.crash = tostring(err)
        end
        finish()
      end)
      local ok, err = coroutine.resume(co)
      if not ok then
        results.crash = tostring(err)
        finish()
      end
    end)
  end,
})

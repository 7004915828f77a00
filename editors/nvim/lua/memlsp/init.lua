--- memlsp.nvim: AI code assistance from local GGUF models through the memlsp language server.
---
--- require("memlsp").setup({...}) registers the server with vim.lsp.config/enable, shows inline
--- suggestions, and defines :MemlspStatus, :MemlspReindex and :MemlspToggle. See :help memlsp.
local api = vim.api

local M = {}

---@type memlsp.Options|nil  the options in force (nil until setup())
M.options = nil
---@type memlsp.Resolved|nil  how the server command was found
M.server = nil
---@type integer|nil  the last buffer a memlsp client was attached to (for :checkhealth)
M.last_buffer = nil

local NAME = 'memlsp'

local function as_object(t)
  if type(t) == 'table' and next(t) == nil then
    return vim.empty_dict() -- JSON {} rather than []
  end
  return t
end

--- Pull diagnostics again (servers with diagnosticProvider; Nvim 0.11 pulls only on open/change).
---@param client vim.lsp.Client
---@param bufnr integer
local function pull_diagnostics(client, bufnr)
  if not client:supports_method('textDocument/diagnostic', bufnr) then
    return
  end
  local params = { textDocument = vim.lsp.util.make_text_document_params(bufnr) }
  client:request('textDocument/diagnostic', params, function(err, result, ctx)
    if err and err.code == -32800 then
      return
    end
    vim.lsp.diagnostic.on_diagnostic(err, result, ctx)
  end, bufnr)
end

local function capabilities(opts)
  local caps = {
    textDocument = {
      -- Nvim 0.11 does not announce it; the ghost text engine implements it.
      inlineCompletion = { dynamicRegistration = false },
    },
    workspace = { diagnostics = { refreshSupport = true } },
  }
  if opts.capabilities then
    caps = vim.tbl_deep_extend('force', caps, opts.capabilities)
  end
  return caps
end

--- Previous global insert-mode mappings of our keys (by lhs), to fall through to when there is
--- no suggestion; `id` indexes `previous_list` (a number survives keycode replacement).
---@type table<string, table>
local previous_maps = {}
---@type table[]
local previous_list = {}
local our_desc = 'memlsp: '
---@type string[]  keys we mapped (removed again when setup() runs another time)
local mapped = {}

--- Call a previous mapping's non-expr Lua callback (outside the textlock of our expr mapping).
---@param id integer
function M._call_previous(id)
  local prev = previous_list[id]
  if prev and prev.callback then
    prev.callback()
  end
end

local function fallthrough(lhs)
  local prev = previous_maps[lhs]
  if prev then
    if prev.callback then
      if prev.expr == 1 then
        return prev.callback() or ''
      end
      return ("<Cmd>lua require('memlsp')._call_previous(%d)<CR>"):format(prev.id)
    elseif prev.rhs and prev.rhs ~= '' then
      if prev.expr == 1 then
        return api.nvim_eval(prev.rhs)
      end
      return prev.rhs
    end
  end
  return lhs -- starts with lhs, so Nvim does not map it again: the key's own meaning
end

local function set_keymaps(keymaps)
  local inline = require('memlsp.inline')
  local actions = {
    accept = function()
      return inline.accept_keys('full')
    end,
    accept_line = function()
      return inline.accept_keys('line')
    end,
    accept_word = function()
      return inline.accept_keys('word')
    end,
    dismiss = inline.dismiss_keys,
    trigger = inline.trigger_keys,
  }
  for _, lhs in ipairs(mapped) do
    local current = vim.fn.maparg(lhs, 'i', false, true)
    if type(current) == 'table' and (current.desc or ''):find(our_desc, 1, true) then
      pcall(vim.keymap.del, 'i', lhs)
      if previous_maps[lhs] then
        pcall(vim.fn.mapset, previous_maps[lhs]) -- give the key back its old mapping
      end
    end
  end
  mapped = {}
  previous_maps = {}
  if not keymaps then
    return
  end
  for name, lhs in pairs(keymaps) do
    if lhs then
      mapped[#mapped + 1] = lhs
      local prev = vim.fn.maparg(lhs, 'i', false, true)
      if
        type(prev) == 'table'
        and prev.lhs
        and prev.buffer ~= 1
        and not (prev.desc or ''):find(our_desc, 1, true)
      then
        previous_list[#previous_list + 1] = prev
        prev.id = #previous_list
        previous_maps[lhs] = prev
      end
      local action = actions[name]
      vim.keymap.set('i', lhs, function()
        return action() or fallthrough(lhs)
      end, {
        expr = true,
        remap = true,
        silent = true,
        desc = our_desc .. name:gsub('_', ' ') .. ' inline suggestion',
      })
    end
  end
end

local function set_highlight(group)
  if group == 'MemlspGhostText' then
    api.nvim_set_hl(0, 'MemlspGhostText', { link = 'Comment', default = true })
  end
end

local function create_commands()
  api.nvim_create_user_command('MemlspStatus', function(cmd)
    require('memlsp.status').show(cmd.bang)
  end, { bang = true, desc = 'memlsp: show the server status (! prints the raw result)' })
  api.nvim_create_user_command('MemlspReindex', function()
    require('memlsp.status').reindex()
  end, { desc = 'memlsp: rebuild the workspace memory index' })
  api.nvim_create_user_command('MemlspToggle', function()
    local on = require('memlsp.inline').set_enabled()
    vim.notify('memlsp: inline suggestions ' .. (on and 'on' or 'off'), vim.log.levels.INFO)
  end, { desc = 'memlsp: turn inline suggestions on or off' })
end

--- Set up memlsp. Safe to call again with new options.
---@param user? table  see :help memlsp-options
function M.setup(user)
  if vim.fn.has('nvim-0.11') == 0 then
    vim.notify('memlsp.nvim needs Neovim 0.11 or newer', vim.log.levels.ERROR)
    return
  end
  local opts = require('memlsp.config').resolve(user)
  M.options = opts
  create_commands()

  local inline = require('memlsp.inline')
  inline.configure(opts.inline)
  set_highlight(opts.inline.hl_group)

  local group = api.nvim_create_augroup('memlsp', { clear = true })
  api.nvim_create_autocmd('ColorScheme', {
    group = group,
    callback = function()
      set_highlight(opts.inline.hl_group)
    end,
  })

  local resolved = require('memlsp.server').resolve(opts.cmd)
  M.server = resolved
  if not resolved.cmd then
    if opts.notify_missing then
      vim.notify(require('memlsp.server').install_hint, vim.log.levels.WARN)
    end
    return
  end
  if type(resolved.cmd) == 'table' and vim.fn.executable(resolved.cmd[1]) == 0 then
    vim.notify(
      ('memlsp: server command %s is not executable; see :checkhealth memlsp'):format(
        resolved.cmd[1]
      ),
      vim.log.levels.WARN
    )
  end

  local settings = opts.settings or {}
  vim.lsp.config(NAME, {
    cmd = resolved.cmd,
    cmd_env = opts.cmd_env,
    filetypes = opts.filetypes,
    root_markers = opts.root_markers,
    init_options = as_object(opts.init_options or settings),
    -- Answers workspace/configuration for section "memlsp" (Nvim's default handler).
    settings = { memlsp = as_object(settings) },
    capabilities = capabilities(opts),
    on_attach = opts.on_attach,
    handlers = {
      ['workspace/diagnostic/refresh'] = function(_, _, ctx)
        local client = vim.lsp.get_client_by_id(ctx.client_id)
        if client then
          for bufnr in pairs(client.attached_buffers) do
            pull_diagnostics(client, bufnr)
          end
        end
        return vim.NIL
      end,
    },
  })
  vim.lsp.enable(NAME)

  api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == NAME then
        M.last_buffer = args.buf
        inline.attach(args.buf)
      end
    end,
  })
  api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == NAME then
        inline.detach(args.buf)
      end
    end,
  })
  api.nvim_create_autocmd('BufEnter', {
    group = group,
    callback = function(args)
      if #vim.lsp.get_clients({ name = NAME, bufnr = args.buf }) > 0 then
        M.last_buffer = args.buf
      end
    end,
  })
  -- Diagnostics on save for pull servers (push servers publish on didSave by themselves).
  api.nvim_create_autocmd('BufWritePost', {
    group = group,
    callback = function(args)
      -- Scheduled: Neovim sends didSave from its own BufWritePost autocmd, which may run after
      -- this one; the server must see the save before the request.
      vim.schedule(function()
        if not api.nvim_buf_is_valid(args.buf) then
          return
        end
        for _, client in ipairs(vim.lsp.get_clients({ name = NAME, bufnr = args.buf })) do
          pull_diagnostics(client, args.buf)
        end
      end)
    end,
  })
  -- Buffers already open (setup() called late, e.g. by a lazy-loading plugin manager).
  for _, client in ipairs(vim.lsp.get_clients({ name = NAME })) do
    for bufnr in pairs(client.attached_buffers) do
      inline.attach(bufnr)
    end
  end

  set_keymaps(opts.keymaps)
end

--- Accept the visible suggestion (whole, next line or next word). For your own mappings.
---@param kind? 'full'|'line'|'word'
---@return boolean accepted
function M.accept(kind)
  return require('memlsp.inline').accept(kind)
end

---@return boolean dismissed
function M.dismiss()
  return require('memlsp.inline').dismiss()
end

---@return boolean visible  (always false with Nvim's built-in engine, which does not say)
function M.visible()
  return require('memlsp.inline').visible()
end

--- Ask for a suggestion now (memlsp engine).
function M.trigger()
  require('memlsp.ghost').request(nil, true)
end

---@param enabled? boolean  nil toggles
---@return boolean enabled
function M.toggle(enabled)
  return require('memlsp.inline').set_enabled(enabled)
end

--- The visible suggestion's remaining text (memlsp engine), for statuslines and tests.
---@return string|nil
function M.suggestion()
  local sug = require('memlsp.ghost').current()
  return sug and sug.text or nil
end

return M

--- Options of require("memlsp").setup(): defaults, merging and validation.
local M = {}

---@class memlsp.InlineOptions
---@field enabled boolean        show inline suggestions while typing
---@field engine "auto"|"builtin"|"memlsp"  who renders them (auto: builtin on Nvim 0.12+)
---@field debounce_ms integer    wait this long after the last keystroke before asking
---@field hl_group string        highlight group of the ghost text
---@field hide_with_pum boolean  no ghost text while the popup menu is visible

---@class memlsp.Keymaps
---@field accept string|false       accept the whole suggestion
---@field accept_line string|false  accept the next line of it
---@field accept_word string|false  accept the next word of it
---@field dismiss string|false      hide it
---@field trigger string|false      ask for one now

---@class memlsp.Options
---@field cmd? string[]|string|function  server command (default: auto-detected)
---@field cmd_env? table<string,string>
---@field filetypes string[]
---@field root_markers string[]
---@field settings table             memlsp settings (init_options + workspace/configuration)
---@field init_options? table        defaults to `settings`
---@field capabilities? table        extra client capabilities, deep-merged
---@field on_attach? fun(client: vim.lsp.Client, bufnr: integer)
---@field inline memlsp.InlineOptions
---@field keymaps memlsp.Keymaps|false
---@field notify_missing boolean     vim.notify when the server cannot be found

---@type memlsp.Options
M.defaults = {
  cmd = nil,
  cmd_env = nil,
  filetypes = {
    'python',
    'javascript',
    'javascriptreact',
    'typescript',
    'typescriptreact',
    'go',
    'rust',
    'java',
    'c',
    'cpp',
  },
  root_markers = {
    '.memlsp.yaml',
    '.git',
    'pyproject.toml',
    'setup.py',
    'package.json',
    'go.mod',
    'Cargo.toml',
  },
  settings = {},
  init_options = nil,
  capabilities = nil,
  on_attach = nil,
  inline = {
    enabled = true,
    engine = 'auto',
    debounce_ms = 150,
    hl_group = 'MemlspGhostText',
    hide_with_pum = true,
  },
  keymaps = {
    accept = '<Tab>',
    accept_line = '<M-l>',
    accept_word = '<M-Right>',
    dismiss = '<C-]>',
    trigger = '<M-\\>',
  },
  notify_missing = true,
}

local function check(name, value, expected, optional)
  local ok, err = pcall(vim.validate, name, value, expected, optional)
  if not ok then
    error('memlsp.setup: ' .. tostring(err), 0)
  end
end

--- Defaults < user options. Lists (filetypes, root_markers, cmd) are replaced, not merged.
---@param user? table
---@return memlsp.Options
function M.resolve(user)
  user = user or {}
  check('opts', user, 'table')
  local opts = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), user)
  for _, key in ipairs({ 'filetypes', 'root_markers', 'cmd' }) do
    if user[key] ~= nil then
      opts[key] = user[key]
    end
  end
  if user.keymaps == false then
    opts.keymaps = false
  end
  check('cmd', opts.cmd, { 'table', 'string', 'function' }, true)
  check('cmd_env', opts.cmd_env, 'table', true)
  check('filetypes', opts.filetypes, 'table')
  check('root_markers', opts.root_markers, 'table')
  check('settings', opts.settings, 'table')
  check('init_options', opts.init_options, 'table', true)
  check('capabilities', opts.capabilities, 'table', true)
  check('on_attach', opts.on_attach, 'function', true)
  check('inline', opts.inline, 'table')
  check('inline.enabled', opts.inline.enabled, 'boolean')
  check('inline.debounce_ms', opts.inline.debounce_ms, 'number')
  check('inline.hl_group', opts.inline.hl_group, 'string')
  check('inline.hide_with_pum', opts.inline.hide_with_pum, 'boolean')
  local engines = { auto = true, builtin = true, memlsp = true }
  if not engines[opts.inline.engine] then
    error(
      ("memlsp.setup: inline.engine must be 'auto', 'builtin' or 'memlsp', got %s"):format(
        vim.inspect(opts.inline.engine)
      ),
      0
    )
  end
  if opts.keymaps then
    for name, lhs in pairs(opts.keymaps) do
      if M.defaults.keymaps[name] == nil then
        error(('memlsp.setup: unknown keymap %q'):format(name), 0)
      end
      if lhs ~= false and type(lhs) ~= 'string' then
        error(('memlsp.setup: keymaps.%s must be a key string or false'):format(name), 0)
      end
    end
  end
  return opts
end

return M

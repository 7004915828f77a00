-- Defaults for vim.lsp.enable("memlsp") without require("memlsp").setup() (Nvim 0.11+).
-- setup() overrides these with the options you pass and a detected server path. The filetypes
-- and root markers are setup()'s defaults, kept once in lua/memlsp/config.lua.
local defaults = require('memlsp.config').defaults

return {
  cmd = { 'memlsp', 'serve' },
  filetypes = vim.deepcopy(defaults.filetypes),
  root_markers = vim.deepcopy(defaults.root_markers),
}

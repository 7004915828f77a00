-- Defaults for vim.lsp.enable("memlsp") without require("memlsp").setup() (Nvim 0.11+).
-- setup() overrides these with the options you pass and a detected server path.
return {
  cmd = { 'memlsp', 'serve' },
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
}

--- Finding the memlsp executable and running its command-line subcommands.
local M = {}

local is_windows = vim.fn.has('win32') == 1

local function venv_exe(dir)
  if is_windows then
    return vim.fs.joinpath(dir, 'Scripts', 'memlsp.exe')
  end
  return vim.fs.joinpath(dir, 'bin', 'memlsp')
end

local function executable(path)
  return path and vim.fn.executable(path) == 1
end

--- The folder this plugin lives in (editors/nvim of a memlsp checkout, or a plugin manager's copy).
function M.plugin_root()
  local source = debug.getinfo(1, 'S').source:gsub('^@', '')
  return vim.fs.dirname(vim.fs.dirname(vim.fs.dirname(vim.fs.normalize(source))))
end

---@class memlsp.Resolved
---@field cmd string[]|function|nil  the command that starts the server (nil: not found)
---@field how string        where it came from, for :checkhealth
---@field tried string[]    places looked at

--- Resolve the server command: `opts.cmd`, else `memlsp` on PATH, else a `.venv` (or `venv`)
--- above the current directory, else the `.venv` of the memlsp checkout this plugin lives in.
---@param cmd string[]|string|function|nil
---@param cwd? string
---@return memlsp.Resolved
function M.resolve(cmd, cwd)
  if type(cmd) == 'function' then
    -- e.g. vim.lsp.rpc.connect('127.0.0.1', 2087) for `memlsp serve --tcp 127.0.0.1:2087`
    return { cmd = cmd, how = 'the cmd option (a function: TCP or in-process)', tried = {} }
  elseif type(cmd) == 'string' then
    return { cmd = { cmd, 'serve' }, how = 'the cmd option', tried = { cmd } }
  elseif type(cmd) == 'table' and #cmd > 0 then
    return { cmd = vim.deepcopy(cmd), how = 'the cmd option', tried = { cmd[1] } }
  end
  local tried = {}
  local on_path = vim.fn.exepath('memlsp')
  table.insert(tried, 'memlsp on $PATH')
  if on_path ~= '' then
    return { cmd = { on_path, 'serve' }, how = '$PATH', tried = tried }
  end
  cwd = cwd or vim.fn.getcwd()
  for dir in vim.fs.parents(vim.fs.joinpath(cwd, 'x')) do
    for _, name in ipairs({ '.venv', 'venv' }) do
      local exe = venv_exe(vim.fs.joinpath(dir, name))
      if executable(exe) then
        return { cmd = { exe, 'serve' }, how = 'a workspace virtualenv', tried = tried }
      end
    end
  end
  table.insert(tried, '.venv/ and venv/ above ' .. cwd)
  -- editors/nvim in a memlsp checkout: the checkout's own virtualenv (./setup.sh makes it)
  local checkout = vim.fs.dirname(vim.fs.dirname(M.plugin_root()))
  local exe = venv_exe(vim.fs.joinpath(checkout, '.venv'))
  table.insert(tried, exe)
  if executable(exe) then
    return { cmd = { exe, 'serve' }, how = "the memlsp checkout's .venv", tried = tried }
  end
  return { cmd = nil, how = 'not found', tried = tried }
end

M.install_hint = table.concat({
  'memlsp: the language server was not found.',
  'Install memlsp into a Python 3.11 environment and put its `memlsp` command on $PATH,',
  'or, in a memlsp checkout, run ./setup.sh (it creates .venv/bin/memlsp, found automatically),',
  'or pass the command: require("memlsp").setup({ cmd = { "/path/to/memlsp", "serve" } }).',
  'Then assemble the models once: memlsp models install. See :help memlsp-install.',
}, '\n')

--- The command line for a CLI subcommand, derived from the serve command: everything before
--- "serve" (e.g. { python, -m, memlsp.server.cli }) followed by `args`; nil without a "serve".
---@param cmd string[]
---@param args string[]
---@return string[]|nil
function M.cli(cmd, args)
  if type(cmd) ~= 'table' then
    return nil
  end
  for i, part in ipairs(cmd) do
    if part == 'serve' then
      local out = vim.list_slice(cmd, 1, i - 1)
      vim.list_extend(out, args)
      return out
    end
  end
  return nil
end

---@class memlsp.CliResult
---@field code integer
---@field stdout string
---@field stderr string

--- Run a CLI subcommand synchronously (for :checkhealth), with a timeout.
---@param cmd string[]
---@param args string[]
---@param env? table<string,string>
---@param timeout_ms? integer
---@return memlsp.CliResult|nil, string? error
function M.run_cli(cmd, args, env, timeout_ms)
  local argv = M.cli(cmd, args)
  if not argv then
    return nil, 'the server command has no "serve" argument to derive CLI commands from'
  end
  local ok, proc = pcall(vim.system, argv, { text = true, env = env })
  if not ok then
    return nil, tostring(proc)
  end
  local result = proc:wait(timeout_ms or 20000)
  if result.signal and result.signal ~= 0 and result.code ~= 0 then
    return nil, ('`%s` timed out or was killed'):format(table.concat(argv, ' '))
  end
  return { code = result.code, stdout = result.stdout or '', stderr = result.stderr or '' }
end

return M

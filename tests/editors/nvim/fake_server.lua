-- An in-process stand-in for memlsp (vim.lsp accepts a function as `cmd`): answers
-- textDocument/inlineCompletion with a fixed text when the test says so, and records every
-- message. Lets the driver test timing-sensitive client logic (stale responses, typed-through,
-- acceptance commands) deterministically and without a model.
local M = {
  text = 'return a + b', -- what inline completion answers
  auto = false, -- answer at once, or hold until release()
  messages = {}, -- { kind = 'request'|'notify', method, params }
  pending = {}, -- held inline requests: { id, callback, notify_reply }
  cancelled = {},
  commands = {}, -- workspace/executeCommand params
}

local CAPABILITIES = {
  textDocumentSync = { openClose = true, change = 2, save = { includeText = false } },
  inlineCompletionProvider = vim.empty_dict(),
  executeCommandProvider = { commands = { 'memlsp.accepted' } },
  diagnosticProvider = { interFileDependencies = false, workspaceDiagnostics = false },
  codeActionProvider = { codeActionKinds = { 'quickfix', 'refactor.rewrite' } },
}

local saved = {} -- uri -> true once didSave came: diagnostics are reported after a save

local function diagnostics(uri)
  if not saved[uri] then
    return {}
  end
  return {
    {
      range = { start = { line = 0, character = 7 }, ['end'] = { line = 0, character = 9 } },
      message = '`os` imported but unused',
      severity = 2,
      source = 'ruff',
      code = 'F401',
    },
  }
end

local function code_actions(params)
  local uri = params.textDocument.uri
  local rewrite = {
    title = 'Rewrite with sum()',
    kind = 'refactor.rewrite',
    edit = {
      changes = {
        [uri] = {
          {
            range = { start = { line = 1, character = 0 }, ['end'] = { line = 5, character = 0 } },
            newText = '    return sum(items)\n',
          },
        },
      },
    },
  }
  return { { title = 'Fix something', kind = 'quickfix' }, rewrite }
end

local function answer(p)
  if M.cancelled[p.id] then
    p.callback({ code = -32800, message = 'cancelled' }, nil)
  else
    p.callback(nil, {
      items = {
        {
          insertText = M.text,
          range = { start = p.position, ['end'] = p.position },
          command = {
            title = 'accepted',
            command = 'memlsp.accepted',
            arguments = { 'python', 'fake', vim.fn.strchars(M.text), 'full' },
          },
        },
      },
    })
  end
  if p.notify_reply then
    p.notify_reply(p.id)
  end
end

--- Answer the held inline requests (all, or the oldest `n`).
function M.release(n)
  local todo = {}
  while #M.pending > 0 and (n == nil or #todo < n) do
    table.insert(todo, table.remove(M.pending, 1))
  end
  for _, p in ipairs(todo) do
    answer(p)
  end
  return #todo
end

function M.count(method)
  local n = 0
  for _, m in ipairs(M.messages) do
    if m.method == method then
      n = n + 1
    end
  end
  return n
end

--- The `cmd` function for vim.lsp.config.
function M.cmd(dispatchers)
  local closing = false
  local next_id = 0
  local server = {}

  function server.request(method, params, callback, notify_reply)
    next_id = next_id + 1
    local id = next_id
    table.insert(M.messages, { kind = 'request', method = method, params = params, id = id })
    local function reply(err, result)
      vim.schedule(function()
        callback(err, result)
        if notify_reply then
          notify_reply(id)
        end
      end)
    end
    if method == 'initialize' then
      local info = { name = 'fake-memlsp', version = '0' }
      reply(nil, { capabilities = CAPABILITIES, serverInfo = info })
    elseif method == 'textDocument/inlineCompletion' then
      local p =
        { id = id, callback = callback, notify_reply = notify_reply, position = params.position }
      if M.auto then
        vim.schedule(function()
          answer(p)
        end)
      else
        table.insert(M.pending, p)
      end
    elseif method == 'workspace/executeCommand' then
      table.insert(M.commands, params)
      reply(nil, vim.NIL)
    elseif method == 'textDocument/diagnostic' then
      reply(nil, { kind = 'full', items = diagnostics(params.textDocument.uri) })
    elseif method == 'textDocument/codeAction' then
      reply(nil, code_actions(params))
    elseif method == 'memlsp/status' then
      reply(nil, { version = 'fake', pool = { budget_bytes = 1, reserved_bytes = 0, models = {} } })
    elseif method == 'shutdown' then
      reply(nil, vim.NIL)
    else
      reply({ code = -32601, message = 'method not found: ' .. method }, nil)
    end
    return true, id
  end

  function server.notify(method, params)
    table.insert(M.messages, { kind = 'notify', method = method, params = params })
    if method == 'textDocument/didSave' then
      saved[params.textDocument.uri] = true
    elseif method == '$/cancelRequest' then
      M.cancelled[params.id] = true
      for i, p in ipairs(M.pending) do
        if p.id == params.id then
          table.remove(M.pending, i)
          answer(p)
          break
        end
      end
    elseif method == 'exit' then
      closing = true
      vim.schedule(function()
        dispatchers.on_exit(0, 0)
      end)
    end
    return true
  end

  function server.is_closing()
    return closing
  end

  function server.terminate()
    closing = true
  end

  return server
end

return M

--- Ghost text for Nvim 0.11, which has no inline-completion UI of its own.
---
--- In insert mode, after each change or cursor move (debounced), ask the memlsp client for
--- `textDocument/inlineCompletion` and show the first item as extmarks: inline virtual text for the
--- rest of the cursor line, virtual lines below for the others. A response is dropped when the
--- buffer, its version (changedtick) or the cursor changed meanwhile. Typing the suggestion's own
--- next characters keeps it (trimmed) without a new request; anything else clears it.
local api = vim.api

local M = {}

M.ns = api.nvim_create_namespace('memlsp.ghost')

local METHOD = 'textDocument/inlineCompletion'
local CLIENT_NAME = 'memlsp'
local ACCEPT_COMMAND = 'memlsp.accepted'

---@class memlsp.Suggestion
---@field client_id integer
---@field bufnr integer
---@field row integer        0-based row of the anchor (the cursor when shown)
---@field col integer        0-based byte column of the anchor
---@field tick integer       changedtick when shown
---@field text string        what is still to be inserted at the anchor
---@field replace_end? integer  byte column on the anchor row up to which accepting replaces text
---@field snippet boolean    insertText was a snippet: accepted whole through vim.snippet
---@field command? lsp.Command  run once: taken whole, or dropped after a partial acceptance
---@field accepted_chars integer characters taken so far by partial acceptances
---@field command_done? boolean
---@field raw? string|table     the item's insertText
---@field extmark? integer

---@class memlsp.BufState
---@field timer? uv.uv_timer_t
---@field seq integer                 number of the latest request
---@field pending? { client_id: integer, id: integer }
---@field suggestion? memlsp.Suggestion

---@type table<integer, memlsp.BufState>
local buffers = {}

local run_command -- defined with the accept functions below

---@type { enabled: boolean, debounce_ms: integer, hl_group: string, hide_with_pum: boolean }
M.options = {
  enabled = true,
  debounce_ms = 150,
  hl_group = 'MemlspGhostText',
  hide_with_pum = true,
}

--- Statistics, for :MemlspStatus and tests.
M.stats = { requests = 0, responses = 0, stale = 0, shown = 0, accepted = 0, dismissed = 0 }

local augroup = api.nvim_create_augroup('memlsp.ghost', { clear = true })

local function client_for(bufnr)
  for _, client in ipairs(vim.lsp.get_clients({ bufnr = bufnr, name = CLIENT_NAME })) do
    if client:supports_method(METHOD, bufnr) then
      return client
    end
  end
end

local function in_insert_mode()
  local mode = api.nvim_get_mode().mode
  return mode:sub(1, 1) == 'i' or mode:sub(1, 1) == 'R'
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function stop_timer(state)
  if state.timer then
    state.timer:stop()
    if not state.timer:is_closing() then
      state.timer:close()
    end
    state.timer = nil
  end
end

local function cancel_pending(state)
  local pending = state.pending
  state.pending = nil
  if pending then
    local client = vim.lsp.get_client_by_id(pending.client_id)
    if client then
      pcall(client.cancel_request, client, pending.id)
    end
  end
end

--- Hide the suggestion of a buffer (the request state is left alone).
---@param bufnr integer
function M.clear(bufnr)
  local state = buffers[bufnr]
  local sug = state and state.suggestion
  if sug then
    state.suggestion = nil
    if sug.accepted_chars > 0 then
      run_command(sug, 'partial') -- taken in part, then abandoned
    end
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Hide the suggestion, cancel the request in flight and the debounce timer.
---@param bufnr integer
function M.reset(bufnr)
  local state = buffers[bufnr]
  if state then
    stop_timer(state)
    cancel_pending(state)
    state.seq = state.seq + 1 -- whatever is still on its way is stale now
  end
  M.clear(bufnr)
end

local function display(text)
  local spaces = string.rep(' ', vim.bo.tabstop > 0 and vim.bo.tabstop or 8)
  return (text:gsub('\t', spaces))
end

---@param sug memlsp.Suggestion
local function render(sug)
  local bufnr = sug.bufnr
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local lines = vim.split(sug.text, '\n', { plain = true })
  local hl = M.options.hl_group
  local opts = { hl_mode = 'combine', right_gravity = false }
  if lines[1] ~= '' then
    opts.virt_text = { { display(lines[1]), hl } }
    -- 'inline' pushes the rest of the line right, but the TUI then draws the cursor after the
    -- ghost text; at the end of the line there is nothing to push, and 'overlay' keeps the
    -- cursor before it (where typing goes), as VS Code shows it.
    local line = api.nvim_buf_get_lines(bufnr, sug.row, sug.row + 1, false)[1] or ''
    opts.virt_text_pos = sug.col >= #line and 'overlay' or 'inline'
  end
  if #lines > 1 then
    local virt_lines = {}
    for i = 2, #lines do
      virt_lines[#virt_lines + 1] = lines[i] == '' and {} or { { display(lines[i]), hl } }
    end
    opts.virt_lines = virt_lines
  end
  sug.extmark = api.nvim_buf_set_extmark(bufnr, M.ns, sug.row, sug.col, opts)
end

--- Byte column of an LSP position on `row`.
local function byte_col(bufnr, row, character, encoding)
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  if encoding == 'utf-8' then
    return math.min(character, #line)
  end
  local ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  if ok and col then
    return math.min(col, #line)
  end
  return math.min(character, #line)
end

--- Turn the first usable item of a response into a suggestion anchored at the cursor.
---@return memlsp.Suggestion|nil
local function to_suggestion(bufnr, client, result, row, col)
  local items = result and (result.items or result) or {}
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  for _, item in ipairs(items) do
    local insert = item.insertText
    local snippet = type(insert) == 'table'
    local text = snippet and insert.value or insert
    if type(text) == 'string' and text ~= '' then
      local replace_end ---@type integer|nil
      local usable = true
      if item.range then
        local s, e = item.range.start, item.range['end']
        if s.line ~= row or e.line ~= row then
          usable = false -- only ranges on the cursor line can be shown as ghost text
        else
          local s_col = byte_col(bufnr, row, s.character, client.offset_encoding)
          local e_col = byte_col(bufnr, row, e.character, client.offset_encoding)
          if s_col > col then
            usable = false
          else
            -- The range may start before the cursor: the item then repeats what was typed.
            local typed = line:sub(s_col + 1, col)
            if text:sub(1, #typed) ~= typed then
              usable = false
            else
              text = text:sub(#typed + 1)
              replace_end = e_col > col and e_col or nil
            end
          end
        end
      end
      if snippet and usable then
        local ok, parsed = pcall(function()
          return tostring(require('vim.lsp._snippet_grammar').parse(text))
        end)
        text = ok and parsed or text
      end
      if usable and text ~= '' then
        return {
          client_id = client.id,
          bufnr = bufnr,
          row = row,
          col = col,
          tick = api.nvim_buf_get_changedtick(bufnr),
          text = text,
          raw = insert,
          replace_end = replace_end,
          snippet = snippet,
          command = item.command,
          accepted_chars = 0,
        }
      end
    end
  end
end

--- Ask the server now (no debounce).
---@param bufnr? integer
---@param invoked? boolean  explicitly asked for by the user (triggerKind Invoked)
function M.request(bufnr, invoked)
  bufnr = bufnr or api.nvim_get_current_buf()
  local state = buffers[bufnr]
  if not state or not M.options.enabled then
    return
  end
  stop_timer(state)
  if api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
    return
  end
  local client = client_for(bufnr)
  if not client then
    return
  end
  cancel_pending(state)
  state.seq = state.seq + 1
  local seq = state.seq
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  ---@diagnostic disable-next-line: inject-field
  params.context = { triggerKind = invoked and 1 or 2 } -- 1 Invoked, 2 Automatic
  M.stats.requests = M.stats.requests + 1
  local ok, id ---@type boolean, integer?
  ok, id = client:request(METHOD, params, function(err, result)
    if state.pending and state.pending.id == id then
      state.pending = nil
    end
    M.stats.responses = M.stats.responses + 1
    if err then
      if err.code ~= -32800 then -- RequestCancelled: we asked for it
        require('vim.lsp.log').warn('memlsp inline completion failed', err)
      end
      return
    end
    -- Stale: a newer request, another buffer, another version, another cursor or mode.
    if
      seq ~= state.seq
      or not api.nvim_buf_is_valid(bufnr)
      or api.nvim_get_current_buf() ~= bufnr
      or api.nvim_buf_get_changedtick(bufnr) ~= tick
      or not in_insert_mode()
    then
      M.stats.stale = M.stats.stale + 1
      return
    end
    local now_row, now_col = cursor()
    if now_row ~= row or now_col ~= col then
      M.stats.stale = M.stats.stale + 1
      return
    end
    if M.options.hide_with_pum and vim.fn.pumvisible() == 1 then
      return
    end
    local sug = to_suggestion(bufnr, client, result, row, col)
    M.clear(bufnr)
    if sug then
      state.suggestion = sug
      render(sug)
      M.stats.shown = M.stats.shown + 1
    end
  end, bufnr)
  if ok and id then
    state.pending = { client_id = client.id, id = id }
  end
end

--- Debounced request.
---@param bufnr integer
function M.schedule(bufnr)
  local state = buffers[bufnr]
  if not state or not M.options.enabled then
    return
  end
  stop_timer(state)
  local timer = assert(vim.uv.new_timer())
  state.timer = timer
  timer:start(
    M.options.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if state.timer == timer then
        M.request(bufnr)
      end
    end)
  )
end

--- The buffer changed or the cursor moved in insert mode.
---@param bufnr integer
local function on_change(bufnr)
  local state = buffers[bufnr]
  if not state or not M.options.enabled then
    return
  end
  local sug = state.suggestion
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(bufnr)
  if sug then
    if sug.row == row and sug.col == col and sug.tick == tick then
      return -- our own doing (a partial accept), or an event about nothing new
    end
    if sug.row == row and col > sug.col and tick ~= sug.tick and not sug.snippet then
      local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
      local typed = line:sub(sug.col + 1, col)
      if typed ~= '' and sug.text:sub(1, #typed) == typed and #typed < #sug.text then
        -- Typed through: keep the rest, no new request.
        sug.text = sug.text:sub(#typed + 1)
        sug.col, sug.tick = col, tick
        if sug.replace_end then
          sug.replace_end = sug.replace_end + #typed
        end
        render(sug)
        return
      end
    end
    M.clear(bufnr)
  end
  M.schedule(bufnr)
end

--- Start watching a buffer (idempotent). Called when the memlsp client attaches.
---@param bufnr integer
function M.attach(bufnr)
  if buffers[bufnr] then
    return
  end
  buffers[bufnr] = { seq = 0 }
  api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'TextChangedP', 'CursorMovedI' }, {
    group = augroup,
    buffer = bufnr,
    desc = 'memlsp: ask for an inline suggestion',
    callback = function()
      on_change(bufnr)
    end,
  })
  api.nvim_create_autocmd('CompleteChanged', {
    group = augroup,
    buffer = bufnr,
    desc = 'memlsp: no ghost text over the popup menu',
    callback = function()
      if M.options.hide_with_pum then
        M.clear(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = augroup,
    buffer = bufnr,
    desc = 'memlsp: clear the inline suggestion',
    callback = function()
      M.reset(bufnr)
    end,
  })
  -- Not BufUnload: `:edit!` unloads and reloads a buffer that stays attached to the client.
  api.nvim_create_autocmd('BufWipeout', {
    group = augroup,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
end

--- Stop watching a buffer.
---@param bufnr integer
function M.detach(bufnr)
  if not buffers[bufnr] then
    return
  end
  M.reset(bufnr)
  buffers[bufnr] = nil
  pcall(api.nvim_clear_autocmds, { group = augroup, buffer = bufnr })
end

---@param bufnr? integer
---@return memlsp.Suggestion|nil
function M.current(bufnr)
  local state = buffers[bufnr or api.nvim_get_current_buf()]
  return state and state.suggestion or nil
end

---@param bufnr? integer
function M.visible(bufnr)
  return M.current(bufnr) ~= nil
end

--- The part of `text` that an accept of `kind` inserts.
---@param text string
---@param kind 'full'|'line'|'word'
function M.portion(text, kind)
  if kind == 'full' then
    return text
  end
  local lead = text:match('^\n[ \t]*') or '' -- at a line end: the next line's indent goes along
  local rest = text:sub(#lead + 1)
  if kind == 'line' then
    return lead .. (rest:match('^[^\n]*') or '')
  end
  -- A word: leading blanks and punctuation, then identifier characters ('.x' in '.x = x');
  -- without identifier characters right after, the punctuation run alone (' =' in ' = x').
  local word = rest:match('^[ \t]*[^%w_%s]*[%w_]+')
    or rest:match('^[ \t]*[^%w_%s]+')
    or rest:match('^[ \t]+')
  return lead .. (word or '')
end

--- The item's command for an acceptance of `kind`, or nil when none should run.
--- memlsp's own `memlsp.accepted` takes (language, model, characters, "full"|"partial"): a partial
--- acceptance reports the characters actually taken. Other servers' commands run on full ones only.
---@param command lsp.Command|nil
---@param kind 'full'|'partial'
---@param chars integer
---@return lsp.Command|nil
function M.acceptance_command(command, kind, chars)
  if not command then
    return nil
  end
  if kind == 'full' then
    return command
  end
  if command.command ~= ACCEPT_COMMAND then
    return nil
  end
  local copy = vim.deepcopy(command)
  local args = copy.arguments or {}
  if #args >= 2 then
    args[3], args[4] = chars, 'partial'
  end
  copy.arguments = args
  return copy
end

--- Run the suggestion's command once: when it has been taken whole, or when it goes away after a
--- partial acceptance.
---@param sug memlsp.Suggestion
---@param kind 'full'|'partial'
function run_command(sug, kind)
  if sug.command_done then
    return
  end
  sug.command_done = true
  local command = M.acceptance_command(sug.command, kind, sug.accepted_chars)
  local client = command and vim.lsp.get_client_by_id(sug.client_id)
  if not command or not client then
    return
  end
  local provider = client.server_capabilities.executeCommandProvider
  local advertised = type(provider) == 'table'
    and vim.list_contains(provider.commands or {}, command.command)
  if advertised or client.commands[command.command] or vim.lsp.commands[command.command] then
    client:exec_cmd(command, { bufnr = sug.bufnr })
  else
    -- Not advertised: send it anyway and stay quiet if the server does not know it.
    client:request('workspace/executeCommand', {
      command = command.command,
      arguments = command.arguments,
    }, function(err)
      if err then
        require('vim.lsp.log').info('memlsp: command failed', command.command, err)
      end
    end, sug.bufnr)
  end
end

--- Insert the whole suggestion, its next line or its next word. The rest stays visible.
---@param kind? 'full'|'line'|'word'
---@return boolean accepted
function M.accept(kind)
  kind = kind or 'full'
  local bufnr = api.nvim_get_current_buf()
  local state = buffers[bufnr]
  local sug = state and state.suggestion
  if not sug then
    return false
  end
  local row, col = cursor()
  if row ~= sug.row or col ~= sug.col or api.nvim_buf_get_changedtick(bufnr) ~= sug.tick then
    M.clear(bufnr)
    return false
  end
  if sug.snippet then
    kind = 'full'
  end
  local part = M.portion(sug.text, kind)
  if part == '' then
    return false
  end
  local whole = part == sug.text
  local end_col = col
  if whole and sug.replace_end then
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    end_col = math.min(sug.replace_end, #line)
  end
  stop_timer(state)
  M.stats.accepted = M.stats.accepted + 1
  sug.accepted_chars = sug.accepted_chars + vim.fn.strchars(part)
  if sug.snippet then
    run_command(sug, 'full')
    M.clear(bufnr)
    api.nvim_buf_set_text(bufnr, row, col, row, end_col, { '' })
    vim.snippet.expand(type(sug.raw) == 'table' and sug.raw.value or sug.text)
    return true
  end
  local lines = vim.split(part, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, end_col, lines)
  local new_row = row + #lines - 1
  local new_col = (#lines == 1 and col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { new_row + 1, new_col })
  if whole then
    run_command(sug, 'full')
    M.clear(bufnr)
  else
    sug.text = sug.text:sub(#part + 1)
    sug.row, sug.col = new_row, new_col
    sug.tick = api.nvim_buf_get_changedtick(bufnr)
    render(sug)
  end
  return true
end

--- Hide the suggestion until the next change.
---@return boolean dismissed
function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  if not M.visible(bufnr) then
    return false
  end
  M.reset(bufnr)
  M.stats.dismissed = M.stats.dismissed + 1
  return true
end

---@param enabled boolean
function M.set_enabled(enabled)
  M.options.enabled = enabled
  if not enabled then
    for bufnr in pairs(buffers) do
      M.reset(bufnr)
    end
  end
end

---@return integer[]
function M.buffers()
  return vim.tbl_keys(buffers)
end

return M

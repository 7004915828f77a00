--- Inline suggestions, rendered by Nvim itself (0.12+: vim.lsp.inline_completion) or by
--- memlsp.ghost (0.11). Both engines share one small interface used by the keymaps.
local api = vim.api
local ghost = require('memlsp.ghost')

local M = {}

---@return table|nil the built-in module when this Nvim has it
local function builtin_module()
  if M._builtin_override then -- tests stand in for Neovim 0.12's module
    return M._builtin_override
  end
  if vim.fn.has('nvim-0.12') == 0 then
    return nil
  end
  local ok, mod = pcall(require, 'vim.lsp.inline_completion')
  if ok and type(mod) == 'table' and mod.enable and mod.get then
    return mod
  end
end

--- Which engine renders suggestions: 'builtin' or 'memlsp'.
---@type 'builtin'|'memlsp'
M.engine = 'memlsp'
M.enabled = true

---@param opts memlsp.InlineOptions
function M.configure(opts)
  local builtin = builtin_module()
  if opts.engine == 'builtin' and not builtin then
    vim.notify(
      'memlsp: inline.engine = "builtin" needs Nvim 0.12 (vim.lsp.inline_completion); '
        .. 'using memlsp ghost text',
      vim.log.levels.WARN
    )
  end
  M.engine = (opts.engine ~= 'memlsp' and builtin) and 'builtin' or 'memlsp'
  M.enabled = opts.enabled
  ghost.options = {
    enabled = opts.enabled and M.engine == 'memlsp',
    debounce_ms = opts.debounce_ms,
    hl_group = opts.hl_group,
    hide_with_pum = opts.hide_with_pum,
  }
end

---@param bufnr integer
function M.attach(bufnr)
  if M.engine == 'builtin' then
    if M.enabled then
      local builtin = builtin_module()
      if builtin then
        builtin.enable(true, { bufnr = bufnr })
      end
    end
  else
    ghost.attach(bufnr)
  end
end

---@param bufnr integer
function M.detach(bufnr)
  ghost.detach(bufnr)
end

--- The text of an item from the built-in engine that `kind` accepts, or nil to keep it whole.
local function builtin_partial(item, kind)
  if type(item.insert_text) ~= 'string' then
    return nil
  end
  local text = item.insert_text
  -- Text from the range start to the cursor is already in the buffer: the portion starts after it.
  local typed = ''
  if item.range then
    local ok, start_row, start_col = pcall(function()
      return item.range:to_extmark()
    end)
    local row, col = unpack(api.nvim_win_get_cursor(0))
    if ok and start_row == row - 1 and start_col <= col then
      local line = api.nvim_get_current_line()
      local before = line:sub(start_col + 1, col)
      if text:sub(1, #before) == before then
        typed = before
      end
    end
  end
  return typed .. ghost.portion(text:sub(#typed + 1), kind)
end

--- Keys for an accept mapping when there is something to accept, else nil (fall through).
---@param kind 'full'|'line'|'word'
---@return string|nil
function M.accept_keys(kind)
  if M.engine == 'builtin' then
    local builtin = builtin_module()
    if not builtin then
      return nil
    end
    local opts = { bufnr = 0 }
    if kind ~= 'full' then
      opts.on_accept = function(item)
        local ok, part = pcall(builtin_partial, item, kind)
        if ok and part and part ~= '' and part ~= item.insert_text then
          item.insert_text = part
          item.command = ghost.acceptance_command(item.command, 'partial', vim.fn.strchars(part))
        end
        return item
      end
    end
    -- get() applies the item on its own (scheduled) and tells whether there was one.
    return builtin.get(opts) and '' or nil
  end
  if ghost.visible() then
    return ("<Cmd>lua require('memlsp.ghost').accept('%s')<CR>"):format(kind)
  end
  return nil
end

--- Keys for the dismiss mapping when a suggestion is visible, else nil.
---@return string|nil
function M.dismiss_keys()
  if M.engine == 'builtin' then
    local builtin = builtin_module()
    -- An on_accept that returns nil drops the item without applying it.
    if builtin and builtin.get({
      bufnr = 0,
      on_accept = function()
        return nil
      end,
    }) then
      return ''
    end
    return nil
  end
  if ghost.visible() then
    return "<Cmd>lua require('memlsp.ghost').dismiss()<CR>"
  end
  return nil
end

--- Keys for the trigger mapping (ask now), or nil when the engine requests by itself.
---@return string|nil
function M.trigger_keys()
  if M.engine == 'builtin' or not M.enabled then
    return nil
  end
  return "<Cmd>lua require('memlsp.ghost').request(nil, true)<CR>"
end

--- Accept from Lua (for your own mappings, e.g. inside an nvim-cmp <Tab> mapping).
---@param kind? 'full'|'line'|'word'
---@return boolean accepted
function M.accept(kind)
  kind = kind or 'full'
  if M.engine == 'builtin' then
    return M.accept_keys(kind) ~= nil
  end
  return ghost.accept(kind)
end

---@return boolean dismissed
function M.dismiss()
  if M.engine == 'builtin' then
    return M.dismiss_keys() ~= nil
  end
  return ghost.dismiss()
end

--- Whether a suggestion is visible in the current buffer (memlsp engine only; the built-in one
--- does not say, so this is false there).
function M.visible()
  return M.engine == 'memlsp' and ghost.visible()
end

---@param enabled? boolean  nil toggles
---@return boolean enabled
function M.set_enabled(enabled)
  if enabled == nil then
    enabled = not M.enabled
  end
  M.enabled = enabled
  if M.engine == 'builtin' then
    local builtin = builtin_module()
    if builtin then
      for _, client in ipairs(vim.lsp.get_clients({ name = 'memlsp' })) do
        for bufnr in pairs(client.attached_buffers) do
          builtin.enable(enabled, { bufnr = bufnr })
        end
      end
    end
  else
    ghost.set_enabled(enabled)
  end
  return enabled
end

return M

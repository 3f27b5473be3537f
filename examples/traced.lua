-- traced: memnet with every WSP call written to the lwsp log as it happens,
-- arguments in and results out.  Shows what crosses the SPI for each
-- application call.  (A wrapper in Lua, not yet a layered provider: layering
-- over another provider's DLL comes with wsp.layered.)
local wsp = require "wsp"
local lwsp = require "lwsp"
local base = require "memnet"

local function show(v)
  if type(v) == "table" then
    if v.handle then return "s" .. v.handle end
    if v.family and v.address then return lwsp.format_address(v) end
    return "{...}"
  elseif type(v) == "string" then
    return string.format("%q", #v > 24 and v:sub(1, 24) .. "..." or v)
  end
  return tostring(v)
end

local function list(t, i, j)
  local out = {}
  for k = i, j do out[#out + 1] = show(t[k]) end
  return table.concat(out, ", ")
end

local M = {description = "traced memnet (lwsp example)"}
for name, fn in pairs(base) do
  if type(fn) == "function" then
    local spi = wsp.handler_names[name]
    M[name] = function(...)
      local args = table.pack(...)
      local r = table.pack(fn(...))
      local shown = r[1] == nil and r.n >= 2
        and ("fails: %s"):format(wsp.errname(r[2]) or tostring(r[2]))
        or list(r, 1, r.n)
      lwsp.log(("%s(%s) -> %s"):format(spi, list(args, 1, args.n), shown), "provider")
      return table.unpack(r, 1, r.n)
    end
  else
    M[name] = fn
  end
end
return M

-- Serialises Lua values as Lua source (sorted keys), for the spec providers'
-- results and records.  A table with a socket's handle and `recorder` set is
-- written as {sock = handle}.
local function ser(v)
  local t = type(v)
  if t == "table" then
    if v.handle and v.recorder then return "{sock=" .. v.handle .. "}" end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = "[" .. ser(k) .. "]=" .. ser(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return string.format("%q", v)
  elseif t == "nil" or t == "boolean" or t == "number" then
    return tostring(v)
  end
  return string.format("%q", tostring(v))
end

return ser

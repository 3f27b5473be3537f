-- xor: a stream transform.  Every byte sent is XORed with a key, every byte
-- received XORed back, so the data on the wire differs from what the
-- application wrote, and a peer with the same layer reads it restored.
local P = require("wsp.layered").new()
P.description = "xor transform (lwsp example)"
local base = P.base
local KEY = 0x5A

local function xor(data)
  return (data:gsub(".", function(c) return string.char(c:byte() ~ KEY) end))
end

function P.send(s, data, flags) return base.send(s, xor(data), flags) end
function P.sendto(s, data, to, flags) return base.sendto(s, xor(data), to, flags) end

function P.recv(s, len, flags)
  local data, f = base.recv(s, len, flags)
  if data == nil then return nil, f end
  return xor(data), f
end

function P.recvfrom(s, len, flags)
  local data, from, f = base.recvfrom(s, len, flags)
  if data == nil then return nil, from end
  return xor(data), from, f
end

return P

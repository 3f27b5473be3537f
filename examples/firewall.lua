-- firewall: refuses connections and datagrams by address and port.  Rules
-- come from firewall.rules beside this script, one per line:
--   deny 127.0.0.1 8081      deny * 9      deny 10.1.2.3 *      # comments
-- A denied connect (or ConnectEx) fails with WSAECONNREFUSED, a denied sendto with
-- WSAEACCES, and each refusal is logged.
local wsp = require "wsp"
local P = require("wsp.layered").new()
P.description = "firewall (lwsp example)"
local base = P.base

local rules = {}
local dir = (wsp.provider and wsp.provider.script or ""):match("^(.*)[/\\]") or "."
local f = io.open(dir .. "/firewall.rules")
if f then
  for line in f:lines() do
    local addr, port = line:gsub("#.*", ""):match("^%s*deny%s+(%S+)%s+(%S+)")
    if addr then rules[#rules + 1] = {addr = addr, port = port} end
  end
  f:close()
end

local function denied(to)
  for _, r in ipairs(rules) do
    if (r.addr == "*" or r.addr == to.address) and (r.port == "*" or tonumber(r.port) == to.port) then
      wsp.log(("denied %s (rule: deny %s %s)"):format(wsp.format_address(to), r.addr, r.port), "firewall")
      return true
    end
  end
  return false
end

function P.connect(s, addr)
  if denied(addr) then return nil, wsp.WSAECONNREFUSED end
  return base.connect(s, addr)
end

-- ConnectEx (an extension function, got with WSAIoctl) comes here like a
-- connect: refused, or passed to the layer below's ConnectEx
function P.connectex(s, addr, data)
  if denied(addr) then return nil, wsp.WSAECONNREFUSED end
  return base.connectex(s, addr, data)
end

function P.sendto(s, data, to, flags)
  if to and denied(to) then return nil, wsp.WSAEACCES end
  return base.sendto(s, data, to, flags)
end

return P

-- redirect: a layer that sends connections and datagrams for one address to
-- another.  wsp.config.map maps an address ("127.0.0.2") to another
-- ("127.0.0.1"); the port stays.  Default: {["127.0.0.2"] = "127.0.0.1"}.
local wsp = require "wsp"
local P = require("wsp.layered").new()
P.description = "redirect (lwsp example)"
local base = P.base
local map = wsp.config.map or {["127.0.0.2"] = "127.0.0.1"}

local function redirected(to)
  local target = to and map[to.address]
  if not target then return to end
  local new = {family = to.family, address = target, port = to.port}
  wsp.log(("%s -> %s"):format(wsp.format_address(to), wsp.format_address(new)))
  return new
end

function P.connect(s, addr, ...)
  return base.connect(s, redirected(addr), ...)
end

function P.sendto(s, data, to, flags)
  return base.sendto(s, data, redirected(to), flags)
end

return P

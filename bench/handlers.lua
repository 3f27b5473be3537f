-- The passthrough with handlers of its own for the calls the benchmark makes,
-- each calling wsp.layered's: what a call costs when a layer handles it in Lua
-- (examples/passthrough.lua inherits them, and lwsp makes those calls down in C).
local P = require("wsp.layered").new()
P.description = "passthrough with Lua handlers (lwsp benchmark)"
P.views = true
local getsockopt, send, recv = P.base.getsockopt, P.base.send, P.base.recv
function P.getsockopt(s, level, name, optlen) return getsockopt(s, level, name, optlen) end
function P.send(s, data, flags) return send(s, data, flags) end
function P.recv(s, len, flags) return recv(s, len, flags) end
return P

-- The passthrough with handlers of its own for the calls the benchmark makes,
-- each calling wsp.layered's: what a call costs when a layer handles it in Lua
-- (examples/passthrough.lua inherits them, and lwsp makes those calls down in C).
local P = require("wsp.layered").new()
P.description = "passthrough with Lua handlers (lwsp benchmark)"
P.views = true
local base = P.base
function P.getsockopt(...) return base.getsockopt(...) end
function P.send(...) return base.send(...) end
function P.recv(...) return base.recv(...) end
return P

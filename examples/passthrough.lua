-- passthrough: a layered provider that changes nothing.  Every call reaches
-- the layer below exactly as the application made it; with views, the data
-- goes down from the application's buffers and comes up into them without a
-- copy in Lua.
local layered = require "wsp.layered"
local P = layered.new()
P.description = "passthrough (lwsp example)"
P.views = true
return P

-- passthrough: a layered provider that changes nothing.  Every call reaches
-- the layer below exactly as the application made it.
local layered = require "wsp.layered"
local P = layered.new()
P.description = "passthrough (lwsp example)"
return P

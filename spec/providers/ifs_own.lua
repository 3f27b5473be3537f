-- An IFS provider: its handles are its own (WPUModifyIFSHandle), and its
-- receive answers "ifs", at once or, with FH_WAIT=1, after a short wait
-- (spec/26-foreign_host_spec.lua).
local wsp = require "wsp"
local next_handle = 0x9000
return {
  description = "IFS handles of its own",
  ifs = true,
  socket = function(s) next_handle = next_handle + 4; return next_handle end,
  recv = function(s, len)
    if os.getenv("FH_WAIT") == "1" then wsp.wait({}, 0.02) end
    return "ifs", 0
  end,
  closesocket = function() return true end,
}

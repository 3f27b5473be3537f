-- A provider whose ioctl 0x7100 runs the Lua chunk it is given inside the
-- provider state and returns the chunk's results serialised, so specs can
-- call upcalls from a provider script and check the host's state after.
local wsp = require "wsp"
local lwsp = require "lwsp"

local ser = require "ser"

local env = setmetatable({wsp = wsp, lwsp = lwsp, up = wsp.upcall}, {__index = _G})
local next_ifs = 0x40000

return {
  ifs = os.getenv("LWSP_SPEC_IFS") == "1",
  socket = function(s)
    if s.handle then return true end
    next_ifs = next_ifs + 4
    return next_ifs
  end,
  ioctl = function(s, code, input)
    if code ~= 0x7100 then return nil, wsp.WSAEINVAL end
    env.s = s
    local chunk = assert(load(input, "=snippet", "t", env))
    local r = table.pack(chunk())
    local parts = {}
    for i = 1, r.n do parts[i] = ser(r[i]) end
    return "return " .. (r.n > 0 and table.concat(parts, ",") or "nil")
  end,
  -- WSPGetOverlappedResult runs what a snippet left in on_result, with the
  -- socket, the call's overlapped object and the wait flag
  getoverlappedresult = function(s, ov, wait)
    return env.on_result(s, ov, wait)
  end,
}

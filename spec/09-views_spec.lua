-- Zero-copy buffer views: a provider with `views = true` sees the caller's
-- WSABUFs directly for send and recv, only for the length of the call.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local VIEWS = [[
local wsp = require "wsp"
local lwsp = require "lwsp"
local kept
return {
  views = true,
  socket = function(s) return true end,
  send = function(s, v, flags)
    local prev = kept
    kept = v
    if flags == 3 then                  -- the last call's view, while this call's is live
      local ok, err = pcall(function() return prev:tostring() end)
      local gone = not ok and err:find("used after its call returned", 1, true)
      return (gone and tostring(prev) == "lwsp.view (0 bytes, expired)") and 3 or 0
    end
    lwsp.log(("SEND len=%d all=%s mid=%s first=%d last=%d name=%s"):format(#v, v:tostring(), v:tostring(2, 4),
      v:byte(1), v:byte(-1), tostring(v)), "views")
    if flags == 1 then v:write("x") end
    if flags == 2 then                  -- the handler lets go of its view before returning
      local n = #v
      v = nil
      collectgarbage()
      collectgarbage()
      return n
    end
    return #v
  end,
  recv = function(s, v, flags)
    if flags == 1 then return #v + 1 end
    local n = v:write("hello, ")
    n = n + v:write("world", n)
    return n, 0
  end,
  recvfrom = function(s, v)
    local n = v:write(("z"):rep(#v + 10))
    return n, {family = 2, address = "127.0.0.1", port = 1}
  end,
  ioctl = function(s)
    local ok, err = pcall(function() return kept:tostring() end)
    return tostring(ok) .. " " .. tostring(err):gsub("^.-: ", "")
  end,
}
]]

describe("buffer views", function()
  local r, s
  before_each(function()
    r = H.provider(VIEWS)
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  it("stay lwsp's to end when the handler lets go of its view (the memory checkers watch this one)", function()
    for _ = 1, 20 do assert.equal(5, host.send(s, "views", 2)) end
    assert.equal(10, host.send(s, "0123456789"))
  end)

  it("show a send's data without copying it into a string first", function()
    local mark = H.mark()
    assert.equal(10, host.send(s, "0123456789"))
    local line = H.find_log(mark, "SEND", true)
    assert.truthy(line:find("len=10 all=0123456789 mid=123 first=48 last=57 name=lwsp.view (10 bytes)", 1, true), line)
  end)

  it("expire when the call returns", function()
    host.send(s, "abc")
    assert.equal("false buffer view used after its call returned", host.ioctl(s, 1, nil, 100))
  end)

  it("stay expired when a later call's view is live (lwsp reuses what they covered)", function()
    for _ = 1, 5 do
      host.send(s, "abc")
      assert.equal(3, host.send(s, "defgh", 3))
    end
  end)

  it("are read-only for send", function()
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.send(s, "abc", 1))
    assert.truthy(H.find_log(mark, "this view is read-only", true))
  end)

  it("take a recv's bytes straight into the caller's buffers, across WSABUFs", function()
    local data = host.recv(s, 64)   -- the host passes two WSABUFs of 32 bytes
    assert.equal("hello, world", data)
    data = host.recv(s, 8)          -- 4 + 4: the write spans both and is cut at 8
    assert.equal("hello, w", data)
  end)

  it("refuse a byte count larger than the view", function()
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.recv(s, 10, 1))
    assert.truthy(H.find_log(mark, "count of bytes written to the view (0 to 10)", true))
  end)

  it("never write past the end of the caller's buffers", function()
    local data, from = host.recvfrom(s, 5)
    assert.equal("zzzzz", data)
    assert.equal(1, from.port)
  end)
end)

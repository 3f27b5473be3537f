-- SIO_EXT_POLL, SIO_EXT_SENDMSG and SIO_EXT_SELECT: what ws2_32 sends a
-- layer that answered SIO_BSP_HANDLE_POLL / SIO_BSP_HANDLE with its own
-- handle (docs/api.md, "The base-handle ioctls"), driven as ws2_32 drives
-- them, through one and two Lua layers over the native base.
local H = require "helpers"
local wsp, host = H.wsp, H.host

local POLLERR, POLLNVAL, POLLWRNORM, POLLRDNORM = 0x0001, 0x0004, 0x0010, 0x0100

-- WSAPOLLDATA: int result, ULONG fds, INT timeout, then WSAPOLLFD {SOCKET fd; SHORT events; SHORT revents}
local function polldata(timeout, fds)
  local t = {string.pack("<i4I4i4xxxx", 0, #fds, timeout)}
  for _, f in ipairs(fds) do t[#t + 1] = string.pack("<I8i2i2xxxx", f[1], f[2], 0) end
  return table.concat(t)
end
local function unpoll(raw)
  local result, n = string.unpack("<i4I4", raw)
  local out = {}
  for i = 1, n do
    local fd, events, revents = string.unpack("<I8i2i2", raw, 17 + (i - 1) * 16)
    out[i] = {fd = fd, events = events, revents = revents}
  end
  return result, out
end

describe("the SIO_EXT ioctls", function()
  after_each(H.reset)

  for layers = 1, 2 do
    describe(("through %d Lua layer%s over the native base"):format(layers, layers > 1 and "s" or ""), function()
      local native, top
      before_each(function()
        native = H.base()
        top = native
        for i = 1, layers do
          top = H.layered{script = H.root .. "/examples/passthrough.lua", over = top, name = "layer" .. i}
        end
      end)
      local function pair()
        local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
        assert(host.bind(l, "127.0.0.1:0"))
        assert(host.listen(l, 8))
        local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
        assert(host.connect(c, host.getsockname(l)))
        return c, assert(host.accept(l))
      end

      it("answers SIO_EXT_POLL (WSAPoll) from the layer's own select", function()
        local c, a = pair()
        local want = POLLRDNORM | POLLWRNORM
        local raw = assert(host.ioctl(c, wsp.SIO_EXT_POLL, polldata(0, {{c, want}}), 32))
        local result, fds = unpoll(raw)
        assert.equal(1, result)
        assert.equal(c, fds[1].fd)
        assert.equal(want, fds[1].events)
        assert.equal(POLLWRNORM, fds[1].revents)          -- connected, nothing to read yet
        assert.equal(4, host.send(a, "ping"))
        result, fds = unpoll(assert(host.ioctl(c, wsp.SIO_EXT_POLL, polldata(5000, {{c, POLLRDNORM}}), 32)))
        assert.equal(1, result)
        assert.equal(POLLRDNORM, fds[1].revents)
        assert.equal("ping", H.recv_within(c, 4, 5))
        -- nothing readable within the timeout: 0, and revents 0
        result, fds = unpoll(assert(host.ioctl(c, wsp.SIO_EXT_POLL, polldata(50, {{c, POLLRDNORM}}), 32)))
        assert.equal(0, result)
        assert.equal(0, fds[1].revents)
        -- a handle that is not this layer's socket: POLLNVAL, counted, and no wait
        result, fds = unpoll(assert(host.ioctl(c, wsp.SIO_EXT_POLL,
                                               polldata(-1, {{c, POLLRDNORM}, {a, POLLRDNORM}}), 48)))
        assert.equal(1, result)
        assert.equal(0, fds[1].revents)
        assert.equal(POLLNVAL, fds[2].revents)
        assert.equal(0, POLLERR & fds[1].revents)
      end)

      it("refuses a malformed SIO_EXT_POLL: no sockets, short buffers", function()
        local c = pair()
        H.fails_with("WSAEINVAL", host.ioctl(c, wsp.SIO_EXT_POLL, polldata(0, {}), 16))
        H.fails_with("WSAEFAULT", host.ioctl(c, wsp.SIO_EXT_POLL, polldata(0, {{c, POLLRDNORM}}):sub(1, 20), 32))
        H.fails_with("WSAEFAULT", host.ioctl(c, wsp.SIO_EXT_POLL, polldata(0, {{c, POLLRDNORM}}), 16))
        H.fails_with("WSAEFAULT", host.ioctl(c, wsp.SIO_EXT_POLL, "short", 32))
      end)

      it("carries SIO_EXT_SENDMSG (WSASendMsg) as the layer's WSASendMsg, blocking and overlapped", function()
        local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, native.udp))
        assert(host.bind(u, "127.0.0.1:0"))
        local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, top.udp))
        assert(host.bind(s, "127.0.0.1:0"))
        local ok, n = host.wsasendmsg(s, "through the ioctl", host.getsockname(u), nil, {ioctl = true})
        assert.is_true(ok)
        assert.equal(17, n)
        local data, from = host.recvfrom(u, 100)
        assert.equal("through the ioctl", data)
        assert.same(host.getsockname(s), from)
        local ev = host.create_event()
        local ov = host.overlapped(ev)
        local ok2, err = host.wsasendmsg(s, "overlapped", host.getsockname(u), ov, {ioctl = true})
        assert(ok2 or err:find("WSA_IO_PENDING"), err)
        assert.equal(1, host.wait({ev}, false, 5000))
        assert.equal(0, ov.OffsetHigh)
        assert.equal(10, ov.InternalHigh)
        assert.equal("overlapped", (host.recvfrom(u, 100)))
      end)

      it("refuses SIO_EXT_SELECT, a short SIO_EXT_SENDMSG, and SIO_BSP_HANDLE_POLL with an overlapped", function()
        local c = pair()
        H.fails_with("WSAEOPNOTSUPP", host.ioctl(c, wsp.SIO_EXT_SELECT, string.rep("\0", 64), 64))
        H.fails_with("WSAEFAULT", host.ioctl(c, wsp.SIO_EXT_SENDMSG, string.rep("\0", 8), 0))
        H.fails_with("WSAEFAULT", host.ioctl(c, wsp.SIO_EXT_SENDMSG, string.rep("\0", 40), 0))   -- no WSAMSG
        H.fails_with("WSAEFAULT", host.wsaioctl(c, wsp.SIO_BSP_HANDLE_POLL, nil, 8, host.overlapped()))
        assert.equal(c, (string.unpack("<I8", assert(host.ioctl(c, wsp.SIO_BSP_HANDLE_POLL, nil, 8)))))
      end)
    end)
  end
end)

-- socks5: sends every TCP connect through a SOCKS5 proxy (RFC 1928, no
-- authentication).  The proxy's address is in socks5.conf beside this script
-- ("127.0.0.1 1080").  The application sees a direct connection: getpeername
-- gives the target it asked for.
local wsp = require "wsp"
local P = require("wsp.layered").new()
P.description = "socks5 redirector (lwsp example)"
local base = P.base

local dir = (wsp.provider and wsp.provider.script or ""):match("^(.*)[/\\]") or "."
local conf = assert(io.open(dir .. "/socks5.conf")):read("l")
local host, port = conf:match("^%s*(%S+)%s+(%d+)")
local proxy = wsp.addr(host, tonumber(port))

local function recv_exactly(s, n)   -- the handshake's replies, whole
  local got = ""
  while #got < n do
    local data, err = base.recv(s, n - #got, 0)
    if not data then return nil, err end
    if data == "" then return nil, wsp.WSAECONNRESET end
    got = got .. data
  end
  return got
end

function P.connect(s, addr)
  local ok, err = base.connect(s, proxy)
  if not ok then return nil, err end
  base.send(s, "\5\1\0", 0)                                     -- version 5, one method: none
  local reply = recv_exactly(s, 2)
  if reply ~= "\5\0" then return nil, wsp.WSAECONNREFUSED end
  if addr.family ~= wsp.AF_INET then return nil, wsp.WSAEAFNOSUPPORT end  -- IPv4 targets only
  local a = "\1" .. string.char(addr.address:match("(%d+)%.(%d+)%.(%d+)%.(%d+)"))
  base.send(s, "\5\1\0" .. a .. string.pack(">I2", addr.port), 0)  -- CONNECT
  local head = recv_exactly(s, 4)
  if not head or head:byte(2) ~= 0 then return nil, wsp.WSAECONNREFUSED end
  recv_exactly(s, (head:byte(4) == 4 and 16 or 4) + 2)          -- bound address and port
  s.target = addr
  return true
end

function P.getpeername(s)
  if s.target then return s.target end
  return base.getpeername(s)
end

return P

--- wsp.util: small helpers the examples and specs share.
-- @module wsp.util
local util = {}

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1 ~= 0) and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end

--- CRC-32 (the zlib one) of a string, as 8 hex digits.
function util.crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return ("%08x"):format(c ~ 0xFFFFFFFF)
end

--- Starts a command in the background; its first output line is returned.
-- @treturn table {pid =, first = line, stop = function}
function util.spawn(cmd)
  local p = assert(io.popen("sh -c 'echo $$; exec " .. cmd .. "' 2>/dev/null"))
  local pid = assert(tonumber(p:read("l")), "no pid")
  local first = p:read("l")
  return {pid = pid, first = first, out = p, stop = function()
    os.execute("kill " .. pid .. " 2>/dev/null")
    p:close()
  end}
end

--- Starts `python3 -m http.server` on 127.0.0.1 serving dir.
-- @treturn table the spawned process, with .port
function util.http_server(dir)
  local srv = util.spawn(("python3 -u -m http.server 0 --bind 127.0.0.1 --directory %q"):format(dir))
  srv.port = assert(tonumber((srv.first or ""):match("port (%d+)")), "http.server did not start: " .. tostring(srv.first))
  return srv
end

--- An HTTP/1.0 GET through lwsp's host on a socket of catalog entry `catalog`.
-- @treturn string|nil body, status line, headers text | nil, error
function util.http_get(host, wsp, catalog, addr, path)
  local s, err = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, catalog)
  if not s then return nil, err end
  local ok, cerr = host.connect(s, addr)
  if not ok then host.close(s); return nil, cerr end
  local req = ("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: lwsp\r\n\r\n"):format(path, wsp.format_address(addr))
  local sent = 0
  while sent < #req do sent = sent + assert(host.send(s, req:sub(sent + 1))) end
  local parts = {}
  while true do
    local data, rerr = host.recv(s, 65536)
    if not data then host.close(s); return nil, rerr end
    if data == "" then break end
    parts[#parts + 1] = data
  end
  host.close(s)
  local all = table.concat(parts)
  local head, body = all:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "no HTTP response" end
  return body, head:match("^[^\r\n]*"), head
end

return util

-- The main job: a real HTTP server (python3 -m http.server) serves a page;
-- lwsp's host fetches it once directly over the native base provider and
-- once through a chain of two Lua layers (meter over firewall over native),
-- and shows the size, the checksums, and what each layer saw.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"
local util = require "wsp.util"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
if here:sub(1, 1) ~= "/" then here = (os.getenv("PWD") or ".") .. "/" .. here end
local tmp = os.getenv("LWSP_DEMO_DIR") or os.tmpname()
os.remove(tmp)
assert(lwsp.registry.set_root(tmp .. "/registry"))
lwsp.set_log(tmp .. "/lwsp.log")

-- a page: 512 KiB of bytes every value appears in, and an index
os.execute("mkdir -p '" .. tmp .. "/www'")
local page = {}
for i = 0, 512 * 1024 - 1, 4 do page[#page + 1] = string.pack("<I4", (i * 2654435761) & 0xffffffff) end
assert(io.open(tmp .. "/www/page.bin", "wb")):write(table.concat(page)):close()

local srv = util.http_server(tmp .. "/www")
local addr = wsp.addr("127.0.0.1", srv.port)
print(("HTTP server: python3 -m http.server on %s (pid %d)"):format(wsp.format_address(addr), srv.pid))

local native = host.install_native()
local firewall = host.install_layered{script = here .. "/firewall.lua", over = native, name = "firewall"}
local meter = host.install_layered{script = here .. "/meter.lua", over = firewall, name = "meter"}
print(("catalog: native base %d; firewall chain %d; meter chain %d {meter, firewall, native}"):format(
  native.tcp, firewall.tcp, meter.tcp))

local ok, result = pcall(function()
  local direct, status = assert(util.http_get(host, wsp, native.tcp, addr, "/page.bin"))
  local mark = select(2, lwsp.log_lines())
  local layered, status2 = assert(util.http_get(host, wsp, meter.tcp, addr, "/page.bin"))
  local refused, why = util.http_get(host, wsp, meter.tcp, wsp.addr("127.0.0.1", 9), "/")
  print()
  print(("direct (native only):       %-16s %8d bytes  crc32 %s"):format(status, #direct, util.crc32(direct)))
  print(("through meter + firewall:   %-16s %8d bytes  crc32 %s"):format(status2, #layered, util.crc32(layered)))
  print(("identical: %s"):format(direct == layered and "yes" or "NO"))
  print(("connect to 127.0.0.1:9 through the chain: %s"):format(refused and "allowed?!" or why))
  print()
  print("what the layers saw:")
  for _, line in ipairs((lwsp.log_lines(mark))) do print("  " .. line) end
  return direct == layered and not refused
end)
host.cleanup()
srv.stop()
if not ok then error(result) end
os.exit(result and 0 or 1)

-- The source tree and what each build product carries: one source list
-- (src/sources.mk) that every build reads, and the exports of the built
-- libraries, checked at every build.
-- (Tagged subprocess: it runs nm, readelf and lua5.4, into which a sanitizer
-- preloaded into busted would be preloaded as well.)
local H = require "helpers"

local function read(path)
  local f = assert(io.open(H.root .. "/" .. path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function sh(cmd)
  local p = assert(io.popen(("cd '%s' && %s 2>&1"):format(H.root, cmd)))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

-- NAME -> {files} from src/sources.mk
local function lists()
  local out = {}
  for name, files in read("src/sources.mk"):gsub("\\\r?\n", " "):gmatch("([%u_]+)_SRCS%s*=%s*([^\n]*)") do
    local t = {}
    for f in files:gmatch("%S+") do t[#t + 1] = f end
    out[name] = t
  end
  return out
end

describe("src/sources.mk, the one source list #posix #subprocess", function()
  it("names every C file under src/, and only files that exist", function()
    local listed = {}
    for _, files in pairs(lists()) do
      for _, f in ipairs(files) do
        listed[f] = true
        assert.is_truthy(io.open(H.root .. "/" .. f), f .. " is listed but does not exist")
      end
    end
    local found = sh("find src -name '*.c' | sort")
    local n = 0
    for f in found:gmatch("[^\n]+") do
      n = n + 1
      assert.is_true(listed[f] == true, f .. " is in no list of src/sources.mk")
    end
    assert.is_true(n > 20)
  end)

  it("is what the rockspec builds (tools/rockspec.lua wrote its lists)", function()
    local out, code = sh("lua5.4 tools/rockspec.lua --check")
    assert.are.equal(0, code, out)
    -- and the check can fail: a rockspec with one file left out differs
    local tmp = H.tmp .. "/lwsp-scm-1.rockspec"
    local f = assert(io.open(tmp, "wb"))
    f:write((read("lwsp-scm-1.rockspec"):gsub('"src/runtime/view%.c", ', "", 1)))
    f:close()
    out, code = sh("lua5.4 tools/rockspec.lua --check '" .. tmp .. "'")
    assert.are_not.equal(0, code, out)
    assert.matches("differs from src/sources.mk", out)
  end)

  it("is what tools/mingw-build.sh reads (tools/sources.sh)", function()
    local l = lists()
    local out, code = sh("tools/sources.sh SPI_SRCS RUNTIME_SRCS")
    assert.are.equal(0, code, out)
    assert.are.equal(table.concat(l.SPI, " ") .. " " .. table.concat(l.RUNTIME, " "), (out:gsub("\n$", "")))
    assert.matches("tools/sources.sh", read("tools/mingw-build.sh"), 1, true)
    assert.is_nil(read("tools/mingw-build.sh"):find("src/runtime/lwsp.c", 1, true))
  end)
end)

-- Names a built library exports (nm -D), defines at all (nm: its symbol
-- table, local functions included) and the libraries it needs.
local function exports(lib) return (sh("nm -D --defined-only '" .. lib .. "' | awk '{print $3}' | sort")) end
local function symbols(lib) return (sh("nm '" .. lib .. "' | awk '{print $NF}'")) end
local function has(list, name) return ("\n" .. list):find("\n" .. name .. "\n", 1, true) ~= nil end
-- what only the host or the test kit defines
local HOST_ONLY = {"host_init", "host_upcalls", "host_load", "hk_event_create", "host_wait", "luaopen_lwsp_host",
                   "lwsp_probe_open", "lwsp_hostbench_open", "lwsp_fault_open", "host_link",
                   "WPUCompleteOverlappedRequest", "WSCEnumProtocols", "lwsp_export_complete"}

describe("what each build product carries #posix #subprocess", function()
  local lwsp = H.lwsp
  local dir = lwsp.path():match("^(.*)/[^/]*$")

  it("the provider DLL exports WSPStartup and luaopen_lwsp only, and carries no host, bench, probe or fault code", function()
    local so = lwsp.path()
    assert.are.equal("WSPStartup\nluaopen_lwsp\n", exports(so))
    local syms = symbols(so)
    assert.is_true(has(syms, "rt_catalog_info"), "nm reads the symbol table: " .. syms:sub(1, 200))
    for _, name in ipairs(HOST_ONLY) do assert.is_false(has(syms, name), so .. " defines " .. name) end
  end)

  it("the host module exports ws2_32's names, as ws2_32 does, and its own luaopen", function()
    local so = assert(package.searchpath("lwsp.host", package.cpath))
    -- (and the host's application calls as plain C, lwsp_hc_*, for the preload library: docs/preload.md)
    -- (WSAGetLastError/WSASetLastError: the extension functions take no lpErrno and report
    -- through them, found where the upcall table came from, as on Windows: docs/api.md)
    local names = exports(so):gsub("lwsp_hc_%w+\n", "")
    assert.are.equal("WPUCompleteOverlappedRequest\nWSAGetLastError\nWSASetLastError\nWSCEnumProtocols\nluaopen_lwsp_host\n", names)
    assert.matches("lwsp_hc_socket\n", exports(so))
    local syms = symbols(so)
    for _, name in ipairs{"host_init", "lwsp_fault_open", "lwsp_probe_open", "lwsp_hostbench_open"} do
      assert.is_true(has(syms, name), so .. " lacks " .. name)
    end
    for _, name in ipairs{"WSPStartup", "luaopen_lwsp", "rt_catalog_info", "lwsp_vlog"} do
      assert.is_false(has(syms, name), so .. " carries the runtime's " .. name)
    end
  end)

  it("the native base provider exports WSPStartup and links no Lua", function()
    local so = dir .. "/lwsp_native.so"
    assert.are.equal("WSPStartup\n", exports(so))
    local undefined = sh("nm -D --undefined-only '" .. so .. "'")
    assert.is_nil(undefined:find("lua", 1, true), undefined)
    local needed = sh("readelf -d '" .. so .. "' | grep NEEDED")
    assert.matches("libc", needed)
    assert.is_nil(needed:find("lua", 1, true), needed)
  end)

  -- (only where make mingw has built them: the cross-build is not part of make test)
  local built = io.open(H.root .. "/build/mingw/x86_64/lwsp.dll") or io.open(H.root .. "/build/mingw/i686/lwsp.dll")
  if built then built:close() end
  local it_built = built and it or function() end
  it_built("the Windows DLLs export and import the same way (objdump -p)", function()
    local seen = 0
    for _, arch in ipairs{"x86_64", "i686"} do
      local d = H.root .. "/build/mingw/" .. arch
      local objdump = arch .. "-w64-mingw32-objdump -p "
      local function dll_exports(name)
        return (sh(objdump .. "'" .. d .. "/" .. name .. "' | awk '/\\[Ordinal\\/Name Pointer\\] Table/ {t=1; next} "
          .. "t && NF==0 {t=0} t {print $NF}' | sort"))
      end
      local function dll_imports(name) return (sh(objdump .. "'" .. d .. "/" .. name .. "' | grep 'DLL Name:'")) end
      if io.open(d .. "/lwsp.dll") and io.open(d .. "/lwsp_native.dll") then
        seen = seen + 1
        local e = dll_exports("lwsp.dll")
        assert.is_true(has(e, "WSPStartup") and has(e, "luaopen_lwsp"), arch .. ": " .. e)
        for _, name in ipairs(HOST_ONLY) do assert.is_false(has(e, name), arch .. " lwsp.dll exports " .. name) end
        assert.are.equal("WSPStartup\n", (dll_exports("lwsp_native.dll"):gsub("WSPStartup@%d+\n", "")))
        local imports = dll_imports("lwsp_native.dll")
        assert.matches("WS2_32", imports:upper())
        assert.is_nil(imports:lower():find("lua", 1, true), imports)
        if io.open(d .. "/lwsp/host.dll") then
          e = dll_exports("lwsp/host.dll")
          assert.is_true(has(e, "WPUCompleteOverlappedRequest") and has(e, "WSCEnumProtocols"), arch .. ": " .. e)
        end
      end
    end
    assert.is_true(seen > 0, "no architecture has both lwsp.dll and lwsp_native.dll")
  end)
end)

-- The shape of the tree: short files, short functions.  A function over 80
-- lines carries its reason in the comment above it, on a line that starts
-- with "Long:".
local MAX_FILE, MAX_FUNCTION = 800, 80

local functions = dofile(H.root .. "/tools/shape.lua").functions

describe("the source tree's shape #posix #subprocess", function()
  local files = {}
  for f in sh("find src -name '*.c' -o -name '*.h' | sort"):gmatch("[^\n]+") do files[#files + 1] = f end

  it("has no file over 800 lines", function()
    assert.is_true(#files > 20)
    for _, f in ipairs(files) do
      local n = select(2, read(f):gsub("\n", ""))
      assert.is_true(n <= MAX_FILE, f .. " has " .. n .. " lines")
    end
  end)

  it("has no function over 80 lines without its reason above it ('Over 80 lines:')", function()
    local seen, long = 0, {}
    for _, f in ipairs(files) do
      if f:match("%.c$") then
        for _, fn in ipairs(functions(read(f))) do
          seen = seen + 1
          if fn[3] > MAX_FUNCTION and not fn[4] then long[#long + 1] = ("%s:%d %s (%d lines)"):format(f, fn[2], fn[1], fn[3]) end
        end
      end
    end
    assert.is_true(seen > 500, seen .. " functions found: the reader has lost its way")
    assert.are.same({}, long)
  end)

  it("finds a long function, and takes a reason for it", function()
    local body = ("  x = x + 1;\n"):rep(MAX_FUNCTION)
    local got = functions("static int f(int x,\n  int y) {\n" .. body .. "}\n/* short */\nint g(void) { return 0; }\n"
      .. "/* Why:\n * Over 80 lines: one switch over every code.\n */\nint h(void) {\n  const char *s = \"{\";\n" .. body .. "}\n")
    assert.are.same({{"f", 1, MAX_FUNCTION + 3, false}, {"g", MAX_FUNCTION + 5, 1, false}, {"h", MAX_FUNCTION + 9, MAX_FUNCTION + 3, true}}, got)
  end)
end)

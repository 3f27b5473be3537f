-- The provider as it ships, loaded the way ws2_32 loads it into a process
-- that knows nothing of lwsp: spec/tools/foreign_host.c (a host of its own,
-- not lwsp's) is copied into a fresh folder and run from there with an
-- empty environment (no PATH, LUA_PATH or LUA_CPATH naming lwsp), loads the
-- provider DLL by its full path, starts a Lua layer (examples/passthrough.lua,
-- from a third folder) over lwsp_native beside it, and carries loopback TCP
-- through it.  The current folder holds decoy `wsp` modules that raise: the
-- provider must find its own from its DLL's path.
--
-- Natively (make foreign-loader) the provider is build/lwsp.so (its modules
-- through build/lua).  With $LWSP_FOREIGN_WINE (make wine-loader) the Windows
-- build of the program runs under Wine against the self-contained tree
-- build/mingw/x86_64/provider/ (lwsp.dll with Lua linked in, lwsp_native.dll,
-- lua\wsp), copied to a folder whose name has a space in it; with
-- LWSP_FOREIGN_WINE=i686 (make wine32) the i686 program and tree under
-- Debian's 32-bit Wine (wine32), where tools/abi32_check.c also checks the
-- i686 DLLs' stdcall exports and ABI.
local H = require "helpers"

local wine = os.getenv("LWSP_FOREIGN_WINE")
local i686 = wine == "i686"
local mingw = H.root .. "/build/mingw/" .. (i686 and "i686" or "x86_64")
local function win(path) return "Z:" .. path:gsub("/", "\\") end
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a"):gsub("\r", "")
  local _, _, code = p:close()
  return out, code
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- the folders: app/ (the program, the current folder, decoys), scripts/, and
-- on Windows the provider tree's copy
local top, app, scripts, provider
local function program(name) return wine and (name .. ".exe") or name end

local function setup()
  top = sh("mktemp -d /tmp/lwsp-loader-XXXXXX"):gsub("%s+$", "")
  app, scripts = top .. "/app", top .. "/scripts"
  for _, d in ipairs{app, scripts, app .. "/wsp", app .. "/lua/wsp"} do assert(sh("mkdir -p " .. q(d))) end
  for _, f in ipairs{app .. "/wsp/layered.lua", app .. "/lua/wsp/layered.lua", app .. "/wsp/init.lua",
                     app .. "/lua/wsp/init.lua", app .. "/wsp.lua"} do
    local h = assert(io.open(f, "w"))
    h:write('error("read from the current folder")\n')
    h:close()
  end
  assert(sh(("cp %s %s/"):format(q(H.root .. "/examples/passthrough.lua"), q(scripts))))
  for _, p in ipairs{"foreign_host", "foreign_host_stubcomplete", i686 and "abi32_check" or nil} do
    local from = (wine and mingw or H.root .. "/build") .. "/" .. program(p)
    local _, code = sh(("cp %s %s/"):format(q(from), q(app)))
    assert(code == 0, "no " .. from .. " (make wine-loader / make all build it)")
  end
  if wine then
    provider = top .. "/Program Files/lwsp"
    assert(sh(("mkdir -p %s && cp -r %s/provider/. %s/"):format(q(provider), q(mingw), q(provider))))
  else
    provider = H.root .. "/build"
  end
end

local function runtime() return provider .. "/" .. (wine and "lwsp.dll" or "lwsp.so") end
local function native() return provider .. "/" .. (wine and "lwsp_native.dll" or "lwsp_native.so") end

-- One run of the program from app/ with nothing in its environment but what
-- Wine itself needs.
local function load(prog, lib, scenario)
  local script = scripts .. "/passthrough.lua"
  local cmd
  if wine then
    cmd = ("cd %s && env -i HOME=%s WINEPREFIX=%s WINEARCH=%s WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml=' "
      .. "%s %s %s %s %s </dev/null")
      :format(q(app), q(os.getenv("HOME") or "/root"), q(H.root .. (i686 and "/build/wine32" or "/build/wine")),
        i686 and "win32" or "win64", i686 and "/usr/lib/wine/wine" or "/usr/lib/wine/wine64", program(prog),
        q(win(lib)), q(win(script)), scenario)
  else
    cmd = ("cd %s && env -i ./%s %s %s %s"):format(q(app), prog, q(lib), q(script), scenario)
  end
  return sh(cmd)
end

local function passes(prog, lib, scenario)
  local out, code = load(prog, lib, scenario)
  assert.truthy(out:find("PASS " .. scenario .. ":", 1, true), out)
  assert.equal(0, code, out)
end

describe("the provider DLL loaded by a program of its own from an unrelated folder #posix #subprocess", function()
  setup()
  teardown(function() if top then sh("rm -rf " .. q(top)) end end)

  it("carries loopback TCP through a Lua layer, an overlapped receive completed by event", function()
    passes("foreign_host", runtime(), "layer-ov-event")
  end)

  it("carries loopback TCP through a Lua layer, an overlapped receive completed by a completion routine", function()
    passes("foreign_host", runtime(), "layer-ov-routine")
  end)

  it("notices a host's WPUCompleteOverlappedRequest that returns success without delivering (Wine's stub), logs it, and signals the event", function()
    passes("foreign_host_stubcomplete", runtime(), "layer-stub-complete")
  end)

  it("the native base provider notices the same stub", function()
    local out, code = load("foreign_host_stubcomplete", native(), "stub-complete")
    assert.truthy(out:find("PASS stub-complete:", 1, true), out)
    assert.equal(0, code, out)
  end)

  it("the stub scenario fails under a host whose export delivers (its check can fail)", function()
    -- the same scenario under the delivering host: no completion is undelivered
    local out, code = load("foreign_host", runtime(), "layer-stub-complete")
    assert.truthy(out:find("FAIL layer-stub-complete: the stub WPUCompleteOverlappedRequest was never called", 1, true), out)
    assert.not_equal(0, code)
  end)

  if i686 then
    it("the i686 DLLs export WSPStartup undecorated, are stdcall, and lay the SPI out as Windows' 32-bit ABI", function()
      for _, lib in ipairs{runtime(), native()} do
        local out, code = sh(("cd %s && env -i HOME=%s WINEPREFIX=%s WINEARCH=win32 WINEDEBUG=-all "
          .. "WINEDLLOVERRIDES='mscoree,mshtml=' /usr/lib/wine/wine abi32_check.exe %s </dev/null")
          :format(q(app), q(os.getenv("HOME") or "/root"), q(H.root .. "/build/wine32"), q(win(lib))))
        assert.truthy(out:find("abi32: ok:", 1, true), out)
        assert.equal(0, code, out)
      end
    end)
  end

  if wine then
    it("the module build beside lua.exe, which imports lua54.dll, cannot be loaded from there (error 126)", function()
      -- what the self-contained tree is for: the same program, the other DLL
      local out, code = load("foreign_host", mingw .. "/lwsp.dll", "layer-ov-event")
      assert.truthy(out:find("LoadLibraryW: error 126", 1, true), out)
      assert.not_equal(0, code)
    end)
  end
end)

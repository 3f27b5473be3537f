-- lwsp's runtime under a host that is not lwsp's own: spec/tools/foreign_host.c,
-- a ws2_32 stand-in written from the SPI alone (its own handle table, events,
-- APC queues, and a WPUCompleteOverlappedRequest that refuses every handle it
-- did not create), loads the runtime as a provider DLL and checks it strictly.
-- Each case is one run of the program; it prints "PASS name: ..." or
-- "FAIL name: ..." and exits 0 on pass.  Natively the program is a Linux one
-- (#posix); `make wine-foreign` runs the same cases with its Windows build
-- under Wine against lwsp.dll, and `make tsan` with TSan in the program.
local H = require "helpers"
local lwsp = H.lwsp

local memnet = H.root .. "/examples/memnet.lua"
local providers = H.root .. "/spec/providers/"

-- The runtime the suite runs against (build/lwsp.so, or the sanitizer build's),
-- or $LWSP_FOREIGN_RUNTIME with $LWSP_FOREIGN_PRELOAD preloaded into the
-- program only: `make tsan` runs this file so (a shell under TSan crashes).
local function runtime()
  local p = os.getenv("LWSP_FOREIGN_RUNTIME") or lwsp.path()
  return p:sub(1, 1) == "/" and p or H.root .. "/" .. p
end
local preload = os.getenv("LWSP_FOREIGN_PRELOAD")

-- With $LWSP_FOREIGN_WINE set (make wine-foreign) every case runs the
-- program built for Windows under Wine, against the x86_64 lwsp.dll.
local wine = os.getenv("LWSP_FOREIGN_WINE")
local function win(path) return "Z:" .. path:gsub("/", "\\") end
local mingw = H.root .. "/build/mingw/x86_64"

-- the native base provider beside the runtime
local function native()
  return wine and mingw .. "/lwsp_native.dll" or (runtime():gsub("lwsp%.so$", "lwsp_native.so"))
end

local function foreign(scenario, script, program, lib)
  local cmd
  script = script or memnet
  if wine then
    cmd = ("cd '%s' && WINEPREFIX='%s/build/wine' WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml=' "
      .. "DISPLAY= LUA_PATH='%s' /usr/lib/wine/wine64 '%s/%s.exe' '%s' '%s' %s </dev/null 2>&1")
      :format(H.root, H.root, win(H.root .. "/lua/?.lua") .. ";" .. win(H.root .. "/lua/?/init.lua"), mingw,
        program or "foreign_host", win(lib or mingw .. "/lwsp.dll"), win(script), scenario)
  else
    cmd = ("%s'%s/build/%s' '%s' '%s' %s 2>&1"):format(preload and ("LD_PRELOAD='%s' "):format(preload) or "",
      H.root, program or "foreign_host", lib or runtime(), script, scenario)
  end
  local p = assert(io.popen(cmd))
  local out = p:read("a"):gsub("\r", "")
  local _, _, code = p:close()
  return out, code
end

local function passes(scenario, script, program, lib)
  local out, code = foreign(scenario, script, program, lib)
  assert.truthy(out:find("PASS " .. scenario .. ":", 1, true), out)
  assert.equal(0, code, out)
end

describe("lwsp under a foreign host #posix #subprocess", function()
  describe("WSPStartup and WSPCleanup", function()
    it("fill all 30 entries, negotiate 2.2, and count each startup", function()
      passes("startup")
    end)

    it("need one WSPCleanup per WSPStartup, the fourth of three refused", function()
      passes("startup-count")
    end)

    it("fail with WSAEPROVIDERFAILEDINIT, and say why, under a host that exports no WPUCompleteOverlappedRequest", function()
      passes("no-complete", memnet, "foreign_host_nocomplete")
    end)
  end)

  describe("socket handles", function()
    it("come from the host's WPUCreateSocketHandle and go back with WPUCloseSocketHandle", function()
      passes("handles")
    end)

    it("are found by exactly the context the host returns, and a mismatched context is refused", function()
      passes("context")
    end)
  end)

  describe("overlapped receives", function()
    it("pend with Internal 0x103 and complete by the host's WPUCompleteOverlappedRequest", function()
      passes("ov-event")
    end)

    it("with a completion routine complete by WPUQueueApc in the caller's alertable wait", function()
      passes("ov-routine")
    end)

    it("that finish at once still notify through the event", function()
      passes("ov-at-once")
    end)

    it("that fail at once write the fields and notify nobody", function()
      passes("ov-fail-at-once")
    end)

    it("of datagrams write the sender's address", function()
      passes("dgram-event")
    end)

    it("outstanding at close complete with WSA_OPERATION_ABORTED before the handle goes back", function()
      passes("close-pending")
    end)

    it("outstanding at the last WSPCleanup are aborted and every handle given back", function()
      passes("cleanup-pending")
    end)

    it("posted together complete in the order they were posted", function()
      passes("ov-order")
    end)

    it("of a gathered send complete by event with every byte", function()
      passes("ov-send")
    end)

    it("run their completion routine on the issuing thread only", function()
      passes("apc-thread")
    end)

    it("are waited for by WSPGetOverlappedResult with fWait", function()
      passes("ov-wait")
    end)

    it("of a datagram longer than the buffer complete with WSAEMSGSIZE and what fitted", function()
      passes("dgram-truncated")
    end)
  end)

  describe("wsp.wait(key, timeout) in a handler", function()
    it("times out for every overlapped receive, also once the service thread sleeps with nothing due", function()
      passes("wait-timeout", providers .. "waiter.lua")
    end)

    it("times out for receives with completion routines too", function()
      passes("wait-timeout-routine", providers .. "waiter.lua")
    end)
  end)

  describe("an IFS provider", function()
    it("completes an overlapped receive that finishes at once without WPUCompleteOverlappedRequest", function()
      passes("ifs-event", providers .. "ifs_own.lua")
    end)

    it("completes a pending overlapped receive by its event", function()
      passes("ifs-pending", providers .. "ifs_own.lua")
    end)

    it("completes a pending overlapped receive by its routine", function()
      passes("ifs-routine", providers .. "ifs_own.lua")
    end)
  end)

  describe("WSPRecv", function()
    it("refuses NULL buffers (WSAEFAULT) and no buffers (WSAEINVAL) instead of reporting 0 bytes", function()
      passes("recv-null")
    end)

    it("reports 0 bytes on a stream once the peer has closed", function()
      passes("recv-eof")
    end)

    it("polls the host's blocking hook, which can cancel it", function()
      passes("blocking-hook")
    end)

    it("blocked on one thread ends with WSAEINTR when another thread closes the socket", function()
      passes("close-blocked")
    end)

    it("on a non-blocking socket gives WSAEWOULDBLOCK, then the data", function()
      passes("nonblocking")
    end)
  end)

  describe("network events and select", function()
    it("set the host's event for WSPEventSelect and reset it on enumeration", function()
      passes("event-select")
    end)

    it("post WSPAsyncSelect's message through the host's WPUPostMessage", function()
      passes("async-select")
    end)

    it("WSPSelect reports exactly the readable handle", function()
      passes("select")
    end)
  end)

  describe("a Lua layer over the native base, real loopback TCP", function()
    -- the layer finds the layer below in the host's own catalog (its
    -- WSCEnumProtocols) and loads it with the host's WPUGetProviderPath
    local passthrough = H.root .. "/examples/passthrough.lua"   -- calls go down in C
    local meter = H.root .. "/examples/meter.lua"               -- receives run in Lua

    it("completes an overlapped receive by event, through C and through Lua", function()
      passes("layer-ov-event", passthrough)
      passes("layer-ov-event", meter)
    end)

    it("completes an overlapped receive by routine, through C and through Lua", function()
      passes("layer-ov-routine", passthrough)
      passes("layer-ov-routine", meter)
    end)

    it("aborts outstanding receives at close before giving the handle back", function()
      passes("layer-close-pending", meter)
    end)

    it("refuses receives with no buffers", function()
      passes("layer-recv-null", passthrough)
    end)

    it("reports readiness through WSPEventSelect and WSPSelect", function()
      passes("layer-event-select", passthrough)
      passes("layer-select", meter)
    end)

    it("polls the host's blocking hook while a receive waits for the layer below", function()
      passes("layer-blocking-hook", passthrough)
    end)

    it("ends a receive blocked in Lua with WSAEINTR when another thread closes the socket", function()
      -- the close races the lower socket's wake-up: the program tries six times
      passes("layer-close-blocked", meter)
      passes("layer-close-blocked", passthrough)
    end)

    it("keeps overlapped receives in order and routines on their thread", function()
      passes("layer-ov-order", meter)
      passes("layer-apc-thread", passthrough)
    end)

    it("completes gathered overlapped sends and honours non-blocking mode", function()
      passes("layer-ov-send", passthrough)
      passes("layer-nonblocking", meter)
    end)
  end)

  describe("the native base provider, loaded by the foreign host itself", function()
    local function native_passes(scenario, program) passes(scenario, H.root .. "/-", program, native()) end

    it("fails WSPStartup with WSAEPROVIDERFAILEDINIT, and says why, under a host with no WPUCompleteOverlappedRequest", function()
      native_passes("no-complete", "foreign_host_nocomplete")
    end)

    it("completes overlapped receives by event, by routine, in order, and at once", function()
      for _, s in ipairs{"ov-event", "ov-routine", "ov-order", "ov-at-once", "ov-fail-at-once", "apc-thread"} do
        native_passes(s)
      end
    end)

    it("keeps a closed socket's handle until its aborted receive's routine has run", function()
      native_passes("close-pending")
    end)

    it("refuses receives with no buffers, and reports 0 bytes only at the peer's close", function()
      native_passes("recv-null")
      native_passes("recv-eof")
    end)

    it("delivers datagrams, truncated ones with WSAEMSGSIZE", function()
      native_passes("dgram-event")
      native_passes("dgram-truncated")
    end)

    it("honours blocking hooks, closes from other threads and non-blocking mode", function()
      for _, s in ipairs{"blocking-hook", "close-blocked", "nonblocking", "event-select", "select"} do
        native_passes(s)
      end
    end)
  end)

  describe("addresses", function()
    it("convert to and from text with lengths in characters, the NUL counted", function()
      passes("address-string")
    end)
  end)

  describe("errors", function()
    it("never come back as SOCKET_ERROR with errno 0", function()
      passes("errno-zero", providers .. "no_error_code.lua")
    end)

    it("a foreign host's failing run is reported as a failure", function()
      -- the program's own check: a scenario it cannot pass must say FAIL
      local out, code = foreign("ov-event", providers .. "no_error_code.lua")
      assert.truthy(out:find("FAIL ov-event:", 1, true), out)
      assert.not_equal(0, code)
    end)
  end)
end)

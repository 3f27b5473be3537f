rockspec_format = "3.0"
package = "lwsp"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lwsp.git",
}
description = {
  summary = "Winsock 2 service providers (layered and base) scripted in Lua",
  detailed = [[
lwsp implements the Winsock 2 SPI in C and lets a provider's protocol logic
live in Lua: WSPStartup, the 30-entry proc table, the upcall table, handle
contexts, and a host that plays ws2_32 so providers run and are tested on
Linux as on Windows.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "builtin",
  modules = {
    lwsp = {
      sources = {"src/spi/platform.c", "src/spi/registry.c", "src/spi/map.c", "src/spi/text.c", "src/spi/netev.c", "src/spi/log.c", "src/runtime/common.c", "src/runtime/lwsp.c", "src/runtime/sockets.c", "src/runtime/calls.c", "src/runtime/budget.c", "src/runtime/match.c", "src/runtime/dispatch.c", "src/runtime/dispatch_io.c", "src/runtime/upcalls.c", "src/runtime/module.c", "src/runtime/view.c", "src/runtime/pending.c", "src/runtime/events.c", "src/runtime/lower.c", "src/runtime/entries.c", "src/runtime/poller.c", "src/runtime/trace.c", "src/runtime/wsc.c", "src/runtime/sandbox.c", "src/runtime/extfn.c", "src/runtime/extlua.c"},  -- src/sources.mk: SPI LOG VALUES RUNTIME
      incdirs = {"src/spi", "src/runtime", "src/host", "src/native"},
      libraries = {"lua5.4", "pthread", "dl"},
      defines = {},
    },
    ["lwsp.host"] = {
      sources = {"src/spi/platform.c", "src/spi/registry.c", "src/spi/map.c", "src/spi/text.c", "src/spi/netev.c", "src/runtime/common.c", "src/host/link.c", "src/host/host.c", "src/host/exports.c", "src/host/api.c", "src/host/catalog.c", "src/host/objects.c", "src/host/kernel.c", "src/host/overlapped.c", "src/host/extension.c", "src/host/capi.c", "src/testkit/probe.c", "src/testkit/bench.c", "src/testkit/fault.c"},  -- src/sources.mk: SPI VALUES HOST TESTKIT
      incdirs = {"src/spi", "src/runtime", "src/host", "src/native"},
      libraries = {"lua5.4", "pthread", "dl"},
      defines = {"LWSP_HOST_MODULE"},
    },
    ["wsp"] = "lua/wsp/init.lua",
    ["wsp.host"] = "lua/wsp/host.lua",
    ["wsp.layered"] = "lua/wsp/layered.lua",
    ["wsp.util"] = "lua/wsp/util.lua",
    ["wsp.trace"] = "lua/wsp/trace.lua",
    ["wsp.catalog"] = "lua/wsp/catalog.lua",
    ["wsp.catalog_model"] = "lua/wsp/catalog_model.lua",
    ["wsp.test"] = "lua/wsp/test.lua",
    ["wsp.memnet"] = "lua/wsp/memnet.lua",
    lwsp_native = {
      sources = {"src/spi/platform.c", "src/spi/registry.c", "src/spi/map.c", "src/spi/text.c", "src/spi/netev.c", "src/spi/log.c", "src/native/native.c", "src/native/native_wsp.c", "src/native/native_ext.c", "src/native/native_os_ext.c", "src/native/native_os.c"},  -- src/sources.mk: SPI LOG NATIVE NATIVE_POSIX
      incdirs = {"src/spi", "src/runtime", "src/host", "src/native"},
      libraries = {"pthread", "dl"},
    },
  },
  platforms = {
    mingw32 = {
      modules = {
        lwsp = {
          sources = {"src/spi/platform.c", "src/spi/registry.c", "src/spi/map.c", "src/spi/text.c", "src/spi/netev.c", "src/spi/log.c", "src/runtime/common.c", "src/runtime/lwsp.c", "src/runtime/sockets.c", "src/runtime/calls.c", "src/runtime/budget.c", "src/runtime/match.c", "src/runtime/dispatch.c", "src/runtime/dispatch_io.c", "src/runtime/upcalls.c", "src/runtime/module.c", "src/runtime/view.c", "src/runtime/pending.c", "src/runtime/events.c", "src/runtime/lower.c", "src/runtime/entries.c", "src/runtime/poller.c", "src/runtime/trace.c", "src/runtime/wsc.c", "src/runtime/sandbox.c", "src/runtime/extfn.c", "src/runtime/extlua.c"},  -- src/sources.mk: SPI LOG VALUES RUNTIME
          incdirs = {"src/spi", "src/runtime", "src/host", "src/native"},
          libraries = {"ws2_32"},
          defines = {"__USE_MINGW_ANSI_STDIO=1"},
        },
        ["lwsp.host"] = {
          sources = {"src/spi/platform.c", "src/spi/registry.c", "src/spi/map.c", "src/spi/text.c", "src/spi/netev.c", "src/runtime/common.c", "src/host/link.c", "src/host/host.c", "src/host/exports.c", "src/host/api.c", "src/host/catalog.c", "src/host/objects.c", "src/host/kernel.c", "src/host/overlapped.c", "src/host/extension.c", "src/host/capi.c", "src/testkit/probe.c", "src/testkit/bench.c", "src/testkit/fault.c"},  -- src/sources.mk: SPI VALUES HOST TESTKIT
          incdirs = {"src/spi", "src/runtime", "src/host", "src/native"},
          libraries = {"ws2_32", "user32"},
          defines = {"__USE_MINGW_ANSI_STDIO=1", "LWSP_HOST_MODULE"},
        },
        lwsp_native = {
          sources = {"src/spi/platform.c", "src/spi/registry.c", "src/spi/map.c", "src/spi/text.c", "src/spi/netev.c", "src/spi/log.c", "src/native/native.c", "src/native/native_wsp.c", "src/native/native_ext.c", "src/native/native_os_ext.c", "src/native/native_os_win.c"},  -- src/sources.mk: SPI LOG NATIVE NATIVE_WIN
          incdirs = {"src/spi", "src/runtime", "src/host", "src/native"},
          libraries = {"ws2_32"},
          defines = {"__USE_MINGW_ANSI_STDIO=1"},
        },
      },
    },
  },
  install = {
    bin = {["lwsp-run"] = "bin/lwsp-run", ["lwsp-catalog"] = "bin/lwsp-catalog", ["lwsp-spec"] = "bin/lwsp-spec",
           ["lwsp-new"] = "bin/lwsp-new"},
  },
  copy_directories = {"docs", "examples"},
}
test = {
  type = "command",
  command = "make test",
}

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
      sources = {
        "src/lwsp.c", "src/budget.c", "src/match.c", "src/dispatch.c", "src/upcalls.c", "src/common.c", "src/platform.c",
        "src/host.c", "src/hostapi.c", "src/hostobj.c", "src/hostk.c", "src/probe.c", "src/view.c", "src/pending.c", "src/hostio.c", "src/events.c", "src/lower.c", "src/hostbench.c", "src/fault.c", "src/trace.c", "src/wsc.c", "src/sandbox.c", "src/hostext.c", "src/extfn.c",
      },
      incdirs = {"src"},
      libraries = {"lua5.4", "pthread", "dl"},
      defines = {},
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
      sources = {"src/native.c", "src/native_os.c", "src/native_os_ext.c", "src/common.c", "src/platform.c"},
      incdirs = {"src"},
      libraries = {"lua5.4", "pthread", "dl"},
    },
  },
  platforms = {
    mingw32 = {
      modules = {
        lwsp = {
          sources = {
            "src/lwsp.c", "src/budget.c", "src/match.c", "src/dispatch.c", "src/upcalls.c", "src/common.c", "src/platform.c",
            "src/host.c", "src/hostapi.c", "src/hostobj.c", "src/hostk.c", "src/probe.c", "src/view.c", "src/pending.c", "src/hostio.c", "src/events.c", "src/lower.c", "src/hostbench.c", "src/fault.c", "src/trace.c", "src/wsc.c", "src/sandbox.c", "src/hostext.c", "src/extfn.c",
          },
          incdirs = {"src"},
          libraries = {"ws2_32", "user32"},
          defines = {"__USE_MINGW_ANSI_STDIO=1"},
        },
        lwsp_native = {
          sources = {"src/native.c", "src/native_os_win.c", "src/native_os_ext.c", "src/common.c", "src/platform.c"},
          incdirs = {"src"},
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

# The source list of each build product, written once.  The Makefile includes
# this file; tools/mingw-build.sh reads it (tools/sources.sh); the rockspec's
# lists are written from it by tools/rockspec.lua, and spec/30-layout_spec.lua
# fails when they differ.  One list per part, a file per line.
#   the provider DLL (lwsp):           SPI LOG VALUES RUNTIME
#   the host module (lwsp.host):       SPI VALUES HOST TESTKIT  (built with
#                                      LWSP_HOST_MODULE; the runtime's log, via host/link.c)
#   the native base provider (lwsp_native): SPI LOG NATIVE NATIVE_POSIX or NATIVE_WIN
#   the preload library (liblwsp_preload.so): PRELOAD
SPI_SRCS = \
  src/spi/platform.c src/spi/registry.c \
  src/spi/map.c \
  src/spi/text.c \
  src/spi/netev.c
LOG_SRCS = \
  src/spi/log.c
VALUES_SRCS = \
  src/runtime/common.c
RUNTIME_SRCS = \
  src/runtime/lwsp.c \
  src/runtime/sockets.c \
  src/runtime/calls.c \
  src/runtime/budget.c \
  src/runtime/match.c \
  src/runtime/dispatch.c src/runtime/dispatch_io.c \
  src/runtime/upcalls.c \
  src/runtime/module.c \
  src/runtime/view.c \
  src/runtime/pending.c \
  src/runtime/events.c \
  src/runtime/lower.c src/runtime/entries.c \
  src/runtime/poller.c \
  src/runtime/trace.c \
  src/runtime/wsc.c \
  src/runtime/sandbox.c \
  src/runtime/extfn.c src/runtime/extlua.c
HOST_SRCS = \
  src/host/link.c \
  src/host/host.c \
  src/host/exports.c \
  src/host/api.c \
  src/host/catalog.c \
  src/host/objects.c \
  src/host/kernel.c \
  src/host/overlapped.c \
  src/host/extension.c \
  src/host/capi.c
TESTKIT_SRCS = \
  src/testkit/probe.c \
  src/testkit/bench.c \
  src/testkit/fault.c
NATIVE_SRCS = \
  src/native/native.c \
  src/native/native_wsp.c \
  src/native/native_ext.c \
  src/native/native_os_ext.c
NATIVE_POSIX_SRCS = \
  src/native/native_os.c
NATIVE_WIN_SRCS = \
  src/native/native_os_win.c
# the preload library (Linux: real programs through the chain, docs/preload.md)
PRELOAD_SRCS = \
  src/preload/preload.c src/preload/preload_calls.c src/preload/preload_dns.c

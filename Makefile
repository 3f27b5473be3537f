# lwsp - build, test and check.  `make` builds build/lwsp.so; `make test` runs
# the busted suite; `make mingw` cross-builds the Windows DLLs (see README).

LUA_INC   ?= /usr/include/lua5.4
LUA_LIB   ?= -llua5.4
CC        ?= cc
CFLAGS    ?= -O2 -g
WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
INCS      = -Isrc/spi -Isrc/runtime -Isrc/host -Isrc/native
BASEFLAGS = -std=gnu11 -fPIC -fvisibility=hidden -I$(LUA_INC) $(INCS) $(WARN)
include src/sources.mk
# The provider DLL and the native base provider (src/sources.mk lists each part).
SRCS      = $(SPI_SRCS) $(LOG_SRCS) $(VALUES_SRCS) $(RUNTIME_SRCS)
HOST_SO_SRCS = $(SPI_SRCS) $(VALUES_SRCS) $(HOST_SRCS) $(TESTKIT_SRCS)
NATIVE_SO_SRCS = $(SPI_SRCS) $(LOG_SRCS) $(NATIVE_SRCS) $(NATIVE_POSIX_SRCS)
HDRS      = $(wildcard src/*/*.h)
BUSTED    ?= lua5.4 /usr/bin/busted
export LWSP_EXAMPLES = $(CURDIR)/examples

.PHONY: asan-preload bench-preload stress stress-tsan lint ldoc all deps deps-run demo demo-memnet bench wine-smoke wine-test wine-foreign foreign-loader wine-loader wine32 fuzz soak test check asan tsan helgrind valgrind rock mingw mingw-check spi-check clean

all: build/lwsp.so build/lwsp/host.so build/lwsp_native.so build/test_nullproc.so build/foreign_host build/foreign_host_nocomplete build/foreign_host_stubcomplete build/liblwsp_preload.so build/preload_edge

# Real programs through the chain (bin/lwsp-run -- PROGRAM): docs/preload.md.
build/liblwsp_preload.so: $(PRELOAD_SRCS) src/preload/preload.h Makefile src/sources.mk
	@mkdir -p build
	$(CC) -std=gnu11 -fPIC -fvisibility=hidden -I$(LUA_INC) $(WARN) $(CFLAGS) -shared -o $@ $(PRELOAD_SRCS) $(LUA_LIB) -lpthread -ldl
build/preload_edge: spec/tools/edge.c
	@mkdir -p build
	$(CC) -std=gnu11 -O1 -g $(WARN) -o $@ spec/tools/edge.c

# A host of its own (no lwsp host code) that loads the runtime as a provider
# DLL: spec/26-foreign_host_spec.lua.  The second exports no
# WPUCompleteOverlappedRequest.
build/foreign_host: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	@mkdir -p build
	$(CC) -std=gnu11 -O1 -g $(INCS) $(WARN) -rdynamic -o $@ spec/tools/foreign_host.c -lpthread -ldl
build/foreign_host_nocomplete: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	@mkdir -p build
	$(CC) -std=gnu11 -O1 -g $(INCS) $(WARN) -rdynamic -DFH_NO_COMPLETE -o $@ spec/tools/foreign_host.c -lpthread -ldl

# ... and one whose WPUCompleteOverlappedRequest is a stub like Wine's.
build/foreign_host_stubcomplete: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	@mkdir -p build
	$(CC) -std=gnu11 -O1 -g $(INCS) $(WARN) -rdynamic -DFH_STUB_COMPLETE -o $@ spec/tools/foreign_host.c -lpthread -ldl

# A broken provider DLL the specs load as a lower layer.
build/test_nullproc.so: spec/tools/nullproc.c src/spi/spi.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) -shared -o $@ spec/tools/nullproc.c

# The native base provider: its own DLL with its own WSPStartup.
build/lwsp_native.so: $(NATIVE_SO_SRCS) $(HDRS) Makefile src/sources.mk
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -shared -o $@ $(NATIVE_SO_SRCS) -lpthread -ldl

build/lwsp.so: $(SRCS) $(HDRS) Makefile src/sources.mk
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -shared -o $@ $(SRCS) $(LUA_LIB) -lpthread -ldl
	@ln -sfn ../lua build/lua
	@nm -D --defined-only $@ | grep -q ' WSPStartup$$' || { echo "WSPStartup is not exported"; exit 1; }

# The host (lwsp's ws2_32 stand-in) and the test kit: a module of their own,
# require "lwsp.host", which shares the runtime's log and trace (host/link.c).
build/lwsp/host.so: $(HOST_SO_SRCS) $(HDRS) Makefile src/sources.mk
	@mkdir -p build/lwsp
	$(CC) $(BASEFLAGS) $(CFLAGS) -DLWSP_HOST_MODULE -shared -o $@ $(HOST_SO_SRCS) $(LUA_LIB) -lpthread -ldl

deps:
	@bash tools/deps.sh test

deps-run:
	@bash tools/deps.sh run

# The main job: a page from a real HTTP server fetched through two Lua layers
# over the native base provider, checked against a direct fetch.
demo: deps-run
	@$(MAKE) --no-print-directory all
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" LUA_CPATH="$(CURDIR)/build/?.so;;" lua5.4 examples/fetch.lua
	@echo; echo "--- the same with real programs: curl and python3 through the chain (docs/preload.md)"; echo
	@bash examples/demo_curl.sh

# A Lua base provider (memnet) with every WSP call it handles printed.
demo-memnet: deps-run
	@$(MAKE) --no-print-directory all
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" LUA_CPATH="$(CURDIR)/build/?.so;;" lua5.4 examples/demo.lua

# Everything CI runs: the suite natively, under ASan/UBSan and valgrind, the
# luarocks install, and the mingw-w64 cross-compile of both Windows targets.
check: deps
	@$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory ldoc
	$(MAKE) --no-print-directory test
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory asan-preload
	$(MAKE) --no-print-directory tsan
	$(MAKE) --no-print-directory helgrind
	$(MAKE) --no-print-directory valgrind
	$(MAKE) --no-print-directory rock
	$(MAKE) --no-print-directory mingw-check
	$(MAKE) --no-print-directory wine-smoke
	$(MAKE) --no-print-directory wine-test
	$(MAKE) --no-print-directory wine-foreign
	$(MAKE) --no-print-directory foreign-loader
	$(MAKE) --no-print-directory wine-loader
	$(MAKE) --no-print-directory wine32
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30
	LWSP_SOAK_SECONDS=20 $(MAKE) --no-print-directory soak
	@echo "lwsp: all checks passed"

test: all
	$(BUSTED)

# Rounds of the last-WSPCleanup stress (spec/23) under each sanitizer (TSan
# runs about 2.5 times slower: fewer rounds keep the two near a minute each).
CLEANUP_ROUNDS ?= 1000
TSAN_CLEANUP_ROUNDS ?= 400

# The cleanup stress alone, long (not part of check; figures in the README):
# make stress STRESS_ROUNDS=10000 (ASan/UBSan), make stress-tsan (TSan)
STRESS_ROUNDS ?= 10000
stress: build/asan/lwsp.so
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LWSP_STRESS_ROUNDS=$(STRESS_ROUNDS) \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" $(BUSTED) --cpath=build/asan/?.so --tags=stress spec/23-hostile_cleanup_spec.lua
stress-tsan: build/tsan/lwsp.so
	$(TSAN_ENV) LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" LWSP_STRESS_ROUNDS=$(STRESS_ROUNDS) \
	  $(BUSTED) --cpath=build/tsan/?.so --tags=stress spec/23-hostile_cleanup_spec.lua

# luacheck (.luacheckrc) over the Lua sources, examples, specs and front ends.
lint:
	luacheck -q lua examples spec bin/lwsp-run bin/lwsp-catalog bin/lwsp-spec bin/lwsp-new

# The Lua API reference from the code's comments (config.ld): build/ldoc/index.html.
# Any warning fails the target.
ldoc:
	@out=$$(lua5.4 /usr/bin/ldoc . 2>&1 | grep -v '^reading configuration\|^format: \|^output written'); \
	  if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; echo "ldoc: build/ldoc/index.html"

# AddressSanitizer + UndefinedBehaviorSanitizer build, suite run against it.
build/asan/lwsp.so: $(SRCS) $(HOST_SO_SRCS) $(NATIVE_SO_SRCS) $(HDRS) Makefile
	@mkdir -p build/asan
	$(CC) $(BASEFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	  -shared -o $@ $(SRCS) $(LUA_LIB) -lpthread -ldl
	@mkdir -p build/asan/lwsp
	$(CC) $(BASEFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	  -DLWSP_HOST_MODULE -shared -o build/asan/lwsp/host.so $(HOST_SO_SRCS) $(LUA_LIB) -lpthread -ldl
	$(CC) $(BASEFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	  -shared -o build/asan/lwsp_native.so $(NATIVE_SO_SRCS) -lpthread -ldl
	@ln -sfn ../../lua build/asan/lua

asan: build/asan/lwsp.so build/foreign_host build/foreign_host_nocomplete
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" $(BUSTED) --cpath=build/asan/?.so --exclude-tags=preload
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LWSP_STRESS_ROUNDS=$(CLEANUP_ROUNDS) \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" $(BUSTED) --cpath=build/asan/?.so --tags=stress spec/23-hostile_cleanup_spec.lua

# ThreadSanitizer build; specs that start subprocesses or thousands of threads
# are left to the other runs (TSan's runtime is preloaded into lua5.4).
build/tsan/lwsp.so: $(SRCS) $(HOST_SO_SRCS) $(NATIVE_SO_SRCS) $(HDRS) Makefile
	@mkdir -p build/tsan
	$(CC) $(BASEFLAGS) -O1 -g $(TSAN_FLAGS) -shared -o $@ $(SRCS) $(LUA_LIB) -lpthread -ldl
	@mkdir -p build/tsan/lwsp
	$(CC) $(BASEFLAGS) -O1 -g $(TSAN_FLAGS) -DLWSP_HOST_MODULE -shared -o build/tsan/lwsp/host.so $(HOST_SO_SRCS) $(LUA_LIB) -lpthread -ldl
	$(CC) $(BASEFLAGS) -O1 -g $(TSAN_FLAGS) -shared -o build/tsan/lwsp_native.so $(NATIVE_SO_SRCS) -lpthread -ldl
	@ln -sfn ../../lua build/tsan/lua

# The TSan builds keep their thread-locals in the static TLS block
# (initial-exec), with room for them made at start-up: a dlopen'ed module's
# thread-locals are otherwise allocated per thread through __tls_get_addr,
# whose interceptor in this TSan runtime guesses a block's size from a header
# older glibcs wrote before it; when a block lands 16 bytes into a page it
# reads garbage there and dies mapping shadow for it ("ThreadSanitizer failed
# to allocate 0x1ec2... bytes"), now and then, in any spec that starts threads.
TSAN_FLAGS = -fsanitize=thread -ftls-model=initial-exec
TSAN_ENV   = GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 TSAN_OPTIONS="halt_on_error=1 exitcode=66"

tsan: build/tsan/lwsp.so build/foreign_host build/foreign_host_nocomplete
	$(TSAN_ENV) LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" \
	  $(BUSTED) --cpath=build/tsan/?.so --exclude-tags=stress,subprocess,runner
	LWSP_FOREIGN_RUNTIME=$(CURDIR)/build/tsan/lwsp.so LWSP_FOREIGN_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" \
	  $(TSAN_ENV) $(BUSTED) spec/26-foreign_host_spec.lua
	$(TSAN_ENV) LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" LWSP_STRESS_ROUNDS=$(TSAN_CLEANUP_ROUNDS) \
	  $(BUSTED) --cpath=build/tsan/?.so --tags=stress spec/23-hostile_cleanup_spec.lua

# The multi-threaded stress spec under valgrind's helgrind (races, lock order).
# Helgrind does not see atomics as synchronisation, so the budget's watchdog
# (src/runtime/budget.c, lock-free by design) is left to the TSan run: LWSP_BUDGET=0.
helgrind: build/lwsp.so
	LWSP_BUDGET=0 LWSP_STRESS_ROUNDS=20 valgrind -q --tool=helgrind --error-exitcode=9 $(BUSTED) --tags=stress spec/11-blocking_spec.lua

# --fair-sched: valgrind runs one thread at a time, and without it a thread
# that spins can keep the others (the budget's watchdog) from ever running.
# The host module is preloaded too, so that lua_close does not unmap it: what
# it still holds at exit (completion packets never dequeued) stays reachable.
valgrind: build/lwsp.so build/lwsp/host.so build/lwsp_native.so build/foreign_host build/foreign_host_nocomplete
	LD_PRELOAD="$(CURDIR)/build/lwsp.so $(CURDIR)/build/lwsp/host.so $(CURDIR)/build/lwsp_native.so" valgrind -q --fair-sched=yes --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
	  --show-leak-kinds=definite $(BUSTED) --exclude-tags=preload

# Installs with luarocks (offline) into build/rock and runs a provider from there.
rock:
	rm -rf build/rock && mkdir -p build/rock/src
	cp -r src lua bin examples docs lwsp-scm-1.rockspec build/rock/src/
	cd build/rock/src && luarocks --lua-version=5.4 --tree=$(CURDIR)/build/rock/tree make lwsp-scm-1.rockspec >/dev/null
	env -u LUA_PATH -u LUA_CPATH lua5.4 -e "package.path='$(CURDIR)/build/rock/tree/share/lua/5.4/?.lua;$(CURDIR)/build/rock/tree/share/lua/5.4/?/init.lua;'..package.path; package.cpath='$(CURDIR)/build/rock/tree/lib/lua/5.4/?.so;'..package.cpath" \
	  tools/rock_smoke.lua $(CURDIR)/build/rock/tree
	cd /tmp && env -u LUA_PATH -u LUA_CPATH LWSP_LOG=off $(CURDIR)/build/rock/tree/bin/lwsp-run --quiet \
	  --base $(CURDIR)/build/rock/tree/lib/luarocks/rocks-5.4/lwsp/scm-1/examples/memnet.lua --run echo --trace \
	  | grep -q 'WPUCreateSocketHandle' && echo "rock smoke: the installed lwsp-run traced memnet"
	d=$$(mktemp -d); cd $$d && env -u LUA_PATH -u LUA_CPATH HOME=$$d $(CURDIR)/build/rock/tree/bin/lwsp-new kit >/dev/null \
	  && env -u LUA_PATH -u LUA_CPATH HOME=$$d $(CURDIR)/build/rock/tree/bin/lwsp-spec -o plainTerminal spec >out.txt 2>&1; \
	  st=$$?; tail -1 $$d/out.txt; cd /; rm -rf $$d; \
	  test $$st = 0 && echo "rock smoke: lwsp-new's template passed its spec under the installed lwsp-spec"

spi-check:
	x86_64-w64-mingw32-gcc -std=gnu11 $(INCS) $(WARN) -c tools/spi_check.c -o /dev/null
	i686-w64-mingw32-gcc -std=gnu11 $(INCS) $(WARN) -c tools/spi_check.c -o /dev/null
	i686-w64-mingw32-gcc -std=gnu11 $(WARN) -c tools/abi32_check.c -o /dev/null   # Windows' 32-bit ABI, at build time

# Compiles every source for both Windows architectures (no Lua DLL needed).
mingw-check: spi-check
	for cc in x86_64-w64-mingw32-gcc i686-w64-mingw32-gcc; do \
	  for f in $(SRCS) $(NATIVE_SRCS) $(NATIVE_WIN_SRCS); do $$cc -std=gnu11 -D__USE_MINGW_ANSI_STDIO=1 -I$(LUA_INC) $(INCS) $(WARN) -O2 -c $$f -o /dev/null || exit 1; done; \
	  for f in $(HOST_SRCS) $(TESTKIT_SRCS); do $$cc -std=gnu11 -D__USE_MINGW_ANSI_STDIO=1 -DLWSP_HOST_MODULE -I$(LUA_INC) $(INCS) $(WARN) -O2 -c $$f -o /dev/null || exit 1; done; done

mingw:
	bash tools/mingw-build.sh

# The x86_64 build under Wine: lua.exe loads lwsp.dll, which finds its script
# through HKLM and runs memnet through lwsp's host.
wine-smoke: mingw
	@dpkg-query -W -f='$${Status}' wine64 2>/dev/null | grep -q "install ok installed" || { apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine64 >/dev/null; }
	WINEPREFIX=$(CURDIR)/build/wine WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY= \
	  LUA_PATH='$(subst /,\,Z:$(CURDIR))\lua\?.lua;$(subst /,\,Z:$(CURDIR))\lua\?\init.lua' \
	  LUA_CPATH='$(subst /,\,Z:$(CURDIR))\build\mingw\x86_64\?.dll' \
	  /usr/lib/wine/wine64 build/mingw/x86_64/lua.exe tools/wine_smoke.lua '$(subst /,\,Z:$(CURDIR))' </dev/null 2>&1 \
	  | tr -d '\r' | grep -v 'configuration\|rundll32' | tee build/wine-smoke.log
	@grep -q '^wine smoke: memnet carried data' build/wine-smoke.log

# The foreign host (spec/tools/foreign_host.c) built for Windows, run by
# spec/26-foreign_host_spec.lua under Wine against the x86_64 lwsp.dll.
MINGW64 = build/mingw/x86_64
$(MINGW64)/foreign_host.exe: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	x86_64-w64-mingw32-gcc -std=gnu11 -O1 $(INCS) $(WARN) -o $@ spec/tools/foreign_host.c -static -lpthread
$(MINGW64)/foreign_host_nocomplete.exe: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	x86_64-w64-mingw32-gcc -std=gnu11 -O1 $(INCS) $(WARN) -DFH_NO_COMPLETE -o $@ spec/tools/foreign_host.c -static -lpthread
wine-foreign: mingw
	@$(MAKE) --no-print-directory $(MINGW64)/foreign_host.exe $(MINGW64)/foreign_host_nocomplete.exe
	WINEPREFIX=$(CURDIR)/build/wine /usr/lib/wine/wineserver -p5   # stays up between the cases' programs
	LWSP_FOREIGN_WINE=1 $(BUSTED) spec/26-foreign_host_spec.lua

# The provider as it ships, loaded by a program of its own from an unrelated
# folder with a clean environment (spec/30-foreign_loader_spec.lua): lwsp.so
# natively, build/mingw/x86_64/provider/lwsp.dll under Wine.
$(MINGW64)/foreign_host_stubcomplete.exe: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	x86_64-w64-mingw32-gcc -std=gnu11 -O1 $(INCS) $(WARN) -DFH_STUB_COMPLETE -o $@ spec/tools/foreign_host.c -static -lpthread
foreign-loader: all
	$(BUSTED) spec/30-foreign_loader_spec.lua
wine-loader: mingw
	@$(MAKE) --no-print-directory $(MINGW64)/foreign_host.exe $(MINGW64)/foreign_host_stubcomplete.exe
	WINEPREFIX=$(CURDIR)/build/wine /usr/lib/wine/wineserver -p5
	LWSP_FOREIGN_WINE=1 $(BUSTED) spec/30-foreign_loader_spec.lua

# The i686 provider tree under Debian's 32-bit Wine (wine32, tools/deps.sh
# test): spec/30 with the i686 programs, and tools/abi32_check.c's stdcall and
# ABI checks of both i686 DLLs.  --kill-at: the host's stdcall export is
# WPUCompleteOverlappedRequest, as ws2_32's is, not ...@20.
MINGW32 = build/mingw/i686
I686_HOST = i686-w64-mingw32-gcc -std=gnu11 -O1 $(INCS) $(WARN) -static -Wl,--kill-at
$(MINGW32)/foreign_host.exe: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	$(I686_HOST) -o $@ spec/tools/foreign_host.c -lpthread
$(MINGW32)/foreign_host_stubcomplete.exe: spec/tools/foreign_host.c src/spi/spi.h src/spi/spi_values.h
	$(I686_HOST) -DFH_STUB_COMPLETE -o $@ spec/tools/foreign_host.c -lpthread
$(MINGW32)/abi32_check.exe: tools/abi32_check.c
	i686-w64-mingw32-gcc -std=gnu11 -O1 $(WARN) -o $@ tools/abi32_check.c
wine32: mingw
	@$(MAKE) --no-print-directory $(MINGW32)/foreign_host.exe $(MINGW32)/foreign_host_stubcomplete.exe $(MINGW32)/abi32_check.exe
	LWSP_FOREIGN_WINE=i686 $(BUSTED) spec/30-foreign_loader_spec.lua

# The busted suite under Wine against the x86_64 build (tools/wine-test.sh).
wine-test: mingw
	bash tools/wine-test.sh

# Benchmarks (not part of check: timing is not a test).  Prints the table
# bench/run.lua measures, then instructions per call from callgrind.
build/cpass.so: bench/cpass.c src/spi/spi.h
	$(CC) $(BASEFLAGS) -O2 -shared -o $@ bench/cpass.c -ldl

BENCH_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" LUA_CPATH="$(CURDIR)/build/?.so;;" \
  LWSP_ROOT=$(CURDIR) LWSP_CPASS_LOWER=$(CURDIR)/build/lwsp_native.so LWSP_CPASS_LOWER_ID=1001

# lwsp with tracing compiled out: the baseline for what tracing costs when off.
build/notrace/lwsp.so: $(SRCS) $(HDRS) Makefile
	@mkdir -p build/notrace
	$(CC) $(BASEFLAGS) $(CFLAGS) -DLWSP_NO_TRACE -shared -o $@ $(SRCS) $(LUA_LIB) -lpthread -ldl
	@ln -sfn ../lwsp_native.so build/notrace/lwsp_native.so

bench: deps all build/cpass.so build/notrace/lwsp.so
	@$(BENCH_ENV) lua5.4 bench/run.lua
	@bash bench/instructions.sh

# spec 30 (real programs through the chain) with the preload library, lwsp.so
# and the native base built with ASan/UBSan (the sanitizer runtime preloaded
# first): the C edge cases and python3 (curl, wget, git and node do not run
# with the sanitizer runtime preloaded, even without lwsp).
build/asan/liblwsp_preload.so: $(PRELOAD_SRCS) src/preload/preload.h Makefile
	@mkdir -p build/asan
	$(CC) -std=gnu11 -fPIC -fvisibility=hidden -I$(LUA_INC) $(WARN) -O1 -g -fno-omit-frame-pointer \
	  -fsanitize=address,undefined -fno-sanitize-recover=all -shared -o $@ $(PRELOAD_SRCS) $(LUA_LIB) -lpthread -ldl
asan-preload: all build/asan/lwsp.so build/asan/liblwsp_preload.so
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LWSP_PRELOAD_LIB=$(CURDIR)/build/asan/liblwsp_preload.so LWSP_PRELOAD_CPATH="$(CURDIR)/build/asan/?.so" \
	  LWSP_PRELOAD_SPEC_ENV="LD_PRELOAD=\"$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)\"" \
	  $(BUSTED) --filter="edge cases" --filter="subprocess python3: " spec/30-preload_spec.lua
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LWSP_PRELOAD_LIB=$(CURDIR)/build/asan/liblwsp_preload.so LWSP_PRELOAD_CPATH="$(CURDIR)/build/asan/?.so" \
	  LWSP_PRELOAD_SPEC_ENV="LD_PRELOAD=\"$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)\"" \
	  $(BUSTED) --filter-out="curl" spec/35-preload_dns_spec.lua

# curl through the preload library: 1 GiB and 10,000 requests, direct vs one passthrough.
bench-preload: all
	@bash bench/preload.sh

clean:
	rm -rf build

# A bounded soak (LWSP_SOAK_SECONDS, 20 s in check) through two Lua layers.
soak: all
	LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" LUA_CPATH="$(CURDIR)/build/?.so;;" LWSP_ROOT=$(CURDIR) \
	  lua5.4 tools/soak.lua

# libFuzzer (clang): the WSP entries of a Lua provider fed arguments from the
# input; the host's application calls driven from Lua; provider scripts built
# from the input.  `make fuzz` runs each for FUZZ_SECONDS (60) from fuzz/corpus.
# The two host-driven targets load lwsp as a shared library (instrumented like
# them), so the host can load it as a provider, as it does outside the fuzzer.
FUZZ_SECONDS ?= 60
FUZZ_SRCS = $(SRCS)
FUZZ_FLAGS = -std=gnu11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -I$(LUA_INC) $(INCS)
build/fuzz_dispatch: fuzz/fuzz_dispatch.c $(SRCS) src/host/host.c src/host/exports.c src/host/kernel.c $(HDRS)
	@mkdir -p build
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer -rdynamic -o $@ fuzz/fuzz_dispatch.c $(FUZZ_SRCS) src/host/host.c src/host/exports.c src/host/kernel.c \
	  $(LUA_LIB) -lpthread -ldl

build/fuzz/lwsp.so: $(SRCS) $(HDRS)
	@mkdir -p build/fuzz
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -fPIC -fvisibility=hidden -shared -o $@ $(FUZZ_SRCS) $(LUA_LIB) -lpthread -ldl
	@ln -sfn ../../lua build/fuzz/lua

build/fuzz/lwsp/host.so: $(HOST_SO_SRCS) $(HDRS)
	@mkdir -p build/fuzz/lwsp
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -fPIC -fvisibility=hidden -DLWSP_HOST_MODULE -shared -o $@ $(HOST_SO_SRCS) $(LUA_LIB) -lpthread -ldl

build/fuzz_host: fuzz/fuzz_host.c build/fuzz/lwsp.so build/fuzz/lwsp/host.so
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ fuzz/fuzz_host.c build/fuzz/lwsp.so -Wl,-rpath,$(CURDIR)/build/fuzz $(LUA_LIB) -lpthread -ldl

build/fuzz_script: fuzz/fuzz_script.c build/fuzz/lwsp.so build/fuzz/lwsp/host.so
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ fuzz/fuzz_script.c build/fuzz/lwsp.so -Wl,-rpath,$(CURDIR)/build/fuzz $(LUA_LIB) -lpthread -ldl

# Each target runs for FUZZ_SECONDS; findings land in build/fuzz-findings.
# fuzz_script leaves out the constructs the instruction budget does not bound
# yet; LWSP_FUZZ_HOLES=1 puts them back (see fuzz/script_driver.lua).
fuzz: build/fuzz_dispatch build/fuzz_host build/fuzz_script
	@mkdir -p fuzz/corpus/dispatch fuzz/corpus/host fuzz/corpus/script build/fuzz-findings
	@ln -sfn ../../lua build/fuzz/lua   # the provider states' trusted module path
	ASAN_OPTIONS=detect_leaks=0 ./build/fuzz_dispatch -max_total_time=$(FUZZ_SECONDS) -max_len=512 -timeout=10 \
	  -artifact_prefix=build/fuzz-findings/ fuzz/corpus/dispatch
	ASAN_OPTIONS=detect_leaks=0 ./build/fuzz_host -max_total_time=$(FUZZ_SECONDS) -max_len=512 -timeout=10 \
	  -artifact_prefix=build/fuzz-findings/ fuzz/corpus/host
	ASAN_OPTIONS=detect_leaks=0 ./build/fuzz_script -max_total_time=$(FUZZ_SECONDS) -max_len=512 -timeout=30 \
	  -artifact_prefix=build/fuzz-findings/ fuzz/corpus/script

# lwsp - build, test and check.  `make` builds build/lwsp.so; `make test` runs
# the busted suite; `make mingw` cross-builds the Windows DLLs (see README).

LUA_INC   ?= /usr/include/lua5.4
LUA_LIB   ?= -llua5.4
CC        ?= cc
CFLAGS    ?= -O2 -g
WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
BASEFLAGS = -std=gnu11 -fPIC -fvisibility=hidden -I$(LUA_INC) -Isrc $(WARN)
SRCS      = src/lwsp.c src/dispatch.c src/upcalls.c src/common.c src/platform.c \
            src/host.c src/hostapi.c src/hostobj.c src/probe.c
HDRS      = $(wildcard src/*.h)
BUSTED    ?= lua5.4 /usr/bin/busted

.PHONY: all test check asan valgrind mingw mingw-check spi-check clean

all: build/lwsp.so

build/lwsp.so: $(SRCS) $(HDRS) Makefile
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -shared -o $@ $(SRCS) $(LUA_LIB) -lpthread -ldl
	@ln -sfn ../lua build/lua
	@nm -D --defined-only $@ | grep -q ' WSPStartup$$' || { echo "WSPStartup is not exported"; exit 1; }

test: build/lwsp.so
	LWSP_CPATH=build $(BUSTED)

# AddressSanitizer + UndefinedBehaviorSanitizer build, suite run against it.
build/asan/lwsp.so: $(SRCS) $(HDRS) Makefile
	@mkdir -p build/asan
	$(CC) $(BASEFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	  -shared -o $@ $(SRCS) $(LUA_LIB) -lpthread -ldl
	@ln -sfn ../../lua build/asan/lua

asan: build/asan/lwsp.so
	LWSP_CPATH=build/asan ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" $(BUSTED)

valgrind: build/lwsp.so
	LWSP_CPATH=build valgrind -q --error-exitcode=9 --leak-check=no --suppressions=tools/valgrind.supp $(BUSTED)

spi-check:
	x86_64-w64-mingw32-gcc -std=gnu11 -Isrc $(WARN) -c tools/spi_check.c -o /dev/null
	i686-w64-mingw32-gcc -std=gnu11 -Isrc $(WARN) -c tools/spi_check.c -o /dev/null

# Compiles every source for both Windows architectures (no Lua DLL needed).
mingw-check: spi-check
	for cc in x86_64-w64-mingw32-gcc i686-w64-mingw32-gcc; do \
	  for f in $(SRCS); do $$cc -std=gnu11 -D__USE_MINGW_ANSI_STDIO=1 -I$(LUA_INC) -Isrc $(WARN) -O2 -c $$f -o /dev/null || exit 1; done; done

mingw:
	bash tools/mingw-build.sh

clean:
	rm -rf build

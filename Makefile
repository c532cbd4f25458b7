# submitd: see README.md. `make run` and `make test` install what is missing first.

CC       ?= cc
PKGS     := libconfuse libmicrohttpd jemalloc libnats
BUILD    := build
PREFIX   ?= /usr
DESTDIR  ?=

VERSION  := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog 2>/dev/null)
COMMIT   := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CPPFLAGS += -D_GNU_SOURCE -Isrc -DSUBMITD_VERSION='"$(VERSION)"' -DSUBMITD_COMMIT='"$(COMMIT)"'
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -fno-strict-aliasing
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Leaf modules shared by the daemon, the bench and the tests.
LIB_SRC  := src/log.c src/proto.c src/mem.c src/buf.c src/net.c src/spool.c
CORE_SRC := $(LIB_SRC) src/ctl.c src/stats.c src/conf.c src/conn.c src/ackq.c src/spoolw.c src/worker.c src/metrics.c src/spoolm.c src/master.c src/proc.c src/forwarder.c
D_SRC    := $(CORE_SRC) src/main.c
B_SRC    := $(LIB_SRC) $(wildcard src/bench/*.c)

obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))

# Rewritten only when the commit changes, so the version strings stay true.
STAMP := $(BUILD)/.version
$(shell mkdir -p $(BUILD); echo '$(VERSION) $(COMMIT)' | cmp -s - $(STAMP) || echo '$(VERSION) $(COMMIT)' >$(STAMP))

.PHONY: all deps run test unit unit-asan bats clean install format format-check
all: $(BUILD)/submitd $(BUILD)/submit-bench $(BUILD)/submit-spool

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h src/bench/*.h) Makefile $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/submitd: $(call obj,$(D_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

# Only the spool leaf: the tool links nothing else (no jemalloc, no logger).
$(BUILD)/submit-spool: $(call obj,src/spool.c src/submit-spool.c)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

$(BUILD)/submit-bench: $(call obj,$(B_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs jemalloc 2>/dev/null) -lm

# Sanitizer build: plain malloc instead of jemalloc (see docs/DESIGN.md).
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan_obj = $(patsubst src/%.c,$(BUILD)/asan/%.o,$(1))
$(BUILD)/asan/%.o: src/%.c $(wildcard src/*.h src/bench/*.h) Makefile $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_PLAIN_MALLOC $(PKG_CFLAGS) -std=gnu11 $(WARN) $(ASAN_FLAGS) -c -o $@ $<

$(BUILD)/asan/submitd: $(call asan_obj,$(D_SRC))
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(shell pkg-config --libs libconfuse libmicrohttpd libnats) -lm

# Test build: the daemon with hooks that only tests use (a worker that hangs on SIGUSR2,
# a 3 s reload wait instead of 120 s).
$(BUILD)/hooks/%.o: src/%.c $(wildcard src/*.h) Makefile $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_TEST_HOOKS $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/submitd-hooks: $(patsubst src/%.c,$(BUILD)/hooks/%.o,$(D_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

# Counting compiled out: `make bench` compares it with the real build.
$(BUILD)/nostats/%.o: src/%.c $(wildcard src/*.h) Makefile $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_NO_STATS $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/submitd-nostats: $(patsubst src/%.c,$(BUILD)/nostats/%.o,$(D_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

deps:
	@tools/deps.sh

# The shipped file with the spool under build/: no root needed, nothing left in /var.
run: deps
	$(MAKE) all
	sed 's|^spool_dir = .*|spool_dir = "$(CURDIR)/$(BUILD)/spool"|' etc/submitd.conf \
		>$(BUILD)/submitd-run.conf
	$(BUILD)/submitd -f -c $(BUILD)/submitd-run.conf

install: all
	install -D -m 0755 $(BUILD)/submitd $(DESTDIR)$(PREFIX)/sbin/submitd
	install -D -m 0755 $(BUILD)/submit-bench $(DESTDIR)$(PREFIX)/bin/submit-bench
	install -D -m 0755 $(BUILD)/submit-spool $(DESTDIR)$(PREFIX)/bin/submit-spool
	install -D -m 0644 etc/submitd.conf $(DESTDIR)/etc/submitd/submitd.conf

# Every C file of the tree; clang-format 14 (Debian 12) reads .clang-format.
FORMAT_SRC = src/*.c src/*.h src/bench/*.c $(wildcard src/bench/*.h) test/unit/*.c test/unit/*.h \
	test/fuzz/*.c test/fuzz/*.h test/nats/*.c test/nats/*.h bench/*.c
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRC)

clean:
	rm -rf $(BUILD)

-include $(wildcard mk/*.mk)

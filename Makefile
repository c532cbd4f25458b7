# submitd: see README.md. `make run` and `make test` install what is missing first.

CC       ?= cc
PKGS     := libconfuse libmicrohttpd jemalloc libnats openssl
BUILD    := build
PREFIX   ?= /usr
DESTDIR  ?=

VERSION  := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog 2>/dev/null)
COMMIT   := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CPPFLAGS += -D_GNU_SOURCE -Isrc
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -fno-strict-aliasing
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Leaf modules shared by the daemon, the bench and the tests.
LIB_SRC  := src/log.c src/proto.c src/proxy.c src/mem.c src/buf.c src/net.c src/crc32c.c src/spool.c src/spool_recover.c src/version.c
CORE_SRC := $(LIB_SRC) src/auth.c src/shmtab.c src/iplimit.c src/ratelimit.c src/transport.c src/tls.c src/ctl.c src/stats.c src/conf.c src/conn.c src/ackq.c src/spoolw.c src/worker.c src/metrics.c src/spoolm.c src/master.c src/listen.c src/proc.c src/fwdnats.c src/fwdchain.c src/forwarder.c
D_SRC    := $(CORE_SRC) src/main.c
B_SRC    := $(LIB_SRC) $(wildcard src/bench/*.c)

# Rewritten only when the commit changes; only version.o depends on it, so a
# commit rebuilds one object per variant, and the version strings stay true.
STAMP := $(BUILD)/.version
$(shell mkdir -p $(BUILD); echo '$(VERSION) $(COMMIT)' | cmp -s - $(STAMP) || echo '$(VERSION) $(COMMIT)' >$(STAMP))

# The object variants of src/: one pattern each, the same header dependencies
# for all (the compiler's, -MMD). VARIANT(dir, compile flags).
#   obj      the daemon, the bench and the tools
#   asan     AddressSanitizer and UBSan, plain malloc (see docs/DESIGN.md)
#   hooks    hooks that only tests use (a worker that hangs on SIGUSR2, a 3 s
#            reload wait instead of 120 s)
#   nostats  counting compiled out: `make bench` compares it with obj
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
define VARIANT
$(BUILD)/$(1)/%.o: src/%.c Makefile
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CPPFLAGS) $$(PKG_CFLAGS) $(2) -MMD -MP -c -o $$@ $$<
$(BUILD)/$(1)/version.o: $(STAMP)
$(BUILD)/$(1)/version.o: CPPFLAGS += -DSUBMITD_VERSION='"$$(VERSION)"' -DSUBMITD_COMMIT='"$$(COMMIT)"'
-include $$(wildcard $(BUILD)/$(1)/*.d $(BUILD)/$(1)/bench/*.d)
endef
$(eval $(call VARIANT,obj,$$(CFLAGS)))
$(eval $(call VARIANT,asan,-DSUBMITD_PLAIN_MALLOC -std=gnu11 $$(WARN) $$(ASAN_FLAGS)))
$(eval $(call VARIANT,hooks,-DSUBMITD_TEST_HOOKS $$(CFLAGS)))
$(eval $(call VARIANT,nostats,-DSUBMITD_NO_STATS $$(CFLAGS)))
obj      = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))
asan_obj = $(patsubst src/%.c,$(BUILD)/asan/%.o,$(1))

.PHONY: all tools deps run test unit unit-asan bats clean install format format-check
all: $(BUILD)/submitd $(BUILD)/submit-bench $(BUILD)/submit-spool

$(BUILD)/submitd: $(call obj,$(D_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

# Only the spool leaves: the tool links nothing else (no jemalloc, no logger).
$(BUILD)/submit-spool: $(call obj,src/crc32c.c src/spool.c src/spool_recover.c src/version.c src/submit-spool.c)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

$(BUILD)/submit-bench: $(call obj,$(B_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs jemalloc openssl 2>/dev/null) -lm

$(BUILD)/asan/submitd: $(call asan_obj,$(D_SRC))
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(shell pkg-config --libs libconfuse libmicrohttpd libnats openssl) -lm

$(BUILD)/submitd-hooks: $(patsubst src/%.c,$(BUILD)/hooks/%.o,$(D_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/submitd-nostats: $(patsubst src/%.c,$(BUILD)/nostats/%.o,$(D_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

# The test and bench helpers (the mk/*.mk files add theirs): built by the
# targets that use them, never by `make all` or installed.
tools:

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

# Tests: C unit tests of the leaf modules (plain and under ASan+UBSan), and
# the bats suites that drive the real binary. `make test` runs them all and
# ends with one "N passed, N failed" line.

UNIT_SRC       := $(wildcard test/unit/test_*.c)
UNIT_BIN       := $(patsubst test/unit/%.c,$(BUILD)/test/%,$(UNIT_SRC))
UNIT_ASAN_BIN  := $(patsubst test/unit/%.c,$(BUILD)/asan/test/%,$(UNIT_SRC))
UNIT_HDR       := $(wildcard test/unit/*.h) $(wildcard src/*.h src/bench/*.h)

# What each unit test links: the leaf modules, plus UNIT_SRC_<test> where
# it needs more, and the libraries in UNIT_LIBS_<test>.
UNIT_SRC_test_metrics := src/stats.c src/metrics.c
UNIT_LIBS_test_metrics = $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
UNIT_SRC_test_hist    := src/bench/hist.c
UNIT_SRC_test_ackq    := src/ctl.c src/stats.c src/transport.c src/auth.c src/shmtab.c src/ratelimit.c src/conn.c src/ackq.c
UNIT_LIBS_test_ackq    = $(shell pkg-config --libs libcrypto 2>/dev/null)
UNIT_SRC_test_ctl_pos := src/ctl.c
UNIT_SRC_test_iplimit := src/shmtab.c src/iplimit.c
UNIT_SRC_test_ratelimit := src/shmtab.c src/ratelimit.c
# tls.c with conf.c for conf_user_may (tls_check's user test).
UNIT_SRC_test_tls     := src/auth.c src/conf.c src/transport.c src/tls.c
UNIT_LIBS_test_tls     = $(shell pkg-config --libs openssl libconfuse 2>/dev/null)
# conf.c is compiled into its test (#include), which replaces conf.c's own
# allocations (not libconfuse's) to make each of them fail in turn.
UNIT_DEP_test_conf    := src/conf.c
UNIT_SRC_test_conf    := src/auth.c
UNIT_LIBS_test_conf    = $(shell pkg-config --libs libconfuse libcrypto 2>/dev/null)
UNIT_SRC_test_auth    := src/auth.c
UNIT_LIBS_test_auth    = $(shell pkg-config --libs libcrypto 2>/dev/null)
unit_src = $(LIB_SRC) $(UNIT_SRC_$(1))

.SECONDEXPANSION:
$(BUILD)/test/%: test/unit/%.c $(UNIT_HDR) $$(UNIT_DEP_$$*) $$(call obj,$$(call unit_src,$$*))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Itest/unit -o $@ $< \
		$(call obj,$(call unit_src,$*)) $(UNIT_LIBS_$*) \
		$(shell pkg-config --libs jemalloc 2>/dev/null) -lm

$(BUILD)/asan/test/%: test/unit/%.c $(UNIT_HDR) $$(UNIT_DEP_$$*) $$(call asan_obj,$$(call unit_src,$$*))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_PLAIN_MALLOC -std=gnu11 $(WARN) $(ASAN_FLAGS) -Itest/unit \
		-o $@ $< $(call asan_obj,$(call unit_src,$*)) $(UNIT_LIBS_$*) -lm

.PHONY: unit-build unit-asan-build check-layers
check-layers: all
	tools/check-layers.sh
unit-build: $(UNIT_BIN)
unit-asan-build: $(UNIT_ASAN_BIN)

# Recursion: pkg-config and the wildcards are evaluated only after deps ran.
# The format check comes first: it takes a second, the suites take minutes.
test: deps
	@$(MAKE) -s format-check || { \
		echo "make test: format-check failed (above): run 'make format' and commit the result" >&2; \
		exit 1; }
	$(MAKE) all tools unit-build unit-asan-build $(BUILD)/submitd-hooks $(BUILD)/asan/submitd
	tools/check-layers.sh
	test/run-tests.sh

unit: deps
	$(MAKE) unit-build
	test/run-tests.sh --unit

unit-asan: deps
	$(MAKE) unit-asan-build
	test/run-tests.sh --asan

bats: deps
	$(MAKE) all tools $(BUILD)/submitd-hooks $(BUILD)/asan/submitd
	test/run-tests.sh --bats

# test/spool-tool.bats writes its segments with the writer API through this,
# so the tool under test is not also the source of its input.
SPOOL_GEN := $(BUILD)/test/spool-gen
$(SPOOL_GEN): test/unit/spool_gen.c src/spool.h $(call obj,src/crc32c.c src/spool.c src/spool_recover.c)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(call obj,src/crc32c.c src/spool.c src/spool_recover.c)
tools: $(SPOOL_GEN)

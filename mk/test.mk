# Tests: C unit tests of the leaf modules (plain and under ASan+UBSan), and
# the bats suites that drive the real binary. `make test` runs them all and
# ends with one "N passed, N failed" line.

UNIT_SRC       := $(wildcard test/unit/test_*.c)
UNIT_BIN       := $(patsubst test/unit/%.c,$(BUILD)/test/%,$(UNIT_SRC))
UNIT_ASAN_BIN  := $(patsubst test/unit/%.c,$(BUILD)/asan/test/%,$(UNIT_SRC))
UNIT_HDR       := $(wildcard test/unit/*.h) $(wildcard src/*.h)

$(BUILD)/test/%: test/unit/%.c $(UNIT_HDR) $(call obj,$(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Itest/unit -o $@ $< $(call obj,$(LIB_SRC)) \
		$(shell pkg-config --libs jemalloc 2>/dev/null) -lm

$(BUILD)/asan/test/%: test/unit/%.c $(UNIT_HDR) $(call asan_obj,$(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_PLAIN_MALLOC -std=gnu11 $(WARN) $(ASAN_FLAGS) -Itest/unit \
		-o $@ $< $(call asan_obj,$(LIB_SRC)) -lm

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
	$(MAKE) all unit-build unit-asan-build $(BUILD)/submitd-hooks $(BUILD)/asan/submitd
	tools/check-layers.sh
	test/run-tests.sh

unit: deps
	$(MAKE) unit-build
	test/run-tests.sh --unit

unit-asan: deps
	$(MAKE) unit-asan-build
	test/run-tests.sh --asan

bats: deps
	$(MAKE) all $(BUILD)/submitd-hooks $(BUILD)/asan/submitd
	test/run-tests.sh --bats

# The metrics renderer needs the stats module and libmicrohttpd besides the leaf modules.
METRICS_TEST_SRC := $(LIB_SRC) src/stats.c src/metrics.c
$(BUILD)/test/test_metrics: test/unit/test_metrics.c $(UNIT_HDR) $(call obj,$(METRICS_TEST_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Itest/unit -o $@ $< $(call obj,$(METRICS_TEST_SRC)) \
		$(PKG_LIBS) -lm

$(BUILD)/asan/test/test_metrics: test/unit/test_metrics.c $(UNIT_HDR) $(call asan_obj,$(METRICS_TEST_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_PLAIN_MALLOC -std=gnu11 $(WARN) $(ASAN_FLAGS) -Itest/unit \
		-o $@ $< $(call asan_obj,$(METRICS_TEST_SRC)) $(shell pkg-config --libs libmicrohttpd) -lm

# test/spool-tool.bats writes its segments with the writer API through this,
# so the tool under test is not also the source of its input.
SPOOL_GEN := $(BUILD)/test/spool-gen
$(SPOOL_GEN): test/unit/spool_gen.c src/spool.h $(call obj,src/spool.c)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(call obj,src/spool.c)
unit-build: $(SPOOL_GEN)
bats: $(SPOOL_GEN)

# submit-bench's histogram (test_hist) needs src/bench/hist.c besides the leaf modules.
HIST_TEST_SRC := $(LIB_SRC) src/bench/hist.c
$(BUILD)/test/test_hist: test/unit/test_hist.c $(UNIT_HDR) src/bench/hist.h $(call obj,$(HIST_TEST_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Itest/unit -o $@ $< $(call obj,$(HIST_TEST_SRC)) \
		$(shell pkg-config --libs jemalloc 2>/dev/null) -lm

$(BUILD)/asan/test/test_hist: test/unit/test_hist.c $(UNIT_HDR) src/bench/hist.h $(call asan_obj,$(HIST_TEST_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_PLAIN_MALLOC -std=gnu11 $(WARN) $(ASAN_FLAGS) -Itest/unit \
		-o $@ $< $(call asan_obj,$(HIST_TEST_SRC)) -lm

# conf.c is compiled into its test, which replaces conf.c's own allocations
# (not libconfuse's) to make each of them fail in turn.
$(BUILD)/test/test_conf: test/unit/test_conf.c src/conf.c $(UNIT_HDR) $(call obj,$(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Itest/unit -o $@ $< $(call obj,$(LIB_SRC)) \
		$(shell pkg-config --libs libconfuse jemalloc 2>/dev/null) -lm

$(BUILD)/asan/test/test_conf: test/unit/test_conf.c src/conf.c $(UNIT_HDR) $(call asan_obj,$(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSUBMITD_PLAIN_MALLOC -std=gnu11 $(WARN) $(ASAN_FLAGS) -Itest/unit \
		-o $@ $< $(call asan_obj,$(LIB_SRC)) $(shell pkg-config --libs libconfuse) -lm

# Fuzzing and sanitizer runs (docs/SECURITY.md):
#   make fuzz          each libFuzzer target for FUZZ_SECONDS (60) from the corpus
#   make fuzz-smoke    each for 30 s (make test runs it)
#   make test-asan     the protocol, limits and workers suites against build/asan/submitd
# New inputs the fuzzer finds go to build/fuzz/corpus/, crashes to
# build/fuzz/artifacts/; test/fuzz/corpus/ is only read.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -DSUBMITD_PLAIN_MALLOC
FUZZ_TARGETS := proto conn proxy
FUZZ_SRC_proto := src/proto.c
FUZZ_SRC_proxy := src/proxy.c
# conn's TLS mode: the daemon's tls.c, without conf.c (the target stubs conf_user_may).
FUZZ_SRC_conn  := src/conn.c src/auth.c src/shmtab.c src/ratelimit.c src/proxy.c src/transport.c src/tls.c src/buf.c src/mem.c src/proto.c src/stats.c
FUZZ_LIBS_conn  = $(shell pkg-config --libs openssl 2>/dev/null || echo -lssl -lcrypto)
# conn: room for frames a few times the smallest pool chunk.
FUZZ_ARGS_proto := -max_len=4100
FUZZ_ARGS_proxy := -max_len=1100
FUZZ_ARGS_conn  := -max_len=16384

.PHONY: fuzz fuzz-smoke fuzz-build test-asan
fuzz-build: $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))

# The sources a target compiles are prerequisites too: a change in src/ rebuilds it.
.SECONDEXPANSION:
$(BUILD)/fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h $(wildcard src/*.h) mk/fuzz.mk $$(FUZZ_SRC_$$*)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -std=gnu11 $(WARN) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRC_$*) $(FUZZ_LIBS_$*)

# One target after the other: the machine has few cores and other work on them.
define fuzz_run
	@mkdir -p $(BUILD)/fuzz/corpus/$(1) $(BUILD)/fuzz/artifacts
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(BUILD)/fuzz/fuzz_$(1) -max_total_time=$(2) -timeout=10 -print_final_stats=1 \
		-artifact_prefix=$(BUILD)/fuzz/artifacts/$(1)- $(FUZZ_ARGS_$(1)) \
		$(BUILD)/fuzz/corpus/$(1) test/fuzz/corpus/$(1)

endef

fuzz: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_SECONDS)))

fuzz-smoke: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),30))

# The bats suites against the sanitizer build. Workers leave with exit(),
# so leak checking is off; any sanitizer report in a log fails the run.
ASAN_SUITES ?= test/protocol.bats test/limits.bats test/workers.bats test/tls.bats test/proxy.bats test/auth.bats test/ratelimit.bats
test-asan: deps
	$(MAKE) all $(BUILD)/asan/submitd
	test/fuzz/run-asan.sh $(ASAN_SUITES)

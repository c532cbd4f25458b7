# submit-bench's reference server and the benchmark targets: make bench,
# make bench-spool, make bench-tls, make bench-auth, make profile, make callgrind (docs/BENCHMARKS.md).

REF_OBJ := $(call obj,$(LIB_SRC))

tools: $(BUILD)/submit-ref

$(BUILD)/submit-ref: bench/ref-server.c $(REF_OBJ) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -o $@ bench/ref-server.c $(REF_OBJ) \
		$(shell pkg-config --libs jemalloc 2>/dev/null) -lm

.PHONY: bench bench-spool bench-tls bench-auth profile callgrind
bench: deps
	$(MAKE) all tools $(BUILD)/submitd-nostats
	bench/run.sh
	st=0; bench/nats.sh || st=1; bench/thresholds.sh || st=1; bench/spool.sh || st=1; \
		bench/tls.sh || st=1; bench/auth.sh || st=1; exit $$st

# The spool's ratios alone (docs/BENCHMARKS.md, "The spool").
bench-spool: deps
	$(MAKE) all tools
	bench/spool.sh

# auth = token and max_connections_per_ip against neither.
bench-auth: deps
	$(MAKE) all
	bench/auth.sh

# TLS: native and HAProxy against plaintext, handshakes, a stalled-handshake flood.
bench-tls: deps
	$(MAKE) all
	bench/tls.sh

profile: deps
	$(MAKE) all tools
	bench/profile.sh

callgrind: deps
	$(MAKE) all tools
	bench/callgrind.sh

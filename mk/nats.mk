# The NATS forwarder's test tool: reads a whole stream and checks it against
# a submit-bench --ack-log (test/nats.bats). Built by `make tools`.
NATS_VERIFY := $(BUILD)/test/nats-verify

tools: $(NATS_VERIFY)

# test/nats/natstool.c: the options and the connection both NATS tools share.
NATS_TOOL := test/nats/natstool.c test/nats/natstool.h

$(NATS_VERIFY): test/nats/nats-verify.c $(NATS_TOOL) Makefile mk/nats.mk
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(shell pkg-config --cflags libnats) $(CFLAGS) -o $@ $(filter %.c,$^) \
		$(shell pkg-config --libs libnats)

# The reference for the forwarder's rate (bench/nats.sh).
NATS_REF := $(BUILD)/nats-ref
tools: $(NATS_REF)

$(NATS_REF): bench/nats-ref.c $(NATS_TOOL) Makefile mk/nats.mk
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itest/nats $(shell pkg-config --cflags libnats) $(CFLAGS) -o $@ \
		$(filter %.c,$^) $(shell pkg-config --libs libnats)

# The forwarder against nats-ref on one local nats-server (docs/SCALING.md).
.PHONY: bench-nats
bench-nats: deps
	$(MAKE) all tools
	bench/nats.sh

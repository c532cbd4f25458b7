# The NATS forwarder's test tool: reads a whole stream and checks it against
# a submit-bench --ack-log (test/nats.bats). Built with `make all`.
NATS_VERIFY := $(BUILD)/test/nats-verify

all: $(NATS_VERIFY)

$(NATS_VERIFY): test/nats/nats-verify.c Makefile mk/nats.mk
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(shell pkg-config --cflags libnats) $(CFLAGS) -o $@ $< \
		$(shell pkg-config --libs libnats)

# The reference for the forwarder's rate (bench/nats.sh).
NATS_REF := $(BUILD)/nats-ref
all: $(NATS_REF)

$(NATS_REF): bench/nats-ref.c Makefile mk/nats.mk
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(shell pkg-config --cflags libnats) $(CFLAGS) -o $@ $< \
		$(shell pkg-config --libs libnats)

# The forwarder against nats-ref on one local nats-server (docs/SCALING.md).
.PHONY: bench-nats
bench-nats: deps
	$(MAKE) all
	bench/nats.sh

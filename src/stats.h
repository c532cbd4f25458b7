/*
 * Shared-memory statistics: the counters /metrics shows. The master maps
 * one segment before forking: a header, the control block (ctl.h: what the
 * processes tell each other, not counters) and a pool of cache-line-aligned
 * counter slots. Each worker writes only its own slot, without locks; the
 * master only reads them, and folds a slot's counters into its own totals
 * when the worker is gone, so no counter ever goes down.
 */
#ifndef SUBMITD_STATS_H
#define SUBMITD_STATS_H

#include "ctl.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Every worker counter, defined once: field, metric family (without the
 * submitd_ prefix), extra labels, help text of the family.
 */
#define STATS_COUNTERS(X)                                                                          \
	X(req_submit, "req_recv_total", "cmd=\"submit\"", "Requests received, by command.")        \
	X(req_conn, "req_recv_total", "cmd=\"conn\"", "")                                          \
	X(rsp_submit, "rsp_send_total", "cmd=\"submit\"", "Acks sent, by command.")                \
	X(rsp_conn, "rsp_send_total", "cmd=\"conn\"", "")                                          \
	X(accepted, "connections_accepted_total", "", "Client connections accepted.")              \
	X(closed_client, "connections_closed_total", "reason=\"client\"",                          \
	  "Client connections closed, by reason.")                                                 \
	X(closed_idle, "connections_closed_total", "reason=\"idle\"", "")                          \
	X(closed_protocol, "connections_closed_total", "reason=\"protocol\"", "")                  \
	X(closed_limit, "connections_closed_total", "reason=\"limit\"", "")                        \
	X(closed_shutdown, "connections_closed_total", "reason=\"shutdown\"", "")                  \
	X(closed_error, "connections_closed_total", "reason=\"error\"", "")                        \
	X(closed_send_timeout, "connections_closed_total", "reason=\"send_timeout\"", "")          \
	X(closed_handshake, "connections_closed_total", "reason=\"handshake\"", "")                \
	X(closed_proxy, "connections_closed_total", "reason=\"proxy\"", "")                        \
	X(closed_auth, "connections_closed_total", "reason=\"auth\"", "")                          \
	X(closed_limit_ip, "connections_closed_total", "reason=\"limit_ip\"", "")                  \
	X(ip_untracked, "connections_ip_untracked_total", "",                                      \
	  "Connections let in without a max_connections_per_ip count: no free entry near their "   \
	  "address in the shared table.")                                                          \
	X(rate_limited, "rate_limited_submits_total", "",                                          \
	  "Submits refused with result 1 (not stored): their client, by identity or else by "      \
	  "address, was over rate_limit.")                                                         \
	X(rate_untracked, "rate_limit_untracked_submits_total", "",                                \
	  "Submits let in without a rate_limit check: no free entry near their client in the "     \
	  "shared table.")                                                                         \
	X(perr_frame_too_short, "protocol_errors_total", "reason=\"frame_too_short\"",             \
	  "Protocol errors, by reason; each closes its connection.")                               \
	X(perr_frame_too_large, "protocol_errors_total", "reason=\"frame_too_large\"", "")         \
	X(perr_unknown_command, "protocol_errors_total", "reason=\"unknown_command\"", "")         \
	X(perr_body_too_short, "protocol_errors_total", "reason=\"body_too_short\"", "")           \
	X(bytes_recv, "received_bytes_total", "", "Bytes read from clients.")                      \
	X(bytes_sent, "sent_bytes_total", "", "Bytes written to clients.")                         \
	X(accept_errors, "accept_errors_total", "",                                                \
	  "accept() failures other than EAGAIN (EMFILE, ENFILE, ENOMEM...).")                      \
	X(ack_result_0, "submit_acks_total", "result=\"0\"",                                       \
	  "SubmitAcks sent, by result: 0 accepted (stored as spool_sync promises), 1 refused, "    \
	  "2 not stored, 3 not authorized.")                                                       \
	X(ack_result_1, "submit_acks_total", "result=\"1\"", "")                                   \
	X(ack_result_2, "submit_acks_total", "result=\"2\"", "")                                   \
	X(ack_result_3, "submit_acks_total", "result=\"3\"", "")                                   \
	X(spool_records, "spool_records_total", "", "Records written to the spool.")               \
	X(spool_bytes, "spool_written_bytes_total", "",                                            \
	  "Bytes of records (headers and payloads) written to the spool.")                         \
	X(spool_fsyncs, "spool_fsyncs_total", "", "fdatasync calls on spool segments.")            \
	X(spool_sealed, "spool_segments_sealed_total", "",                                         \
	  "Segments sealed and handed over into ready/.")                                          \
	X(spool_suspect, "spool_segments_suspect_total", "",                                       \
	  "Segments set aside in suspect/ after a failed fdatasync or seal.")                      \
	X(spool_dropped_segments, "spool_dropped_segments_total", "",                              \
	  "Ready segments deleted at the bound (spool_full = drop_oldest): acked data lost.")      \
	X(spool_dropped_bytes, "spool_dropped_bytes_total", "",                                    \
	  "Bytes of the ready segments deleted at the bound.")                                     \
	X(spool_fail_nospace, "spool_failures_total", "reason=\"nospace\"",                        \
	  "Spool failures, by reason; each fails a batch (result 2) or a segment.")                \
	X(spool_fail_write, "spool_failures_total", "reason=\"write\"", "")                        \
	X(spool_fail_fsync, "spool_failures_total", "reason=\"fsync\"", "")                        \
	X(spool_fail_open, "spool_failures_total", "reason=\"open\"", "")                          \
	X(spool_fail_seal, "spool_failures_total", "reason=\"seal\"", "")                          \
	X(spool_fail_full, "spool_failures_total", "reason=\"full\"", "")                          \
	X(tls_hs_ok, "tls_handshakes_total", "result=\"ok\"",                                      \
	  "TLS handshakes on tls:// listeners, by result; every failure closes its connection.")   \
	X(tls_hs_timeout, "tls_handshakes_total", "result=\"timeout\"", "")                        \
	X(tls_hs_not_tls, "tls_handshakes_total", "result=\"not_tls\"", "")                        \
	X(tls_hs_no_certificate, "tls_handshakes_total", "result=\"no_certificate\"", "")          \
	X(tls_hs_bad_certificate, "tls_handshakes_total", "result=\"bad_certificate\"", "")        \
	X(tls_hs_protocol, "tls_handshakes_total", "result=\"protocol\"", "")                      \
	X(tls_hs_closed, "tls_handshakes_total", "result=\"closed\"", "")                          \
	X(tls_resumed, "tls_resumed_handshakes_total", "",                                         \
	  "TLS handshakes that resumed a session by ticket (of the ok ones).")                     \
	X(proxy_v1, "proxy_headers_total", "version=\"1\"",                                        \
	  "PROXY protocol headers accepted from proxy_protocol_from, by version.")                 \
	X(proxy_v2, "proxy_headers_total", "version=\"2\"", "")                                    \
	X(proxy_malformed, "proxy_header_failures_total", "reason=\"malformed\"",                  \
	  "Connections closed for their PROXY header, by reason: malformed, a header from "        \
	  "outside "                                                                               \
	  "proxy_protocol_from (untrusted), none within tls_handshake_timeout (timeout), closed "  \
	  "before it was complete (closed).")                                                      \
	X(proxy_untrusted, "proxy_header_failures_total", "reason=\"untrusted\"", "")              \
	X(proxy_timeout, "proxy_header_failures_total", "reason=\"timeout\"", "")                  \
	X(proxy_closed, "proxy_header_failures_total", "reason=\"closed\"", "")                    \
	X(auth_token, "authenticated_connections_total", "method=\"token\"",                       \
	  "Connections authenticated, by method (auth).")                                          \
	X(auth_certificate, "authenticated_connections_total", "method=\"certificate\"", "")       \
	X(authf_no_conn, "auth_failures_total", "reason=\"no_conn\"",                              \
	  "Connections refused with result 3, by reason: a Submit before a Conn that "             \
	  "authenticated (no_conn), a Conn whose token is wrong or missing (bad_token), no Conn "  \
	  "within auth_timeout (timeout), a client certificate without the identity tls_identity " \
	  "names (no_identity).")                                                                  \
	X(authf_bad_token, "auth_failures_total", "reason=\"bad_token\"", "")                      \
	X(authf_timeout, "auth_failures_total", "reason=\"timeout\"", "")                          \
	X(authf_no_identity, "auth_failures_total", "reason=\"no_identity\"", "")

enum stats_counter {
#define STATS_ENUM(f, fam, lab, help) STATS_##f,
	STATS_COUNTERS(STATS_ENUM)
#undef STATS_ENUM
	    STATS_NCOUNTERS
};

/* Buckets of the write batch histogram (acks per write call); +Inf last. */
#define STATS_BATCH_BOUNDS                                                                         \
	{                                                                                          \
		1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096                                  \
	}
#define STATS_NBATCH 13

/* Buckets of the fdatasync latency histogram, in microseconds; +Inf last. */
#define STATS_FSYNC_BOUNDS                                                                         \
	{                                                                                          \
		100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000      \
	}
#define STATS_NFSYNC 13

/* Buckets of the forward latency histogram (spool write to PubAck), in microseconds; +Inf last. */
#define STATS_FWD_BOUNDS                                                                           \
	{                                                                                          \
		500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,      \
		    30000000                                                                       \
	}
#define STATS_NFWD 13

/* Buckets of the TLS handshake duration histogram, in microseconds; +Inf last. */
#define STATS_HS_BOUNDS                                                                            \
	{                                                                                          \
		500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,       \
		    2500000                                                                        \
	}
#define STATS_NHS 13

#define STATS_MAX_SLOTS CTL_MAX_SLOTS

/* The NATS forwarder's figures (docs/NATS.md); written by the forwarder only. */
enum stats_fwd_state {
	STATS_FWD_OFF = 0,	/* no nats_servers */
	STATS_FWD_CONNECTING,	/* never connected since it started */
	STATS_FWD_CONNECTED,	/* connected, the stream checked */
	STATS_FWD_DISCONNECTED, /* lost the connection: libnats reconnects */
	STATS_FWD_NO_STREAM,	/* connected, the stream is missing */
	STATS_FWD_REFUSED,	/* the server refused us (credentials, TLS, permissions) */
};
struct stats_fwd {
	uint64_t published;    /* publishes sent (retries included) */
	uint64_t acked;	       /* PubAcks received (duplicates included) */
	uint64_t duplicates;   /* PubAcks with Duplicate set: resends the stream dropped */
	uint64_t failed;       /* publishes that came back with an error */
	uint64_t retried;      /* records published again after an error */
	uint64_t segments;     /* segments forwarded whole and deleted */
	uint64_t inflight;     /* gauge: published, not yet acknowledged */
	uint64_t lag_bytes;    /* gauge: bytes of records in the spool not yet in the stream */
	uint64_t lag_segments; /* gauge: segments with records not yet in the stream */
	uint64_t lag_records;  /* gauge: records not yet in the stream (docs/METRICS.md) */
	uint64_t oldest_ns;    /* gauge: CLOCK_REALTIME of the oldest record not in the stream, 0 */
	uint64_t state;	       /* enum stats_fwd_state */
	uint64_t state_since_ms;  /* CLOCK_MONOTONIC ms of the last change of state */
	uint64_t connects;	  /* connections made (the first and every reconnect) */
	uint64_t errors_conn;	  /* connect attempts that failed */
	uint64_t lat[STATS_NFWD]; /* spool write to PubAck, first acks only */
	uint64_t lat_sum_us;
	uint64_t starts; /* forwarder processes started (written by the master) */
};

/*
 * Who is connected to a worker (/status), written by it once a second:
 * the open connections that authenticated, how many identities they are,
 * and the STATS_TOP_IDENTITIES with the most connections. A seqlock: seq
 * is odd while the worker writes; a reader copies, then checks seq again.
 */
#define STATS_TOP_IDENTITIES 5
#define STATS_IDENTITY_LEN   129 /* an identity (auth.h's 128 bytes) and its NUL */
struct stats_idents {
	uint32_t seq;
	uint32_t authenticated;
	uint32_t distinct; /* identities among them; STATS_IDENTS_COUNTED at most */
	uint32_t n;	   /* entries in top */
	struct {
		uint32_t conns;
		char name[STATS_IDENTITY_LEN];
	} top[STATS_TOP_IDENTITIES];
};
#define STATS_IDENTS_COUNTED 4096

struct stats_slot {
	uint64_t c[STATS_NCOUNTERS];
	uint64_t batch[STATS_NBATCH];
	uint64_t batch_sum;		 /* acks written; batch count is the sum of batch[] */
	uint64_t fsync_us[STATS_NFSYNC]; /* fdatasync latency */
	uint64_t fsync_us_sum;
	uint64_t fsync_recs[STATS_NBATCH]; /* records covered per fdatasync */
	uint64_t fsync_recs_sum;
	uint64_t tls_hs_us[STATS_NHS]; /* accept to handshake done, the ok ones */
	uint64_t tls_hs_us_sum;
	int64_t connected;
	int64_t tls_open[2]; /* gauges: established TLS connections, [0] TLS 1.2, [1] TLS 1.3 */
	uint64_t allocated;  /* bytes in the worker's arena */
	struct stats_idents idents;
} __attribute__((aligned(64)));

struct stats_shm {
	uint64_t magic;
	uint32_t nslots;
	struct ctl ctl; /* the control block, not counters (ctl.h) */
	/* The spool as the master last scanned it (docs/SPOOL.md). */
	uint64_t spool_ready_segments;
	uint64_t spool_oldest_ready_ns; /* created_ns of the oldest in ready/, 0 none */
	uint64_t spool_recovered;	/* segments recovered (sealed) after a dead writer */
	uint64_t spool_truncated;	/* of those, with a torn tail cut off */
	uint64_t spool_truncated_bytes;
	uint64_t spool_quarantined; /* corrupt in the middle, or a bad header */
	uint64_t spool_removed;	    /* no whole record: deleted */
	struct stats_fwd fwd;
	struct stats_slot slot[];
};

/* Map the segment (MAP_SHARED|MAP_ANONYMOUS): call in the master before forking. */
struct stats_shm *stats_map(char *err, size_t errlen);

/* Relaxed single-writer updates: plain loads and stores, no lock prefix. */
#define STATS_LOAD(x)	  __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STATS_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define STATS_ADD(x, n)	  STATS_STORE(x, STATS_LOAD(x) + (n))

/* SUBMITD_NO_STATS compiles the hot-path counting out, to measure what it costs. */
static inline void stats_add(struct stats_slot *s, enum stats_counter c, uint64_t n)
{
#ifndef SUBMITD_NO_STATS
	STATS_ADD(s->c[c], n);
#else
	(void)s;
	(void)c;
	(void)n;
#endif
}

void stats_batch(struct stats_slot *s, uint64_t acks);
/* A handshake that completed after us microseconds. */
void stats_handshake(struct stats_slot *s, uint64_t us);
/* One fdatasync that took us microseconds and covered recs records. */
void stats_fsync(struct stats_slot *s, uint64_t us, uint64_t recs);

/*
 * The spool's bytes as far as shared memory knows them: the master's last
 * scan plus what the live workers wrote (less what they dropped) since.
 */
uint64_t stats_spool_used(const struct stats_shm *shm);

/* The control slot of the worker that owns counter slot s (and writes both). */
static inline struct ctl_slot *stats_ctl(const struct stats_shm *shm, struct stats_slot *s)
{
	return (struct ctl_slot *)&shm->ctl.slot[s - shm->slot];
}

/* Reset a slot for a new worker (master, before fork). */
void stats_slot_reset(struct stats_slot *s);
/* Add a slot's counters (not gauges) into an accumulator. */
void stats_fold(struct stats_slot *acc, const struct stats_slot *s);

#endif

/*
 * Configuration: the libconfuse schema, parsing and validation into a plain
 * struct. Nothing else in the project calls libconfuse.
 */
#ifndef SUBMITD_CONF_H
#define SUBMITD_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "auth.h"
#include "net.h"
#include "proxy.h"

#define CONF_DEFAULT_PATH   "/etc/submitd/submitd.conf"
#define CONF_MAX_LISTEN	    16
#define CONF_MAX_WORKERS    256
#define CONF_MAX_PROXY_FROM 64
#define CONF_MAX_SIZE	    (1024 * 1024) /* bytes: a config file is text, not data */

enum conf_spool_sync { CONF_SYNC_ALWAYS, CONF_SYNC_INTERVAL, CONF_SYNC_NONE };
enum conf_spool_full { CONF_FULL_REFUSE, CONF_FULL_DROP_OLDEST };
enum conf_ack_after { CONF_ACK_SPOOL, CONF_ACK_STREAM };
enum conf_retention { CONF_RET_LIMITS, CONF_RET_INTEREST, CONF_RET_WORKQUEUE };
enum conf_verify { CONF_VERIFY_NONE, CONF_VERIFY_OPTIONAL, CONF_VERIFY_REQUIRED };
enum conf_auth { CONF_AUTH_NONE, CONF_AUTH_TOKEN, CONF_AUTH_CERTIFICATE, CONF_AUTH_CERT_OR_TOKEN };
/* Where a client certificate's identity comes from (tls_identity). */
enum conf_identity { CONF_ID_CN, CONF_ID_SAN_DNS, CONF_ID_SAN_URI, CONF_ID_SAN_EMAIL };
#define CONF_TLS_PREFIX "tls://"
#define CONF_TLS1_2	0x0303 /* the protocol's numbers, as OpenSSL's TLS1_2_VERSION */
#define CONF_TLS1_3	0x0304
/* Forward secrecy and AEAD only (TLS 1.2); TLS 1.3's suites are all of that kind. */
#define CONF_TLS_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
#define CONF_TLS_CIPHERSUITES                                                                      \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

#define CONF_MAX_NATS 16

struct conf {
	char *path;
	uint64_t hash; /* FNV-1a (64 bits) of the file as read, for /status */
	int nlisten;
	char *listen[CONF_MAX_LISTEN];
	struct net_addr listen_addr[CONF_MAX_LISTEN];
	uint8_t listen_tls[CONF_MAX_LISTEN]; /* "tls://" before the address */
	int nlisten_tls;
	int workers; /* resolved: "auto" is the number of online CPUs */
	int workers_auto;
	char *metrics_listen; /* "" disables the endpoint */
	struct net_addr metrics_addr;
	long max_connections;
	long max_frame_size;
	long idle_timeout; /* seconds, 0 off */
	long send_timeout; /* seconds without write progress while acks are owed, 0 off */
	long shutdown_timeout;
	long worker_timeout; /* seconds, 0 off */
	long max_draining;   /* old generations draining at once */
	long backlog;
	long read_buffer_size;
	long max_output_buffer;
	long mem_decay_ms;
	char *user;
	char *pid_file;
	int log_level;
	char *log_file;
	/* The spool (docs/SPOOL.md); spool_dir "" turns it off. */
	char *spool_dir;
	int spool_sync;		  /* enum conf_spool_sync */
	int spool_full;		  /* enum conf_spool_full */
	long spool_sync_interval; /* ms */
	long spool_segment_size;  /* bytes */
	long spool_segment_age;	  /* seconds, 0 off */
	long spool_max_size;	  /* bytes, 0 unbounded */
	/* The NATS forwarder (docs/NATS.md); no nats_servers, no forwarder. */
	int nnats;
	char *nats_servers[CONF_MAX_NATS];
	char *nats_stream;
	char *nats_subject; /* %h: host name, %w: worker index */
	char *nats_user, *nats_password, *nats_creds, *nats_tls_ca;
	long nats_max_inflight; /* unacknowledged publishes, all segments together */
	long nats_create_stream;
	long nats_stream_replicas;
	long nats_stream_max_age; /* seconds, 0 unlimited */
	long nats_stream_max_bytes;
	long nats_dup_window;	   /* seconds: the stream's duplicate window, when created */
	int nats_stream_retention; /* enum conf_retention */
	int ack_after;		   /* enum conf_ack_after */
	/* TLS on the tls:// listeners (docs/OPERATIONS.md); loaded by tls.c. */
	char *tls_certificate, *tls_key, *tls_ca;
	int tls_verify_client; /* enum conf_verify */
	int tls_min_version;   /* CONF_TLS1_2 or CONF_TLS1_3 */
	char *tls_ciphers, *tls_ciphersuites;
	long tls_handshake_timeout; /* seconds */
	/*
	 * PROXY protocol: a connection from these networks must begin with a
	 * PROXY header, v1 or v2 (docs/OPERATIONS.md); none: off.
	 */
	int nproxy_from;
	char *proxy_from_str[CONF_MAX_PROXY_FROM];
	struct proxy_net proxy_from[CONF_MAX_PROXY_FROM];
	/* Who may submit (docs/OPERATIONS.md, "Client identity"). */
	int auth;		   /* enum conf_auth */
	char *auth_tokens_file;	   /* "" for none */
	struct auth_tokens tokens; /* the file's, read with the configuration */
	long auth_timeout;	   /* seconds from the connection (or its handshake) to its Conn */
	int tls_identity;	   /* enum conf_identity */
	long max_connections_per_ip; /* across all workers; 0: off */
	long rate_limit; /* Submits per second per identity (or address), all workers; 0: off */
	long rate_burst; /* Submits at once within it; 0: rate_limit (one second's) */
};

/*
 * Parse path into c (all fields owned by c). On error returns -1 and puts
 * "file:line: message" (or "file: reason") in err; c is left untouched.
 */
int conf_load(const char *path, struct conf *c, char *err, size_t errlen);
/*
 * What start-up would stumble on outside the file: user exists, log_file
 * and pid_file can be written. -1 with "file: message" in err; 1 with a
 * warning in err for what fails only later (log reopening as user).
 */
int conf_check_system(const struct conf *c, char *err, size_t errlen);
/*
 * Whether user pw may access st for perm (4 read, 1 search or execute), by
 * its uid, primary and supplementary groups, as the kernel decides.
 */
struct stat;
struct passwd;
int conf_user_may(const struct stat *st, const struct passwd *pw, int perm);
void conf_free(struct conf *c);
/* The effective configuration in the file's own syntax. */
void conf_print(const struct conf *c, FILE *f);
/*
 * Edit distance (insertions, deletions, substitutions) between a[0..la)
 * and the string b, for naming the option a typo meant (in the file and
 * on the command line); SIZE_MAX if either is 64 bytes or longer.
 */
size_t conf_edit_distance(const char *a, size_t la, const char *b);
const char *conf_spool_sync_name(int v);
const char *conf_spool_full_name(int v);
const char *conf_ack_after_name(int v);
const char *conf_retention_name(int v);
const char *conf_verify_name(int v);
const char *conf_auth_name(int v);
const char *conf_identity_name(int v);
const char *conf_tls_version_name(int v);

#endif

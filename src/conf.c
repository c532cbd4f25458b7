#include "conf.h"

#include <confuse.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* An integer option, or an on/off flag (is_flag: 0..1, read by parse_flag). */
struct int_opt {
	const char *name;
	long def, min, max;
	size_t off;
	int is_flag;
};

// clang-format off
#define IOPT(n, d, lo, hi) {#n, d, lo, hi, offsetof(struct conf, n), 0}
#define FLAG(n, d) {#n, d, 0, 1, offsetof(struct conf, n), 1}
// clang-format on
static const struct int_opt int_opts[] = {
    IOPT(max_connections, 10000, 1, 10000000),
    IOPT(max_frame_size, 65536, 13, 64 * 1024 * 1024),
    IOPT(idle_timeout, 300, 0, 86400 * 7),
    IOPT(send_timeout, 60, 0, 86400 * 7),
    IOPT(shutdown_timeout, 10, 0, 3600),
    IOPT(worker_timeout, 10, 0, 3600),
    IOPT(max_draining, 4, 1, 64),
    IOPT(backlog, 511, 1, 65535),
    IOPT(read_buffer_size, 16384, 1024, 16 * 1024 * 1024),
    IOPT(max_output_buffer, 262144, 1024, 1024 * 1024 * 1024),
    IOPT(mem_decay_ms, 1000, -1, 3600000),
    IOPT(spool_sync_interval, 1000, 1, 3600000),
    IOPT(spool_segment_size, 64L * 1024 * 1024, 4096, 4L * 1024 * 1024 * 1024),
    IOPT(spool_segment_age, 10, 0, 86400),
    IOPT(spool_max_size, 1024L * 1024 * 1024, 0, 1L << 50),
    IOPT(nats_max_inflight, 4096, 1, 65536),
    FLAG(nats_create_stream, 0),
    IOPT(nats_stream_replicas, 1, 1, 5),
    IOPT(nats_stream_max_age, 0, 0, 86400L * 3650),
    IOPT(nats_stream_max_bytes, 0, 0, 1L << 50),
    IOPT(nats_dup_window, 120, 1, 86400),
    IOPT(tls_handshake_timeout, 10, 1, 3600),
    IOPT(auth_timeout, 5, 1, 3600),
    IOPT(max_connections_per_ip, 0, 0, 65535),
    IOPT(rate_limit, 0, 0, 10000000),
    IOPT(rate_burst, 0, 0, 10000000),
};
#define NINT (sizeof(int_opts) / sizeof(int_opts[0]))

/* The parser is not re-entrant, so neither is this: one parse at a time. */
static cfg_t *parse_root;
static const char *err_option; /* set by validators: the line is that option's */
static char *parse_err;
static size_t parse_errlen;
/* Set by scan_options: where a string or list left open at the end of the file began. */
static int open_string_line, open_list_line;
/*
 * The file being parsed, read once (conf_read): scan_options, the error
 * messages and libconfuse all see the same text, with comments blanked.
 */
static const char *src_path;
static char *src_buf;
/* FNV-1a of the file as read, before comments are blanked. */
static uint64_t src_hash;

/*
 * Call fn for each "name =" that starts an option line, with its line
 * number, skipping strings and the inside of lists (comments are blanked
 * by then). Stops when fn returns non-zero and returns that value.
 */
static int scan_options(int (*fn)(const char *name, int line, void *arg), void *arg)
{
	const char *p = src_buf;
	int lineno = 0, in_string = 0, depth = 0, r = 0;

	open_string_line = open_list_line = 0;
	while (r == 0 && *p != '\0') {
		char name[64];
		size_t n = 0;

		lineno++;
		if (!in_string && depth == 0) {
			while (*p == ' ' || *p == '\t')
				p++;
			while ((p[n] >= 'a' && p[n] <= 'z') || p[n] == '_' ||
			       (p[n] >= '0' && p[n] <= '9'))
				n++;
			if (n > 0 && n < sizeof(name)) {
				const char *q = p + n;
				while (*q == ' ' || *q == '\t')
					q++;
				if (*q == '=' || (q[0] == '+' && q[1] == '=')) {
					memcpy(name, p, n);
					name[n] = '\0';
					if ((r = fn(name, lineno, arg)) != 0)
						break;
					p = q + 1;
				}
			}
		}
		/* Track strings and lists that run over several lines. */
		for (; *p != '\0' && *p != '\n'; p++) {
			if (in_string && *p == '\\' && p[1] != '\0' && p[1] != '\n') {
				p++;
			} else if (*p == in_string || (!in_string && (*p == '"' || *p == '\''))) {
				in_string = in_string ? 0 : *p;
				if (in_string)
					open_string_line = lineno;
			} else if (!in_string && *p == '{') {
				if (depth++ == 0)
					open_list_line = lineno;
			} else if (!in_string && *p == '}') {
				depth--;
			}
		}
		if (*p == '\n')
			p++;
	}
	if (!in_string)
		open_string_line = 0;
	if (depth <= 0)
		open_list_line = 0;
	return r;
}

struct dup_state {
	char seen[64][64];
	int seen_line[64];
	int nseen;
	const char *path;
	char *err;
	size_t errlen;
};

static int dup_check(const char *name, int line, void *arg)
{
	struct dup_state *d = arg;

	for (int i = 0; i < d->nseen; i++) {
		if (strcmp(d->seen[i], name) == 0) {
			snprintf(d->err, d->errlen,
				 "%s:%d: %s: duplicate option (first on line %d)", d->path, line,
				 name, d->seen_line[i]);
			return -1;
		}
	}
	if (d->nseen < 64) {
		snprintf(d->seen[d->nseen], sizeof(d->seen[0]), "%s", name);
		d->seen_line[d->nseen++] = line;
	}
	return 0;
}

struct find_state {
	const char *name;
	int line;
};

static int find_check(const char *name, int line, void *arg)
{
	struct find_state *fs = arg;

	if (strcmp(fs->name, name) != 0)
		return 0;
	fs->line = line;
	return 1;
}

size_t conf_edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b), row[64];

	if (la >= sizeof(row) || lb >= sizeof(row))
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

/* The known option closest to name, if it is close enough to be a typo; NULL if none. */
static const char *closest_option(cfg_t *root, const char *name)
{
	const char *best = NULL;
	size_t bestd = SIZE_MAX, len = strlen(name);

	for (const cfg_opt_t *o = root->opts; o != NULL && o->name != NULL; o++) {
		size_t d = conf_edit_distance(name, len, o->name);
		if (d < bestd)
			bestd = d, best = o->name;
	}
	return bestd <= 2 && bestd * 2 <= len ? best : NULL;
}

static void error_fn(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[512], unknown[64];
	cfg_t *root = parse_root ? parse_root : cfg;
	const char *opt = err_option;
	int line = root->line;

	if (parse_err == NULL || parse_err[0] != '\0')
		return; /* keep the first error: later ones tend to follow from it */
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (sscanf(msg, "no such option '%63[^']'", unknown) == 1) {
		const char *near = closest_option(root, unknown);
		size_t n = strlen(msg);
		if (near != NULL)
			snprintf(msg + n, sizeof(msg) - n, " (did you mean \"%s\"?)", near);
		opt = unknown;
	}
	if (opt != NULL) {
		/*
		 * Validators run after the parser has looked ahead to the next
		 * option; duplicates are refused, so the option's own line is unique.
		 */
		struct find_state fs = {opt, 0};
		scan_options(find_check, &fs);
		if (fs.line)
			line = fs.line;
	}
	if (line > 0)
		snprintf(parse_err, parse_errlen, "%s:%d: %s", src_path, line, msg);
	else
		snprintf(parse_err, parse_errlen, "%s: %s", src_path, msg);
}

static void opt_error(cfg_t *cfg, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void opt_error(cfg_t *cfg, const char *name, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err_option = name;
	cfg_error(cfg, "%s", msg);
	err_option = NULL;
}

static const struct int_opt *find_int(const char *name)
{
	for (size_t i = 0; i < NINT; i++)
		if (strcmp(int_opts[i].name, name) == 0)
			return &int_opts[i];
	return NULL;
}

/*
 * libconfuse reads integers with strtol base 0, so 010 would be 8. Accept
 * decimal and 0x hex only, and refuse a leading zero rather than guess.
 */
static int parse_int(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const char *s = value + (value[0] == '-');
	int hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	char *end;
	long v;

	if (s[0] == '0' && s[1] >= '0' && s[1] <= '9') {
		opt_error(cfg, opt->name,
			  "%s = %s: a number with a leading zero (octal is not supported)",
			  opt->name, value);
		return -1;
	}
	errno = 0;
	v = strtol(value, &end, hex ? 16 : 10);
	if (value[0] == '\0' || *end != '\0' || errno != 0 || (s[0] < '0' || s[0] > '9')) {
		opt_error(cfg, opt->name, "%s = %s: not an integer", opt->name, value);
		return -1;
	}
	*(long *)result = v;
	return 0;
}

/*
 * An on/off flag: true/false, yes/no, on/off (any case, as libconfuse's
 * boolean type reads them) or 1/0, which older configs use.
 */
static int parse_flag(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const char *const words[][2] = {
	    {"0", "1"}, {"false", "true"}, {"no", "yes"}, {"off", "on"}};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		for (int v = 0; v <= 1; v++)
			if (strcasecmp(value, words[i][v]) == 0) {
				*(long *)result = v;
				return 0;
			}
	opt_error(cfg, opt->name, "%s: \"%s\" is not a boolean (true/false, yes/no, on/off or 1/0)",
		  opt->name, value);
	return -1;
}

static int validate_int(cfg_t *cfg, cfg_opt_t *opt)
{
	const struct int_opt *io = find_int(opt->name);
	long v = cfg_opt_getnint(opt, 0);

	if (io != NULL && (v < io->min || v > io->max)) {
		opt_error(cfg, opt->name, "%s = %ld: out of range %ld..%ld", opt->name, v, io->min,
			  io->max);
		return -1;
	}
	return 0;
}

/* A listen entry without its "tls://" prefix. */
static const char *listen_addr_part(const char *s)
{
	size_t n = strlen(CONF_TLS_PREFIX);

	return strncmp(s, CONF_TLS_PREFIX, n) == 0 ? s + n : s;
}

static int validate_addr_list(cfg_t *cfg, cfg_opt_t *opt)
{
	struct net_addr a;
	char err[256];
	unsigned n = cfg_opt_size(opt);

	if (strcmp(opt->name, "listen") == 0 && (n == 0 || n > CONF_MAX_LISTEN)) {
		opt_error(cfg, opt->name, "listen: between 1 and %d addresses", CONF_MAX_LISTEN);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		const char *s = cfg_opt_getnstr(opt, i);
		if (strcmp(opt->name, "metrics_listen") == 0 && s[0] == '\0')
			continue;
		if (strcmp(opt->name, "listen") == 0)
			s = listen_addr_part(s);
		if (net_parse_addr(s, &a, err, sizeof(err)) == -1) {
			opt_error(cfg, opt->name, "%s: %s", opt->name, err);
			return -1;
		}
	}
	return 0;
}

static int validate_workers(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	char *end;
	long v;

	if (strcmp(s, "auto") == 0)
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	if (s[0] < '1' || s[0] > '9' || *end != '\0' || errno != 0 || v < 1 ||
	    v > CONF_MAX_WORKERS) {
		opt_error(cfg, opt->name, "workers = \"%s\": expected auto or a number 1..%d", s,
			  CONF_MAX_WORKERS);
		return -1;
	}
	return 0;
}

static int validate_log_level(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);

	if (log_level_parse(s) < 0) {
		opt_error(cfg, opt->name, "log_level = \"%s\": expected error, warn, info or debug",
			  s);
		return -1;
	}
	return 0;
}

static const char *const sync_names[] = {"always", "interval", "none"};
static const char *const full_names[] = {"refuse", "drop_oldest"};

static int name_index(const char *const *names, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

const char *conf_spool_sync_name(int v)
{
	return v >= 0 && v < 3 ? sync_names[v] : "?";
}

const char *conf_spool_full_name(int v)
{
	return v >= 0 && v < 2 ? full_names[v] : "?";
}

static const char *const ack_after_names[] = {"spool", "stream"};
static const char *const retention_names[] = {"limits", "interest", "workqueue"};

const char *conf_ack_after_name(int v)
{
	return v >= 0 && v < 2 ? ack_after_names[v] : "?";
}

const char *conf_retention_name(int v)
{
	return v >= 0 && v < 3 ? retention_names[v] : "?";
}

static const char *const verify_names[] = {"none", "optional", "required"};
static const char *const auth_names[] = {"none", "token", "certificate", "certificate_or_token"};
static const char *const identity_names[] = {"cn", "san_dns", "san_uri", "san_email"};

const char *conf_auth_name(int v)
{
	return v >= 0 && v < 4 ? auth_names[v] : "?";
}

const char *conf_identity_name(int v)
{
	return v >= 0 && v < 4 ? identity_names[v] : "?";
}
static const char *const tls_version_names[] = {"TLSv1.2", "TLSv1.3"};
static const int tls_versions[] = {CONF_TLS1_2, CONF_TLS1_3};

const char *conf_verify_name(int v)
{
	return v >= 0 && v < 3 ? verify_names[v] : "?";
}

const char *conf_tls_version_name(int v)
{
	return v == CONF_TLS1_3 ? "TLSv1.3" : v == CONF_TLS1_2 ? "TLSv1.2" : "?";
}

static int validate_tls(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);

	if (strcmp(opt->name, "tls_verify_client") == 0 && name_index(verify_names, 3, s) < 0) {
		opt_error(cfg, opt->name,
			  "tls_verify_client = \"%s\": expected none, optional or required", s);
		return -1;
	}
	if (strcmp(opt->name, "tls_min_version") == 0 && name_index(tls_version_names, 2, s) < 0) {
		opt_error(cfg, opt->name, "tls_min_version = \"%s\": expected TLSv1.2 or TLSv1.3",
			  s);
		return -1;
	}
	if (strcmp(opt->name, "auth") == 0 && name_index(auth_names, 4, s) < 0) {
		opt_error(
		    cfg, opt->name,
		    "auth = \"%s\": expected none, token, certificate or certificate_or_token", s);
		return -1;
	}
	if (strcmp(opt->name, "tls_identity") == 0 && name_index(identity_names, 4, s) < 0) {
		opt_error(cfg, opt->name,
			  "tls_identity = \"%s\": expected cn, san_dns, san_uri or san_email", s);
		return -1;
	}
	if ((strcmp(opt->name, "tls_ciphers") == 0 || strcmp(opt->name, "tls_ciphersuites") == 0) &&
	    s[0] == '\0') {
		opt_error(cfg, opt->name, "%s: an empty list would allow nothing", opt->name);
		return -1;
	}
	return 0;
}

/* NATS names: a stream name and subject tokens, as nats-server accepts them. */
static int bad_nats_name(const char *s, int subject)
{
	if (s[0] == '\0' || strlen(s) > 200)
		return 1;
	for (; *s; s++)
		if (*s <= ' ' || *s == 0x7f || (!subject && (*s == '.' || *s == '*' || *s == '>')))
			return 1;
	return 0;
}

static int validate_nats(cfg_t *cfg, cfg_opt_t *opt)
{
	if (strcmp(opt->name, "nats_servers") == 0) {
		for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
			const char *u = cfg_opt_getnstr(opt, i);
			if (strncmp(u, "nats://", 7) != 0 && strncmp(u, "tls://", 6) != 0) {
				opt_error(cfg, opt->name,
					  "nats_servers: \"%s\": expected nats://host:port or "
					  "tls://host:port",
					  u);
				return -1;
			}
		}
		return 0;
	}
	const char *s = cfg_opt_getnstr(opt, 0);
	if (strcmp(opt->name, "ack_after") == 0 && name_index(ack_after_names, 2, s) < 0) {
		opt_error(cfg, opt->name, "ack_after = \"%s\": expected spool or stream", s);
		return -1;
	}
	if (strcmp(opt->name, "nats_stream_retention") == 0 &&
	    name_index(retention_names, 3, s) < 0) {
		opt_error(cfg, opt->name,
			  "nats_stream_retention = \"%s\": expected limits, interest or workqueue",
			  s);
		return -1;
	}
	if (strcmp(opt->name, "nats_stream") == 0 && bad_nats_name(s, 0)) {
		opt_error(cfg, opt->name,
			  "nats_stream = \"%s\": expected a name without spaces, '.', '*' or '>'",
			  s);
		return -1;
	}
	if (strcmp(opt->name, "nats_subject") == 0 &&
	    (bad_nats_name(s, 1) || strchr(s, '*') != NULL || strchr(s, '>') != NULL)) {
		opt_error(cfg, opt->name,
			  "nats_subject = \"%s\": expected a subject without spaces or wildcards "
			  "(%%h: host, %%w: worker)",
			  s);
		return -1;
	}
	return 0;
}

static int validate_spool(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);

	if (strcmp(opt->name, "spool_sync") == 0 && name_index(sync_names, 3, s) < 0) {
		opt_error(cfg, opt->name, "spool_sync = \"%s\": expected always, interval or none",
			  s);
		return -1;
	}
	if (strcmp(opt->name, "spool_full") == 0 && name_index(full_names, 2, s) < 0) {
		opt_error(cfg, opt->name, "spool_full = \"%s\": expected refuse or drop_oldest", s);
		return -1;
	}
	/* Segment paths are built in fixed buffers; a relative path would follow the cwd. */
	if (strcmp(opt->name, "spool_dir") == 0 && s[0] != '\0' &&
	    (s[0] != '/' || strlen(s) > 200)) {
		opt_error(cfg, opt->name,
			  "spool_dir = \"%s\": expected an absolute path of at most 200 bytes, "
			  "or \"\"",
			  s);
		return -1;
	}
	return 0;
}

/*
 * libconfuse keeps the last of a duplicated option silently; a typo'd
 * second line would then win unnoticed. Reject duplicates before parsing.
 */
static int check_duplicates(const char *path, char *err, size_t errlen)
{
	struct dup_state d;

	d.nseen = 0;
	d.path = path;
	d.err = err;
	d.errlen = errlen;
	return scan_options(dup_check, &d) != 0 ? -1 : 0;
}

static int option_line(const char *name)
{
	struct find_state fs = {name, 0};

	scan_options(find_check, &fs);
	return fs.line;
}

/* Two addresses that cannot both be bound: the same, or one the wildcard of the other's family. */
static int addr_overlap(const struct net_addr *a, const struct net_addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family || net_addr_port(a) == 0 ||
	    net_addr_port(a) != net_addr_port(b))
		return 0;
	if (a->ss.ss_family == AF_INET) {
		in_addr_t x = ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr;
		in_addr_t y = ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
		return x == y || x == INADDR_ANY || y == INADDR_ANY;
	}
	const struct in6_addr *x = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
	const struct in6_addr *y = &((const struct sockaddr_in6 *)&b->ss)->sin6_addr;
	return IN6_ARE_ADDR_EQUAL(x, y) || IN6_IS_ADDR_UNSPECIFIED(x) || IN6_IS_ADDR_UNSPECIFIED(y);
}

/*
 * What the binds would refuse, said before any of them runs: an address
 * listed twice, or metrics_listen on a client address. The master also
 * matches listeners by their text on reload, so the same text twice
 * (port 0 included) is refused too.
 */
static int check_addresses(const struct conf *c, char *err, size_t errlen)
{
	for (int i = 0; i < c->nlisten; i++) {
		for (int j = 0; j < i; j++) {
			if (strcmp(c->listen[i], c->listen[j]) != 0 &&
			    !addr_overlap(&c->listen_addr[i], &c->listen_addr[j]))
				continue;
			if (strcmp(c->listen[i], c->listen[j]) == 0)
				snprintf(err, errlen, "%s:%d: listen: \"%s\" is listed twice",
					 c->path, option_line("listen"), c->listen[i]);
			else
				snprintf(err, errlen, "%s:%d: listen: \"%s\" overlaps \"%s\"",
					 c->path, option_line("listen"), c->listen[i],
					 c->listen[j]);
			return -1;
		}
		if (c->metrics_listen[0] != '\0' &&
		    addr_overlap(&c->metrics_addr, &c->listen_addr[i])) {
			snprintf(err, errlen,
				 "%s:%d: metrics_listen: \"%s\" overlaps listen \"%s\"", c->path,
				 option_line("metrics_listen"), c->metrics_listen, c->listen[i]);
			return -1;
		}
	}
	return 0;
}

/* libconfuse says "premature end of file" at the last line: name where it began. */
static void explain_eof(const char *path, char *err, size_t errlen)
{
	if (strstr(err, "premature end of file") == NULL)
		return;
	if (open_string_line)
		snprintf(err, errlen, "%s:%d: unterminated string", path, open_string_line);
	else if (open_list_line)
		snprintf(err, errlen, "%s:%d: unterminated list: missing }", path, open_list_line);
}

/* FNV-1a, 64 bits, of the file's bytes: tells an operator which version of it runs. */
static uint64_t buf_hash(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	return h;
}

/* A string value owned by the struct, "" for none; NULL when out of memory. */
static char *dup_value(const char *s)
{
	return strdup(s ? s : "");
}

/*
 * Read the whole file into a NUL-terminated buffer. libconfuse's scanner
 * calls exit() when it cannot read its input (a directory, an I/O error),
 * so it only ever gets this buffer: a bad file fails a reload, it must
 * never end the master.
 */
static char *read_file(const char *path, char *err, size_t errlen)
{
	struct stat st;
	size_t len = 0;
	char *buf = NULL, *nul;
	ssize_t n;
	int fd;

	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1 ||
	    fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size > CONF_MAX_SIZE) {
		snprintf(err, errlen, "%s: too large (%lld bytes, at most %d)", path,
			 (long long)st.st_size, CONF_MAX_SIZE);
		goto fail;
	}
	/* One byte past the bound tells a file that grew since fstat. */
	if ((buf = malloc(CONF_MAX_SIZE + 2)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	while (len <= CONF_MAX_SIZE && (n = read(fd, buf + len, CONF_MAX_SIZE + 1 - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
			goto fail;
		}
		len += (size_t)n;
	}
	if (len > CONF_MAX_SIZE) {
		snprintf(err, errlen, "%s: too large (more than %d bytes)", path, CONF_MAX_SIZE);
		goto fail;
	}
	if ((nul = memchr(buf, '\0', len)) != NULL) {
		int line = 1;
		for (const char *p = buf; p < nul; p++)
			line += *p == '\n';
		snprintf(err, errlen, "%s:%d: a NUL byte: not a text file", path, line);
		goto fail;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
fail:
	free(buf);
	if (fd != -1)
		close(fd);
	return NULL;
}

/*
 * Blank out comments, keeping every newline: libconfuse 3.3 then counts
 * lines as a person does (it counts a comment's newline twice), and a
 * comment inside a list spread over several lines no longer breaks the
 * parse. Strings are left alone; # starts a comment anywhere else, as for
 * libconfuse, and // or / * only at the start of a word.
 */
static void blank_comments(char *p)
{
	char quote = 0;

	for (; *p != '\0'; p++) {
		int word_start = p == src_buf || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n' ||
				 p[-1] == '{' || p[-1] == ',';
		if (quote) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == quote)
				quote = 0;
		} else if (*p == '"' || *p == '\'') {
			quote = *p;
		} else if (*p == '#' || (word_start && p[0] == '/' && p[1] == '/')) {
			for (; *p != '\0' && *p != '\n'; p++)
				*p = ' ';
			if (*p == '\0')
				break;
		} else if (word_start && p[0] == '/' && p[1] == '*') {
			char *end = strstr(p + 2, "*/");
			char *stop = end ? end + 2 : p + strlen(p);
			for (; p < stop; p++)
				if (*p != '\n')
					*p = ' ';
			p--;
		}
	}
}

static int load(const char *path, struct conf *out, char *err, size_t errlen);

int conf_load(const char *path, struct conf *out, char *err, size_t errlen)
{
	int r;

	err[0] = '\0';
	if ((src_buf = read_file(path, err, errlen)) == NULL)
		return -1;
	src_path = path;
	src_hash = buf_hash(src_buf);
	blank_comments(src_buf);
	r = load(path, out, err, errlen);
	free(src_buf);
	src_buf = NULL;
	src_path = NULL;
	return r;
}

#define NOPTS (NINT + 32)

static int validate_proxy_from(cfg_t *cfg, cfg_opt_t *opt)
{
	struct proxy_net net;
	const char *why;
	unsigned n = cfg_opt_size(opt);

	if (n > CONF_MAX_PROXY_FROM) {
		opt_error(cfg, opt->name, "proxy_protocol_from: at most %d networks",
			  CONF_MAX_PROXY_FROM);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		const char *s = cfg_opt_getnstr(opt, i);
		if (proxy_net_parse(s, &net, &why) == -1) {
			opt_error(cfg, opt->name, "proxy_protocol_from: \"%s\": %s", s, why);
			return -1;
		}
	}
	return 0;
}

/* The schema: every option, its default and its validator; NULL if libconfuse cannot start. */
static cfg_t *schema(cfg_opt_t opts[NOPTS])
{
	cfg_t *cfg;
	size_t k = 0;

	opts[k++] = (cfg_opt_t)CFG_STR_LIST("listen", "{\"0.0.0.0:8888\"}", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("workers", "auto", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("metrics_listen", "127.0.0.1:8889", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("user", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("pid_file", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("log_level", "info", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("log_file", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("spool_dir", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("spool_sync", "always", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("spool_full", "refuse", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR_LIST("nats_servers", "{}", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("nats_stream", "SUBMIT", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("nats_subject", "submit.%h.%w", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("nats_user", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("nats_password", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("nats_creds", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("nats_tls_ca", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("nats_stream_retention", "limits", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("ack_after", "spool", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_certificate", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_key", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_ca", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_verify_client", "none", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_min_version", "TLSv1.2", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_ciphers", CONF_TLS_CIPHERS, CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_ciphersuites", CONF_TLS_CIPHERSUITES, CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR_LIST("proxy_protocol_from", "{}", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("auth", "none", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("auth_tokens_file", "", CFGF_NONE);
	opts[k++] = (cfg_opt_t)CFG_STR("tls_identity", "cn", CFGF_NONE);
	for (size_t i = 0; i < NINT; i++)
		opts[k++] = (cfg_opt_t)CFG_INT_CB(int_opts[i].name, int_opts[i].def, CFGF_NONE,
						  int_opts[i].is_flag ? parse_flag : parse_int);
	opts[k++] = (cfg_opt_t)CFG_END();

	if ((cfg = cfg_init(opts, CFGF_NONE)) == NULL)
		return NULL;
	cfg_set_error_function(cfg, error_fn);
	cfg_set_validate_func(cfg, "listen", validate_addr_list);
	cfg_set_validate_func(cfg, "metrics_listen", validate_addr_list);
	cfg_set_validate_func(cfg, "workers", validate_workers);
	cfg_set_validate_func(cfg, "log_level", validate_log_level);
	cfg_set_validate_func(cfg, "spool_dir", validate_spool);
	cfg_set_validate_func(cfg, "spool_sync", validate_spool);
	cfg_set_validate_func(cfg, "spool_full", validate_spool);
	cfg_set_validate_func(cfg, "nats_servers", validate_nats);
	cfg_set_validate_func(cfg, "nats_stream", validate_nats);
	cfg_set_validate_func(cfg, "nats_subject", validate_nats);
	cfg_set_validate_func(cfg, "nats_stream_retention", validate_nats);
	cfg_set_validate_func(cfg, "ack_after", validate_nats);
	cfg_set_validate_func(cfg, "tls_verify_client", validate_tls);
	cfg_set_validate_func(cfg, "tls_min_version", validate_tls);
	cfg_set_validate_func(cfg, "tls_ciphers", validate_tls);
	cfg_set_validate_func(cfg, "tls_ciphersuites", validate_tls);
	cfg_set_validate_func(cfg, "proxy_protocol_from", validate_proxy_from);
	cfg_set_validate_func(cfg, "auth", validate_tls);
	cfg_set_validate_func(cfg, "tls_identity", validate_tls);
	for (size_t i = 0; i < NINT; i++)
		cfg_set_validate_func(cfg, int_opts[i].name, validate_int);
	return cfg;
}

static int extract(cfg_t *cfg, const char *path, struct conf *out, char *err, size_t errlen);
static int check_combinations(const struct conf *c, const char *path, char *err, size_t errlen);

static int load_tokens(struct conf *c, char *err, size_t errlen);

static int load(const char *path, struct conf *out, char *err, size_t errlen)
{
	cfg_opt_t opts[NOPTS];
	struct conf c;
	cfg_t *cfg;
	int r;

	if (check_duplicates(path, err, errlen) == -1)
		return -1;
	if ((cfg = schema(opts)) == NULL) {
		snprintf(err, errlen, "%s: cannot initialise the parser", path);
		return -1;
	}
	parse_root = cfg;
	parse_err = err;
	parse_errlen = errlen;
	r = cfg_parse_buf(cfg, src_buf);
	parse_root = NULL;
	parse_err = NULL;
	if (r != CFG_SUCCESS) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s: parse error", path);
		explain_eof(path, err, errlen);
		cfg_free(cfg);
		return -1;
	}
	r = extract(cfg, path, &c, err, errlen);
	cfg_free(cfg);
	if (r == -1)
		return -1;
	if (check_combinations(&c, path, err, errlen) == -1 || load_tokens(&c, err, errlen) == -1) {
		conf_free(&c);
		return -1;
	}
	*out = c;
	return 0;
}

/*
 * The listening addresses and metrics_listen into c, as strings and parsed
 * (their validators passed already). Returns 0, or -1 with err filled;
 * what c holds then is the caller's to free.
 */
static int extract_addrs(cfg_t *cfg, const char *path, struct conf *c, char *err, size_t errlen)
{
	char e[256];

	for (int i = 0; i < c->nlisten; i++) {
		if ((c->listen[i] = dup_value(cfg_getnstr(cfg, "listen", (unsigned)i))) == NULL)
			goto oom;
		const char *a = listen_addr_part(c->listen[i]);
		c->listen_tls[i] = a != c->listen[i];
		c->nlisten_tls += c->listen_tls[i];
		if (net_parse_addr(a, &c->listen_addr[i], e, sizeof(e)) == -1) {
			snprintf(err, errlen, "%s: listen: %s", path, e); /* validated above */
			return -1;
		}
	}
	if ((c->metrics_listen = dup_value(cfg_getstr(cfg, "metrics_listen"))) == NULL)
		goto oom;
	if (c->metrics_listen[0] != '\0' &&
	    net_parse_addr(c->metrics_listen, &c->metrics_addr, e, sizeof(e)) == -1) {
		snprintf(err, errlen, "%s: metrics_listen: %s", path, e);
		return -1;
	}
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory", path);
	return -1;
}

/*
 * The NATS options into c. Returns 0, or -1 out of memory; what c holds
 * then is the caller's to free.
 */
static int extract_nats(cfg_t *cfg, struct conf *c)
{
	c->nnats = (int)cfg_size(cfg, "nats_servers");
	if (c->nnats > CONF_MAX_NATS)
		c->nnats = CONF_MAX_NATS;
	for (int i = 0; i < c->nnats; i++)
		if ((c->nats_servers[i] =
			 dup_value(cfg_getnstr(cfg, "nats_servers", (unsigned)i))) == NULL)
			return -1;
	c->nats_stream = dup_value(cfg_getstr(cfg, "nats_stream"));
	c->nats_subject = dup_value(cfg_getstr(cfg, "nats_subject"));
	c->nats_user = dup_value(cfg_getstr(cfg, "nats_user"));
	c->nats_password = dup_value(cfg_getstr(cfg, "nats_password"));
	c->nats_creds = dup_value(cfg_getstr(cfg, "nats_creds"));
	c->nats_tls_ca = dup_value(cfg_getstr(cfg, "nats_tls_ca"));
	if (c->nats_stream == NULL || c->nats_subject == NULL || c->nats_user == NULL ||
	    c->nats_password == NULL || c->nats_creds == NULL || c->nats_tls_ca == NULL)
		return -1;
	return 0;
}

/* The TLS options into c: 0, or -1 out of memory (what c holds is the caller's to free). */
static int extract_tls(cfg_t *cfg, struct conf *c)
{
	c->tls_certificate = dup_value(cfg_getstr(cfg, "tls_certificate"));
	c->tls_key = dup_value(cfg_getstr(cfg, "tls_key"));
	c->tls_ca = dup_value(cfg_getstr(cfg, "tls_ca"));
	c->tls_ciphers = dup_value(cfg_getstr(cfg, "tls_ciphers"));
	c->tls_ciphersuites = dup_value(cfg_getstr(cfg, "tls_ciphersuites"));
	c->tls_verify_client = name_index(verify_names, 3, cfg_getstr(cfg, "tls_verify_client"));
	c->tls_min_version =
	    tls_versions[name_index(tls_version_names, 2, cfg_getstr(cfg, "tls_min_version"))];
	return c->tls_certificate == NULL || c->tls_key == NULL || c->tls_ca == NULL ||
		       c->tls_ciphers == NULL || c->tls_ciphersuites == NULL
		   ? -1
		   : 0;
}

/* The parsed options into a plain struct conf: 0, or -1 with err filled and nothing kept. */
static int extract(cfg_t *cfg, const char *path, struct conf *out, char *err, size_t errlen)
{
	struct conf c;

	memset(&c, 0, sizeof(c));
	if ((c.path = dup_value(path)) == NULL)
		goto oom;
	c.hash = src_hash;
	c.nlisten = (int)cfg_size(cfg, "listen");
	if (c.nlisten == 0) {
		/* An empty list never reaches the validator. */
		struct find_state fs = {"listen", 0};
		scan_options(find_check, &fs);
		snprintf(err, errlen, "%s:%d: listen: at least one address is needed", path,
			 fs.line);
		free(c.path);
		return -1;
	}
	if (extract_addrs(cfg, path, &c, err, errlen) == -1)
		goto fail;
	const char *w = cfg_getstr(cfg, "workers");
	c.workers_auto = strcmp(w, "auto") == 0;
	if (c.workers_auto) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c.workers = n < 1 ? 1 : n > CONF_MAX_WORKERS ? CONF_MAX_WORKERS : (int)n;
	} else {
		c.workers = atoi(w);
	}
	c.user = dup_value(cfg_getstr(cfg, "user"));
	c.pid_file = dup_value(cfg_getstr(cfg, "pid_file"));
	c.log_file = dup_value(cfg_getstr(cfg, "log_file"));
	c.log_level = log_level_parse(cfg_getstr(cfg, "log_level"));
	for (size_t i = 0; i < NINT; i++)
		*(long *)((char *)&c + int_opts[i].off) = cfg_getint(cfg, int_opts[i].name);
	c.spool_dir = dup_value(cfg_getstr(cfg, "spool_dir"));
	if (c.user == NULL || c.pid_file == NULL || c.log_file == NULL || c.spool_dir == NULL)
		goto oom;
	c.spool_sync = name_index(sync_names, 3, cfg_getstr(cfg, "spool_sync"));
	c.spool_full = name_index(full_names, 2, cfg_getstr(cfg, "spool_full"));
	if (extract_nats(cfg, &c) == -1)
		goto oom;
	c.nats_stream_retention =
	    name_index(retention_names, 3, cfg_getstr(cfg, "nats_stream_retention"));
	c.ack_after = name_index(ack_after_names, 2, cfg_getstr(cfg, "ack_after"));
	if (extract_tls(cfg, &c) == -1)
		goto oom;
	c.auth = name_index(auth_names, 4, cfg_getstr(cfg, "auth"));
	c.tls_identity = name_index(identity_names, 4, cfg_getstr(cfg, "tls_identity"));
	if ((c.auth_tokens_file = dup_value(cfg_getstr(cfg, "auth_tokens_file"))) == NULL)
		goto oom;
	c.nproxy_from = (int)cfg_size(cfg, "proxy_protocol_from");
	for (int i = 0; i < c.nproxy_from; i++) {
		const char *why;
		if ((c.proxy_from_str[i] =
			 dup_value(cfg_getnstr(cfg, "proxy_protocol_from", (unsigned)i))) == NULL)
			goto oom;
		proxy_net_parse(c.proxy_from_str[i], &c.proxy_from[i], &why); /* validated */
	}
	*out = c;
	return 0;
oom:
	/* A reload that runs out of memory fails like a bad file: the caller keeps what runs. */
	snprintf(err, errlen, "%s: out of memory", path);
fail:
	conf_free(&c);
	return -1;
}

/*
 * auth's needs: tokens need their file; certificates need a verified one,
 * so every listener must be TLS with tls_verify_client = required (or, with
 * certificate_or_token, at least optional).
 */
static int check_auth(const struct conf *c, const char *path, char *err, size_t errlen)
{
	int tokens = c->auth == CONF_AUTH_TOKEN || c->auth == CONF_AUTH_CERT_OR_TOKEN;
	const char *name = conf_auth_name(c->auth);

	if (tokens && c->auth_tokens_file[0] == '\0') {
		snprintf(err, errlen, "%s:%d: auth = %s: needs auth_tokens_file", path,
			 option_line("auth"), name);
		return -1;
	}
	if (c->auth == CONF_AUTH_CERTIFICATE) {
		for (int i = 0; i < c->nlisten; i++) {
			if (!c->listen_tls[i]) {
				snprintf(err, errlen,
					 "%s:%d: auth = certificate: listen \"%s\" is not tls:// "
					 "(its clients could never authenticate)",
					 path, option_line("auth"), c->listen[i]);
				return -1;
			}
		}
		if (c->tls_verify_client != CONF_VERIFY_REQUIRED) {
			snprintf(err, errlen,
				 "%s:%d: auth = certificate: needs tls_verify_client = required",
				 path, option_line("auth"));
			return -1;
		}
	}
	if (c->auth == CONF_AUTH_CERT_OR_TOKEN && c->tls_verify_client == CONF_VERIFY_NONE &&
	    c->nlisten_tls > 0) {
		snprintf(
		    err, errlen,
		    "%s:%d: auth = certificate_or_token: needs tls_verify_client = optional or "
		    "required",
		    path, option_line("auth"));
		return -1;
	}
	return 0;
}

/* The tokens file auth_tokens_file names, into c->tokens: 0, or -1 with err ("FILE:LINE: ..."). */
static int load_tokens(struct conf *c, char *err, size_t errlen)
{
	char *text;
	int r;

	if (c->auth_tokens_file[0] == '\0' || c->auth == CONF_AUTH_NONE ||
	    c->auth == CONF_AUTH_CERTIFICATE)
		return 0;
	if ((text = read_file(c->auth_tokens_file, err, errlen)) == NULL)
		return -1;
	r = auth_tokens_parse(c->auth_tokens_file, text, &c->tokens, err, errlen);
	free(text);
	return r;
}

/* A tls:// listener needs a certificate and its key; verifying clients needs their CAs. */
static int check_tls(const struct conf *c, const char *path, char *err, size_t errlen)
{
	if (c->nlisten_tls > 0 && (c->tls_certificate[0] == '\0' || c->tls_key[0] == '\0')) {
		int i = 0;
		while (!c->listen_tls[i])
			i++;
		snprintf(err, errlen, "%s:%d: listen: \"%s\" needs tls_certificate and tls_key",
			 path, option_line("listen"), c->listen[i]);
		return -1;
	}
	if (c->tls_verify_client != CONF_VERIFY_NONE && c->tls_ca[0] == '\0') {
		snprintf(err, errlen, "%s:%d: tls_verify_client = %s: needs tls_ca", path,
			 option_line("tls_verify_client"), conf_verify_name(c->tls_verify_client));
		return -1;
	}
	return 0;
}

/* What no single option's validator can see: options that need or exclude each other. */
static int check_combinations(const struct conf *c, const char *path, char *err, size_t errlen)
{
	/* The forwarder reads the spool: without one there is nothing to forward. */
	const char *need = NULL;
	if (c->nnats > 0 && c->spool_dir[0] == '\0')
		need = "nats_servers: the forwarder needs spool_dir";
	else if (c->ack_after == CONF_ACK_STREAM && c->nnats == 0)
		need = "ack_after = stream: needs nats_servers";
	else if (c->nats_creds[0] != '\0' && c->nats_user[0] != '\0')
		need = "nats_creds and nats_user: give one of them";
	if (need != NULL) {
		struct find_state fs = {"nats_servers", 0};
		if (c->ack_after == CONF_ACK_STREAM && c->nnats == 0)
			fs.name = "ack_after";
		else if (c->nats_creds[0] != '\0' && c->nats_user[0] != '\0')
			fs.name = "nats_creds";
		scan_options(find_check, &fs);
		snprintf(err, errlen, "%s:%d: %s", path, fs.line, need);
		return -1;
	}
	if (check_addresses(c, err, errlen) == -1 || check_tls(c, path, err, errlen) == -1 ||
	    check_auth(c, path, err, errlen) == -1)
		return -1;
	/* A bound below one segment could never hold the segment being written. */
	if (c->spool_max_size != 0 && c->spool_max_size < c->spool_segment_size) {
		struct find_state fs = {"spool_max_size", 0};
		scan_options(find_check, &fs);
		if (fs.line == 0) {
			fs.name = "spool_segment_size";
			scan_options(find_check, &fs);
		}
		snprintf(err, errlen,
			 "%s:%d: spool_max_size = %ld: below spool_segment_size (%ld); 0 is "
			 "unbounded",
			 path, fs.line, c->spool_max_size, c->spool_segment_size);
		return -1;
	}
	return 0;
}

int conf_user_may(const struct stat *st, const struct passwd *pw, int perm)
{
	gid_t groups[256];
	int ngroups = 256;

	if (pw->pw_uid == 0)
		return 1;
	if (st->st_uid == pw->pw_uid)
		return (st->st_mode & ((mode_t)perm << 6)) != 0;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &ngroups) == -1)
		ngroups = 0;
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == st->st_gid)
			return (st->st_mode & ((mode_t)perm << 3)) != 0;
	return (st->st_mode & (mode_t)perm) != 0;
}

/* The directory part of path, as dirname(3) gives it, in buf. */
static const char *dir_of(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(buf, len, ".");
	else
		snprintf(buf, len, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	return buf;
}

/* Whether the directory above dir exists and this process may create dir in it. */
static int parent_writable(const char *dir)
{
	char parent[4096];
	struct stat st;

	dir_of(dir, parent, sizeof(parent));
	return stat(parent, &st) == 0 && S_ISDIR(st.st_mode) && access(parent, W_OK | X_OK) == 0;
}

/*
 * A file this process will create or append to: it exists and is
 * writable, or its directory exists and is writable (always, with
 * need_dir; there a missing last component, which start-up creates, will
 * do). -1 if not; 1 if user (NULL: none) cannot reach it: the workers,
 * which reopen log_file by name after SIGUSR1, would fail then, but
 * serving works.
 */
static int check_writable(const char *c_path, const char *opt, const char *path, int need_dir,
			  const struct passwd *user, char *err, size_t errlen)
{
	char dir[4096];
	const char *why = NULL;
	int exists = access(path, W_OK) == 0;
	struct stat st;

	if (!exists && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s \"%s\": %s", c_path, opt, path, strerror(errno));
		return -1;
	}
	/*
	 * access() calls a directory writable for root, but nothing opens it
	 * for writing; and the pid file (need_dir) is never written through a
	 * symbolic link (see proc.h), not even a dangling one.
	 */
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: %s \"%s\": is a directory", c_path, opt, path);
		return -1;
	}
	if (need_dir && lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		snprintf(err, errlen, "%s: %s \"%s\": is a symbolic link, which start-up refuses",
			 c_path, opt, path);
		return -1;
	}
	dir_of(path, dir, sizeof(dir));
	if (stat(dir, &st) == -1) {
		why = strerror(errno);
		if (need_dir && errno == ENOENT && parent_writable(dir))
			return 0; /* start-up creates it (proc_pidfile_acquire) */
	} else if (!S_ISDIR(st.st_mode))
		why = "not a directory";
	else if ((need_dir || !exists) && access(dir, W_OK | X_OK) == -1)
		why = strerror(errno);
	if (why != NULL) {
		snprintf(err, errlen, "%s: %s \"%s\": directory %s: %s", c_path, opt, path, dir,
			 why);
		return -1;
	}
	if (user != NULL && !conf_user_may(&st, user, 1)) {
		snprintf(err, errlen,
			 "%s: %s \"%s\": directory %s: not searchable by user %s, whose workers "
			 "reopen it on SIGUSR1",
			 c_path, opt, path, dir, user->pw_name);
		return 1;
	}
	return 0;
}

int conf_check_system(const struct conf *c, char *err, size_t errlen)
{
	struct passwd *pw = NULL;
	int r = 0;

	if (c->user[0] != '\0' && (pw = getpwnam(c->user)) == NULL) {
		snprintf(err, errlen, "%s: user \"%s\": no such user", c->path, c->user);
		return -1;
	}
	/* The workers switch to user only when the master runs as root. */
	if (geteuid() != 0)
		pw = NULL;
	if (c->log_file[0] != '\0' &&
	    (r = check_writable(c->path, "log_file", c->log_file, 0, pw, err, errlen)) == -1)
		return -1;
	/* The master writes FILE.tmp and renames it: the directory must be writable. */
	if (c->pid_file[0] != '\0' &&
	    check_writable(c->path, "pid_file", c->pid_file, 1, NULL, err, errlen) == -1)
		return -1;
	return r;
}

void conf_free(struct conf *c)
{
	for (int i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	free(c->path);
	free(c->metrics_listen);
	free(c->user);
	free(c->pid_file);
	free(c->log_file);
	free(c->spool_dir);
	for (int i = 0; i < c->nnats; i++)
		free(c->nats_servers[i]);
	free(c->nats_stream);
	free(c->nats_subject);
	free(c->nats_user);
	free(c->nats_password);
	free(c->nats_creds);
	free(c->nats_tls_ca);
	free(c->tls_certificate);
	free(c->tls_key);
	free(c->tls_ca);
	free(c->tls_ciphers);
	free(c->tls_ciphersuites);
	for (int i = 0; i < c->nproxy_from; i++)
		free(c->proxy_from_str[i]);
	free(c->auth_tokens_file);
	auth_tokens_free(&c->tokens);
	memset(c, 0, sizeof(*c));
}

/* A string as the parser reads it back: quoted, with ", \ and newlines escaped. */
static void print_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '\n') {
			fputs("\\n", f);
			continue;
		}
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void conf_print(const struct conf *c, FILE *f)
{
	fprintf(f, "# effective configuration of %s\n", c->path);
	fprintf(f, "listen = {");
	for (int i = 0; i < c->nlisten; i++) {
		fprintf(f, "%s", i ? ", " : "");
		print_str(f, c->listen[i]);
	}
	fprintf(f, "}\n");
	if (c->workers_auto)
		fprintf(f, "workers = auto  # %d online CPUs\n", c->workers);
	else
		fprintf(f, "workers = %d\n", c->workers);
	fprintf(f, "metrics_listen = ");
	print_str(f, c->metrics_listen);
	fputc('\n', f);
	for (size_t i = 0; i < NINT; i++) {
		long v = *(const long *)((const char *)c + int_opts[i].off);
		if (int_opts[i].is_flag)
			fprintf(f, "%s = %s\n", int_opts[i].name, v ? "true" : "false");
		else
			fprintf(f, "%s = %ld\n", int_opts[i].name, v);
	}
	fprintf(f, "user = ");
	print_str(f, c->user);
	fprintf(f, "\npid_file = ");
	print_str(f, c->pid_file);
	fprintf(f, "\nlog_level = %s\n", log_level_name(c->log_level));
	fprintf(f, "log_file = ");
	print_str(f, c->log_file);
	fputc('\n', f);
	fprintf(f, "spool_dir = ");
	print_str(f, c->spool_dir);
	fputc('\n', f);
	fprintf(f, "spool_sync = %s\n", conf_spool_sync_name(c->spool_sync));
	fprintf(f, "spool_full = %s\n", conf_spool_full_name(c->spool_full));
	fprintf(f, "nats_servers = {");
	for (int i = 0; i < c->nnats; i++)
		fprintf(f, "%s\"%s\"", i ? ", " : "", c->nats_servers[i]);
	fprintf(f, "}\n");
	fprintf(f, "nats_stream = \"%s\"\n", c->nats_stream);
	fprintf(f, "nats_subject = \"%s\"\n", c->nats_subject);
	fprintf(f, "nats_user = \"%s\"\n", c->nats_user);
	fprintf(f, "nats_password = \"%s\"\n", c->nats_password[0] ? "(set)" : "");
	fprintf(f, "nats_creds = \"%s\"\n", c->nats_creds);
	fprintf(f, "nats_tls_ca = \"%s\"\n", c->nats_tls_ca);
	fprintf(f, "nats_stream_retention = %s\n", conf_retention_name(c->nats_stream_retention));
	fprintf(f, "ack_after = %s\n", conf_ack_after_name(c->ack_after));
	fprintf(f, "tls_certificate = ");
	print_str(f, c->tls_certificate);
	fprintf(f, "\ntls_key = ");
	print_str(f, c->tls_key);
	fprintf(f, "\ntls_ca = ");
	print_str(f, c->tls_ca);
	fprintf(f, "\ntls_verify_client = %s\n", conf_verify_name(c->tls_verify_client));
	fprintf(f, "tls_min_version = \"%s\"\n", conf_tls_version_name(c->tls_min_version));
	fprintf(f, "tls_ciphers = ");
	print_str(f, c->tls_ciphers);
	fprintf(f, "\ntls_ciphersuites = ");
	print_str(f, c->tls_ciphersuites);
	fprintf(f, "\nauth = %s\n", conf_auth_name(c->auth));
	fprintf(f, "auth_tokens_file = ");
	print_str(f, c->auth_tokens_file);
	fprintf(f, "  # %d tokens\n", c->tokens.n);
	fprintf(f, "tls_identity = %s", conf_identity_name(c->tls_identity));
	fprintf(f, "\nproxy_protocol_from = {");
	for (int i = 0; i < c->nproxy_from; i++)
		fprintf(f, "%s\"%s\"", i ? ", " : "", c->proxy_from_str[i]);
	fprintf(f, "}\n");
}

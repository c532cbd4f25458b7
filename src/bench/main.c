/*
 * submit-bench: a load generator for the submit protocol. Options, the
 * threads, the progress loop and the collection of the results; the
 * per-connection work is in engine.c, the printing in report.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench.h"
#include "buf.h"
#include "engine.h"
#include "report.h"
#include "version.h"

#define MAX_PAYLOAD	(16u << 20)
#define MAX_PERCENTILES 16
#define HGRM_UNIT	1e6 /* .hgrm values in milliseconds, as HdrHistogram's tools write them */

/* What only main uses: the output choices and files. */
struct cli {
	const char *target;
	const char *csv_path;
	const char *hgrm_path;
	const char *ack_log_path;
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *token_path;
	int tls;
	int json;
	int progress;
	int duration_set; /* -d given: -n does not default it to 60 s */
	double pcts[MAX_PERCENTILES];
	int npcts;
	FILE *csv;
	FILE *hgrm;
};

/* The run SIGINT stops: main's, set before the handler is installed. */
static struct bench_run *sig_run;

static const char usage_text[] =
    "usage: submit-bench [options] [host:port]\n"
    "Drive a submit protocol server (default 127.0.0.1:8888) and verify every ack.\n"
    "\n"
    "  -c, --connections N   connections (100)\n"
    "  -t, --threads N       threads, each with its own epoll loop (1)\n"
    "  -d, --duration T      measured time, more than 0: 10, 10s, 500ms, 2m (10s);\n"
    "                        with -n, the time limit (60s)\n"
    "      --warmup T        time before measuring starts (0)\n"
    "  -w, --window N        requests in flight per connection; 0 = unbounded (64)\n"
    "  -s, --size N[-M]      payload bytes, or a range picked at random (20)\n"
    "      --conn            send Conn first on each connection, require its ConnAck\n"
    "      --token FILE      --conn with the file's bytes (one trailing newline off) as the\n"
    "                        Conn's client data: the token of a server with auth = token\n"
    "  -r, --rate R          open loop: R msgs/s in total on a fixed schedule; latency\n"
    "                        counts from the scheduled time (default: closed loop)\n"
    "  -n, --requests N      send exactly N requests, then stop when all are acked;\n"
    "                        counts take k (thousand) and M (million), not m\n"
    "      --reconnect       reconnect after a server close between two acks\n"
    "      --retry T         with --reconnect: also after a reset, and retry a refused\n"
    "                        reconnect every T until the end (a server restart)\n"
    "      --source A[,A..]  source addresses, used round-robin (127.0.0.2,127.0.0.3)\n"
    "      --idle            connect (and send Conn with --conn), then hold, sending\n"
    "                        nothing, for the duration\n"
    "      --drain T         how long to wait for acks after the end (5s)\n"
    "      --allow-refused   result 2 (not stored) is counted, not an error\n"
    "      --percentiles L   latency percentiles to report (50,90,99,99.9)\n"
    "      --json            print one JSON line instead of the summary\n"
    "      --csv FILE        write the per-second series to FILE\n"
    "      --hgrm FILE       write the latency distribution to FILE in HdrHistogram's\n"
    "                        percentile text format (milliseconds)\n"
    "      --ack-log FILE    write \"connection id-in-hex result\" per Submit ack\n"
    "      --tag-payload     payloads start with \"conn:id:size:\" (see the man page)\n"
    "      --handshakes      a new connection per request: connect, (TLS handshake,)\n"
    "                        one Submit, its ack, close; reports handshakes/s\n"
    "      --tls             speak TLS (1.2 or 1.3) to the server\n"
    "      --tls-ca FILE     verify the server's certificate with these CAs (PEM);\n"
    "                        without it the server is not verified\n"
    "      --tls-cert FILE   present this client certificate chain (PEM)\n"
    "      --tls-key FILE    the client certificate's private key (PEM)\n"
    "      --tls-resume      reconnections resume the slot's last session (ticket)\n"
    "      --tls-servername NAME  send NAME as SNI; with --tls-ca, check the\n"
    "                        certificate against NAME instead of the target's address\n"
    "      --progress        a progress line a second on stderr (default on a tty)\n"
    "  -v, -V, --version     print the version\n"
    "  -h, --help            this text\n"
    "\n"
    "Times take us, ms, s, m (minutes) or h; a bare number is seconds.\n"
    "Exit status: 0 when every ack checked out and at least one arrived, 1 on any\n"
    "error (result 2 is one, unless --allow-refused), 2 on bad usage.\n";

enum {
	OPT_WARMUP = 256,
	OPT_CONN,
	OPT_RECONNECT,
	OPT_SOURCE,
	OPT_IDLE,
	OPT_DRAIN,
	OPT_JSON,
	OPT_CSV,
	OPT_PROGRESS,
	OPT_ALLOW_REFUSED,
	OPT_PERCENTILES,
	OPT_HGRM,
	OPT_ACK_LOG,
	OPT_RETRY,
	OPT_TAG_PAYLOAD,
	OPT_HANDSHAKES,
	OPT_TLS,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_RESUME,
	OPT_TLS_SERVERNAME,
	OPT_TOKEN,
};

static const struct option longopts[] = {
    {"connections", required_argument, NULL, 'c'},
    {"threads", required_argument, NULL, 't'},
    {"duration", required_argument, NULL, 'd'},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"window", required_argument, NULL, 'w'},
    {"size", required_argument, NULL, 's'},
    {"conn", no_argument, NULL, OPT_CONN},
    {"rate", required_argument, NULL, 'r'},
    {"requests", required_argument, NULL, 'n'},
    {"reconnect", no_argument, NULL, OPT_RECONNECT},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"idle", no_argument, NULL, OPT_IDLE},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"json", no_argument, NULL, OPT_JSON},
    {"csv", required_argument, NULL, OPT_CSV},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"allow-refused", no_argument, NULL, OPT_ALLOW_REFUSED},
    {"percentiles", required_argument, NULL, OPT_PERCENTILES},
    {"hgrm", required_argument, NULL, OPT_HGRM},
    {"ack-log", required_argument, NULL, OPT_ACK_LOG},
    {"retry", required_argument, NULL, OPT_RETRY},
    {"tag-payload", no_argument, NULL, OPT_TAG_PAYLOAD},
    {"handshakes", no_argument, NULL, OPT_HANDSHAKES},
    {"tls", no_argument, NULL, OPT_TLS},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-resume", no_argument, NULL, OPT_TLS_RESUME},
    {"tls-servername", required_argument, NULL, OPT_TLS_SERVERNAME},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "submit-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'submit-bench --help'.\n");
	exit(2);
}

static uint64_t parse_count(const char *opt, const char *s, uint64_t max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0)
		usage_error("%s: bad number \"%s\"", opt, s);
	if (*end == 'k' || *end == 'K')
		v *= 1e3, end++;
	else if (*end == 'M')
		v *= 1e6, end++;
	else if (*end == 'm' && end[1] == '\0')
		usage_error("%s: \"%s\": m is minutes, for times; a million is M", opt, s);
	if (*end != '\0' || v < 0 || v > (double)max || v != floor(v))
		usage_error("%s: bad number \"%s\" (0 .. %llu)", opt, s, (unsigned long long)max);
	return (uint64_t)v;
}

static uint64_t parse_time(const char *opt, const char *s)
{
	/* The units and their length in ns; no unit is seconds. */
	static const struct {
		const char *unit;
		double ns;
	} units[] = {{"", 1e9}, {"s", 1e9}, {"ms", 1e6}, {"us", 1e3}, {"m", 60e9}, {"h", 3600e9}};
	char *end;
	double v, mult = 0;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || v < 0)
		usage_error("%s: bad time \"%s\"", opt, s);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && mult == 0; i++)
		if (strcmp(end, units[i].unit) == 0)
			mult = units[i].ns;
	if (mult == 0 && strcmp(end, "M") == 0)
		usage_error("%s: \"%s\": M is a million, for counts; minutes are m", opt, s);
	if (mult == 0)
		usage_error("%s: bad time \"%s\" (units: us, ms, s, m, h)", opt, s);
	if (v * mult > 1e9 * 86400 * 7)
		usage_error("%s: %s is too long", opt, s);
	return (uint64_t)(v * mult);
}

/* A time that must not be 0 (-d, --drain): 0 would end the run before it starts. */
static uint64_t parse_time_nz(const char *opt, const char *s)
{
	uint64_t ns = parse_time(opt, s);

	if (ns == 0)
		usage_error("%s: \"%s\": the time must be more than 0", opt, s);
	return ns;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* --percentiles: a comma-separated list in any order, each in (0, 100]; sorted, without duplicates.
 */
static int parse_percentiles(const char *s, double *out)
{
	char *list = strdup(s), *save = NULL, *end, k1[40], k2[40];
	int n = 0, m = 0;

	if (list == NULL)
		usage_error("out of memory");
	for (char *a = strtok_r(list, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save)) {
		double v;

		errno = 0;
		v = strtod(a, &end);
		if (end == a || *end != '\0' || errno != 0 || !(v > 0 && v <= 100))
			usage_error("--percentiles: \"%s\": each must be a number in (0, 100]", a);
		if (n == MAX_PERCENTILES)
			usage_error("--percentiles: at most %d", MAX_PERCENTILES);
		out[n++] = v;
	}
	free(list);
	if (n == 0)
		usage_error("--percentiles: expected a list such as 50,90,99,99.9");
	qsort(out, (size_t)n, sizeof(*out), cmp_double);
	for (int i = 0; i < n; i++) {
		if (m > 0 && out[m - 1] == out[i])
			continue;
		out[m++] = out[i];
	}
	/* The keys drop the dot: 9.99 and 99.9 would both be p999. */
	for (int i = 0; i < m; i++)
		for (int j = i + 1; j < m; j++) {
			report_pct_key(out[i], k1, sizeof(k1));
			report_pct_key(out[j], k2, sizeof(k2));
			if (strcmp(k1, k2) == 0)
				usage_error("--percentiles: %.10g and %.10g would share the key %s",
					    out[i], out[j], k1);
		}
	return m;
}

static uint32_t parse_size(const char *s, char **end)
{
	double v;

	errno = 0;
	v = strtod(s, end);
	if (*end == s || errno != 0 || v < 0)
		usage_error("--size: bad size \"%s\"", s);
	if (**end == 'k' || **end == 'K' || **end == 'M') {
		v *= **end == 'M' ? 1024 * 1024 : 1024;
		(*end)++;
		if (strncmp(*end, "iB", 2) == 0)
			*end += 2;
	}
	if (v > MAX_PAYLOAD || v != floor(v))
		usage_error("--size: \"%s\": at most %u bytes", s, MAX_PAYLOAD);
	return (uint32_t)v;
}

static void parse_sizes(const char *s, struct bench_opts *o)
{
	char *end;

	o->size_min = o->size_max = parse_size(s, &end);
	if (*end == '-')
		o->size_max = parse_size(end + 1, &end);
	if (*end != '\0' || o->size_max < o->size_min)
		usage_error("--size: expected N or MIN-MAX, got \"%s\"", s);
}

static void parse_sources(const char *s, struct bench_opts *o)
{
	char *list = strdup(s), *save = NULL, err[160], tmp[NET_ADDRSTRLEN + 8];

	for (char *a = strtok_r(list, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save)) {
		if (o->nsrc == BENCH_MAX_SOURCES)
			usage_error("--source: at most %d addresses", BENCH_MAX_SOURCES);
		/* A bare address gets port 0: the kernel picks the port. */
		if (strchr(a, ':') == NULL || (a[0] != '[' && strchr(a, ':') != strrchr(a, ':')))
			snprintf(tmp, sizeof(tmp), strchr(a, ':') ? "[%s]:0" : "%s:0", a);
		else
			snprintf(tmp, sizeof(tmp), "%s", a);
		if (net_parse_addr(tmp, &o->src[o->nsrc], err, sizeof(err)) == -1)
			usage_error("--source: %s", err);
		o->nsrc++;
	}
	free(list);
	if (o->nsrc == 0)
		usage_error("--source: no address");
}

static void on_sigint(int sig)
{
	uint64_t zero = 0;

	(void)sig;
	__atomic_compare_exchange_n(&sig_run->stop_ns, &zero, bench_now(), 0, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

/*
 * The options that set a field as they are: a flag turned on, or a file
 * name kept as given (optarg). 1 if ch is one, else 0.
 */
static int set_option(int ch, struct bench_opts *o, struct cli *cli)
{
	const struct {
		int ch;
		int *flag;	   /* set to 1, or */
		const char **path; /* set to optarg */
	} opts[] = {
	    {OPT_CONN, &o->send_conn, NULL},
	    {OPT_RECONNECT, &o->reconnect, NULL},
	    {OPT_IDLE, &o->idle, NULL},
	    {OPT_ALLOW_REFUSED, &o->allow_refused, NULL},
	    {OPT_TAG_PAYLOAD, &o->tag_payload, NULL},
	    {OPT_HANDSHAKES, &o->handshakes, NULL},
	    {OPT_TLS, &cli->tls, NULL},
	    {OPT_TLS_RESUME, &o->tls_resume, NULL},
	    {OPT_TLS_CA, NULL, &cli->tls_ca},
	    {OPT_TLS_CERT, NULL, &cli->tls_cert},
	    {OPT_TLS_KEY, NULL, &cli->tls_key},
	    {OPT_TLS_SERVERNAME, NULL, &o->tls_servername},
	    {OPT_TOKEN, NULL, &cli->token_path},
	    {OPT_JSON, &cli->json, NULL},
	    {OPT_PROGRESS, &cli->progress, NULL},
	    {OPT_CSV, NULL, &cli->csv_path},
	    {OPT_HGRM, NULL, &cli->hgrm_path},
	    {OPT_ACK_LOG, NULL, &cli->ack_log_path},
	};

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (opts[i].ch != ch)
			continue;
		if (opts[i].flag != NULL)
			*opts[i].flag = 1;
		else
			*opts[i].path = optarg;
		return 1;
	}
	return 0;
}

/* The options whose argument is parsed (optarg): 1 if ch is one, else 0. */
static int value_option(int ch, struct bench_opts *o, struct cli *cli)
{
	switch (ch) {
	case 'c':
		o->conns = (int)parse_count("-c", optarg, 1000000);
		break;
	case 't':
		o->threads = (int)parse_count("-t", optarg, 256);
		break;
	case 'd':
		o->duration_ns = parse_time_nz("-d", optarg);
		cli->duration_set = 1;
		break;
	case OPT_WARMUP:
		o->warmup_ns = parse_time("--warmup", optarg);
		break;
	case 'w':
		o->window = (uint32_t)parse_count("-w", optarg, 1u << 20);
		break;
	case 's':
		parse_sizes(optarg, o);
		break;
	case 'r':
		o->rate = (double)parse_count("-r", optarg, 1000000000ull);
		if (o->rate == 0)
			usage_error("-r: at least 1 msg/s (without -r the load is a closed loop)");
		break;
	case 'n':
		o->total = parse_count("-n", optarg, UINT64_MAX / 4);
		if (o->total == 0)
			usage_error("-n: at least 1 request (without -n the run lasts -d)");
		break;
	case OPT_SOURCE:
		parse_sources(optarg, o);
		break;
	case OPT_DRAIN:
		o->drain_ns = parse_time_nz("--drain", optarg);
		break;
	case OPT_PERCENTILES:
		cli->npcts = parse_percentiles(optarg, cli->pcts);
		break;
	case OPT_RETRY:
		o->retry_ns = parse_time_nz("--retry", optarg);
		break;
	default:
		return 0;
	}
	return 1;
}

/* The options that only print (version, help) and what getopt refused: the exit status. */
static int print_option(int ch)
{
	switch (ch) {
	case 'v':
	case 'V':
		printf("submit-bench %s (commit %s)\n", version_string, version_commit);
		return 0;
	case 'h':
		fputs(usage_text, stdout);
		return 0;
	}
	fprintf(stderr, "Try 'submit-bench --help'.\n");
	return 2;
}

/* One option. -1 to go on, else the exit status: help, version, an unknown option. */
static int parse_option(int ch, struct bench_opts *o, struct cli *cli)
{
	if (!set_option(ch, o, cli) && !value_option(ch, o, cli))
		return print_option(ch);
	return -1;
}

/* --token FILE: the Conn's client data, and Conn first. Exits 2 if it cannot be read. */
static void read_token(struct bench_opts *o, const char *path)
{
	static uint8_t tok[65536];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "submit-bench: --token %s: %s\n", path, strerror(errno));
		exit(2);
	}
	n = fread(tok, 1, sizeof(tok), f);
	fclose(f);
	if (n > 0 && tok[n - 1] == '\n')
		n--;
	o->token = tok;
	o->token_len = (uint32_t)n;
	o->send_conn = 1;
}

/* The combinations of --handshakes and the --tls options that make no sense. */
static void check_tls_options(struct bench_opts *o, const struct cli *cli)
{
	if (o->handshakes && (o->idle || o->rate > 0 || o->reconnect))
		usage_error("--handshakes opens its own connections: no --idle, -r or --reconnect");
	if (o->handshakes)
		o->window = 1; /* one Submit per connection */
	if (!cli->tls &&
	    (cli->tls_ca || cli->tls_cert || cli->tls_key || o->tls_resume || o->tls_servername))
		usage_error("--tls-ca, --tls-cert, --tls-key, --tls-resume and --tls-servername "
			    "work with --tls");
	if ((cli->tls_cert == NULL) != (cli->tls_key == NULL))
		usage_error("--tls-cert and --tls-key go together");
	if (o->tls_servername != NULL && o->tls_servername[0] == '\0')
		usage_error("--tls-servername: empty name");
}

/* The command line into o and cli. -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct bench_opts *o, struct cli *cli)
{
	char err[192];
	int ch, rc;

	memset(o, 0, sizeof(*o));
	o->conns = 100;
	o->threads = 1;
	o->duration_ns = 10000000000ull;
	o->drain_ns = 5000000000ull;
	o->window = 64;
	o->size_min = o->size_max = 20;
	o->ack_log_fd = -1;
	memset(cli, 0, sizeof(*cli));
	cli->target = "127.0.0.1:8888";
	cli->progress = isatty(2);
	cli->pcts[0] = 50;
	cli->pcts[1] = 90;
	cli->pcts[2] = 99;
	cli->pcts[3] = 99.9;
	cli->npcts = 4;

	while ((ch = getopt_long(argc, argv, "c:t:d:w:s:r:n:vVh", longopts, NULL)) != -1)
		if ((rc = parse_option(ch, o, cli)) != -1)
			return rc;
	if (optind < argc)
		cli->target = argv[optind++];
	if (optind < argc)
		usage_error("unexpected argument \"%s\"", argv[optind]);
	if (net_parse_addr(cli->target, &o->dst, err, sizeof(err)) == -1)
		usage_error("%s", err);
	net_addr_str(&o->dst, o->dst_name, sizeof(o->dst_name));
	if (o->conns < 1)
		usage_error("-c: at least one connection");
	if (o->threads < 1 || o->threads > o->conns)
		usage_error("-t: between 1 and the number of connections");
	if (o->idle && (o->total > 0 || o->rate > 0))
		usage_error("--idle sends nothing: no -n or -r with it");
	if (o->retry_ns > 0 && !o->reconnect)
		usage_error("--retry works with --reconnect");
	if (o->total > 0 && !cli->duration_set)
		o->duration_ns = 60000000000ull;
	if (o->rate > 0 && o->rate < o->threads)
		usage_error("-r: at least one msg/s per thread");
	check_tls_options(o, cli);
	if (cli->token_path != NULL)
		read_token(o, cli->token_path);
	return -1;
}

/* The descriptor limit and the output files. 0, or the exit status. */
static int open_outputs(struct bench_opts *o, struct cli *cli)
{
	struct rlimit rl;

	/* One fd per connection, and a few more. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o->conns + 32) {
		fprintf(stderr,
			"submit-bench: %d connections need more open files than the limit %llu%s\n",
			o->conns, (unsigned long long)rl.rlim_cur,
			o->nsrc == 0 ? "" : " (per process)");
		return 2;
	}
	if (cli->csv_path != NULL && (cli->csv = fopen(cli->csv_path, "w")) == NULL) {
		fprintf(stderr, "submit-bench: %s: %s\n", cli->csv_path, strerror(errno));
		return 2;
	}
	o->interval_hist = cli->csv != NULL;
	if (cli->hgrm_path != NULL && (cli->hgrm = fopen(cli->hgrm_path, "w")) == NULL) {
		fprintf(stderr, "submit-bench: %s: %s\n", cli->hgrm_path, strerror(errno));
		return 2;
	}
	/* O_APPEND: each thread's write of whole lines lands whole. */
	if (cli->ack_log_path != NULL &&
	    (o->ack_log_fd = open(cli->ack_log_path,
				  O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644)) ==
		-1) {
		fprintf(stderr, "submit-bench: %s: %s\n", cli->ack_log_path, strerror(errno));
		return 2;
	}
	return 0;
}

/* "OPTION FILE: reason" on stderr; the exit status of a bad file. */
static int __attribute__((format(printf, 3, 4)))
tls_file_error(const char *opt, const char *path, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "submit-bench: %s %s: ", opt, path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_clear_error();
	return 2;
}

/* OpenSSL's reason for the last failure, or what the caller expected. */
static const char *tls_last_reason(const char *otherwise)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());

	return r != NULL ? r : otherwise;
}

/*
 * The PEM certificates of path into out (a store; NULL: only read), at least
 * one. 0, or the exit status after the error line.
 */
static int tls_read_certs(const char *opt, const char *path, X509_STORE *out)
{
	FILE *f = fopen(path, "r");
	X509 *x;
	int n = 0;

	if (f == NULL)
		return tls_file_error(opt, path, "cannot read: %s", strerror(errno));
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		if (out != NULL && X509_STORE_add_cert(out, x) != 1) {
			X509_free(x);
			fclose(f);
			return tls_file_error(opt, path, "%s", tls_last_reason("bad certificate"));
		}
		X509_free(x);
		n++;
	}
	fclose(f);
	ERR_clear_error(); /* the end of the file reads as "no start line" */
	if (n == 0)
		return tls_file_error(opt, path, "no certificate found (not PEM?)");
	return 0;
}

/* --tls-cert and --tls-key into ctx. 0, or the exit status. */
static int tls_client_cert(SSL_CTX *ctx, const struct cli *cli)
{
	int rc;

	if ((rc = tls_read_certs("--tls-cert", cli->tls_cert, NULL)) != 0)
		return rc;
	if (SSL_CTX_use_certificate_chain_file(ctx, cli->tls_cert) != 1)
		return tls_file_error("--tls-cert", cli->tls_cert, "%s",
				      tls_last_reason("cannot use the certificate"));
	if (access(cli->tls_key, R_OK) == -1)
		return tls_file_error("--tls-key", cli->tls_key, "cannot read: %s",
				      strerror(errno));
	if (SSL_CTX_use_PrivateKey_file(ctx, cli->tls_key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
			return tls_file_error("--tls-key", cli->tls_key,
					      "key does not match certificate %s", cli->tls_cert);
		return tls_file_error("--tls-key", cli->tls_key, "no private key found (not PEM?)");
	}
	if (SSL_CTX_check_private_key(ctx) != 1)
		return tls_file_error("--tls-key", cli->tls_key,
				      "key does not match certificate %s", cli->tls_cert);
	return 0;
}

/*
 * --tls-ca: the CAs, and the name the certificate must carry: --tls-servername,
 * else the target's address. 0, or the exit status.
 */
static int tls_verify_setup(SSL_CTX *ctx, struct bench_opts *o, const struct cli *cli)
{
	X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
	char host[NET_ADDRSTRLEN];
	int rc;

	if ((rc = tls_read_certs("--tls-ca", cli->tls_ca, SSL_CTX_get_cert_store(ctx))) != 0)
		return rc;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	o->tls_verify = 1;
	if (o->tls_servername != NULL)
		return X509_VERIFY_PARAM_set1_host(param, o->tls_servername, 0) == 1 ? 0 : 2;
	/* "127.0.0.1:8443" or "[::1]:8443": the address without the port and brackets */
	snprintf(host, sizeof(host), "%s", o->dst_name[0] == '[' ? o->dst_name + 1 : o->dst_name);
	*strrchr(host, o->dst_name[0] == '[' ? ']' : ':') = '\0';
	if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
		fprintf(stderr, "submit-bench: --tls-ca: cannot check the address %s\n", host);
		return 2;
	}
	return 0;
}

/* --tls: the client context the threads share, in o->tls. 0, or the exit status. */
static int tls_setup(struct bench_opts *o, const struct cli *cli)
{
	SSL_CTX *ctx;
	int rc = 0;

	if (!cli->tls)
		return 0;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		fprintf(stderr, "submit-bench: TLS: %s\n", tls_last_reason("no context"));
		return 1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* AES-128-GCM first, as submitd's default tls_ciphersuites */
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
				      "TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (cli->tls_ca != NULL)
		rc = tls_verify_setup(ctx, o, cli);
	if (rc == 0 && cli->tls_cert != NULL)
		rc = tls_client_cert(ctx, cli);
	if (rc != 0) {
		SSL_CTX_free(ctx);
		return rc;
	}
	engine_tls_setup(ctx, o->tls_resume);
	o->tls = ctx;
	return 0;
}

/* Start o->threads engine threads, each with its share of the connections. NULL on failure. */
static struct bench_thread *start_threads(const struct bench_opts *o, struct bench_run *run)
{
	struct bench_thread *th;

	if ((th = calloc((size_t)o->threads, sizeof(*th))) == NULL) {
		fprintf(stderr, "submit-bench: out of memory\n");
		return NULL;
	}
	pthread_barrier_init(&run->barrier, NULL, (unsigned)o->threads + 1);
	for (int i = 0, first = 0; i < o->threads; i++) {
		struct bench_thread *t = &th[i];
		t->index = i;
		t->first_conn = first;
		t->nconns = o->conns / o->threads + (i < o->conns % o->threads);
		first += t->nconns;
		t->total = o->total / (uint64_t)o->threads +
			   ((uint64_t)i < o->total % (uint64_t)o->threads);
		t->rate = o->rate / o->threads;
		t->o = o;
		t->run = run;
		hist_init(&t->res.hist);
		if (o->interval_hist && (t->ival_out = calloc(1, sizeof(*t->ival_out))) == NULL) {
			fprintf(stderr, "submit-bench: out of memory\n");
			return NULL;
		}
		if ((errno = pthread_create(&t->tid, NULL, engine_thread_main, t)) != 0) {
			fprintf(stderr, "submit-bench: pthread_create: %s\n", strerror(errno));
			return NULL;
		}
	}
	return th;
}

/* Once every thread is connected: set the timeline and let them send. */
static void start_clock(const struct bench_opts *o, struct bench_run *run)
{
	struct bench_times *times = &run->times;

	pthread_barrier_wait(&run->barrier); /* every thread has its connections */
	times->t0 = bench_now();
	if (o->total > 0 || o->idle) {
		times->warm_end = times->t0;
		times->end = times->t0 + o->duration_ns;
		times->deadline = times->end;
	} else {
		times->warm_end = times->t0 + o->warmup_ns;
		times->end = times->warm_end + o->duration_ns;
		times->deadline = times->end + o->drain_ns;
	}
	pthread_barrier_wait(&run->barrier);
}

static int any_running(const struct bench_thread *th, int nthreads)
{
	for (int i = 0; i < nthreads; i++)
		if (!__atomic_load_n(&th[i].finished, __ATOMIC_ACQUIRE))
			return 1;
	return 0;
}

/* What the threads published: sums, and the largest latency since the last call. */
static void take_published(struct bench_thread *th, int nthreads, struct report_tick *k)
{
	uint64_t l;

	k->sent = k->acked = k->errors = k->open = k->max_lat = 0;
	for (int i = 0; i < nthreads; i++) {
		k->sent += __atomic_load_n(&th[i].pub.sent, __ATOMIC_RELAXED);
		k->acked += __atomic_load_n(&th[i].pub.acked, __ATOMIC_RELAXED);
		k->errors += __atomic_load_n(&th[i].pub.errors, __ATOMIC_RELAXED);
		k->open += __atomic_load_n(&th[i].pub.open, __ATOMIC_RELAXED);
		l = __atomic_exchange_n(&th[i].pub.max_lat, 0, __ATOMIC_RELAXED);
		if (l > k->max_lat)
			k->max_lat = l;
	}
}

/*
 * --csv: advance the second and collect every running thread's histogram
 * of it. A thread hands over at its next loop round (at most TICK_NS plus
 * one round of work); one that does not within 200 ms is left out. A
 * finished thread's last partial second is taken once.
 */
static void collect_interval(struct bench_thread *th, int nthreads, struct bench_run *run,
			     struct hist *out)
{
	uint64_t tick = __atomic_add_fetch(&run->csv_tick, 1, __ATOMIC_RELEASE);
	uint64_t limit = bench_now() + 200000000ull;
	struct timespec ts = {0, 1000000};

	hist_init(out);
	for (int i = 0; i < nthreads; i++) {
		while (__atomic_load_n(&th[i].ival_done, __ATOMIC_ACQUIRE) != tick &&
		       !__atomic_load_n(&th[i].finished, __ATOMIC_ACQUIRE) && bench_now() < limit)
			nanosleep(&ts, NULL);
		if (__atomic_load_n(&th[i].ival_done, __ATOMIC_ACQUIRE) == tick) {
			hist_merge(out, th[i].ival_out);
		} else if (__atomic_load_n(&th[i].finished, __ATOMIC_ACQUIRE) &&
			   th[i].ival_last != NULL && !th[i].ival_last_taken) {
			hist_merge(out, th[i].ival_last);
			th[i].ival_last_taken = 1;
		}
	}
}

/* Until every thread has finished: a progress line and a --csv row a second. */
static void progress_loop(struct bench_thread *th, const struct bench_opts *o,
			  struct bench_run *run, const struct cli *cli)
{
	struct report_tick k;
	struct hist ival;
	uint64_t now, next_tick, prev_acked = 0;

	if (cli->csv != NULL)
		report_csv_header(cli->csv);
	next_tick = run->times.t0 + 1000000000ull;
	while (any_running(th, o->threads)) {
		struct timespec ts = {0, 20000000};

		nanosleep(&ts, NULL);
		now = bench_now();
		if (now < next_tick)
			continue;
		k.elapsed_s = (double)(now - run->times.t0) / 1e9;
		take_published(th, o->threads, &k);
		k.rate = (double)(k.acked - prev_acked) * 1e9 /
			 (double)(now - next_tick + 1000000000ull);
		prev_acked = k.acked;
		if (cli->progress)
			report_progress(&k);
		if (cli->csv != NULL) {
			collect_interval(th, o->threads, run, &ival);
			report_csv_row(cli->csv, &k, &ival);
		}
		next_tick = now + 1000000000ull;
	}
}

/* Join the threads and add up their results. */
static void collect(struct bench_thread *th, int nthreads, struct bench_result *tot)
{
	memset(tot, 0, sizeof(*tot));
	for (int i = 0; i < nthreads; i++) {
		pthread_join(th[i].tid, NULL);
		report_add(tot, &th[i].res);
		free(th[i].ival_out);
		free(th[i].ival_last);
	}
}

/* Close the --csv and --ack-log files, write --hgrm; a failure is an error of the run. */
static void close_outputs(const struct bench_opts *o, const struct cli *cli,
			  struct bench_result *tot)
{
	if (cli->csv != NULL)
		fclose(cli->csv);
	if (o->ack_log_fd != -1 && close(o->ack_log_fd) == -1) {
		report_error("--ack-log: %s: %s", cli->ack_log_path, strerror(errno));
		tot->errors++;
	}
	if (cli->hgrm != NULL) {
		if ((hist_write_hgrm(cli->hgrm, &tot->hist, HGRM_UNIT) | fclose(cli->hgrm)) != 0) {
			report_error("--hgrm: %s: write failed", cli->hgrm_path);
			tot->errors++;
		}
	}
}

/* The measured time and the rate: to the last ack with -n, else the window (cut by SIGINT). */
static void measure(const struct bench_run *run, struct report *r)
{
	const struct bench_opts *o = r->o;
	const struct bench_result *tot = r->tot;
	uint64_t stop = run->stop_ns, end = run->times.end, counted;
	double mean_frame;

	if (stop != 0 && stop < end)
		end = stop;
	if (o->total > 0)
		end = tot->last_ack > run->times.t0 ? tot->last_ack : run->times.t0 + 1;
	r->measured_ns = end > run->times.warm_end ? end - run->times.warm_end : 1;
	counted = o->total > 0 ? tot->acked : tot->acked_window;
	r->rate = (double)counted * 1e9 / (double)r->measured_ns;
	r->handshake_rate = (double)(o->total > 0 ? tot->handshakes : tot->handshakes_window) *
			    1e9 / (double)r->measured_ns;
	mean_frame = tot->sent ? (double)tot->sent_bytes / (double)tot->sent : 0;
	r->mbps = r->rate * mean_frame / 1e6;
}

/*
 * 0 when every ack checked out and at least one arrived (with --idle: every
 * connection stayed open). A -n run that got fewer acks than it sent is an
 * error even when no ack was wrong: counted here, so that the summary says so.
 */
static int exit_status(const struct bench_opts *o, struct bench_result *tot)
{
	if (o->total > 0 && tot->acked != o->total && tot->errors == 0)
		tot->errors++;
	if (tot->errors > 0)
		return 1;
	if (o->idle ? tot->open_at_end != (uint64_t)o->conns : tot->acked == 0)
		return 1;
	return 0;
}

/* The payload every request carries a prefix of, shared read-only by the threads. */
static uint8_t *make_payload(uint32_t size)
{
	uint8_t *payload = malloc(size + 1);

	if (payload == NULL)
		return NULL;
	for (uint32_t i = 0; i <= size; i++)
		payload[i] = (uint8_t)('a' + i % 26);
	return payload;
}

int main(int argc, char **argv)
{
	struct bench_result tot;
	struct bench_opts o;
	struct bench_run run;
	struct bench_thread *th;
	struct report r;
	struct cli cli;
	uint8_t *payload;
	int rc;

	if ((rc = parse_options(argc, argv, &o, &cli)) != -1)
		return rc;
	if ((rc = tls_setup(&o, &cli)) != 0)
		return rc;
	if ((rc = open_outputs(&o, &cli)) != 0)
		return rc;
	if ((payload = make_payload(o.size_max)) == NULL) {
		fprintf(stderr, "submit-bench: out of memory\n");
		return 1;
	}
	o.payload = payload;
	memset(&run, 0, sizeof(run));
	run.next_conn = o.conns;
	sig_run = &run;
	/*
	 * No free-chunk pool: the pool is per process and unlocked, and the
	 * threads share it; every buffer goes straight to jemalloc instead.
	 */
	buf_pool_init(16384, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);

	if ((th = start_threads(&o, &run)) == NULL)
		return 1;
	start_clock(&o, &run);
	progress_loop(th, &o, &run, &cli);
	collect(th, o.threads, &tot);
	close_outputs(&o, &cli, &tot);

	r.o = &o;
	r.tot = &tot;
	r.pcts = cli.pcts;
	r.npcts = cli.npcts;
	measure(&run, &r);
	rc = exit_status(&o, &tot);
	r.ok = rc == 0;
	if (cli.json)
		report_json(&r);
	else
		report_text(&r);
	report_verdict(&r);
	free(payload);
	free(th);
	SSL_CTX_free(o.tls);
	return rc;
}

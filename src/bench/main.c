/*
 * submit-bench: a load generator for the submit protocol. Options, the
 * threads, the progress line and the report; the per-connection work is
 * in engine.c.
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

#include "bench.h"
#include "proto.h"

#define MAX_ERROR_LINES 20
#define MAX_PAYLOAD	(16u << 20)
#define MAX_PERCENTILES 16
#define HGRM_UNIT	1e6 /* .hgrm values in milliseconds, as HdrHistogram's tools write them */

uint64_t bench_stop_ns;
uint64_t bench_csv_tick;
int bench_next_conn;
static unsigned error_lines;

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
    "  -r, --rate R          open loop: R msgs/s in total on a fixed schedule; latency\n"
    "                        counts from the scheduled time (default: closed loop)\n"
    "  -n, --requests N      send exactly N requests, then stop when all are acked;\n"
    "                        counts take k (thousand) and M (million), not m\n"
    "      --reconnect       reconnect after a server close between two acks\n"
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
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

void bench_error(const char *fmt, ...)
{
	unsigned n = __atomic_fetch_add(&error_lines, 1, __ATOMIC_RELAXED);
	char line[512];
	va_list ap;

	if (n > MAX_ERROR_LINES)
		return;
	if (n == MAX_ERROR_LINES) {
		fprintf(stderr, "submit-bench: more errors, not shown\n");
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "submit-bench: error: %s\n", line);
}

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
	char *end;
	double v, mult = 1e9;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || v < 0)
		usage_error("%s: bad time \"%s\"", opt, s);
	if (strcmp(end, "ms") == 0)
		mult = 1e6;
	else if (strcmp(end, "us") == 0)
		mult = 1e3;
	else if (strcmp(end, "m") == 0)
		mult = 60e9;
	else if (strcmp(end, "h") == 0)
		mult = 3600e9;
	else if (strcmp(end, "M") == 0)
		usage_error("%s: \"%s\": M is a million, for counts; minutes are m", opt, s);
	else if (strcmp(end, "s") != 0 && *end != '\0')
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

/* A JSON key for a percentile: its digits, 99.9 -> "p999". */
static void pct_key(double p, char *out, size_t n)
{
	char num[32], *d = num;

	snprintf(num, sizeof(num), "%.10g", p);
	snprintf(out, n, "p");
	for (char *q = out + 1; *d != '\0' && q < out + n - 1; d++)
		if (*d != '.')
			*q++ = *d, *q = '\0';
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
			pct_key(out[i], k1, sizeof(k1));
			pct_key(out[j], k2, sizeof(k2));
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
	if (**end == 'k' || **end == 'K') {
		v *= 1024;
		(*end)++;
		if (strncmp(*end, "iB", 2) == 0)
			*end += 2;
	} else if (**end == 'M') {
		v *= 1024 * 1024;
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
	__atomic_compare_exchange_n(&bench_stop_ns, &zero, bench_now(), 0, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

static void fmt_lat(char *out, size_t n, uint64_t ns)
{
	if (ns < 1000000)
		snprintf(out, n, "%.1f us", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(out, n, "%.3f ms", (double)ns / 1e6);
	else
		snprintf(out, n, "%.3f s", (double)ns / 1e9);
}

struct totals {
	struct hist hist;
	struct hist ival;
	uint64_t sent, sent_bytes, acked, acked_window, conn_acked, errors, connect_errors;
	uint64_t reconnects, lost, refused, unacked, open_at_end, last_ack;
	uint64_t results[BENCH_RES_N];
};

/*
 * --csv: advance the second and collect every running thread's histogram
 * of it. A thread hands over at its next loop round (at most TICK_NS plus
 * one round of work); one that does not within 200 ms is left out. A
 * finished thread's last partial second is taken once.
 */
static void collect_interval(struct bench_thread *th, int nthreads, struct hist *out)
{
	uint64_t tick = __atomic_add_fetch(&bench_csv_tick, 1, __ATOMIC_RELEASE);
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

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_times times;
	struct bench_thread *th;
	struct totals *tot;
	pthread_barrier_t barrier;
	struct rlimit rl;
	const char *target = "127.0.0.1:8888", *csv_path = NULL, *hgrm_path = NULL;
	const char *ack_log_path = NULL;
	int json = 0, progress = isatty(2), ch, duration_set = 0, rc = 0;
	double pcts[MAX_PERCENTILES] = {50, 90, 99, 99.9};
	int npcts = 4;
	FILE *csv = NULL, *hgrm = NULL;
	char err[192];
	uint8_t *payload;
	uint64_t now, next_tick, prev_acked = 0, measured_ns;
	double rate, mbps, mean_frame;

	memset(&o, 0, sizeof(o));
	o.conns = 100;
	o.threads = 1;
	o.duration_ns = 10000000000ull;
	o.drain_ns = 5000000000ull;
	o.window = 64;
	o.size_min = o.size_max = 20;
	o.ack_log_fd = -1;

	while ((ch = getopt_long(argc, argv, "c:t:d:w:s:r:n:vVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.conns = (int)parse_count("-c", optarg, 1000000);
			break;
		case 't':
			o.threads = (int)parse_count("-t", optarg, 256);
			break;
		case 'd':
			o.duration_ns = parse_time_nz("-d", optarg);
			duration_set = 1;
			break;
		case OPT_WARMUP:
			o.warmup_ns = parse_time("--warmup", optarg);
			break;
		case 'w':
			o.window = (uint32_t)parse_count("-w", optarg, 1u << 20);
			break;
		case 's':
			parse_sizes(optarg, &o);
			break;
		case OPT_CONN:
			o.send_conn = 1;
			break;
		case 'r':
			o.rate = (double)parse_count("-r", optarg, 1000000000ull);
			if (o.rate == 0)
				usage_error("-r: at least 1 msg/s (without -r the load is a closed "
					    "loop)");
			break;
		case 'n':
			o.total = parse_count("-n", optarg, UINT64_MAX / 4);
			if (o.total == 0)
				usage_error("-n: at least 1 request (without -n the run lasts -d)");
			break;
		case OPT_RECONNECT:
			o.reconnect = 1;
			break;
		case OPT_SOURCE:
			parse_sources(optarg, &o);
			break;
		case OPT_IDLE:
			o.idle = 1;
			break;
		case OPT_DRAIN:
			o.drain_ns = parse_time_nz("--drain", optarg);
			break;
		case OPT_JSON:
			json = 1;
			break;
		case OPT_CSV:
			csv_path = optarg;
			break;
		case OPT_PROGRESS:
			progress = 1;
			break;
		case OPT_ALLOW_REFUSED:
			o.allow_refused = 1;
			break;
		case OPT_PERCENTILES:
			npcts = parse_percentiles(optarg, pcts);
			break;
		case OPT_HGRM:
			hgrm_path = optarg;
			break;
		case OPT_ACK_LOG:
			ack_log_path = optarg;
			break;
		case 'v':
		case 'V':
			printf("submit-bench %s (commit %s)\n", SUBMITD_VERSION, SUBMITD_COMMIT);
			return 0;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'submit-bench --help'.\n");
			return 2;
		}
	}
	if (optind < argc)
		target = argv[optind++];
	if (optind < argc)
		usage_error("unexpected argument \"%s\"", argv[optind]);
	if (net_parse_addr(target, &o.dst, err, sizeof(err)) == -1)
		usage_error("%s", err);
	net_addr_str(&o.dst, o.dst_name, sizeof(o.dst_name));
	if (o.conns < 1)
		usage_error("-c: at least one connection");
	bench_next_conn = o.conns;
	if (o.threads < 1 || o.threads > o.conns)
		usage_error("-t: between 1 and the number of connections");
	if (o.idle && (o.total > 0 || o.rate > 0))
		usage_error("--idle sends nothing: no -n or -r with it");
	if (o.total > 0 && !duration_set)
		o.duration_ns = 60000000000ull;
	if (o.rate > 0 && o.rate < o.threads)
		usage_error("-r: at least one msg/s per thread");

	/* One fd per connection, and a few more. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.conns + 32) {
		fprintf(stderr,
			"submit-bench: %d connections need more open files than the limit %llu%s\n",
			o.conns, (unsigned long long)rl.rlim_cur,
			o.nsrc == 0 ? "" : " (per process)");
		return 2;
	}
	if (csv_path != NULL && (csv = fopen(csv_path, "w")) == NULL) {
		fprintf(stderr, "submit-bench: %s: %s\n", csv_path, strerror(errno));
		return 2;
	}
	o.interval_hist = csv != NULL;
	if (hgrm_path != NULL && (hgrm = fopen(hgrm_path, "w")) == NULL) {
		fprintf(stderr, "submit-bench: %s: %s\n", hgrm_path, strerror(errno));
		return 2;
	}
	/* O_APPEND: each thread's write of whole lines lands whole. */
	if (ack_log_path != NULL &&
	    (o.ack_log_fd = open(ack_log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
				 0644)) == -1) {
		fprintf(stderr, "submit-bench: %s: %s\n", ack_log_path, strerror(errno));
		return 2;
	}

	if ((payload = malloc(o.size_max + 1)) == NULL) {
		fprintf(stderr, "submit-bench: out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i <= o.size_max; i++)
		payload[i] = (uint8_t)('a' + i % 26);
	o.payload = payload;
	/*
	 * No free-chunk pool: the pool is per process and unlocked, and the
	 * threads share it; every buffer goes straight to jemalloc instead.
	 */
	buf_pool_init(16384, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);

	th = calloc((size_t)o.threads, sizeof(*th));
	tot = calloc(1, sizeof(*tot));
	if (th == NULL || tot == NULL) {
		fprintf(stderr, "submit-bench: out of memory\n");
		return 1;
	}
	pthread_barrier_init(&barrier, NULL, (unsigned)o.threads + 1);
	for (int i = 0, first = 0; i < o.threads; i++) {
		struct bench_thread *t = &th[i];
		t->index = i;
		t->first_conn = first;
		t->nconns = o.conns / o.threads + (i < o.conns % o.threads);
		first += t->nconns;
		t->total =
		    o.total / (uint64_t)o.threads + ((uint64_t)i < o.total % (uint64_t)o.threads);
		t->rate = o.rate / o.threads;
		t->o = &o;
		t->times = &times;
		t->barrier = &barrier;
		hist_init(&t->hist);
		if (o.interval_hist && (t->ival_out = calloc(1, sizeof(*t->ival_out))) == NULL) {
			fprintf(stderr, "submit-bench: out of memory\n");
			return 1;
		}
		if ((errno = pthread_create(&t->tid, NULL, bench_thread_main, t)) != 0) {
			fprintf(stderr, "submit-bench: pthread_create: %s\n", strerror(errno));
			return 1;
		}
	}

	pthread_barrier_wait(&barrier); /* every thread has its connections */
	times.t0 = bench_now();
	if (o.total > 0 || o.idle) {
		times.warm_end = times.t0;
		times.end = times.t0 + o.duration_ns;
		times.deadline = times.end;
	} else {
		times.warm_end = times.t0 + o.warmup_ns;
		times.end = times.warm_end + o.duration_ns;
		times.deadline = times.end + o.drain_ns;
	}
	pthread_barrier_wait(&barrier);

	if (csv != NULL)
		fprintf(csv, "elapsed_s,sent,acked,rate,errors,open,max_latency_us,p50_latency_us,"
			     "p99_latency_us\n");
	next_tick = times.t0 + 1000000000ull;
	for (;;) {
		struct timespec ts = {0, 20000000};
		int running = 0;

		for (int i = 0; i < o.threads; i++)
			if (!__atomic_load_n(&th[i].finished, __ATOMIC_ACQUIRE))
				running = 1;
		if (!running)
			break;
		nanosleep(&ts, NULL);
		now = bench_now();
		if (now < next_tick)
			continue;
		{
			uint64_t sent = 0, acked = 0, errors = 0, open = 0, maxl = 0, l;
			double el = (double)(now - times.t0) / 1e9;
			for (int i = 0; i < o.threads; i++) {
				sent += __atomic_load_n(&th[i].pub.sent, __ATOMIC_RELAXED);
				acked += __atomic_load_n(&th[i].pub.acked, __ATOMIC_RELAXED);
				errors += __atomic_load_n(&th[i].pub.errors, __ATOMIC_RELAXED);
				open += __atomic_load_n(&th[i].pub.open, __ATOMIC_RELAXED);
				l = __atomic_exchange_n(&th[i].pub.max_lat, 0, __ATOMIC_RELAXED);
				if (l > maxl)
					maxl = l;
			}
			rate = (double)(acked - prev_acked) * 1e9 /
			       (double)(now - next_tick + 1000000000ull);
			prev_acked = acked;
			if (progress) {
				char ml[32];
				fmt_lat(ml, sizeof(ml), maxl);
				fprintf(stderr,
					"%6.1fs %10.0f msgs/s  acked %llu  errors %llu  open %llu  "
					"max %s\n",
					el, rate, (unsigned long long)acked,
					(unsigned long long)errors, (unsigned long long)open, ml);
			}
			if (csv != NULL) {
				/* max from the same histogram: p99 <= max holds */
				collect_interval(th, o.threads, &tot->ival);
				fprintf(csv, "%.3f,%llu,%llu,%.0f,%llu,%llu,%.1f,%.1f,%.1f\n", el,
					(unsigned long long)sent, (unsigned long long)acked, rate,
					(unsigned long long)errors, (unsigned long long)open,
					(double)tot->ival.max / 1e3,
					(double)hist_quantile(&tot->ival, 0.5) / 1e3,
					(double)hist_quantile(&tot->ival, 0.99) / 1e3);
			}
			next_tick = now + 1000000000ull;
		}
	}

	hist_init(&tot->hist);
	for (int i = 0; i < o.threads; i++) {
		struct bench_thread *t = &th[i];
		pthread_join(t->tid, NULL);
		hist_merge(&tot->hist, &t->hist);
		tot->sent += t->sent;
		tot->sent_bytes += t->sent_bytes;
		tot->acked += t->acked;
		tot->acked_window += t->acked_window;
		tot->conn_acked += t->conn_acked;
		tot->errors += t->errors;
		tot->connect_errors += t->connect_errors;
		tot->reconnects += t->reconnects;
		tot->lost += t->lost;
		tot->refused += t->refused;
		tot->unacked += t->unacked;
		tot->open_at_end += t->open_at_end;
		if (t->last_ack > tot->last_ack)
			tot->last_ack = t->last_ack;
		for (int r = 0; r < BENCH_RES_N; r++)
			tot->results[r] += t->results[r];
		free(t->ival_out);
		free(t->ival_last);
	}
	if (csv != NULL)
		fclose(csv);
	if (o.ack_log_fd != -1 && close(o.ack_log_fd) == -1) {
		bench_error("--ack-log: %s: %s", ack_log_path, strerror(errno));
		tot->errors++;
	}
	if (hgrm != NULL) {
		if ((hist_write_hgrm(hgrm, &tot->hist, HGRM_UNIT) | fclose(hgrm)) != 0) {
			bench_error("--hgrm: %s: write failed", hgrm_path);
			tot->errors++;
		}
	}

	{
		uint64_t stop = bench_stop_ns, end = times.end;
		if (stop != 0 && stop < end)
			end = stop;
		if (o.total > 0)
			end = tot->last_ack > times.t0 ? tot->last_ack : times.t0 + 1;
		measured_ns = end > times.warm_end ? end - times.warm_end : 1;
	}
	{
		uint64_t counted = o.total > 0 ? tot->acked : tot->acked_window;
		rate = (double)counted * 1e9 / (double)measured_ns;
		mean_frame = tot->sent ? (double)tot->sent_bytes / (double)tot->sent : 0;
		mbps = rate * mean_frame / 1e6;
	}

	if (o.total > 0 && tot->acked != o.total && tot->errors == 0)
		tot->errors++;
	if (tot->errors > 0)
		rc = 1;
	else if (o.idle ? tot->open_at_end != (uint64_t)o.conns : tot->acked == 0)
		rc = 1;

	if (json) {
		const struct hist *h = &tot->hist;
		char key[40];

		printf(
		    "{\"version\":\"%s\",\"target\":\"%s\",\"connections\":%d,\"threads\":%d,"
		    "\"window\":%u,\"size_min\":%u,\"size_max\":%u,\"rate_target\":%.0f,"
		    "\"conn\":%s,\"idle\":%s,\"measured_s\":%.3f,\"sent\":%llu,\"acked\":%llu,"
		    "\"acked_measured\":%llu,\"conn_acked\":%llu,\"rate\":%.1f,\"mb_per_s\":%.3f,"
		    "\"errors\":%llu,\"connect_errors\":%llu,\"unacked\":%llu,"
		    "\"reconnects\":%llu,\"lost\":%llu,\"refused\":%llu,\"open_at_end\":%llu,"
		    "\"results\":{\"0\":%llu,\"1\":%llu,\"2\":%llu,\"other\":%llu},"
		    "\"not_stored\":%llu,"
		    "\"latency_us\":{\"count\":%llu,\"min\":%.1f,\"mean\":%.1f,\"stddev\":%.1f",
		    SUBMITD_VERSION, o.dst_name, o.conns, o.threads, o.window, o.size_min,
		    o.size_max, o.rate, o.send_conn ? "true" : "false", o.idle ? "true" : "false",
		    (double)measured_ns / 1e9, (unsigned long long)tot->sent,
		    (unsigned long long)tot->acked, (unsigned long long)tot->acked_window,
		    (unsigned long long)tot->conn_acked, rate, mbps,
		    (unsigned long long)tot->errors, (unsigned long long)tot->connect_errors,
		    (unsigned long long)tot->unacked, (unsigned long long)tot->reconnects,
		    (unsigned long long)tot->lost, (unsigned long long)tot->refused,
		    (unsigned long long)tot->open_at_end,
		    (unsigned long long)tot->results[BENCH_RES_OK],
		    (unsigned long long)tot->results[BENCH_RES_REFUSED],
		    (unsigned long long)tot->results[BENCH_RES_NOT_STORED],
		    (unsigned long long)tot->results[BENCH_RES_OTHER],
		    (unsigned long long)tot->results[BENCH_RES_NOT_STORED],
		    (unsigned long long)h->count, (double)h->min / 1e3, hist_mean(h) / 1e3,
		    hist_stddev(h) / 1e3);
		for (int i = 0; i < npcts; i++) {
			pct_key(pcts[i], key, sizeof(key));
			printf(",\"%s\":%.1f", key, (double)hist_quantile(h, pcts[i] / 100) / 1e3);
		}
		printf(",\"max\":%.1f},\"ok\":%s}\n", (double)h->max / 1e3,
		       rc == 0 ? "true" : "false");
	} else {
		const struct hist *h = &tot->hist;
		char lat[32], mean[32], sd[32], win[32], sz[48], mode[48];

		if (o.window)
			snprintf(win, sizeof(win), "window %u", o.window);
		else
			snprintf(win, sizeof(win), "unbounded window");
		if (o.size_min == o.size_max)
			snprintf(sz, sizeof(sz), "payload %u B", o.size_min);
		else
			snprintf(sz, sizeof(sz), "payload %u-%u B", o.size_min, o.size_max);
		if (o.idle)
			snprintf(mode, sizeof(mode), "idle");
		else if (o.rate > 0)
			snprintf(mode, sizeof(mode), "open loop at %.0f msgs/s", o.rate);
		else
			snprintf(mode, sizeof(mode), "closed loop");
		printf("target      %s, %d connections, %d thread%s, %s, %s, %s%s\n", o.dst_name,
		       o.conns, o.threads, o.threads == 1 ? "" : "s", win, sz, mode,
		       o.send_conn ? ", Conn first" : "");
		printf("measured    %.3f s%s\n", (double)measured_ns / 1e9,
		       o.total > 0 ? " (first send to last ack)" : "");
		printf("requests    %llu sent, %llu acked, %llu in the measured time\n",
		       (unsigned long long)tot->sent, (unsigned long long)tot->acked,
		       (unsigned long long)(o.total > 0 ? tot->acked : tot->acked_window));
		printf("results     %llu stored (0), %llu refused (1), %llu not stored (2)%s, "
		       "%llu other\n",
		       (unsigned long long)tot->results[BENCH_RES_OK],
		       (unsigned long long)tot->results[BENCH_RES_REFUSED],
		       (unsigned long long)tot->results[BENCH_RES_NOT_STORED],
		       o.allow_refused ? " allowed" : "",
		       (unsigned long long)tot->results[BENCH_RES_OTHER]);
		printf("rate        %.0f msgs/s, %.2f MB/s\n", rate, mbps);
		if (o.send_conn)
			printf("conn acks   %llu\n", (unsigned long long)tot->conn_acked);
		printf("errors      %llu (connect %llu, unacked %llu)\n",
		       (unsigned long long)tot->errors, (unsigned long long)tot->connect_errors,
		       (unsigned long long)tot->unacked);
		if (o.reconnect)
			printf("reconnects  %llu (lost in flight %llu, refused %llu)\n",
			       (unsigned long long)tot->reconnects, (unsigned long long)tot->lost,
			       (unsigned long long)tot->refused);
		printf("connections %llu open at the end of %d\n",
		       (unsigned long long)tot->open_at_end, o.conns);
		if (h->count > 0) {
			fmt_lat(mean, sizeof(mean), (uint64_t)hist_mean(h));
			fmt_lat(sd, sizeof(sd), (uint64_t)hist_stddev(h));
			printf("latency     mean %s  stddev %s ", mean, sd);
			for (int i = 0; i < npcts; i++) {
				fmt_lat(lat, sizeof(lat), hist_quantile(h, pcts[i] / 100));
				printf(" p%.10g %s ", pcts[i], lat);
			}
			fmt_lat(lat, sizeof(lat), h->max);
			printf(" max %s\n", lat);
		}
	}
	if (rc != 0 && tot->errors == 0)
		fprintf(stderr, "submit-bench: %s\n",
			o.idle ? "not every connection stayed open" : "nothing was acked");
	else if (o.total > 0 && tot->acked != o.total)
		fprintf(stderr, "submit-bench: %llu of %llu requests acked\n",
			(unsigned long long)tot->acked, (unsigned long long)o.total);
	free(payload);
	free(th);
	free(tot);
	return rc;
}

/*
 * submit-spool: look into a submitd spool and take segments from it
 * (docs/SPOOL.md, submit-spool(1)). Safe on a live spool: it never writes
 * into a segment, never takes a writer's lock, and claims a ready segment
 * only by renaming it into taken/ under its own flock.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "version.h"

#define DEFAULT_DIR "/var/lib/submitd/spool"

#define EXIT_CORRUPT 1
#define EXIT_USAGE   2
#define EXIT_NOTHING 3

/* A listed segment's state: the enum spool_dir it sits in, or a lone file. */
#define ST_FILE SPOOL_NDIRS

static const char *prog = "submit-spool";

static void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void pathf(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		warnx("path too long: %s...", out);
		exit(EXIT_USAGE);
	}
}

/* spool_path(), or exit with the message pathf gives. */
static void seg_path(char *out, size_t len, const char *dir, enum spool_dir d, const char *name)
{
	if (spool_path(out, len, dir, d, name) < 0) {
		warnx("path too long: %s/%s/%s", dir, spool_dir_name(d), name ? name : "");
		exit(EXIT_USAGE);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-d DIR] COMMAND [ARGS]\n"
		"  -d, --dir DIR    the spool directory (default: $SUBMITD_SPOOL, else " DEFAULT_DIR
		")\n"
		"  -h, --help       this text\n"
		"  -v, --version    the version\n"
		"commands:\n"
		"  ls [DIR]                          segments: state, records, bytes, time range\n"
		"  cat [-f|--follow] [SEGMENT|DIR]   records as JSON lines\n"
		"  verify [SEGMENT|DIR]              check every segment; exit 1 on corruption\n"
		"  take [-o|--output FILE] [DIR]     claim the oldest ready segment, print it, "
		"delete it;\n"
		"                                    exit 3 when none is ready\n",
		prog);
}

/* ---- segments of a spool ---- */

struct ent {
	char name[SPOOL_NAME_MAX];
	int state;
};

struct list {
	struct ent *v;
	size_t n, cap;
};

static int cmp_ent(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c != 0 ? c : x->state - y->state;
}

static void list_add(struct list *l, const char *name, int state)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (l->v == NULL) {
			warnx("out of memory");
			exit(EXIT_CORRUPT);
		}
	}
	snprintf(l->v[l->n].name, sizeof(l->v[l->n].name), "%s", name);
	l->v[l->n].state = state;
	l->n++;
}

/* Add the segments of dir/sub (or of dir itself for ST_FILE). -1 if it cannot be read. */
static int list_dir(struct list *l, const char *dir, int state)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (state == ST_FILE)
		pathf(path, sizeof(path), "%s", dir);
	else
		seg_path(path, sizeof(path), dir, state, NULL);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (spool_seg_name_parse(de->d_name, NULL, NULL, NULL) == 0)
			list_add(l, de->d_name, state);
	closedir(d);
	return 0;
}

/* The segments of a spool in the given states, oldest first. */
static int list_spool(struct list *l, const char *dir, const int *states, int nstates)
{
	l->n = 0;
	for (int i = 0; i < nstates; i++)
		if (list_dir(l, dir, states[i]) < 0) {
			warnx("%s/%s: %s", dir, spool_dir_name(states[i]), strerror(errno));
			return -1;
		}
	if (l->n > 0)
		qsort(l->v, l->n, sizeof(*l->v), cmp_ent);
	return 0;
}

static int is_spool(const char *dir)
{
	char path[PATH_MAX];
	struct stat st;

	seg_path(path, sizeof(path), dir, SPOOL_D_ACTIVE, NULL);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Open a listed segment. A live spool moves segments on: active/ -> ready/
 * -> taken/ -> gone (or suspect/): look where it went. -1 if it is gone.
 */
static int open_ent(const char *dir, struct ent *e, char *path, size_t len)
{
	static const int next[] = {SPOOL_D_ACTIVE, SPOOL_D_READY, SPOOL_D_TAKEN, SPOOL_D_SUSPECT};

	if (e->state > SPOOL_D_TAKEN) {
		seg_path(path, len, dir, e->state, e->name);
		return open(path, O_RDONLY | O_CLOEXEC);
	}
	for (int i = e->state; i < 4; i++) {
		int fd;
		seg_path(path, len, dir, next[i], e->name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT) {
			e->state = next[i];
			return fd;
		}
	}
	errno = ENOENT;
	return -1;
}

/* The state a lone segment file is in, from the directory it sits in. */
static int state_of_path(const char *path)
{
	char buf[PATH_MAX], *slash, *base;

	snprintf(buf, sizeof(buf), "%s", path);
	slash = strrchr(buf, '/');
	if (slash == NULL)
		return ST_FILE;
	*slash = '\0';
	base = strrchr(buf, '/');
	base = base ? base + 1 : buf;
	for (int s = 0; s < ST_FILE; s++)
		if (strcmp(base, spool_dir_name(s)) == 0)
			return s;
	return ST_FILE;
}

static const char *state_str(int s)
{
	return s == ST_FILE ? "file" : spool_dir_name(s);
}

/* ---- records as JSON ---- */

static void ts_str(char *out, size_t len, uint64_t ns, int digits)
{
	time_t sec = (time_t)(ns / 1000000000u);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (digits == 9)
		snprintf(out + n, len - n, ".%09luZ", (unsigned long)(ns % 1000000000u));
	else
		snprintf(out + n, len - n, ".%03luZ", (unsigned long)(ns % 1000000000u / 1000000u));
}

static void hex(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

/* Printable text: valid UTF-8 without control characters other than tab, CR and LF. */
static int is_text(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i];
		size_t k;
		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3;
		else
			return 0;
		if (i + k >= n)
			return 0;
		for (size_t j = 1; j <= k; j++)
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
		/* Overlong forms, surrogates, and past U+10FFFF. */
		if ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0) ||
		    (c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90))
			return 0;
		i += k + 1;
	}
	return 1;
}

static void json_text(FILE *f, const uint8_t *p, size_t n)
{
	/* The bytes written escaped, and the letter after the backslash for each. */
	static const char special[] = "\"\\\n\r\t", letter[] = "\"\\nrt";

	for (size_t i = 0; i < n; i++) {
		const char *e = p[i] != '\0' ? strchr(special, p[i]) : NULL;

		if (e != NULL) {
			putc('\\', f);
			putc(letter[e - special], f);
		} else {
			putc(p[i], f);
		}
	}
}

static void base64(FILE *f, const uint8_t *p, size_t n)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		putc(b64[v >> 18], f);
		putc(b64[(v >> 12) & 63], f);
		putc(b64[(v >> 6) & 63], f);
		putc(b64[v & 63], f);
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		putc(b64[v >> 18], f);
		putc(b64[(v >> 12) & 63], f);
		fputs("==", f);
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		putc(b64[v >> 18], f);
		putc(b64[(v >> 12) & 63], f);
		putc(b64[(v >> 6) & 63], f);
		putc('=', f);
	}
}

static void print_rec(FILE *f, const char *seg, uint64_t off, const struct spool_rec *r,
		      const uint8_t *p)
{
	char ts[64], addr[INET6_ADDRSTRLEN];
	int text = is_text(p, r->len);

	ts_str(ts, sizeof(ts), r->ts_ns, 9);
	spool_addr_str(r->addr, addr, sizeof(addr));
	fprintf(f,
		"{\"segment\":\"%s\",\"offset\":%llu,\"ts\":\"%s\",\"ts_ns\":%llu,\"worker\":%u,"
		"\"conn_seq\":%llu,\"addr\":\"%s\",\"port\":%u,",
		seg, (unsigned long long)off, ts, (unsigned long long)r->ts_ns, r->worker,
		(unsigned long long)r->conn_seq, addr, r->port);
	if (r->flags & SPOOL_FLAG_CONN_ID) {
		fputs("\"conn_id\":\"", f);
		hex(f, r->conn_id, 8);
		fputs("\",", f);
	}
	if (r->identity_len > 0) {
		fputs("\"identity\":\"", f);
		json_text(f, r->identity, r->identity_len);
		fputs("\",", f);
	}
	fputs("\"submit_id\":\"", f);
	hex(f, r->submit_id, 8);
	fprintf(f, "\",\"len\":%u,\"payload_encoding\":\"%s\",\"payload\":\"", r->len,
		text ? "text" : "base64");
	if (text)
		json_text(f, p, r->len);
	else
		base64(f, p, r->len);
	fputs("\"}\n", f);
}

/*
 * Print the whole records of rd from where it stands. Returns what
 * spool_read_next returned last (0 at the end, SPOOL_TORN, SPOOL_BAD, -1).
 */
static int drain(struct spool_reader *rd, const char *name, FILE *out, uint64_t *bad_off)
{
	struct spool_rec rec;
	const uint8_t *p;
	uint64_t off;
	int rc;

	while ((rc = spool_read_next(rd, &rec, &p, &off)) == 1)
		print_rec(out, name, off, &rec, p);
	*bad_off = off;
	return rc;
}

/* ---- cat ---- */

/* cat one open segment. 0, or 1 if a sealed segment is not whole. */
static int cat_fd(int fd, const char *path, const char *name, int state, FILE *out)
{
	struct spool_reader rd;
	uint64_t bad;
	int rc = spool_reader_open(&rd, fd), bad_rc = 0;

	if (rc == -1) {
		warnx("%s: %s", path, strerror(errno));
		bad_rc = 1;
	} else if (rc != 0) {
		if (state != SPOOL_D_ACTIVE || rc == SPOOL_BAD) {
			warnx("%s: offset 0: %s", path, rd.why);
			bad_rc = 1;
		}
	} else {
		rc = drain(&rd, name, out, &bad);
		if (rc == -1) {
			warnx("%s: offset %llu: %s", path, (unsigned long long)bad,
			      strerror(errno));
			bad_rc = 1;
		} else if (rc != 0 && state != SPOOL_D_ACTIVE) {
			warnx("%s: offset %llu: %s", path, (unsigned long long)bad, rd.why);
			bad_rc = 1;
		}
		/* In active/ the tail may be a write in progress: stop there. */
	}
	spool_reader_close(&rd);
	return bad_rc;
}

struct follow {
	char name[SPOOL_NAME_MAX];
	char path[PATH_MAX];
	int fd, state, opened;
	struct spool_reader rd;
};

static int same_file(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/*
 * Drain f; a segment that is no longer at its path in active/ (sealed,
 * taken, set aside) is complete: drain it once more and drop it. 1 when
 * dropped, 0 to keep following.
 */
static int follow_step(struct follow *f, FILE *out, int *status)
{
	uint64_t bad;
	int rc;

	if (!f->opened) {
		rc = spool_reader_open(&f->rd, f->fd);
		if (rc == SPOOL_TORN && f->state == SPOOL_D_ACTIVE && same_file(f->fd, f->path))
			return 0; /* being created */
		if (rc != 0) {
			warnx("%s: offset 0: %s", f->path, rc == -1 ? strerror(errno) : f->rd.why);
			*status = EXIT_CORRUPT;
			return 1;
		}
		f->opened = 1;
	}
	rc = drain(&f->rd, f->name, out, &bad);
	if (rc == 1 || (f->state == SPOOL_D_ACTIVE && rc != -1 && same_file(f->fd, f->path)))
		return 0;
	if (f->state == SPOOL_D_ACTIVE && rc != -1)
		rc = drain(&f->rd, f->name, out, &bad); /* what was written before the move */
	if (rc != 0) {
		warnx("%s: offset %llu: %s", f->path, (unsigned long long)bad,
		      rc == -1 ? strerror(errno) : f->rd.why);
		*status = EXIT_CORRUPT;
	}
	return 1;
}

static int seen_has(const struct list *seen, const char *name)
{
	for (size_t i = seen->n; i-- > 0;)
		if (strcmp(seen->v[i].name, name) == 0)
			return 1;
	return 0;
}

/* The segments being followed, oldest first. */
struct follow_set {
	struct follow *v;
	size_t n, cap;
};

/*
 * Starts following the listed segment e (the one segment segpath when not
 * NULL). A segment gone meanwhile is skipped; one that cannot be opened is
 * reported and sets *status. Returns 0, or -1 out of memory (reported).
 */
static int follow_open(const char *dir, const char *segpath, struct ent *e, struct follow_set *s,
		       int *status)
{
	struct follow *f;
	int fd;
	char path[PATH_MAX];

	if (segpath != NULL) {
		snprintf(path, sizeof(path), "%s", segpath);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	} else {
		fd = open_ent(dir, e, path, sizeof(path));
	}
	if (fd < 0) {
		if (errno != ENOENT || segpath != NULL) {
			warnx("%s: %s", path, strerror(errno));
			*status = EXIT_CORRUPT;
		}
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		void *v = realloc(s->v, cap * sizeof(*s->v));
		if (v == NULL) {
			warnx("out of memory");
			return -1; /* s->v stays valid (and owned) */
		}
		s->v = v;
		s->cap = cap;
	}
	f = &s->v[s->n++];
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s",
		 segpath ? strrchr(segpath, '/') ? strrchr(segpath, '/') + 1 : segpath : e->name);
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->fd = fd;
	f->state = e->state;
	return 0;
}

/*
 * Starts following the segments that appeared since the last call, oldest
 * first (seen holds those already met, now is the caller's scratch list).
 * Returns 0, or -1 when the spool cannot be listed or memory runs out.
 */
static int follow_new(const char *dir, const char *segpath, struct list *seen, struct list *now,
		      struct follow_set *s, int *status)
{
	static const int states[] = {SPOOL_D_ACTIVE, SPOOL_D_READY, SPOOL_D_TAKEN, SPOOL_D_SUSPECT};

	if (segpath == NULL) {
		if (list_spool(now, dir, states, 4) < 0)
			return -1;
	} else {
		now->n = 0;
		if (seen->n == 0)
			list_add(now, segpath, state_of_path(segpath));
	}
	for (size_t i = 0; i < now->n; i++) {
		if (seen_has(seen, now->v[i].name))
			continue;
		list_add(seen, now->v[i].name, 0);
		if (follow_open(dir, segpath, &now->v[i], s, status) < 0)
			return -1;
	}
	return 0;
}

/* Prints what each followed segment gained, and drops those that are done. */
static void follow_all(struct follow_set *s, int *status)
{
	for (size_t i = 0; i < s->n;) {
		struct follow *fv = s->v;

		if (!follow_step(&fv[i], stdout, status)) {
			i++;
			continue;
		}
		spool_reader_close(&fv[i].rd);
		close(fv[i].fd);
		fv[i] = fv[--s->n];
		/* Keep the order: the oldest segment prints first. */
		for (size_t k = i; k + 1 < s->n; k++)
			if (strcmp(fv[k].name, fv[k + 1].name) > 0) {
				struct follow t = fv[k];
				fv[k] = fv[k + 1];
				fv[k + 1] = t;
			}
	}
}

static int cmd_follow(const char *dir, const char *segpath)
{
	struct follow_set fs = {0};
	struct list seen = {0}, now = {0};
	int status = 0, sfd;
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		warnx("signalfd: %s", strerror(errno));
		return EXIT_CORRUPT;
	}
	for (;;) {
		if (follow_new(dir, segpath, &seen, &now, &fs, &status) < 0)
			return EXIT_CORRUPT;
		follow_all(&fs, &status);
		if (fflush(stdout) != 0)
			return EXIT_CORRUPT;
		if (segpath != NULL && fs.n == 0)
			break;

		struct pollfd pfd = {.fd = sfd, .events = POLLIN};
		if (poll(&pfd, 1, 100) > 0)
			break; /* SIGINT or SIGTERM */
	}
	for (size_t i = 0; i < fs.n; i++) {
		spool_reader_close(&fs.v[i].rd);
		close(fs.v[i].fd);
	}
	free(fs.v);
	free(seen.v);
	free(now.v);
	close(sfd);
	return status;
}

/* What an argument names: a spool, a directory of segments (one state), or a segment file. */
struct target {
	const char *dir; /* a spool, or a directory of segments */
	const char *seg; /* a segment file */
	int state;	 /* for a directory of segments */
};

static int target_of(const char *arg, const char *spool, struct target *t)
{
	static char trimmed[PATH_MAX];
	struct stat st;
	size_t len;

	memset(t, 0, sizeof(*t));
	if (arg == NULL)
		arg = spool;
	/* "spool/ready/" names the same state as "spool/ready". */
	snprintf(trimmed, sizeof(trimmed), "%s", arg);
	len = strlen(trimmed);
	while (len > 1 && trimmed[len - 1] == '/')
		trimmed[--len] = '\0';
	arg = trimmed;
	if (stat(arg, &st) < 0) {
		warnx("%s: %s", arg, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		t->seg = arg;
		t->state = state_of_path(arg);
		return 0;
	}
	t->dir = arg;
	t->state = -1;
	if (!is_spool(arg)) {
		/* A directory of segments: its name says their state (ready/ ...). */
		char buf[PATH_MAX];
		pathf(buf, sizeof(buf), "%s/x", arg);
		t->state = state_of_path(buf);
	}
	return 0;
}

/* The segments a target names, oldest first; dir_out is where their state dirs are. */
static int target_list(const struct target *t, struct list *l, const int *states, int n,
		       char *dir_out, size_t len)
{
	if (t->state == -1) {
		pathf(dir_out, len, "%s", t->dir);
		return list_spool(l, t->dir, states, n);
	}
	/* A directory of segments: open them as dir_out/<state>/name = t->dir/../<state>/name. */
	pathf(dir_out, len, "%s/..", t->dir);
	l->n = 0;
	if (list_dir(l, t->state == ST_FILE ? t->dir : dir_out, t->state) < 0) {
		warnx("%s: %s", t->dir, strerror(errno));
		return -1;
	}
	if (t->state == ST_FILE)
		pathf(dir_out, len, "%s", t->dir);
	if (l->n > 0)
		qsort(l->v, l->n, sizeof(*l->v), cmp_ent);
	return 0;
}

static int ent_path_open(const char *dir, struct ent *e, char *path, size_t len)
{
	if (e->state == ST_FILE) {
		pathf(path, len, "%s/%s", dir, e->name);
		return open(path, O_RDONLY | O_CLOEXEC);
	}
	return open_ent(dir, e, path, len);
}

static int cmd_cat(int argc, char **argv, const char *spool)
{
	static const struct option opts[] = {{"follow", no_argument, NULL, 'f'},
					     {NULL, 0, NULL, 0}};
	static const int states[] = {SPOOL_D_ACTIVE, SPOOL_D_READY, SPOOL_D_TAKEN, SPOOL_D_SUSPECT};
	struct target t;
	struct list l = {0};
	char dir[PATH_MAX], path[PATH_MAX];
	int follow = 0, c, status = 0;

	while ((c = getopt_long(argc, argv, "+f", opts, NULL)) != -1) {
		if (c != 'f') {
			usage(stderr);
			return EXIT_USAGE;
		}
		follow = 1;
	}
	if (argc - optind > 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (target_of(argv[optind], spool, &t) < 0)
		return EXIT_CORRUPT;
	if (follow) {
		if (t.seg != NULL)
			return cmd_follow(NULL, t.seg);
		if (t.state != -1) {
			warnx("--follow needs a spool directory or a segment");
			return EXIT_USAGE;
		}
		return cmd_follow(t.dir, NULL);
	}
	if (t.seg != NULL) {
		int fd = open(t.seg, O_RDONLY | O_CLOEXEC);
		const char *base = strrchr(t.seg, '/');
		if (fd < 0) {
			warnx("%s: %s", t.seg, strerror(errno));
			return EXIT_CORRUPT;
		}
		status = cat_fd(fd, t.seg, base ? base + 1 : t.seg, t.state, stdout);
		close(fd);
	} else {
		if (target_list(&t, &l, states, 4, dir, sizeof(dir)) < 0)
			return EXIT_CORRUPT;
		for (size_t i = 0; i < l.n; i++) {
			int fd = ent_path_open(dir, &l.v[i], path, sizeof(path));
			if (fd < 0) {
				if (errno != ENOENT) {
					warnx("%s: %s", path, strerror(errno));
					status = EXIT_CORRUPT;
				}
				continue; /* taken and deleted since we listed it */
			}
			if (cat_fd(fd, path, l.v[i].name, l.v[i].state, stdout))
				status = EXIT_CORRUPT;
			close(fd);
		}
		free(l.v);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		warnx("stdout: %s", strerror(errno));
		return EXIT_CORRUPT;
	}
	return status;
}

/* ---- ls and verify ---- */

/*
 * The segments ls and verify look at: the one segment named on the command
 * line (dir becomes its directory), or those of every state directory of the
 * spool or directory named. Returns 0, or the exit status to end with.
 */
static int scan_select(int argc, char **argv, const char *spool, struct target *t, struct list *l,
		       char *dir, size_t dirlen)
{
	static const int states[] = {SPOOL_D_ACTIVE, SPOOL_D_READY, SPOOL_D_TAKEN, SPOOL_D_SUSPECT,
				     SPOOL_D_QUARANTINE};

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (target_of(argc == 2 ? argv[1] : NULL, spool, t) < 0)
		return EXIT_CORRUPT;
	if (t->seg != NULL) {
		const char *slash = strrchr(t->seg, '/');
		l->n = 0;
		list_add(l, slash ? slash + 1 : t->seg, ST_FILE);
		if (slash != NULL)
			pathf(dir, dirlen, "%.*s", (int)(slash - t->seg), t->seg);
		else
			pathf(dir, dirlen, ".");
		l->v[0].state = ST_FILE;
	} else if (target_list(t, l, states, 5, dir, dirlen) < 0) {
		return EXIT_CORRUPT;
	}
	return 0;
}

/*
 * Opens and scans one listed segment into sc (path receives its path).
 * Returns 0; 1 when it is gone (taken or deleted meanwhile: no error); -1
 * on an error, reported on stderr.
 */
static int scan_ent(const char *dir, struct ent *e, char *path, size_t pathlen,
		    struct spool_scan *sc)
{
	int fd = ent_path_open(dir, e, path, pathlen);

	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		warnx("%s: %s", path, strerror(errno));
		return -1;
	}
	if (spool_scan(fd, sc) < 0) {
		warnx("%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Writes into note what a scan found past the records ("" for a segment
 * whole to its end). Returns 1 when the segment is damaged, else 0: in
 * active/ a torn tail is a write in progress (or a crash that recovery will
 * cut); anywhere else the segment was sealed whole.
 */
static int scan_note(const struct spool_scan *sc, int state, char *note, size_t len)
{
	if (sc->status == SPOOL_BAD || (sc->status == SPOOL_TORN && state != SPOOL_D_ACTIVE)) {
		snprintf(note, len, "offset %llu: %s", (unsigned long long)sc->bad_offset,
			 sc->status == SPOOL_TORN && sc->end > 0 ? "truncated record" : sc->why);
		return 1;
	}
	if (sc->status == SPOOL_TORN && sc->end + sc->zeros >= sc->size)
		snprintf(note, len, "records end at offset %llu, zeros written ahead",
			 (unsigned long long)sc->end);
	else if (sc->status == SPOOL_TORN)
		snprintf(note, len, "incomplete tail at offset %llu",
			 (unsigned long long)sc->bad_offset);
	return 0;
}

/* Prints ls's line for one segment. */
static void scan_print(const struct spool_scan *sc, int state, const char *name, const char *note)
{
	char first[40] = "-", last[40] = "-";

	if (sc->records > 0) {
		ts_str(first, sizeof(first), sc->first_ts, 3);
		ts_str(last, sizeof(last), sc->last_ts, 3);
	}
	printf("%-10s %8llu %12llu %-24s %-24s %s%s%s\n", state_str(state),
	       (unsigned long long)sc->records, (unsigned long long)sc->size, first, last, name,
	       note[0] ? "  " : "", note);
}

/* What verify counted over the segments it read. */
struct scan_totals {
	uint64_t segs, recs, bytes, bad, quarantined;
};

/* Prints verify's last line. */
static void scan_summary(const struct scan_totals *s)
{
	printf("%llu segments, %llu records, %llu bytes: %s", (unsigned long long)s->segs,
	       (unsigned long long)s->recs, (unsigned long long)s->bytes, s->bad ? "" : "ok");
	if (s->bad)
		printf("%llu corrupt", (unsigned long long)s->bad);
	if (s->quarantined)
		printf(" (%llu in quarantine/, not checked)", (unsigned long long)s->quarantined);
	putchar('\n');
}

static int cmd_scan(int argc, char **argv, const char *spool, int verify)
{
	struct target t;
	struct list l = {0};
	char dir[PATH_MAX], path[PATH_MAX];
	struct scan_totals s = {0};
	int status;

	if ((status = scan_select(argc, argv, spool, &t, &l, dir, sizeof(dir))) != 0)
		return status;
	if (!verify)
		printf("%-10s %8s %12s %-24s %-24s %s\n", "STATE", "RECORDS", "BYTES", "FIRST",
		       "LAST", "SEGMENT");
	for (size_t i = 0; i < l.n; i++) {
		struct spool_scan sc;
		struct ent *e = &l.v[i];
		char note[160] = "";
		int rc, state, damaged;

		if (verify && e->state == SPOOL_D_QUARANTINE && t.seg == NULL) {
			s.quarantined++;
			continue; /* known to be damaged: recovery put it there */
		}
		if ((rc = scan_ent(dir, e, path, sizeof(path), &sc)) != 0) {
			if (rc < 0)
				status = EXIT_CORRUPT;
			continue;
		}
		state = e->state == ST_FILE && t.seg != NULL ? t.state : e->state;
		s.segs++;
		s.recs += sc.records;
		s.bytes += sc.size;
		damaged = scan_note(&sc, state, note, sizeof(note));
		if (!verify) {
			scan_print(&sc, state, e->name, note);
		} else if (damaged) {
			s.bad++;
			status = EXIT_CORRUPT;
			printf("%s: %s\n", path, note);
		}
	}
	if (verify)
		scan_summary(&s);
	free(l.v);
	fflush(stdout);
	return status;
}

/* ---- take ---- */

/* Print the taken segment to out, make it durable, delete the segment. */
static int take_one(const char *dir, const char *name, int fd, const char *output)
{
	char path[PATH_MAX];
	struct spool_reader rd;
	FILE *out = stdout;
	struct stat st;
	uint64_t bad;
	int rc, ofd = STDOUT_FILENO;

	seg_path(path, sizeof(path), dir, SPOOL_D_TAKEN, name);
	if (output != NULL) {
		ofd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
		if (ofd < 0 || (out = fdopen(ofd, "w")) == NULL) {
			warnx("%s: %s", output, strerror(errno));
			return EXIT_CORRUPT;
		}
	}
	rc = spool_reader_open(&rd, fd);
	if (rc == 0)
		rc = drain(&rd, name, out, &bad);
	else
		bad = 0;
	if (rc != 0) {
		/* A sealed segment must be whole: set it aside, like recovery does. */
		warnx("%s: offset %llu: %s", path, (unsigned long long)bad,
		      rc == -1 ? strerror(errno) : rd.why);
		spool_reader_close(&rd);
		if (rc != -1) {
			char q[PATH_MAX];
			seg_path(q, sizeof(q), dir, SPOOL_D_QUARANTINE, name);
			if (rename(path, q) == 0) {
				(void)spool_fsync_dir(dir, SPOOL_D_QUARANTINE);
				(void)spool_fsync_dir(dir, SPOOL_D_TAKEN);
				warnx("%s: moved into " SPOOL_QUARANTINE "/", name);
			}
		}
		if (output != NULL)
			fclose(out);
		else
			fflush(stdout);
		return EXIT_CORRUPT;
	}
	spool_reader_close(&rd);
	if (fflush(out) != 0 || ferror(out) ||
	    (fstat(ofd, &st) == 0 && S_ISREG(st.st_mode) && fsync(ofd) < 0)) {
		warnx("%s: %s (the segment stays in " SPOOL_TAKEN "/)", output ? output : "stdout",
		      strerror(errno));
		if (output != NULL)
			fclose(out);
		return EXIT_CORRUPT;
	}
	if (output != NULL && fclose(out) != 0) {
		warnx("%s: %s (the segment stays in " SPOOL_TAKEN "/)", output, strerror(errno));
		return EXIT_CORRUPT;
	}
	if (unlink(path) < 0) {
		warnx("unlink %s: %s", path, strerror(errno));
		return EXIT_CORRUPT;
	}
	(void)spool_fsync_dir(dir, SPOOL_D_TAKEN);
	return 0;
}

static int cmd_take(int argc, char **argv, const char *spool)
{
	static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
					     {NULL, 0, NULL, 0}};
	static const int taken[] = {SPOOL_D_TAKEN}, ready[] = {SPOOL_D_READY};
	const char *output = NULL, *dir;
	struct list l = {0};
	int c;

	while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
		if (c != 'o') {
			usage(stderr);
			return EXIT_USAGE;
		}
		output = optarg;
	}
	if (argc - optind > 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	dir = argc - optind == 1 ? argv[optind] : spool;
	if (!is_spool(dir)) {
		warnx("%s: not a spool directory (no " SPOOL_ACTIVE "/)", dir);
		return EXIT_CORRUPT;
	}
	/*
	 * A segment in taken/ whose lock is free was left by a take that died
	 * before it deleted it: take it over first (at least once).
	 */
	for (int round = 0; round < 100; round++) {
		int busy = 0, fd;

		if (list_spool(&l, dir, taken, 1) < 0)
			return EXIT_CORRUPT;
		for (size_t i = 0; i < l.n; i++) {
			/* Busy: its consumer (the forwarder, another take) is alive. */
			if ((fd = spool_take_over(dir, l.v[i].name)) >= 0) {
				int rc = take_one(dir, l.v[i].name, fd, output);
				close(fd);
				free(l.v);
				return rc;
			}
		}
		if (list_spool(&l, dir, ready, 1) < 0)
			return EXIT_CORRUPT;
		for (size_t i = 0; i < l.n; i++) {
			if ((fd = spool_take(dir, l.v[i].name)) < 0) {
				busy |= errno == EWOULDBLOCK;
				continue;
			}
			int rc = take_one(dir, l.v[i].name, fd, output);
			close(fd);
			free(l.v);
			return rc;
		}
		/*
		 * A ready segment is locked only for an instant: its writer or
		 * recovery closing it after the rename, or another taker. Look again.
		 */
		if (!busy)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	free(l.v);
	return EXIT_NOTHING;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
					     {"help", no_argument, NULL, 'h'},
					     {"version", no_argument, NULL, 'v'},
					     {NULL, 0, NULL, 0}};
	const char *spool = getenv("SUBMITD_SPOOL");
	const char *cmd;
	int c;

	if (spool == NULL || spool[0] == '\0')
		spool = DEFAULT_DIR;
	while ((c = getopt_long(argc, argv, "+d:hv", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			spool = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'v':
			printf("submit-spool %s (commit %s)\n", version_string, version_commit);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	optind = 1;
	static char buf[1 << 16];
	setvbuf(stdout, buf, _IOFBF, sizeof(buf));
	if (strcmp(cmd, "ls") == 0)
		return cmd_scan(argc, argv, spool, 0);
	if (strcmp(cmd, "verify") == 0)
		return cmd_scan(argc, argv, spool, 1);
	if (strcmp(cmd, "cat") == 0)
		return cmd_cat(argc, argv, spool);
	if (strcmp(cmd, "take") == 0)
		return cmd_take(argc, argv, spool);
	warnx("unknown command \"%s\"", cmd);
	usage(stderr);
	return EXIT_USAGE;
}

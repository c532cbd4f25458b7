#include "forwarder.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "crc32c.h"
#include "log.h"
#include "proc.h"
#include "spool.h"

#define MAX_LABELS	  1000 /* worker indices have three digits in segment names */
#define CKPT_DIR	  "forwarder"
#define CKPT_LEN	  16
#define CKPT_MAGIC	  0x4b434653u /* "SFCK" */
#define CKPT_EVERY_MS	  50
#define SCAN_EVERY_MS	  100
#define PASS_MAX	  512 /* records published for one segment per loop pass */
#define PUB_MAX_WAIT_MS	  5000
#define RETRY_MIN_MS	  200
#define RETRY_MAX_MS	  5000
#define CONNECT_MIN_MS	  500
#define CONNECT_MAX_MS	  5000
#define STREAM_RECHECK_MS 2000
#define STOP_WAIT_MS	  5000
#define LOG_EVERY_MS	  1000

enum { E_INFLIGHT, E_ACKED, E_FAILED };
struct ent {
	uint64_t off;
	uint64_t ts_ns; /* the record's spool write time */
	uint32_t len;	/* the whole record */
	uint8_t st;
	uint8_t tries;
};

/* Where the segment a chain works on is. */
enum { WH_ACTIVE, WH_TAKEN };

/*
 * One per worker index: its segments are forwarded one at a time, oldest
 * first, so that "acknowledged up to here" is one position per worker.
 */
struct chain {
	int has;
	char name[SPOOL_NAME_MAX];
	uint64_t ns;
	long pid;
	int where;
	int fd, ckfd;
	struct spool_reader rd;
	uint64_t read_off;  /* the next record to publish */
	uint64_t acked_off; /* every record before it is in the stream */
	uint64_t limit;	    /* records ending at or before it may be read */
	uint64_t ckpt_off, ckpt_ms;
	uint64_t check_ms; /* when to look again whether an idle active segment was sealed */
	struct ent *ring;  /* window entries in offset order */
	uint32_t head, n;
	int slot; /* its writer's shared-memory slot, -1 if not (or no longer) alive */
	uint64_t pub_ns, pub_off;
	uint64_t done_ns; /* created_ns of the last segment forwarded whole */
	uint64_t seen_ns; /* the newest segment a scan was made for */
	char subject[256];
};

struct ackev {
	uint64_t ns, off;
	uint32_t worker;
	int status; /* 0 stored, 1 duplicate, -1 error */
};

static const struct conf *cf;
static struct stats_shm *shm;
static struct stats_fwd *fx;
static struct chain *chains;
static int nchains;	 /* 1 + the highest worker index seen: the loops stop there */
static int more_to_read; /* a pass stopped at PASS_MAX, a chain closed: the next round at once */
static int got_records;	 /* this loop round's passes published records */
static uint32_t ring_cap;
static uint64_t window; /* entries in all rings */
static char host[128], subj_host[128];
static char dirs[SPOOL_NDIRS][256]; /* by enum spool_dir (spool_dir has at most 200 bytes) */
static char ckdir[256];
static int ep = -1, sfd = -1, efd = -1;
static int stopping;
static uint64_t read_recs, read_bytes; /* records read since start: their mean size */
static uint64_t now_ms;

static natsConnection *nc;
static jsCtx *js;
static int stream_ok;
static uint64_t connect_at, connect_backoff, stream_check_at;
static uint64_t retry_at, retry_backoff;
static uint64_t last_log[8];

/* Filled by libnats' threads, drained by the loop. */
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static struct ackev *q, *q2;
static size_t qn, qcap, q2cap;
static char q_err[256]; /* the last publish error's text */
static int conn_event;	/* 1 disconnected, 2 reconnected, 3 closed; under qmu */
static uint64_t ack_events_dropped;

/* At most once a second per kind. */
static int rate_ok(int kind)
{
	if (last_log[kind] != 0 && now_ms - last_log[kind] < LOG_EVERY_MS)
		return 0;
	last_log[kind] = now_ms;
	return 1;
}

static void set_state(int st)
{
	if (STATS_LOAD(fx->state) != (uint64_t)st) {
		STATS_STORE(fx->state, (uint64_t)st);
		STATS_STORE(fx->state_since_ms, now_ms);
	}
}

static void wake(void)
{
	uint64_t one = 1;
	if (write(efd, &one, sizeof(one)) == -1) {
		/* EAGAIN: the counter is full, so the loop wakes anyway. */
	}
}

/* ---- libnats' threads ---- */

/* Nats-Msg-Id: "<segment without .seg>:<offset>:<host>": stable across restarts. */
static int parse_id(const char *id, struct ackev *ev)
{
	unsigned w;
	long pid;

	if (sscanf(id, "%" SCNu64 "-w%u-p%ld:%" SCNu64, &ev->ns, &w, &pid, &ev->off) != 4)
		return -1;
	ev->worker = w;
	return 0;
}

static void push_event(const struct ackev *ev)
{
	pthread_mutex_lock(&qmu);
	if (qn == qcap) {
		size_t cap = qcap ? qcap * 2 : 1024;
		struct ackev *n = realloc(q, cap * sizeof(*q));
		if (n == NULL) {
			/* The record stays in flight: its segment is retried from the checkpoint.
			 */
			ack_events_dropped++;
			pthread_mutex_unlock(&qmu);
			return;
		}
		q = n;
		qcap = cap;
	}
	/*
	 * One wake-up per batch: the loop reads the eventfd before it swaps the
	 * queue, so an event pushed onto a non-empty queue is never missed.
	 */
	int first = qn == 0;
	q[qn++] = *ev;
	pthread_mutex_unlock(&qmu);
	if (first)
		wake();
}

static void on_ack(jsCtx *j, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	const char *id = NULL;
	struct ackev ev;

	(void)j;
	(void)closure;
	if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id != NULL &&
	    parse_id(id, &ev) == 0) {
		if (pa != NULL) {
			ev.status = pa->Duplicate ? 1 : 0;
		} else {
			ev.status = -1;
			if (pae != NULL) {
				pthread_mutex_lock(&qmu);
				snprintf(q_err, sizeof(q_err), "%s (%d)",
					 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err),
					 (int)pae->ErrCode);
				pthread_mutex_unlock(&qmu);
			}
		}
		push_event(&ev);
	}
	natsMsg_Destroy(m);
}

static void conn_cb(int what)
{
	pthread_mutex_lock(&qmu);
	conn_event = what;
	pthread_mutex_unlock(&qmu);
	wake();
}

static void on_disconnected(natsConnection *c, void *closure)
{
	(void)c;
	(void)closure;
	conn_cb(1);
}

static void on_reconnected(natsConnection *c, void *closure)
{
	(void)c;
	(void)closure;
	conn_cb(2);
}

static void on_closed(natsConnection *c, void *closure)
{
	(void)c;
	(void)closure;
	conn_cb(3);
}

/* ---- checkpoints ---- */

static void ckpt_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s.ckpt", ckdir, name);
}

/* The offset a previous forwarder had in the stream for name, or the first record. */
static uint64_t ckpt_read(int fd)
{
	uint8_t b[CKPT_LEN];
	uint64_t off = 0;
	uint32_t crc, magic;

	if (pread(fd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return SPOOL_FILE_HDR;
	for (int i = 7; i >= 0; i--)
		off = off << 8 | b[i];
	memcpy(&crc, b + 8, 4);
	memcpy(&magic, b + 12, 4);
	if (magic != CKPT_MAGIC || crc != crc32c(0, b, 8) || off < SPOOL_FILE_HDR)
		return SPOOL_FILE_HDR; /* resend: the stream drops what it has */
	return off;
}

static void ckpt_write(struct chain *c)
{
	uint8_t b[CKPT_LEN];
	uint32_t crc, magic = CKPT_MAGIC;

	if (c->ckfd < 0 || c->acked_off == c->ckpt_off)
		return;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(c->acked_off >> (8 * i));
	crc = crc32c(0, b, 8);
	memcpy(b + 8, &crc, 4);
	memcpy(b + 12, &magic, 4);
	if (pwrite(c->ckfd, b, sizeof(b), 0) != (ssize_t)sizeof(b) || fdatasync(c->ckfd) == -1) {
		if (rate_ok(0))
			log_warn("checkpoint of %s", c->name);
		return;
	}
	c->ckpt_off = c->acked_off;
	c->ckpt_ms = now_ms;
}

/* ---- the spool side ---- */

static void subject_for(char *out, size_t n, unsigned worker)
{
	size_t k = 0;

	for (const char *p = cf->nats_subject; *p && k + 1 < n; p++) {
		if (p[0] == '%' && p[1] == 'h') {
			k += (size_t)snprintf(out + k, n - k, "%s", subj_host);
			p++;
		} else if (p[0] == '%' && p[1] == 'w') {
			k += (size_t)snprintf(out + k, n - k, "%u", worker);
			p++;
		} else {
			out[k++] = *p;
		}
		if (k >= n)
			k = n - 1;
	}
	out[k] = '\0';
}

/* The shared-memory slot of a live worker process, or -1. */
static int slot_of(long pid)
{
	uint32_t hwm = STATS_LOAD(shm->ctl.slot_hwm);

	for (uint32_t i = 0; i < hwm && i < STATS_MAX_SLOTS; i++)
		if (STATS_LOAD(shm->ctl.slot[i].state) != CTL_SLOT_FREE &&
		    STATS_LOAD(shm->ctl.slot[i].pid) == (int32_t)pid)
			return (int)i;
	return -1;
}

/* 1 when the worker in slot s (-1: none) writes segment ns, with *off the end it published. */
static int slot_end(int s, uint64_t ns, uint64_t *off)
{
	uint64_t pns;

	return s >= 0 && ctl_pos_load(&shm->ctl.slot[s].spool_end, &pns, off) == 0 && pns == ns;
}

static void chain_close(struct chain *c)
{
	if (c->fd >= 0) {
		spool_reader_close(&c->rd);
		close(c->fd);
	}
	if (c->ckfd >= 0)
		close(c->ckfd);
	c->fd = c->ckfd = -1;
	window -= c->n;
	c->head = c->n = 0;
	c->has = 0;
	/* Its worker may have a newer segment already: look at once, not after a sleep. */
	more_to_read = 1;
}

/* Read the segment open at fd (the chain's from now on, closed with it). 0, or -1. */
static int open_fd(struct chain *c, int fd, const char *dir)
{
	int r;

	if (c->fd >= 0) {
		spool_reader_close(&c->rd);
		close(c->fd);
	}
	c->fd = fd;
	if ((r = spool_reader_open(&c->rd, fd)) != 0) {
		if (rate_ok(1))
			log_warnx("%s/%s: %s", dir, c->name, r == -1 ? strerror(errno) : c->rd.why);
		spool_reader_close(&c->rd);
		close(fd);
		c->fd = -1;
		errno = EINVAL;
		return -1;
	}
	c->rd.off = c->read_off;
	return 0;
}

/*
 * The chain's segment as a consumer holds it (docs/SPOOL.md, hand-over):
 * from ready/ or, left by a consumer that died, from taken/, locked, the
 * lock held with c->fd until the segment is deleted. An active/ segment is
 * only tailed: opened, never locked. 0, or -1 with errno (EWOULDBLOCK:
 * another consumer holds it or its writer is closing it).
 */
static int open_seg(struct chain *c, enum spool_dir dir)
{
	char path[PATH_MAX];
	int fd;

	if (dir == SPOOL_D_READY) {
		fd = spool_take(cf->spool_dir, c->name);
	} else if (dir == SPOOL_D_TAKEN) {
		fd = spool_take_over(cf->spool_dir, c->name);
	} else {
		if (spool_path(path, sizeof(path), cf->spool_dir, SPOOL_D_ACTIVE, c->name) == -1)
			return -1;
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return -1;
	return open_fd(c, fd, dirs[dir == SPOOL_D_ACTIVE ? SPOOL_D_ACTIVE : SPOOL_D_TAKEN]);
}

static int chain_start(struct chain *c, const char *name, enum spool_dir dir)
{
	char ck[PATH_MAX];
	uint64_t ns;
	unsigned w;
	long pid;

	if (spool_seg_name_parse(name, &ns, &w, &pid) == -1)
		return -1;
	if (c->ring == NULL && (c->ring = malloc(ring_cap * sizeof(*c->ring))) == NULL)
		return -1;
	memset(c, 0, offsetof(struct chain, ring));
	c->fd = c->ckfd = -1;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->ns = ns;
	c->pid = pid;
	c->where = dir == SPOOL_D_ACTIVE ? WH_ACTIVE : WH_TAKEN;
	c->slot = -1;
	subject_for(c->subject, sizeof(c->subject), w);
	ckpt_path(ck, sizeof(ck), name);
	c->ckfd = open(ck, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	c->read_off = c->acked_off = c->ckpt_off =
	    c->ckfd >= 0 ? ckpt_read(c->ckfd) : SPOOL_FILE_HDR;
	if (c->ckfd < 0 && rate_ok(0))
		log_warn("checkpoint %s", ck);
	if (open_seg(c, dir) == -1) {
		int saved = errno;
		if (c->ckfd >= 0)
			close(c->ckfd);
		c->ckfd = -1;
		if (saved == EWOULDBLOCK)
			log_debug("%s: another consumer holds it", name);
		errno = saved;
		return -1;
	}
	c->has = 1;
	if (c->where == WH_TAKEN) {
		struct stat st;
		c->limit = fstat(c->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	} else {
		c->limit = c->read_off;
	}
	log_debug("%s from %s at %" PRIu64, name, spool_dir_name(dir), c->read_off);
	return 0;
}

/* Pending segments of every worker, from one pass over the three directories. */
struct pend {
	char name[SPOOL_NAME_MAX];
	enum spool_dir dir; /* active, ready or taken */
	uint64_t size;
};
static struct pend *pends;
static size_t npend, pend_cap;
static uint64_t next_scan;

static void scan(void)
{
	npend = 0;
	for (enum spool_dir d = SPOOL_D_ACTIVE; d <= SPOOL_D_TAKEN; d++) {
		DIR *dh = opendir(dirs[d]);
		struct dirent *e;
		if (dh == NULL)
			continue;
		while ((e = readdir(dh)) != NULL) {
			struct stat st;
			if (spool_seg_name_parse(e->d_name, NULL, NULL, NULL) == -1 ||
			    strlen(e->d_name) >= SPOOL_NAME_MAX)
				continue;
			if (npend == pend_cap) {
				size_t cap = pend_cap ? pend_cap * 2 : 256;
				struct pend *p = realloc(pends, cap * sizeof(*p));
				if (p == NULL)
					break;
				pends = p;
				pend_cap = cap;
			}
			unsigned pw;
			if (spool_seg_name_parse(e->d_name, NULL, &pw, NULL) == 0 &&
			    pw < MAX_LABELS && (int)pw >= nchains)
				nchains = (int)pw + 1;
			memcpy(pends[npend].name, e->d_name, strlen(e->d_name) + 1);
			pends[npend].dir = d;
			pends[npend].size =
			    fstatat(dirfd(dh), e->d_name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
			npend++;
		}
		closedir(dh);
	}
	next_scan = now_ms + SCAN_EVERY_MS;
}

/*
 * A worker writes a segment newer than anything its chain knows: look at
 * the directories now rather than at the next periodic scan, or each new
 * segment would wait for it.
 */
static int idle_writer(void)
{
	uint32_t hwm = STATS_LOAD(shm->ctl.slot_hwm);
	uint64_t ns, off;

	for (uint32_t i = 0; i < hwm && i < STATS_MAX_SLOTS; i++) {
		const struct ctl_slot *sl = &shm->ctl.slot[i];
		uint32_t w = STATS_LOAD(sl->label);
		if (STATS_LOAD(sl->state) == CTL_SLOT_FREE || w >= MAX_LABELS || chains[w].has ||
		    ctl_pos_load(&sl->spool_end, &ns, &off) == -1)
			continue;
		if (ns > chains[w].done_ns && off > SPOOL_FILE_HDR && ns != chains[w].seen_ns) {
			chains[w].seen_ns = ns;
			return 1;
		}
	}
	return 0;
}

/* The oldest pending segment of worker w, not the chain's own. */
static struct pend *oldest_of(unsigned w, const char *skip)
{
	struct pend *best = NULL;

	for (size_t i = 0; i < npend; i++) {
		unsigned pw;
		if (pends[i].name[0] == '\0' ||
		    spool_seg_name_parse(pends[i].name, NULL, &pw, NULL) == -1 || pw != w ||
		    (skip != NULL && strcmp(pends[i].name, skip) == 0))
			continue;
		if (best == NULL || strcmp(pends[i].name, best->name) < 0 ||
		    (strcmp(pends[i].name, best->name) == 0 && pends[i].dir > best->dir))
			best = &pends[i];
	}
	return best;
}

/* Gone since the last scan: the next segment is picked without waiting for a rescan. */
static void forget_pend(const char *name)
{
	for (size_t i = 0; i < npend; i++)
		if (strcmp(pends[i].name, name) == 0)
			pends[i].name[0] = '\0';
}

static int file_exists(const char *dir, const char *name)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

/*
 * An active segment no longer in active/: sealed by its writer, or
 * recovered by the master after the writer died (same name, same
 * offsets). Take it from ready/ as any consumer does (or from taken/, left
 * by one that died) and go on where we were.
 */
static void follow_seal(struct chain *c)
{
	char ck[PATH_MAX];
	int fd, saved;

	if (file_exists(dirs[SPOOL_D_ACTIVE], c->name))
		return;
	fd = spool_take(cf->spool_dir, c->name);
	if (fd < 0 && errno == EWOULDBLOCK)
		return; /* its writer closing it, or a consumer's step 2: retry */
	if (fd < 0 && errno == ENOENT)
		fd = spool_take_over(cf->spool_dir, c->name);
	saved = errno;
	if (fd >= 0 && open_fd(c, fd, dirs[SPOOL_D_TAKEN]) == 0) {
		struct stat st;
		c->where = WH_TAKEN;
		c->limit = fstat(c->fd, &st) == 0 ? (uint64_t)st.st_size : c->limit;
		c->slot = -1;
		return;
	}
	if (fd < 0 && saved == EWOULDBLOCK)
		log_warnx("%s was taken by another consumer as it was sealed: the %" PRIu64
			  " bytes forwarded from it are delivered by that one too",
			  c->name, c->acked_off);
	else /* Quarantined, set aside as suspect, or dropped at the bound: not ours. */
		log_warnx("%s left active/ and is not in ready/: not forwarded further "
			  "(%" PRIu64 " bytes were)",
			  c->name, c->acked_off);
	ckpt_path(ck, sizeof(ck), c->name);
	chain_close(c);
	unlink(ck);
}

/* How far the segment may be read now. */
static void update_limit(struct chain *c)
{
	uint64_t off;

	if (c->where == WH_TAKEN)
		return;
	if (c->slot < 0 || STATS_LOAD(shm->ctl.slot[c->slot].pid) != (int32_t)c->pid ||
	    STATS_LOAD(shm->ctl.slot[c->slot].state) == CTL_SLOT_FREE)
		c->slot = slot_of(c->pid);
	if (slot_end(c->slot, c->ns, &off)) {
		if (off > c->limit)
			c->limit = off;
		/* Sealed by age with nothing after it, the position does not move. */
		if (c->read_off < c->limit || now_ms < c->check_ms)
			return;
		c->check_ms = now_ms + SCAN_EVERY_MS;
	}
	/* Its writer moved on or died: the segment is being sealed or recovered. */
	follow_seal(c);
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	static const char h[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = h[p[i] >> 4];
		out[2 * i + 1] = h[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Publish one record. 0 when libnats took it, -1 when it did not (try again later). */
static int publish(struct chain *c, const struct spool_rec *r, const uint8_t *payload, uint64_t off)
{
	natsMsg *m = NULL;
	jsPubOptions po;
	char id[256], v[160];
	natsStatus s;

	s = natsMsg_Create(&m, c->subject, NULL, (const char *)payload, (int)r->len);
	if (s != NATS_OK)
		return -1;
	snprintf(id, sizeof(id), "%.*s:%" PRIu64 ":%s", (int)(strlen(c->name) - 4), c->name, off,
		 host);
	natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	hex(v, r->submit_id, 8);
	natsMsgHeader_Set(m, "Submit-Id", v);
	if (r->flags & SPOOL_FLAG_CONN_ID) {
		hex(v, r->conn_id, 8);
		natsMsgHeader_Set(m, "Submit-Conn-Id", v);
	}
	spool_client_str(r->addr, r->port, v, sizeof(v));
	natsMsgHeader_Set(m, "Submit-Client", v);
	snprintf(v, sizeof(v), "%u", r->worker);
	natsMsgHeader_Set(m, "Submit-Worker", v);
	snprintf(v, sizeof(v), "%" PRIu64, r->ts_ns);
	natsMsgHeader_Set(m, "Submit-Time", v);
	snprintf(v, sizeof(v), "%s", host);
	natsMsgHeader_Set(m, "Submit-Host", v);
	jsPubOptions_Init(&po);
	po.MaxWait = PUB_MAX_WAIT_MS;
	s = js_PublishMsgAsync(js, &m, &po);
	natsMsg_Destroy(m); /* NULL when libnats took it */
	if (s != NATS_OK) {
		if (rate_ok(2))
			log_warnx("publish %s: %s", id, natsStatus_GetText(s));
		return -1;
	}
	STATS_ADD(fx->published, 1);
	STATS_ADD(fx->inflight, 1);
	return 0;
}

/* Read and publish what the segment has, up to its limit and the window. */
static void pump(struct chain *c)
{
	struct spool_rec r;
	const uint8_t *payload;
	uint64_t off;
	int k = 0, rc;

	update_limit(c);
	if (!c->has)
		return;
	c->rd.off = c->read_off;
	while (k < PASS_MAX && window < (uint64_t)cf->nats_max_inflight) {
		/*
		 * An active segment is read only up to what its worker promised:
		 * after that come zeros written ahead (spool_sync = always) or a
		 * record still being written, neither of them a record yet.
		 */
		if (c->where == WH_ACTIVE && c->rd.off + SPOOL_REC_HDR > c->limit)
			break;
		rc = spool_read_next(&c->rd, &r, &payload, &off);
		if (rc == -1 || rc == SPOOL_BAD || (rc == SPOOL_TORN && c->where == WH_TAKEN)) {
			/* Never skipped: the chain stops here until an operator looks. */
			if (rate_ok(7))
				log_errorx("%s: record at %" PRIu64
					   " unreadable (%s): forwarding of "
					   "worker %ld's segments stops here",
					   c->name, off, rc == -1 ? strerror(errno) : c->rd.why,
					   (long)(c - chains));
			break;
		}
		if (rc != 1)
			break;
		uint64_t end = off + SPOOL_REC_HDR + r.len;
		if (c->where == WH_ACTIVE && end > c->limit)
			break; /* written, not yet what the worker promised: it may be taken back */
		if (publish(c, &r, payload, off) == -1)
			break;
		struct ent *e = &c->ring[(c->head + c->n) % ring_cap];
		e->off = off;
		e->len = SPOOL_REC_HDR + r.len;
		e->ts_ns = r.ts_ns;
		e->st = E_INFLIGHT;
		e->tries = 1;
		c->n++;
		window++;
		read_recs++;
		read_bytes += e->len;
		got_records = 1;
		c->read_off = end;
		k++;
	}
	/*
	 * Forget what was read ahead of an active segment: past the limit it
	 * may still be rewritten. A sealed one does not change.
	 */
	if (c->where == WH_ACTIVE) {
		c->rd.blen = 0;
		c->rd.boff = c->read_off;
	}
	if (k == PASS_MAX)
		more_to_read = 1;
}

/* Re-read one record at off (for a retry). 1, or 0 if it is not there. */
static int reread(struct chain *c, uint64_t off, struct spool_rec *r, const uint8_t **payload)
{
	uint64_t got;

	c->rd.off = off;
	c->rd.blen = 0;
	c->rd.boff = off;
	int rc = spool_read_next(&c->rd, r, payload, &got);
	return rc == 1;
}

static void retry_failed(void)
{
	for (int w = 0; w < nchains; w++) {
		struct chain *c = &chains[w];
		if (!c->has || c->fd < 0)
			continue;
		for (uint32_t i = 0; i < c->n; i++) {
			struct ent *e = &c->ring[(c->head + i) % ring_cap];
			struct spool_rec r;
			const uint8_t *payload;
			if (e->st != E_FAILED)
				continue;
			if (!reread(c, e->off, &r, &payload)) {
				log_warnx("%s: record at %" PRIu64 " unreadable for a retry",
					  c->name, e->off);
				continue;
			}
			if (publish(c, &r, payload, e->off) == -1)
				break;
			e->st = E_INFLIGHT;
			e->tries++;
			STATS_ADD(fx->retried, 1);
		}
		c->rd.blen = 0;
		c->rd.boff = c->read_off;
	}
}

static int find_ent(struct chain *c, uint64_t off)
{
	uint32_t lo = 0, hi = c->n;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		uint64_t o = c->ring[(c->head + mid) % ring_cap].off;
		if (o == off)
			return (int)mid;
		if (o < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static void on_event(const struct ackev *ev)
{
	struct chain *c;
	int i;

	if (ev->worker >= MAX_LABELS)
		return;
	c = &chains[ev->worker];
	if (!c->has || c->ns != ev->ns || (i = find_ent(c, ev->off)) < 0)
		return; /* a late answer to a publish from before a restart of the chain */
	struct ent *e = &c->ring[(c->head + (uint32_t)i) % ring_cap];
	if (e->st != E_INFLIGHT)
		return;
	STATS_STORE(fx->inflight, STATS_LOAD(fx->inflight) - 1);
	if (ev->status < 0) {
		e->st = E_FAILED;
		STATS_ADD(fx->failed, 1);
		if (retry_at == 0) {
			retry_backoff = backoff_next(retry_backoff, RETRY_MIN_MS, RETRY_MAX_MS);
			retry_at = now_ms + retry_backoff;
		}
		return;
	}
	e->st = E_ACKED;
	retry_backoff = 0;
	STATS_ADD(fx->acked, 1);
	if (ev->status == 1) {
		STATS_ADD(fx->duplicates, 1);
	} else {
		static const uint64_t bounds[] = STATS_FWD_BOUNDS;
		uint64_t t = real_ns(), us = t > e->ts_ns ? (t - e->ts_ns) / 1000 : 0;
		size_t b = 0;
		while (b < sizeof(bounds) / sizeof(bounds[0]) && us > bounds[b])
			b++;
		STATS_ADD(fx->lat[b], 1);
		STATS_ADD(fx->lat_sum_us, us);
	}
	/* The contiguous prefix is in the stream: the checkpoint may move to its end. */
	while (c->n > 0 && c->ring[c->head].st == E_ACKED) {
		struct ent *h = &c->ring[c->head];
		c->acked_off = h->off + h->len;
		c->head = (c->head + 1) % ring_cap;
		c->n--;
		window--;
	}
}

static void drain_events(void)
{
	uint64_t v;
	int ce;

	if (read(efd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		log_warn("eventfd");
	pthread_mutex_lock(&qmu);
	struct ackev *t = q;
	size_t n = qn, tc = qcap;
	q = q2;
	qcap = q2cap;
	qn = 0;
	q2 = t;
	q2cap = tc;
	ce = conn_event;
	conn_event = 0;
	char err[sizeof(q_err)];
	memcpy(err, q_err, sizeof(err));
	q_err[0] = '\0';
	pthread_mutex_unlock(&qmu);

	for (size_t i = 0; i < n; i++)
		on_event(&q2[i]);
	if (err[0] != '\0' && rate_ok(3)) {
		log_warnx("publish to stream %s failed: %s", cf->nats_stream, err);
		/* No responders: nobody serves the stream's subjects (no stream). */
		if (strstr(err, "no responders") != NULL || strstr(err, "No responders") != NULL)
			stream_ok = 0, stream_check_at = now_ms;
	}
	if (ce == 1) {
		log_warnx("disconnected from NATS: reconnecting");
		set_state(STATS_FWD_DISCONNECTED);
	} else if (ce == 2) {
		log_info("reconnected to NATS");
		STATS_ADD(fx->connects, 1);
		set_state(stream_ok ? STATS_FWD_CONNECTED : STATS_FWD_NO_STREAM);
		stream_check_at = now_ms;
	} else if (ce == 3) {
		log_warnx("NATS connection closed");
		set_state(STATS_FWD_DISCONNECTED);
	}
}

/*
 * ack_after = stream: the stream holds worker slot sl's records up to (ns,
 * off). A worker asleep with acks owed (stream_wait) is woken with SIGURG,
 * once per sleep; it looks at the position when it wakes.
 */
static void publish_acked(struct ctl_slot *sl, uint64_t ns, uint64_t off)
{
	ctl_pos_store(&sl->stream_acked, ns, off);
	ctl_wake(&sl->stream_wait, &sl->pid);
}

/* Tell the workers how far the stream has their records (ack_after = stream). */
static void publish_positions(void)
{
	for (int w = 0; w < nchains; w++) {
		struct chain *c = &chains[w];
		if (!c->has)
			continue;
		if (c->slot < 0 || STATS_LOAD(shm->ctl.slot[c->slot].pid) != (int32_t)c->pid)
			c->slot = slot_of(c->pid);
		if (c->slot < 0)
			continue;
		if (c->pub_ns != c->ns || c->pub_off != c->acked_off) {
			publish_acked(&shm->ctl.slot[c->slot], c->ns, c->acked_off);
			c->pub_ns = c->ns;
			c->pub_off = c->acked_off;
		}
	}
}

/* A sealed segment whose every record is in the stream: delete it. */
static void finish_if_done(struct chain *c)
{
	char path[PATH_MAX], ck[PATH_MAX];

	if (!c->has || c->where != WH_TAKEN || c->n > 0 || c->acked_off < c->limit)
		return;
	ckpt_write(c);
	if (c->slot >= 0 || (c->slot = slot_of(c->pid)) >= 0)
		publish_acked(&shm->ctl.slot[c->slot], c->ns, c->acked_off);
	ckpt_path(ck, sizeof(ck), c->name);
	if (spool_path(path, sizeof(path), cf->spool_dir, SPOOL_D_TAKEN, c->name) == -1 ||
	    (unlink(path) == -1 && errno != ENOENT))
		log_warn("delete %s/%s", dirs[SPOOL_D_TAKEN], c->name);
	(void)spool_fsync_dir(cf->spool_dir, SPOOL_D_TAKEN);
	unlink(ck);
	STATS_ADD(fx->segments, 1);
	forget_pend(c->name);
	c->done_ns = c->ns;
	chain_close(c);
	next_scan = 0; /* its successor is probably there already */
}

/*
 * Lag in records, docs/METRICS.md: exact for what was read (the window),
 * estimated for the bytes not yet read from the mean size of the records
 * read so far, since counting them would mean reading the whole backlog.
 */
static uint64_t lag_recs_of(uint64_t unread, uint64_t inwin)
{
	if (unread == 0)
		return inwin;
	if (read_recs == 0)
		return inwin + 1; /* at least one record there */
	uint64_t mean = read_bytes / read_recs;
	return inwin + (unread + mean - 1) / (mean ? mean : 1);
}

/*
 * How much of the active segment (ns, pid) holds records: the end its
 * worker published, or size (from the scan) once no live worker writes it.
 * The file can be longer: zeros written ahead with spool_sync = always.
 */
static uint64_t written_end(uint64_t ns, long pid, uint64_t size)
{
	uint64_t off;

	return slot_end(slot_of(pid), ns, &off) ? off : size;
}

static void gauges(void)
{
	uint64_t lag = 0, segs = 0, oldest = 0, recs = 0;

	for (size_t i = 0; i < npend; i++) {
		unsigned w;
		uint64_t ns, done = SPOOL_FILE_HDR, rdoff = SPOOL_FILE_HDR, inwin = 0;
		uint64_t size = pends[i].size;
		long pid;
		if (spool_seg_name_parse(pends[i].name, &ns, &w, &pid) == -1 || w >= MAX_LABELS)
			continue;
		/* Being written: to the end its worker published, not the zeros after it. */
		if (pends[i].dir == SPOOL_D_ACTIVE)
			size = written_end(ns, pid, size);
		struct chain *c = &chains[w];
		if (c->has && strcmp(c->name, pends[i].name) == 0) {
			done = c->acked_off;
			rdoff = c->read_off;
			inwin = c->n;
			if (c->n > 0)
				ns = c->ring[c->head].ts_ns;
		}
		if (size <= done)
			continue;
		lag += size - done;
		recs += lag_recs_of(size > rdoff ? size - rdoff : 0, inwin);
		segs++;
		if (oldest == 0 || ns < oldest)
			oldest = ns;
	}
	STATS_STORE(fx->lag_bytes, lag);
	STATS_STORE(fx->lag_records, recs);
	STATS_STORE(fx->lag_segments, segs);
	STATS_STORE(fx->oldest_ns, oldest);
}

/* ---- NATS ---- */

static int make_stream(void)
{
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	char subj[256];
	const char *subjects[1];
	natsStatus s;

	s = js_GetStreamInfo(&si, js, cf->nats_stream, NULL, &jerr);
	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	if (s != NATS_NOT_FOUND || !cf->nats_create_stream) {
		if (rate_ok(4))
			log_errorx("stream %s: %s%s", cf->nats_stream,
				   s == NATS_NOT_FOUND ? "not found" : natsStatus_GetText(s),
				   s == NATS_NOT_FOUND
				       ? " (create it, or set nats_create_stream = true)"
				       : "");
		return -1;
	}
	/* Every subject this configuration can publish to: %h and %w become wildcards. */
	size_t k = 0;
	for (const char *p = cf->nats_subject; *p && k + 2 < sizeof(subj); p++) {
		if (p[0] == '%' && (p[1] == 'h' || p[1] == 'w')) {
			subj[k++] = '*';
			p++;
		} else {
			subj[k++] = *p;
		}
	}
	subj[k] = '\0';
	subjects[0] = subj;
	jsStreamConfig_Init(&sc);
	sc.Name = cf->nats_stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = cf->nats_stream_replicas;
	sc.Retention = cf->nats_stream_retention == CONF_RET_INTEREST	 ? js_InterestPolicy
		       : cf->nats_stream_retention == CONF_RET_WORKQUEUE ? js_WorkQueuePolicy
									 : js_LimitsPolicy;
	sc.MaxAge = (int64_t)cf->nats_stream_max_age * 1000000000;
	sc.MaxBytes = cf->nats_stream_max_bytes ? cf->nats_stream_max_bytes : -1;
	sc.Duplicates = (int64_t)cf->nats_dup_window * 1000000000;
	s = js_AddStream(&si, js, &sc, NULL, &jerr);
	if (s != NATS_OK) {
		if (rate_ok(4))
			log_errorx("cannot create stream %s (subjects %s): %s (%d)",
				   cf->nats_stream, subj, natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	jsStreamInfo_Destroy(si);
	log_info("created stream %s (subjects %s, %ld replicas)", cf->nats_stream, subj,
		 cf->nats_stream_replicas);
	return 0;
}

static natsStatus make_options(const struct conf *c, natsOptions **out, int timeout_ms)
{
	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);
	char name[200];

	if (s == NATS_OK)
		s = natsOptions_SetServers(o, (const char **)c->nats_servers, c->nnats);
	if (s == NATS_OK && c->nats_user[0] != '\0')
		s = natsOptions_SetUserInfo(o, c->nats_user, c->nats_password);
	if (s == NATS_OK && c->nats_creds[0] != '\0')
		s = natsOptions_SetUserCredentialsFromFiles(o, c->nats_creds, NULL);
	if (s == NATS_OK && c->nats_tls_ca[0] != '\0')
		s = natsOptions_LoadCATrustedCertificates(o, c->nats_tls_ca);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	snprintf(name, sizeof(name), "submitd forwarder %s", host);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, name);
	if (s != NATS_OK)
		natsOptions_Destroy(o);
	else
		*out = o;
	return s;
}

static void try_connect(void)
{
	natsOptions *o = NULL;
	jsOptions jo;
	natsStatus s;

	connect_at = 0;
	s = make_options(cf, &o, 2000);
	if (s == NATS_OK) {
		natsOptions_SetDisconnectedCB(o, on_disconnected, NULL);
		natsOptions_SetReconnectedCB(o, on_reconnected, NULL);
		natsOptions_SetClosedCB(o, on_closed, NULL);
		s = natsConnection_Connect(&nc, o);
	}
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		const char *why = nats_GetLastError(NULL);
		int refused = s == NATS_NOT_PERMITTED || s == NATS_SSL_ERROR ||
			      (why != NULL && (strstr(why, "uthorization") != NULL ||
					       strstr(why, "uthentication") != NULL));
		if (rate_ok(5) || connect_backoff >= CONNECT_MAX_MS)
			log_errorx("cannot connect to NATS (%s%s): %s%s%s", cf->nats_servers[0],
				   cf->nnats > 1 ? ", ..." : "", natsStatus_GetText(s),
				   why ? ": " : "", why ? why : "");
		set_state(refused ? STATS_FWD_REFUSED : STATS_FWD_CONNECTING);
		STATS_ADD(fx->errors_conn, 1);
		nc = NULL;
		connect_backoff = backoff_next(connect_backoff, CONNECT_MIN_MS, CONNECT_MAX_MS);
		connect_at = now_ms + connect_backoff;
		return;
	}
	connect_backoff = 0;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = cf->nats_max_inflight * 2 + 64;
	jo.PublishAsync.AckHandler = on_ack;
	jo.Wait = 5000;
	if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
		fatalx("JetStream context: %s", natsStatus_GetText(s));
	STATS_ADD(fx->connects, 1);
	log_info("connected to NATS");
	stream_ok = 0;
	stream_check_at = now_ms;
	/* Connected, the stream not looked up yet: check_stream says which state follows. */
}

static void check_stream(void)
{
	stream_check_at = 0;
	if (make_stream() == 0) {
		if (!stream_ok)
			log_info("stream %s ready", cf->nats_stream);
		stream_ok = 1;
		if (STATS_LOAD(fx->state) != STATS_FWD_DISCONNECTED)
			set_state(STATS_FWD_CONNECTED);
		/* What failed while the stream was missing goes again now. */
		retry_at = now_ms;
		return;
	}
	stream_ok = 0;
	if (STATS_LOAD(fx->state) != STATS_FWD_DISCONNECTED)
		set_state(STATS_FWD_NO_STREAM);
	stream_check_at = now_ms + STREAM_RECHECK_MS;
}

/* ---- the process ---- */

static void on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
		case SIGQUIT:
			if (!stopping)
				log_info("stopping");
			stopping = 1;
			break;
		case SIGUSR1:
			if (log_reopen() == -1)
				log_warn("reopen %s", cf->log_file);
			break;
		default:
			break;
		}
	}
}

static void setup(const struct forwarder_args *a)
{
	struct epoll_event ev;
	char err[256];

	cf = a->conf;
	shm = a->shm;
	fx = &shm->fwd;
	log_set_tag("forwarder");
	for (int i = 0; i < a->nclose; i++)
		if (a->close_fds[i] >= 0)
			close(a->close_fds[i]);
	/* No client sockets, nothing of the master's: stdio and the log only. */
	int keep[4] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, log_fileno()};
	if (proc_close_fds(keep, 4) == -1)
		fatal("closing inherited descriptors");
	proc_title_set("forwarder");
	prctl(PR_SET_NAME, "submitd-fwd");

	/* Blocked before libnats starts its threads, so they inherit the mask. */
	static const int sigs[] = {SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2,
				   SIGURG,  SIGHUP, SIGTTIN, SIGTTOU, SIGCHLD};
	if ((sfd = proc_signalfd(sigs, (int)(sizeof(sigs) / sizeof(sigs[0])))) == -1)
		fatal("signalfd");
	if ((efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("eventfd");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.fd = sfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) == -1)
		fatal("epoll_ctl");
	ev.data.fd = efd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == -1)
		fatal("epoll_ctl");

	if (proc_drop_privileges(cf->user, err, sizeof(err)) == -1)
		fatalx("%s", err);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != a->master)
		exit(0);
	/* Where the workers send their wake-up (poll_timeout). */
	STATS_STORE(shm->ctl.fwd_pid, (int32_t)getpid());

	if (gethostname(host, sizeof(host) - 1) == -1 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	/* A subject token cannot hold '.', '*', '>' or spaces. */
	for (size_t i = 0; host[i] && i + 1 < sizeof(subj_host); i++) {
		char ch = host[i];
		subj_host[i] = ch == '.' || ch == '*' || ch == '>' || ch <= ' ' ? '_' : ch;
		subj_host[i + 1] = '\0';
	}
	for (enum spool_dir d = 0; d < SPOOL_NDIRS; d++)
		if (spool_path(dirs[d], sizeof(dirs[d]), cf->spool_dir, d, NULL) == -1)
			fatal("spool_dir %s", cf->spool_dir);
	snprintf(ckdir, sizeof(ckdir), "%s/%s", cf->spool_dir, CKPT_DIR);
	if (mkdir(ckdir, 0750) == -1 && errno != EEXIST)
		fatal("mkdir %s", ckdir);

	ring_cap = (uint32_t)cf->nats_max_inflight;
	if ((chains = calloc(MAX_LABELS, sizeof(*chains))) == NULL)
		fatalx("out of memory");
	for (int w = 0; w < MAX_LABELS; w++)
		chains[w].fd = chains[w].ckfd = -1;
	now_ms = mono_ms();
	/* A killed predecessor's publishes are not in flight any more: they go again. */
	STATS_STORE(fx->inflight, 0);
	set_state(STATS_FWD_CONNECTING);
	log_info("spool %s to stream %s at %s%s (ack_after = %s)", cf->spool_dir, cf->nats_stream,
		 cf->nats_servers[0], cf->nnats > 1 ? ", ..." : "",
		 conf_ack_after_name(cf->ack_after));
}

/* Checkpoints left by segments that are gone (done just before a crash). */
static void clean_checkpoints(void)
{
	DIR *d = opendir(ckdir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		char seg[SPOOL_NAME_MAX];
		if (n < 6 || n - 5 >= sizeof(seg) || strcmp(e->d_name + n - 5, ".ckpt") != 0)
			continue;
		memcpy(seg, e->d_name, n - 5);
		seg[n - 5] = '\0';
		int found = 0;
		for (size_t i = 0; i < npend && !found; i++)
			found = strcmp(pends[i].name, seg) == 0;
		if (!found)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

/*
 * Whether a worker's spool_end moved since the last look (the look is
 * remembered per slot).
 */
static int ends_moved(void)
{
	static uint64_t seen_ns[CTL_MAX_SLOTS], seen_off[CTL_MAX_SLOTS];
	uint32_t hwm = STATS_LOAD(shm->ctl.slot_hwm);
	int moved = 0;

	for (uint32_t i = 0; i < hwm && i < CTL_MAX_SLOTS; i++) {
		uint64_t ns, off;
		if (STATS_LOAD(shm->ctl.slot[i].state) == CTL_SLOT_FREE ||
		    ctl_pos_load(&shm->ctl.slot[i].spool_end, &ns, &off) == -1 ||
		    (ns == seen_ns[i] && off == seen_off[i]))
			continue;
		seen_ns[i] = ns;
		seen_off[i] = off;
		moved = 1;
	}
	return moved;
}

/*
 * How long the loop may wait, in ms. While records flow, look every 2 ms
 * (a pass takes what came meanwhile). Else sleep until a worker publishes
 * records (it wakes us: fwd_wait), a PubAck comes (the eventfd) or a
 * timer is due (checkpoints, retries).
 */
static int poll_timeout(void)
{
	if (more_to_read)
		return 0;
	if (got_records)
		return 2;
	ctl_wait_announce(&shm->ctl.fwd_wait);
	return ends_moved() ? 0 : CKPT_EVERY_MS;
}

/*
 * Once stopping: the acknowledgements still owed get until the deadline
 * (set at the first call). Returns 1 when the loop should end.
 */
static int stop_due(uint64_t *deadline)
{
	if (*deadline == 0)
		*deadline = now_ms + STOP_WAIT_MS;
	return STATS_LOAD(fx->inflight) == 0 || nc == NULL || now_ms >= *deadline;
}

/*
 * Connected, the stream there: publishes what the spool holds. Each
 * worker's chain without a segment starts on the oldest one pending, every
 * chain publishes what its window allows, and failed publishes go again
 * when their back-off is over.
 */
static void forward(void)
{
	if (now_ms >= next_scan || idle_writer())
		scan();
	for (int w = 0; w < nchains; w++) {
		struct chain *c = &chains[w];
		if (!c->has) {
			struct pend *p = oldest_of((unsigned)w, NULL);
			if (p == NULL)
				continue;
			if (chain_start(c, p->name, p->dir) == -1) {
				p->name[0] = '\0'; /* gone: look again at the next scan */
				continue;
			}
		}
		pump(c);
	}
	if (retry_at != 0 && now_ms >= retry_at) {
		retry_at = 0;
		retry_failed();
	}
}

/* Writes the checkpoints that are due and lets go of the segments forwarded whole. */
static void checkpoint_chains(void)
{
	for (int w = 0; w < nchains; w++) {
		struct chain *c = &chains[w];
		if (!c->has)
			continue;
		if (c->acked_off != c->ckpt_off && now_ms - c->ckpt_ms >= CKPT_EVERY_MS)
			ckpt_write(c);
		finish_if_done(c);
	}
}

/* Once a second: the scan that is due, the gauges, the lost acknowledgements. */
static void every_second(void)
{
	if (now_ms >= next_scan)
		scan();
	gauges();
	if (ack_events_dropped && rate_ok(6))
		log_warnx("%" PRIu64 " acknowledgements lost (out of memory)", ack_events_dropped);
}

/*
 * Leaves: checkpoints every chain where its acknowledgements reached, so
 * that what is still unacknowledged goes again from there. Never returns.
 */
__attribute__((noreturn)) static void leave(void)
{
	for (int w = 0; w < nchains; w++)
		if (chains[w].has)
			ckpt_write(&chains[w]);
	publish_positions();
	if (STATS_LOAD(fx->inflight) > 0)
		log_warnx("%" PRIu64 " publishes unacknowledged at exit: they go again "
			  "from the checkpoint",
			  STATS_LOAD(fx->inflight));
	STATS_STORE(fx->inflight, 0);
	set_state(STATS_FWD_OFF);
	log_info("exiting");
	/* libnats' threads may still run callbacks: leave without tearing them down. */
	_exit(0);
}

void forwarder_main(const struct forwarder_args *a)
{
	struct epoll_event evs[4];
	uint64_t stop_deadline = 0, next_second = 0;

	setup(a);
	scan();
	clean_checkpoints();
	for (;;) {
		int timeout = poll_timeout();
		more_to_read = 0;
		got_records = 0;
		int n = epoll_wait(ep, evs, 4, timeout);
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		now_ms = mono_ms();
		STATS_STORE(shm->ctl.fwd_heartbeat_ms, now_ms);
		for (int i = 0; i < n; i++)
			if (evs[i].data.fd == sfd)
				on_signal();
		drain_events();

		if (stopping) {
			if (stop_due(&stop_deadline))
				break;
		} else if (nc == NULL) {
			if (now_ms >= connect_at)
				try_connect();
		} else {
			if (stream_check_at != 0 && now_ms >= stream_check_at)
				check_stream();
			if (stream_ok)
				forward();
		}
		checkpoint_chains();
		publish_positions();
		if (now_ms >= next_second) {
			next_second = now_ms + 1000;
			every_second();
		}
	}
	leave();
}

int forwarder_check(const struct conf *c, int timeout_ms, int *reachable, char *err, size_t errlen)
{
	natsOptions *o = NULL;
	natsConnection *conn = NULL;
	jsCtx *j = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int r = -1;

	if (gethostname(host, sizeof(host) - 1) == -1)
		host[0] = '\0';
	if ((s = make_options(c, &o, timeout_ms)) == NATS_OK) {
		natsOptions_SetMaxReconnect(o, 0);
		s = natsConnection_Connect(&conn, o);
	}
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		const char *why = nats_GetLastError(NULL);
		snprintf(err, errlen, "cannot connect to NATS (%s): %s%s%s", c->nats_servers[0],
			 natsStatus_GetText(s), why ? ": " : "", why ? why : "");
		/* Refused (credentials, TLS) is an answer: the configuration is wrong. */
		*reachable = s == NATS_NOT_PERMITTED || s == NATS_SSL_ERROR ||
			     (why != NULL && strstr(why, "uthoriz") != NULL);
		return -1;
	}
	if ((s = natsConnection_JetStream(&j, conn, NULL)) == NATS_OK)
		s = js_GetStreamInfo(&si, j, c->nats_stream, NULL, &jerr);
	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		r = 0;
	} else if (s == NATS_NOT_FOUND && c->nats_create_stream) {
		r = 0;
	} else if (s == NATS_NOT_FOUND) {
		snprintf(err, errlen,
			 "stream %s not found (create it, or set nats_create_stream = true)",
			 c->nats_stream);
	} else {
		snprintf(err, errlen, "stream %s: %s", c->nats_stream, natsStatus_GetText(s));
	}
	jsCtx_Destroy(j);
	natsConnection_Destroy(conn);
	return r;
}

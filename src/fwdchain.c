#include "fwdchain.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "crc32c.h"
#include "log.h"

#define MAX_LABELS    1000 /* worker indices have three digits in segment names */
#define CKPT_DIR      "forwarder"
#define CKPT_LEN      16
#define CKPT_MAGIC    0x4b434653u /* "SFCK" */
#define CKPT_EVERY_MS 50
#define SCAN_EVERY_MS 100
#define PASS_MAX      512 /* records published for one segment per loop pass */
#define RETRY_MIN_MS  200
#define RETRY_MAX_MS  5000
#define LOG_EVERY_MS  1000

/* A record in a chain's window. */
enum ent_state { E_INFLIGHT, E_ACKED, E_FAILED };
struct ent {
	uint64_t off;
	uint64_t ts_ns; /* the record's spool write time */
	uint32_t len;	/* the whole record */
	uint8_t st;
	uint8_t tries;
};

/* Where the segment a chain works on is. */
enum where { WH_ACTIVE, WH_TAKEN };

/*
 * One per worker index: its segments are forwarded one at a time, oldest
 * first, so that "acknowledged up to here" is one position per worker.
 */
struct chain {
	int has;
	char name[SPOOL_NAME_MAX];
	uint64_t ns;
	long pid;
	enum where where;
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

/* The log lines limited to one a second, each on its own. */
enum log_kind { LOG_CHECKPOINT, LOG_OPEN, LOG_UNREADABLE, LOG_NKINDS };

static const struct conf *cf;
static struct stats_shm *shm;
static struct stats_fwd *fx;
static struct chain *chains;
static int nchains;	 /* 1 + the highest worker index seen: the loops stop there */
static int more_to_read; /* a pass stopped at PASS_MAX, a chain closed: the next round at once */
static int got_records;	 /* this loop round's passes published records */
static uint32_t ring_cap;
static uint64_t window;		    /* entries in all rings */
static char dirs[SPOOL_NDIRS][256]; /* by enum spool_dir (spool_dir has at most 200 bytes) */
static char ckdir[256];
static uint64_t read_recs, read_bytes; /* records read since start: their mean size */
static uint64_t now_ms;
static uint64_t retry_at, retry_backoff;
static uint64_t last_log[LOG_NKINDS];

static int say(enum log_kind k)
{
	return rate_ok(&last_log[k], now_ms, LOG_EVERY_MS);
}

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
		if (say(LOG_CHECKPOINT))
			log_warn("checkpoint of %s", c->name);
		return;
	}
	c->ckpt_off = c->acked_off;
	c->ckpt_ms = now_ms;
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
		if (say(LOG_OPEN))
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
	fwdnats_subject(c->subject, sizeof(c->subject), w);
	ckpt_path(ck, sizeof(ck), name);
	c->ckfd = open(ck, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	c->read_off = c->acked_off = c->ckpt_off =
	    c->ckfd >= 0 ? ckpt_read(c->ckfd) : SPOOL_FILE_HDR;
	if (c->ckfd < 0 && say(LOG_CHECKPOINT))
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
			if (say(LOG_UNREADABLE))
				log_errorx("%s: record at %" PRIu64
					   " unreadable (%s): forwarding of "
					   "worker %ld's segments stops here",
					   c->name, off, rc == -1 ? strerror(errno) : c->rd.why,
					   (long)(c - chains));
			break;
		}
		if (rc != 1)
			break;
		uint64_t end = off + spool_rec_size(&r);
		if (c->where == WH_ACTIVE && end > c->limit)
			break; /* written, not yet what the worker promised: it may be taken back */
		if (fwdnats_publish(c->subject, c->name, off, &r, payload, now_ms) == -1)
			break;
		struct ent *e = &c->ring[(c->head + c->n) % ring_cap];
		e->off = off;
		e->len = spool_rec_size(&r);
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
			if (fwdnats_publish(c->subject, c->name, e->off, &r, payload, now_ms) == -1)
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

void fwdchain_on_ack(const struct fwd_ack *ev, uint64_t now)
{
	struct chain *c;
	int i;

	now_ms = now;
	if (ev->worker >= MAX_LABELS)
		return;
	c = &chains[ev->worker];
	if (!c->has || c->ns != ev->ns || (i = find_ent(c, ev->off)) < 0)
		return; /* a late answer to a publish from before a restart of the chain */
	struct ent *e = &c->ring[(c->head + (uint32_t)i) % ring_cap];
	if (e->st != E_INFLIGHT)
		return;
	STATS_STORE(fx->inflight, STATS_LOAD(fx->inflight) - 1);
	if (ev->status == FWD_ACK_ERROR) {
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
	if (ev->status == FWD_ACK_DUPLICATE) {
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
int fwdchain_wait_ms(void)
{
	int more = more_to_read, got = got_records;

	more_to_read = 0;
	got_records = 0;
	if (more)
		return 0;
	if (got)
		return 2;
	ctl_wait_announce(&shm->ctl.fwd_wait);
	return ends_moved() ? 0 : CKPT_EVERY_MS;
}

/*
 * Connected, the stream there: publishes what the spool holds. Each
 * worker's chain without a segment starts on the oldest one pending, every
 * chain publishes what its window allows, and failed publishes go again
 * when their back-off is over.
 */
void fwdchain_forward(uint64_t now)
{
	now_ms = now;
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

void fwdchain_round(uint64_t now)
{
	now_ms = now;
	for (int w = 0; w < nchains; w++) {
		struct chain *c = &chains[w];
		if (!c->has)
			continue;
		if (c->acked_off != c->ckpt_off && now_ms - c->ckpt_ms >= CKPT_EVERY_MS)
			ckpt_write(c);
		finish_if_done(c);
	}
	publish_positions();
}

void fwdchain_retry_now(uint64_t now)
{
	retry_at = now;
}

void fwdchain_every_second(uint64_t now)
{
	now_ms = now;
	if (now_ms >= next_scan)
		scan();
	gauges();
}

void fwdchain_init(const struct conf *c, struct stats_shm *s)
{
	cf = c;
	shm = s;
	fx = &shm->fwd;
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
}

void fwdchain_start(uint64_t now)
{
	now_ms = now;
	scan();
	clean_checkpoints();
}

void fwdchain_leave(void)
{
	for (int w = 0; w < nchains; w++)
		if (chains[w].has)
			ckpt_write(&chains[w]);
	publish_positions();
}

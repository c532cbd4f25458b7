#include "spoolw.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "proto.h"
#include "spool.h"

/*
 * Records per batch before it is written mid-round. Bounds the batch's
 * memory; a round with more Submits writes more than once but still
 * syncs once.
 */
#define BATCH_CAP 1024
/* A connection's identity (conn.identity_len) fits a record's. */
_Static_assert(AUTH_IDENTITY_MAX <= SPOOL_IDENTITY_MAX, "identity longer than a record holds");
/*
 * Payloads up to this size are copied, with their header, into the staging
 * buffer, so a round of small records is one or a few large iovecs instead
 * of two tiny ones per record (the kernel's per-iovec cost dominated). The
 * copy costs little: the CRC reads the payload anyway and is computed while
 * copying. Larger payloads are written from the input buffers (zero-copy).
 */
#define STAGE_MAX 512
/*
 * spool_sync = interval or none: start the writeback of every this many
 * bytes written, so the fdatasync at the interval, or at sealing, does not
 * find a whole interval or segment of dirty pages to write while the loop
 * waits (PostgreSQL's wal_writer_flush_after does the same). With none and
 * 256 MiB segments, sealing stalled the loop for a fifth of a second.
 */
#define WRITEBACK_AFTER (1u << 20)
/*
 * At the same steps, every policy: the clean pages of the open segment more
 * than SPOOL_CACHE_BEHIND behind its end are dropped from the page cache,
 * and re-tried over RETRY_BEHIND more (pages then still being written
 * back); sealing drops the rest. A consumer tailing the segment reads the
 * newest pages from memory; a spool that can grow to gigabytes does not
 * push other files out of the cache, and the worker writes into pages the
 * kernel has just freed, not ever new ones (docs/BENCHMARKS.md: on these
 * VMs a page never used before cost 12x the write of its records).
 */
#define RETRY_BEHIND (8u << 20)
/*
 * spool_sync = always: zeros are written and synced ahead of the data, in
 * chunks, after the round's acks have left (PostgreSQL fills its WAL
 * segments the same way). An fdatasync of an append that grows the file
 * must commit the file system's journal (the new size and blocks); one of
 * a write into space already written does not, and is cheaper and steadier
 * (docs/BENCHMARKS.md). Sealing cuts the zeros; recovery tells them from a
 * torn record. Only for a writer with many small commits (ZERO_MIN_SYNCS
 * in the last second, ZERO_MAX_PER_SYNC bytes or less each on average), and
 * about two seconds of its appends ahead: there the journal commit is most
 * of each fdatasync, and the zeros cost little. With large commits (many
 * records per round) the journal commit is shared by the whole round and
 * topping up megabytes of zeros cost more than it saved (measured:
 * docs/BENCHMARKS.md); a quiet worker's segments, sealed by age with a few
 * records, get no zeros.
 */
#define ZERO_MAX	  (4u << 20)   /* zeros ahead: at most */
#define ZERO_MIN	  (256u << 10) /* and at least */
#define ZERO_MIN_SYNCS	  100	       /* group commits in the last second to start */
#define ZERO_MAX_PER_SYNC (64u << 10)  /* and appending at most this per commit */
#define DROP_MAX	  64	       /* ready segments deleted per check at the bound */
#define LOG_EVERY_MS	  1000
static const struct conf *cf;
static struct stats_slot *slot;
static const struct stats_shm *shm;
static struct ctl_slot *ctl; /* the worker's control slot (ctl.h) */
static unsigned worker, generation;
static struct conn_batch batch;
static struct iovec *iov;
static uint8_t *stage;		   /* BATCH_CAP * (64 + STAGE_MAX) bytes, allocated once */
static uint8_t *staged[BATCH_CAP]; /* the whole records in stage, for their CRCs */
static struct spool_seg seg = {.fd = -1};
static uint64_t last_ns;      /* created_ns of the last segment: names stay increasing */
static uint64_t round_ns;     /* CLOCK_REALTIME at the start of the round */
static uint64_t round_start;  /* segment offset where this round's records begin */
static uint64_t round_recs;   /* records of this round written */
static int round_failed;      /* a stats counter (reason), or 0 */
static uint64_t unsynced;     /* records written since the last fdatasync */
static uint64_t written_back; /* offset up to which writeback was started */
static uint64_t uncached;     /* offset up to which clean pages were last dropped */
static uint64_t first_rec_ms; /* when the open segment got its first record */
static uint64_t next_sync_ms;
static uint64_t zero_retry_ms; /* zero_ahead failed: not before this */
/* The last full second's commits and bytes appended, and the current one's. */
static uint64_t rate_ms, rate_syncs, rate_bytes, last_syncs, last_bytes;
static uint64_t now_ms;
static uint64_t pub_ns, pub_off; /* the position last published in spool_end */
static uint64_t last_log_ms[STATS_NCOUNTERS];
static char ready_dir[PATH_MAX];
#ifdef SUBMITD_TEST_HOOKS
static char fail_fsync_path[PATH_MAX];
#endif

/* Log at most once a second per kind (a stats counter names the kind). */
static void note(enum stats_counter kind, int err, const char *what)
{
	if (rate_ok(&last_log_ms[kind], mono_ms(), LOG_EVERY_MS)) {
		if (err != 0)
			log_warnx("spool: %s %s: %s", what, seg.name[0] ? seg.name : cf->spool_dir,
				  strerror(err));
		else
			log_warnx("spool: %s", what);
	}
}

/* Count a failure by reason and log it (at most once a second per reason). */
static void failure(enum stats_counter reason, int err, const char *what)
{
	stats_add(slot, reason, 1);
	note(reason, err, what);
}

static void fail_round(enum stats_counter reason, int err, const char *what)
{
	failure(reason, err, what);
	if (!round_failed)
		round_failed = (int)reason;
}

/* The segment was sealed or set aside: none is open until the next write opens one. */
static void seg_gone(void)
{
	seg.fd = -1;
	seg.name[0] = '\0';
	unsynced = 0;
	first_rec_ms = 0;
}

static void seal(void)
{
	if (seg.fd < 0)
		return;
	uint64_t size = seg.size;
	if (spool_seg_seal(&seg, cf->spool_dir) == 0) {
		if (size > SPOOL_FILE_HDR)
			stats_add(slot, STATS_spool_sealed, 1);
	} else {
		/* The leaf set it aside in suspect/ (or left it for recovery). */
		failure(STATS_spool_fail_seal, errno, "seal");
		stats_add(slot, STATS_spool_suspect, 1);
	}
	seg_gone();
}

/* After a failed fdatasync the file's state is unknown: never sync it again. */
static void suspect(void)
{
	if (spool_seg_suspect(&seg, cf->spool_dir) == -1)
		log_warn("spool: cannot move %s into suspect/", seg.name);
	stats_add(slot, STATS_spool_suspect, 1);
	seg_gone();
}

static int do_sync(void)
{
	uint64_t t0 = mono_us();
	int r = spool_seg_sync(&seg), err = errno;

#ifdef SUBMITD_TEST_HOOKS
	/* Test builds: the file spool_dir/.fail-fsync makes the next fdatasync fail with EIO. */
	if (r == 0 && unlink(fail_fsync_path) == 0) {
		r = -1;
		err = EIO;
	}
#endif
	stats_add(slot, STATS_spool_fsyncs, 1);
	stats_fsync(slot, mono_us() - t0, unsynced);
	next_sync_ms = now_ms + (uint64_t)cf->spool_sync_interval;
	if (r == -1) {
		failure(STATS_spool_fail_fsync, err, "fdatasync");
		suspect();
		return -1;
	}
	unsynced = 0;
	return 0;
}

/* Delete the oldest segment in ready/: its size, or 0 if there is none. */
static uint64_t drop_oldest(void)
{
	char oldest[SPOOL_NAME_MAX] = "";
	struct dirent *e;
	struct stat st;
	DIR *d = opendir(ready_dir);

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (spool_seg_name_parse(e->d_name, NULL, NULL, NULL) == -1)
			continue;
		/* A parsed name is shorter than SPOOL_NAME_MAX. */
		if (strlen(e->d_name) < sizeof(oldest) &&
		    (oldest[0] == '\0' || strcmp(e->d_name, oldest) < 0))
			memcpy(oldest, e->d_name, strlen(e->d_name) + 1);
	}
	uint64_t size = 0;
	if (oldest[0] != '\0' && fstatat(dirfd(d), oldest, &st, 0) == 0 &&
	    unlinkat(dirfd(d), oldest, 0) == 0) {
		size = (uint64_t)st.st_size;
		fsync(dirfd(d));
		stats_add(slot, STATS_spool_dropped_segments, 1);
		stats_add(slot, STATS_spool_dropped_bytes, size);
		note(STATS_spool_dropped_segments, 0,
		     "at spool_max_size: dropping the oldest ready segments (acked data lost)");
	}
	closedir(d);
	return size;
}

/* Room for bytes more under spool_max_size? Drops the oldest ready segments if so configured. */
static int room_for(uint64_t bytes)
{
	uint64_t max = STATS_LOAD(shm->ctl.spool_max);

	if (max == 0)
		return 1;
	for (int i = 0; i <= DROP_MAX; i++) {
		if (stats_spool_used(shm) + bytes <= max)
			return 1;
		if (cf->spool_full != CONF_FULL_DROP_OLDEST || i == DROP_MAX || drop_oldest() == 0)
			break;
	}
	return 0;
}

static int ensure_open(void)
{
	char err[512];

	if (seg.fd >= 0)
		return 0;
	if (spool_seg_open_flags(&seg, cf->spool_dir, worker, generation,
				 cf->spool_sync == CONF_SYNC_ALWAYS ? SPOOL_FILE_ZERO_AHEAD : 0,
				 &last_ns, err, sizeof(err)) == -1) {
		int e = errno;
		seg.fd = -1;
		seg.name[0] = '\0';
		fail_round(e == ENOSPC || e == EDQUOT ? STATS_spool_fail_nospace
						      : STATS_spool_fail_open,
			   0, err);
		return -1;
	}
	round_start = seg.size;
	written_back = seg.size;
	uncached = 0;
	unsynced = 0;
	first_rec_ms = 0;
	next_sync_ms = now_ms + (uint64_t)cf->spool_sync_interval;
	return 0;
}

/*
 * Encodes the n records of b into stage, back to back, and describes them
 * in iov: iov[k] grows while they stay contiguous; a payload too large to
 * copy gets its own iovec, pointing into the connection's input buffer.
 * Fills the CRCs of the staged records. Returns the number of iovecs.
 */
static int stage_batch(const struct conn_batch *b, uint32_t n)
{
	uint8_t *sp = stage, *prev = NULL;
	struct conn *prev_c = NULL;
	int k = -1;
	size_t whole = 0;

	for (uint32_t i = 0; i < n; i++) {
		const struct conn_rec *r = &b->rec[i];
		struct conn *c = r->c;
		struct spool_rec h;
		size_t len;
		int copy = r->len <= STAGE_MAX;

		/* A connection's Submits of a round are mostly consecutive: reuse its header. */
		if (c == prev_c) {
			len = spool_rec_encode_like(sp, prev, r->id, r->payload, r->len, copy);
			goto staged;
		}
		h.ts_ns = round_ns;
		h.conn_seq = c->seq;
		memcpy(h.submit_id, r->id, sizeof(h.submit_id));
		memcpy(h.conn_id, c->conn_id, sizeof(h.conn_id));
		memcpy(h.addr, c->addr, sizeof(h.addr));
		h.port = c->port;
		h.worker = (uint16_t)worker;
		h.type = SPOOL_TYPE_SUBMIT;
		h.flags = c->has_conn_id ? SPOOL_FLAG_CONN_ID : 0;
		h.identity_len = c->identity_len;
		h.identity = (const uint8_t *)c->identity;
		h.len = r->len;
		if (copy)
			len = spool_rec_encode(sp, &h, r->payload);
		else
			len = spool_rec_header(sp, &h, r->payload);
		prev_c = c;
	staged:
		prev = sp;
		if (copy)
			staged[whole++] = sp;
		if (k >= 0 && (uint8_t *)iov[k].iov_base + iov[k].iov_len == sp) {
			iov[k].iov_len += len;
		} else {
			iov[++k].iov_base = sp;
			iov[k].iov_len = len;
		}
		sp += len;
		if (!copy) {
			iov[++k].iov_base = (void *)r->payload;
			iov[k].iov_len = r->len;
		}
	}
	spool_rec_crc_fill(staged, whole);
	return k + 1;
}

/* Drop the clean pages more than SPOOL_CACHE_BEHIND behind the end (RETRY_BEHIND). */
static void uncache_behind(void)
{
	if (seg.size < (uint64_t)SPOOL_CACHE_BEHIND + uncached)
		return;
	uint64_t from = uncached > RETRY_BEHIND ? uncached - RETRY_BEHIND : 0;
	uncached = seg.size - SPOOL_CACHE_BEHIND;
	spool_seg_uncache(&seg, from, uncached);
}

/* After a write of n records, bytes in all: writeback, cache, the sync's clock, counters. */
static void account_write(uint32_t n, uint64_t bytes)
{
	if (seg.size - written_back >= WRITEBACK_AFTER) {
		/* With always, the round's fdatasync does the writing back. */
		if (cf->spool_sync != CONF_SYNC_ALWAYS)
			spool_seg_writeback(&seg, written_back, seg.size);
		written_back = seg.size;
		uncache_behind();
	}
	if (first_rec_ms == 0)
		first_rec_ms = now_ms;
	round_recs += n;
	rate_bytes += bytes;
	unsynced += n;
	stats_add(slot, STATS_spool_records, n);
	stats_add(slot, STATS_spool_bytes, bytes);
}

/*
 * Writes the round's batch into the open segment (a new one first where
 * this one would outgrow its size), or fails the round: no room under
 * spool_max_size, no segment, a failed write.
 */
static void flush(struct conn_batch *b)
{
	uint32_t n = b->n;
	uint64_t bytes = 0;

	b->n = 0;
	if (n == 0 || round_failed)
		return;
	for (uint32_t i = 0; i < n; i++)
		bytes += SPOOL_REC_HDR + (uint64_t)b->rec[i].c->identity_len + b->rec[i].len;
	if (!room_for(bytes)) {
		fail_round(STATS_spool_fail_full, 0,
			   "at spool_max_size: refusing Submits (result 2)");
		return;
	}
	/* A new segment first if this one would outgrow its size and holds nothing of this round.
	 */
	if (seg.fd >= 0 && seg.size > SPOOL_FILE_HDR && seg.size == round_start &&
	    seg.size + bytes > (uint64_t)cf->spool_segment_size)
		seal();
	if (ensure_open() == -1)
		return;
	if (spool_seg_writev(&seg, iov, stage_batch(b, n)) == -1) {
		int e = errno;
		fail_round(e == ENOSPC || e == EDQUOT ? STATS_spool_fail_nospace
						      : STATS_spool_fail_write,
			   e, "write");
		if (seg.trunc_failed)
			suspect();
		return;
	}
	account_write(n, bytes);
}

struct conn_batch *spoolw_init(const struct conf *c, int index, unsigned gen, struct stats_slot *s,
			       const struct stats_shm *sh)
{
	if (c->spool_dir[0] == '\0')
		return NULL;
	cf = c;
	slot = s;
	ctl = stats_ctl(sh, s);
	shm = sh;
	worker = (unsigned)index;
	generation = gen;
	conn_batch_init(&batch, mem_alloc(BATCH_CAP * sizeof(*batch.rec)), BATCH_CAP, flush);
	iov = mem_alloc(2 * BATCH_CAP * sizeof(*iov));
	stage = mem_alloc(BATCH_CAP * (SPOOL_REC_HDR + SPOOL_IDENTITY_MAX + STAGE_MAX));
	if (batch.rec == NULL || iov == NULL || stage == NULL)
		fatalx("spool: out of memory for the batch");
	snprintf(ready_dir, sizeof(ready_dir), "%s/%s", c->spool_dir, SPOOL_READY);
#ifdef SUBMITD_TEST_HOOKS
	snprintf(fail_fsync_path, sizeof(fail_fsync_path), "%s/.fail-fsync", c->spool_dir);
#endif
	now_ms = mono_ms();
	return &batch;
}

void spoolw_round_begin(void)
{
	if (cf == NULL)
		return;
	round_ns = real_ns();
}

/*
 * A forwarder asleep waiting for records (fwd_wait) is woken with SIGURG,
 * once per sleep: spool_end moved (ctl_wake).
 */
static void wake_forwarder(void)
{
	/* The control block is shared and writable; shm is const for the counters. */
	struct ctl *x = (struct ctl *)&shm->ctl;

	if (cf->nnats != 0)
		ctl_wake(&x->fwd_wait, &x->fwd_pid);
}

void spoolw_forget(struct conn *c)
{
	if (cf != NULL && c->acks.touched)
		flush(&batch);
}

struct spoolw_round spoolw_commit(uint64_t now)
{
	struct spoolw_round r = {0};

	if (cf == NULL)
		return r;
	now_ms = now;
	flush(&batch);
	if (!round_failed && round_recs > 0 && seg.fd >= 0) {
		if (cf->spool_sync == CONF_SYNC_ALWAYS ||
		    (cf->spool_sync == CONF_SYNC_INTERVAL && now >= next_sync_ms)) {
			if (do_sync() == -1 && !round_failed)
				round_failed = STATS_spool_fail_fsync;
			rate_syncs++;
		}
	}
	/* A batch that failed after part of the round was written: take that part back. */
	if (round_failed && seg.fd >= 0 && seg.size > round_start) {
		if (ftruncate(seg.fd, (off_t)round_start) == 0) {
			seg.size = round_start;
			seg.alloc = round_start;
			if (written_back > round_start)
				written_back = round_start;
			unsynced = unsynced > round_recs ? unsynced - round_recs : 0;
		} else {
			failure(STATS_spool_fail_write, errno, "truncate");
			suspect();
		}
	}
	r.failed = round_failed != 0;
	if (!r.failed && seg.fd >= 0) {
		r.ns = seg.created_ns;
		r.off = seg.size;
	}
	/* What a consumer may take from the open segment: only what was acked (or owed). */
	if (seg.fd >= 0 && (seg.created_ns != pub_ns || seg.size != pub_off)) {
		ctl_pos_store(&ctl->spool_end, seg.created_ns, seg.size);
		pub_ns = seg.created_ns;
		pub_off = seg.size;
		wake_forwarder();
	}
	if (seg.fd >= 0 && seg.size >= (uint64_t)cf->spool_segment_size)
		seal();
	round_failed = 0;
	round_recs = 0;
	round_start = seg.fd >= 0 ? seg.size : 0;
	return r;
}

/* spool_sync = always: keep zeros ahead of a busy writer's records, synced. */
static void zero_ahead(void)
{
	uint64_t max = (uint64_t)cf->spool_segment_size, ahead;

	if (now_ms - rate_ms >= 1000) {
		/* A gap of more than a second (idle) counts as a quiet second. */
		last_syncs = now_ms - rate_ms < 2000 ? rate_syncs : 0;
		last_bytes = now_ms - rate_ms < 2000 ? rate_bytes : 0;
		rate_syncs = rate_bytes = 0;
		rate_ms = now_ms;
	}
	if (cf->spool_sync != CONF_SYNC_ALWAYS || seg.fd < 0 || last_syncs < ZERO_MIN_SYNCS ||
	    last_bytes / last_syncs > ZERO_MAX_PER_SYNC || seg.alloc >= max ||
	    now_ms < zero_retry_ms)
		return;
	ahead = 2 * last_bytes;
	ahead = ahead < ZERO_MIN ? ZERO_MIN : ahead > ZERO_MAX ? ZERO_MAX : ahead;
	if (seg.alloc >= seg.size + ahead / 2)
		return;
	uint64_t to = seg.size + ahead < max ? seg.size + ahead : max;
	/*
	 * No space for zeros is no failure: appends grow the file as before.
	 * Try again in a second, not every round (a full disk stays full a while).
	 */
	if (spool_seg_zero_ahead(&seg, to) == -1) {
		zero_retry_ms = now_ms + LOG_EVERY_MS;
		if (seg.trunc_failed) {
			failure(STATS_spool_fail_write, errno, "truncate");
			suspect();
		}
		return;
	}
	/* Its own fdatasync (no records in it); a failure is one like any other. */
	uint64_t t0 = mono_us();
	int r = spool_seg_sync(&seg), err = errno;
	stats_add(slot, STATS_spool_fsyncs, 1);
	stats_fsync(slot, mono_us() - t0, 0);
	if (r == -1) {
		failure(STATS_spool_fail_fsync, err, "fdatasync");
		suspect();
	}
}

void spoolw_tick(uint64_t now)
{
	if (cf == NULL || seg.fd < 0)
		return;
	now_ms = now;
	if (cf->spool_sync == CONF_SYNC_INTERVAL && unsynced > 0 && now >= next_sync_ms)
		do_sync();
	if (seg.fd >= 0 && cf->spool_segment_age > 0 && first_rec_ms != 0 &&
	    now - first_rec_ms >= (uint64_t)cf->spool_segment_age * 1000)
		seal();
	zero_ahead();
	round_start = seg.fd >= 0 ? seg.size : 0;
}

long spoolw_timeout(uint64_t now)
{
	long t = -1;

	if (cf == NULL || seg.fd < 0)
		return -1;
	if (cf->spool_sync == CONF_SYNC_INTERVAL && unsynced > 0)
		t = next_sync_ms > now ? (long)(next_sync_ms - now) : 0;
	if (cf->spool_segment_age > 0 && first_rec_ms != 0) {
		uint64_t at = first_rec_ms + (uint64_t)cf->spool_segment_age * 1000;
		long a = at > now ? (long)(at - now) : 0;
		if (t < 0 || a < t)
			t = a;
	}
	return t;
}

void spoolw_close(void)
{
	if (cf == NULL)
		return;
	seal();
}

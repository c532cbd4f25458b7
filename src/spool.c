#include "spool.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"

/* ---- little-endian fields ---- */

/* One store each (endian.h converts only on a big-endian host). */
static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- record and file headers ---- */

/* The header's fields after the crc, and the identity after the header. */
static void rec_put(uint8_t *hdr, const struct spool_rec *r)
{
	put32(hdr + 4, (uint32_t)spool_rec_size(r));
	put64(hdr + 8, r->ts_ns);
	put64(hdr + 16, r->conn_seq);
	memcpy(hdr + 24, r->submit_id, 8);
	memcpy(hdr + 32, r->conn_id, 8);
	memcpy(hdr + 40, r->addr, 16);
	put16(hdr + 56, r->port);
	put16(hdr + 58, r->worker);
	hdr[60] = r->type;
	hdr[61] = r->flags;
	hdr[62] = r->identity_len;
	hdr[63] = 0;
	if (r->identity_len > 0)
		memcpy(hdr + SPOOL_REC_HDR, r->identity, r->identity_len);
}

size_t spool_rec_header(uint8_t *out, const struct spool_rec *r, const void *p)
{
	size_t n = SPOOL_REC_HDR + (size_t)r->identity_len;
	uint32_t crc;

	rec_put(out, r);
	crc = crc32c(0, out + 4, n - 4);
	if (r->len > 0)
		crc = crc32c(crc, p, r->len);
	put32(out, crc);
	return n;
}

size_t spool_rec_encode(uint8_t *out, const struct spool_rec *r, const void *p)
{
	size_t n = SPOOL_REC_HDR + (size_t)r->identity_len;

	rec_put(out, r);
	memcpy(out + n, p, r->len);
	return n + r->len;
}

void spool_rec_crc_fill(uint8_t *const rec[], size_t n)
{
	enum { CHUNK = 48 };
	const void *p[CHUNK];
	void *crc[CHUNK];
	uint32_t len[CHUNK];

	for (size_t i = 0; i < n; i += CHUNK) {
		size_t k = n - i < CHUNK ? n - i : CHUNK;
		for (size_t j = 0; j < k; j++) {
			/* The CRC goes first in the header, before what it covers. */
			crc[j] = rec[i + j];
			p[j] = rec[i + j] + 4;
			len[j] = get32(rec[i + j] + 4) - 4;
		}
		crc32c_many(p, len, crc, k);
	}
}

size_t spool_rec_encode_like(uint8_t *out, const uint8_t *prev, const uint8_t id[8], const void *p,
			     uint32_t len, int copy)
{
	size_t n = SPOOL_REC_HDR + (size_t)prev[62]; /* header and identity */
	uint32_t crc;

	memcpy(out + 8, prev + 8, n - 8);
	put32(out + 4, (uint32_t)(n + len));
	memcpy(out + 24, id, 8);
	if (!copy) {
		crc = crc32c(0, out + 4, n - 4);
		put32(out, len > 0 ? crc32c(crc, p, len) : crc);
		return n;
	}
	memcpy(out + n, p, len);
	return n + len;
}

uint32_t spool_rec_decode(const uint8_t hdr[SPOOL_REC_HDR], struct spool_rec *r, uint32_t *crc)
{
	uint32_t rec_len = get32(hdr + 4);

	*crc = get32(hdr);
	r->ts_ns = get64(hdr + 8);
	r->conn_seq = get64(hdr + 16);
	memcpy(r->submit_id, hdr + 24, 8);
	memcpy(r->conn_id, hdr + 32, 8);
	memcpy(r->addr, hdr + 40, 16);
	r->port = get16(hdr + 56);
	r->worker = get16(hdr + 58);
	r->type = hdr[60];
	r->flags = hdr[61];
	r->identity_len = hdr[62];
	r->identity = NULL;
	if (rec_len < SPOOL_REC_HDR + (uint32_t)hdr[62] || rec_len > SPOOL_REC_MAX ||
	    hdr[62] > SPOOL_IDENTITY_MAX || hdr[63] != 0) {
		r->identity_len = 0;
		r->len = 0;
		return 0;
	}
	r->len = rec_len - SPOOL_REC_HDR - hdr[62];
	return rec_len;
}

void spool_file_header(uint8_t out[SPOOL_FILE_HDR], const struct spool_file_hdr *h)
{
	memset(out, 0, SPOOL_FILE_HDR);
	memcpy(out, SPOOL_MAGIC, 8);
	put16(out + 8, h->version);
	put16(out + 10, SPOOL_FILE_HDR);
	put32(out + 12, h->worker);
	put32(out + 16, h->pid);
	put32(out + 20, h->gen);
	put64(out + 24, h->created_ns);
	put32(out + 32, h->flags);
	put32(out + 60, crc32c(0, out, 60));
}

int spool_file_header_check(const uint8_t in[SPOOL_FILE_HDR], struct spool_file_hdr *h)
{
	if (memcmp(in, SPOOL_MAGIC, 8) != 0 || get32(in + 60) != crc32c(0, in, 60))
		return -1;
	h->version = get16(in + 8);
	h->hdr_len = get16(in + 10);
	h->worker = get32(in + 12);
	h->pid = get32(in + 16);
	h->gen = get32(in + 20);
	h->created_ns = get64(in + 24);
	h->flags = get32(in + 32);
	if (h->version < 1 || h->version > SPOOL_VERSION || h->hdr_len != SPOOL_FILE_HDR)
		return -1;
	return 0;
}

/* ---- names ---- */

void spool_seg_name(char *out, uint64_t created_ns, unsigned worker, long pid)
{
	snprintf(out, SPOOL_NAME_MAX, "%020llu-w%03u-p%ld.seg", (unsigned long long)created_ns,
		 worker, pid);
}

static int digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return n > 0;
}

int spool_seg_name_parse(const char *name, uint64_t *created_ns, unsigned *worker, long *pid)
{
	size_t len = strlen(name);
	const char *w, *p, *end;

	/* 20 digits, "-w", >= 3 digits, "-p", >= 1 digit, ".seg" */
	if (len < 20 + 2 + 3 + 2 + 1 + 4 || len >= SPOOL_NAME_MAX || !digits(name, 20) ||
	    strcmp(name + len - 4, ".seg") != 0 || name[20] != '-' || name[21] != 'w')
		return -1;
	w = name + 22;
	p = strstr(w, "-p");
	end = name + len - 4;
	if (p == NULL || p - w < 3 || !digits(w, (size_t)(p - w)) || p + 2 >= end ||
	    !digits(p + 2, (size_t)(end - (p + 2))) || end - (p + 2) > 10)
		return -1;
	if (created_ns != NULL)
		*created_ns = strtoull(name, NULL, 10);
	if (worker != NULL)
		*worker = (unsigned)strtoul(w, NULL, 10);
	if (pid != NULL)
		*pid = strtol(p + 2, NULL, 10);
	return 0;
}

/* ---- directories ---- */

static const char *const subdirs[SPOOL_NDIRS] = {
    [SPOOL_D_ACTIVE] = SPOOL_ACTIVE,   [SPOOL_D_READY] = SPOOL_READY,
    [SPOOL_D_TAKEN] = SPOOL_TAKEN,     [SPOOL_D_QUARANTINE] = SPOOL_QUARANTINE,
    [SPOOL_D_SUSPECT] = SPOOL_SUSPECT,
};

const char *spool_dir_name(enum spool_dir d)
{
	return d < SPOOL_NDIRS ? subdirs[d] : "?";
}

int spool_path(char *out, size_t len, const char *spool, enum spool_dir d, const char *name)
{
	int n;

	if (name != NULL)
		n = snprintf(out, len, "%s/%s/%s", spool, spool_dir_name(d), name);
	else
		n = snprintf(out, len, "%s/%s", spool, spool_dir_name(d));
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int spool_fsync_dir(const char *spool, enum spool_dir d)
{
	char path[PATH_MAX];

	if (spool_path(path, sizeof(path), spool, d, NULL) < 0)
		return -1;
	return fsync_path(path);
}

static int v4_mapped(const uint8_t addr[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(addr, mapped, 12) == 0;
}

void spool_addr_str(const uint8_t addr[16], char *out, size_t len)
{
	if (v4_mapped(addr))
		inet_ntop(AF_INET, addr + 12, out, (socklen_t)len);
	else
		inet_ntop(AF_INET6, addr, out, (socklen_t)len);
}

void spool_client_str(const uint8_t addr[16], uint16_t port, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	spool_addr_str(addr, a, sizeof(a));
	snprintf(out, len, v4_mapped(addr) ? "%s:%u" : "[%s]:%u", a, port);
}

/* rename dir/from/name to dir/to/name and fsync both directories. */
int spool_move(const char *dir, enum spool_dir from, enum spool_dir to, const char *name)
{
	char a[PATH_MAX], b[PATH_MAX];

	if (spool_path(a, sizeof(a), dir, from, name) < 0 ||
	    spool_path(b, sizeof(b), dir, to, name) < 0)
		return -1;
	if (rename(a, b) < 0)
		return -1;
	if (spool_fsync_dir(dir, to) < 0 || spool_fsync_dir(dir, from) < 0)
		return -1;
	return 0;
}

/* Open path, lock it and check that it is still the file linked there: the fd, or -1. */
static int lock_linked(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), saved;
	struct stat a, b;

	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		saved = errno == EINTR ? EWOULDBLOCK : errno;
		close(fd);
		errno = saved;
		return -1;
	}
	/* Taken, deleted or replaced between the open and the lock. */
	if (fstat(fd, &a) < 0 || a.st_nlink == 0 || stat(path, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		close(fd);
		errno = ENOENT;
		return -1;
	}
	return fd;
}

int spool_take(const char *dir, const char *name)
{
	char from[PATH_MAX], to[PATH_MAX];
	int fd, saved;

	if (spool_path(from, sizeof(from), dir, SPOOL_D_READY, name) < 0 ||
	    spool_path(to, sizeof(to), dir, SPOOL_D_TAKEN, name) < 0 ||
	    (fd = lock_linked(from)) < 0)
		return -1;
	if (rename(from, to) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	/*
	 * Not undone when a directory fsync fails: a crash may then bring the
	 * segment back into ready/, and it is delivered again (at least once).
	 */
	(void)spool_fsync_dir(dir, SPOOL_D_TAKEN);
	(void)spool_fsync_dir(dir, SPOOL_D_READY);
	return fd;
}

int spool_take_over(const char *dir, const char *name)
{
	char path[PATH_MAX];

	if (spool_path(path, sizeof(path), dir, SPOOL_D_TAKEN, name) < 0)
		return -1;
	return lock_linked(path);
}

void spool_set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
	int saved = errno;

	if (err != NULL && errlen > 0)
		snprintf(err, errlen, fmt, arg, strerror(saved));
	errno = saved;
}

int spool_dirs(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int created = 0;

	if (mkdir(dir, 0750) == 0)
		created = 1;
	else if (errno != EEXIST) {
		spool_set_err(err, errlen, "mkdir %s: %s", dir);
		return -1;
	}
	for (enum spool_dir d = 0; d < SPOOL_NDIRS; d++) {
		if (spool_path(path, sizeof(path), dir, d, NULL) < 0) {
			spool_set_err(err, errlen, "%s: %s", dir);
			return -1;
		}
		if (mkdir(path, 0750) == 0)
			created = 1;
		else if (errno != EEXIST) {
			spool_set_err(err, errlen, "mkdir %s: %s", path);
			return -1;
		}
	}
	if (created && fsync_path(dir) < 0) {
		spool_set_err(err, errlen, "fsync %s: %s", dir);
		return -1;
	}
	if (created) {
		/* The spool directory's own name, in its parent. */
		const char *slash = strrchr(dir, '/');
		if (slash == NULL)
			snprintf(path, sizeof(path), ".");
		else if (slash == dir)
			snprintf(path, sizeof(path), "/");
		else
			snprintf(path, sizeof(path), "%.*s", (int)(slash - dir), dir);
		(void)fsync_path(path);
	}
	return 0;
}

/* ---- writer ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int spool_seg_open(struct spool_seg *s, const char *dir, unsigned worker, unsigned gen,
		   uint64_t *last_ns, char *err, size_t errlen)
{
	return spool_seg_open_flags(s, dir, worker, gen, 0, last_ns, err, errlen);
}

int spool_seg_open_flags(struct spool_seg *s, const char *dir, unsigned worker, unsigned gen,
			 uint32_t flags, uint64_t *last_ns, char *err, size_t errlen)
{
	char path[PATH_MAX];
	uint8_t hdr[SPOOL_FILE_HDR];
	struct spool_file_hdr fh;
	uint64_t ns = now_ns();
	long pid = (long)getpid();
	int fd = -1, saved;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (last_ns != NULL && ns <= *last_ns)
		ns = *last_ns + 1; /* the clock went back, or two opens in one tick */
	for (int tries = 0;; tries++) {
		spool_seg_name(s->name, ns, worker, pid);
		if (spool_path(path, sizeof(path), dir, SPOOL_D_ACTIVE, s->name) < 0) {
			spool_set_err(err, errlen, "%s: %s", dir);
			return -1;
		}
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
		if (fd >= 0)
			break;
		if (errno != EEXIST || tries >= 1000) {
			spool_set_err(err, errlen, "create %s: %s", path);
			return -1;
		}
		ns++;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		spool_set_err(err, errlen, "flock %s: %s", path);
		goto fail;
	}
	memset(&fh, 0, sizeof(fh));
	fh.version = SPOOL_VERSION;
	fh.worker = worker;
	fh.pid = (uint32_t)pid;
	fh.gen = gen;
	fh.created_ns = ns;
	fh.flags = flags;
	spool_file_header(hdr, &fh);
	ssize_t n = pwrite(fd, hdr, sizeof(hdr), 0);
	if (n != (ssize_t)sizeof(hdr)) {
		if (n >= 0)
			errno = EIO;
		spool_set_err(err, errlen, "write %s: %s", path);
		goto fail;
	}
	if (fdatasync(fd) < 0) {
		spool_set_err(err, errlen, "fdatasync %s: %s", path);
		goto fail;
	}
	if (spool_fsync_dir(dir, SPOOL_D_ACTIVE) < 0) {
		spool_set_err(err, errlen, "fsync %s/" SPOOL_ACTIVE ": %s", dir);
		goto fail;
	}
	s->fd = fd;
	s->size = SPOOL_FILE_HDR;
	s->alloc = SPOOL_FILE_HDR;
	s->flags = flags;
	s->created_ns = ns;
	s->worker = worker;
	s->gen = gen;
	if (last_ns != NULL)
		*last_ns = ns;
	return 0;
fail:
	/* Nothing was written into it yet, so the file goes. */
	saved = errno;
	unlink(path);
	close(fd);
	errno = saved;
	s->name[0] = '\0';
	return -1;
}

/* pwritev, again on EINTR; no byte written is an error (EIO), never 0. */
ssize_t spool_pwritev_some(int fd, const struct iovec *iov, int cnt, uint64_t off)
{
	ssize_t n;

	do
		n = pwritev(fd, iov, cnt, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		errno = EIO;
		return -1;
	}
	return n;
}

ssize_t spool_seg_writev(struct spool_seg *s, const struct iovec *iov, int iovcnt)
{
	uint64_t off = s->size;
	size_t total = 0;
	int i = 0, saved;

	/* Bytes a failed batch left behind must not outlive a crash: cut them first. */
	if (s->trunc_failed && ftruncate(s->fd, (off_t)s->size) == 0)
		s->trunc_failed = 0;
	while (i < iovcnt) {
		int cnt = iovcnt - i < IOV_MAX ? iovcnt - i : IOV_MAX;
		ssize_t n = spool_pwritev_some(s->fd, iov + i, cnt, off);

		if (n < 0)
			goto fail;
		off += (uint64_t)n;
		total += (size_t)n;
		/* Skip what was written whole; finish a partly written iovec on its own. */
		while (i < iovcnt && (size_t)n >= iov[i].iov_len) {
			n -= (ssize_t)iov[i].iov_len;
			i++;
		}
		if (n > 0) {
			struct iovec rest = {(uint8_t *)iov[i].iov_base + n,
					     iov[i].iov_len - (size_t)n};
			while (rest.iov_len > 0) {
				ssize_t m = spool_pwritev_some(s->fd, &rest, 1, off);
				if (m < 0)
					goto fail;
				rest.iov_base = (uint8_t *)rest.iov_base + m;
				rest.iov_len -= (size_t)m;
				off += (uint64_t)m;
				total += (size_t)m;
			}
			i++;
		}
	}
	s->size = off;
	if (s->alloc < off)
		s->alloc = off;
	return (ssize_t)total;
fail:
	saved = errno;
	if (off > s->size || s->alloc > s->size) {
		if (ftruncate(s->fd, (off_t)s->size) < 0)
			s->trunc_failed = 1;
		else
			s->alloc = s->size;
	}
	errno = saved;
	return -1;
}

int spool_seg_zero_ahead(struct spool_seg *s, uint64_t to)
{
	static const uint8_t zero[65536];
	struct iovec iov[16];
	uint64_t off = s->alloc;
	int saved;

	if (!(s->flags & SPOOL_FILE_ZERO_AHEAD)) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < 16; i++) {
		iov[i].iov_base = (void *)zero;
		iov[i].iov_len = sizeof(zero);
	}
	while (off < to) {
		uint64_t left = to - off;
		int cnt = 0;
		while (cnt < 16 && left > 0) {
			iov[cnt].iov_len = left < sizeof(zero) ? (size_t)left : sizeof(zero);
			left -= iov[cnt++].iov_len;
		}
		ssize_t n = spool_pwritev_some(s->fd, iov, cnt, off);
		for (int i = 0; i < cnt; i++)
			iov[i].iov_len = sizeof(zero);
		if (n < 0)
			goto fail;
		off += (uint64_t)n;
	}
	s->alloc = off;
	return 0;
fail:
	saved = errno;
	if (off > s->alloc && ftruncate(s->fd, (off_t)s->alloc) < 0)
		s->trunc_failed = 1;
	errno = saved;
	return -1;
}

void spool_seg_writeback(struct spool_seg *s, uint64_t from, uint64_t to)
{
	if (to > from)
		(void)sync_file_range(s->fd, (off_t)from, (off_t)(to - from),
				      SYNC_FILE_RANGE_WRITE);
}

void spool_seg_uncache(struct spool_seg *s, uint64_t from, uint64_t to)
{
	if (to > from)
		(void)posix_fadvise(s->fd, (off_t)from, (off_t)(to - from), POSIX_FADV_DONTNEED);
}

int spool_seg_sync(struct spool_seg *s)
{
	return fdatasync(s->fd);
}

void spool_seg_close(struct spool_seg *s)
{
	if (s->fd >= 0)
		close(s->fd); /* drops the flock */
	s->fd = -1;
}

int spool_seg_suspect(struct spool_seg *s, const char *dir)
{
	int rc, saved;

	/*
	 * Truncating is not syncing: the rule against a second fsync still
	 * holds. A failure leaves zeros or a failed batch after the records,
	 * which a reader stops at: nothing to do about it here.
	 */
	if (s->fd >= 0 && (s->alloc > s->size || s->trunc_failed) &&
	    ftruncate(s->fd, (off_t)s->size) == -1)
		s->trunc_failed = 1;
	rc = spool_move(dir, SPOOL_D_ACTIVE, SPOOL_D_SUSPECT, s->name);
	saved = errno;

	spool_seg_close(s);
	errno = saved;
	return rc;
}

int spool_seg_seal(struct spool_seg *s, const char *dir)
{
	char path[PATH_MAX];
	int saved;

	if (s->alloc > s->size || s->trunc_failed) {
		/*
		 * Zeros written ahead, or bytes of a failed batch: a sealed segment
		 * ends after its last record. trunc_failed stays set if this fails.
		 */
		if (ftruncate(s->fd, (off_t)s->size) < 0)
			goto suspect;
		s->alloc = s->size;
		s->trunc_failed = 0;
	}
	if (fdatasync(s->fd) < 0)
		goto suspect;
	if (s->size > SPOOL_CACHE_SEALED)
		spool_seg_uncache(s, 0, s->size - SPOOL_CACHE_SEALED);
	if (s->size <= SPOOL_FILE_HDR) {
		/* No record: nothing to hand over. */
		if (spool_path(path, sizeof(path), dir, SPOOL_D_ACTIVE, s->name) < 0 ||
		    unlink(path) < 0 || spool_fsync_dir(dir, SPOOL_D_ACTIVE) < 0)
			goto suspect;
		spool_seg_close(s);
		return 0;
	}
	if (spool_move(dir, SPOOL_D_ACTIVE, SPOOL_D_READY, s->name) < 0) {
		saved = errno;
		spool_seg_close(s);
		errno = saved;
		return -1;
	}
	spool_seg_close(s);
	return 0;
suspect:
	saved = errno;
	(void)spool_seg_suspect(s, dir);
	errno = saved;
	return -1;
}

/* ---- reader ---- */

#define READ_BLOCK (1u << 20) /* read ahead: a syscall per MiB, not per record */

#define SCAN_REREADS 4 /* a record that looks damaged with whole ones after it: reads */

ssize_t spool_pread_full(int fd, void *p, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t m = pread(fd, (uint8_t *)p + got, n - got, (off_t)(off + got));
		if (m < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (m == 0)
			break;
		got += (size_t)m;
	}
	return (ssize_t)got;
}

int spool_reader_open(struct spool_reader *r, int fd)
{
	uint8_t hdr[SPOOL_FILE_HDR];
	ssize_t n;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->off = SPOOL_FILE_HDR;
	r->boff = SPOOL_FILE_HDR;
	n = spool_pread_full(fd, hdr, sizeof(hdr), 0);
	if (n < 0)
		return -1;
	if (n < (ssize_t)sizeof(hdr)) {
		r->why = "shorter than the file header";
		return SPOOL_TORN;
	}
	if (spool_file_header_check(hdr, &r->fh) < 0) {
		r->why = memcmp(hdr, SPOOL_MAGIC, 8) != 0 ? "bad magic" : "bad file header";
		return SPOOL_BAD;
	}
	return 0;
}

void spool_reader_close(struct spool_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = r->blen = 0;
}

/* Make the buffer hold file bytes [off, off + need): 1, 0 if the file ends before, -1. */
static int fill(struct spool_reader *r, uint64_t off, size_t need)
{
	if (off >= r->boff && off + need <= r->boff + r->blen)
		return 1;
	if (off < r->boff || off >= r->boff + r->blen) {
		r->blen = 0;
	} else {
		size_t skip = (size_t)(off - r->boff);
		memmove(r->buf, r->buf + skip, r->blen - skip);
		r->blen -= skip;
	}
	r->boff = off;
	if (r->cap < need || r->cap < READ_BLOCK) {
		size_t cap = need > READ_BLOCK ? need : READ_BLOCK;
		uint8_t *b = realloc(r->buf, cap);
		if (b == NULL)
			return -1;
		r->buf = b;
		r->cap = cap;
	}
	while (r->blen < need) {
		ssize_t m =
		    pread(r->fd, r->buf + r->blen, r->cap - r->blen, (off_t)(off + r->blen));
		if (m < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (m == 0)
			return 0;
		r->blen += (size_t)m;
	}
	return 1;
}

int spool_read_next(struct spool_reader *r, struct spool_rec *rec, const uint8_t **payload,
		    uint64_t *off)
{
	uint64_t x = r->off;
	uint32_t rec_len, crc;
	const uint8_t *p;
	int rc;

	*off = x;
	rc = fill(r, x, SPOOL_REC_HDR);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		rc = r->blen == 0 ? 0 : SPOOL_TORN;
		r->why = "record header cut short by the end of the file";
		goto forget;
	}
	rec_len = spool_rec_decode(r->buf + (x - r->boff), rec, &crc);
	if (rec_len == 0) {
		rc = SPOOL_BAD;
		r->why = "bad record length";
		goto forget;
	}
	rc = fill(r, x, rec_len);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		rc = SPOOL_TORN;
		r->why = "record cut short by the end of the file";
		goto forget;
	}
	p = r->buf + (x - r->boff);
	if (crc32c(0, p + 4, rec_len - 4) != crc) {
		rc = SPOOL_BAD;
		r->why = "bad CRC";
		goto forget;
	}
	if (rec->identity_len > 0 && r->fh.version < 2) {
		rc = SPOOL_BAD;
		r->why = "an identity in a version 1 segment";
		goto forget;
	}
	if (rec->identity_len > 0)
		rec->identity = p + SPOOL_REC_HDR;
	*payload = p + SPOOL_REC_HDR + rec->identity_len;
	r->off = x + rec_len;
	return 1;
forget:
	/* What was read ahead may still change (a live writer): read it again next time. */
	r->blen = 0;
	r->boff = x;
	return rc;
}

/* ---- scan ---- */

/*
 * 1 if a whole record starts anywhere in [from, end), 0 if none, -1 on an
 * error. Payload bytes that happen to hold a whole record make this say 1
 * (the segment is quarantined: nothing is lost); so does a file with more
 * than a bounded number of candidates, which bounds the work.
 */
static int record_after(int fd, uint64_t from, uint64_t end)
{
	struct spool_reader r;
	unsigned candidates = 0;
	int found = 0, rc;

	memset(&r, 0, sizeof(r));
	r.fd = fd;
	r.boff = from;
	for (uint64_t y = from; y + SPOOL_REC_HDR <= end && !found; y++) {
		const uint8_t *h;
		uint32_t rec_len;

		if ((rc = fill(&r, y, SPOOL_REC_HDR)) <= 0) {
			found = rc;
			break;
		}
		h = r.buf + (y - r.boff);
		rec_len = get32(h + 4);
		if (h[60] != SPOOL_TYPE_SUBMIT || (h[61] & ~SPOOL_FLAG_CONN_ID) != 0 ||
		    h[62] > SPOOL_IDENTITY_MAX || h[63] != 0 ||
		    rec_len < SPOOL_REC_HDR + (uint32_t)h[62] || rec_len > SPOOL_REC_MAX ||
		    rec_len > end - y)
			continue;
		if (++candidates > 64) {
			found = 1;
			break;
		}
		if ((rc = fill(&r, y, rec_len)) <= 0) {
			found = rc;
			break;
		}
		h = r.buf + (y - r.boff);
		found = crc32c(0, h + 4, rec_len - 4) == get32(h);
	}
	spool_reader_close(&r);
	return found;
}

/* *n = the number of zero bytes from off on (up to end). 0, or -1 on a read error. */
static int zero_run(int fd, uint64_t off, uint64_t end, uint64_t *n)
{
	uint8_t b[65536];
	uint64_t x = off;

	while (x < end) {
		size_t want = end - x < sizeof(b) ? (size_t)(end - x) : sizeof(b);
		ssize_t m = spool_pread_full(fd, b, want, x);
		if (m < 0)
			return -1;
		for (ssize_t i = 0; i < m; i++) {
			if (b[i] != 0) {
				*n = x + (uint64_t)i - off;
				return 0;
			}
		}
		if ((size_t)m < want)
			break;
		x += (uint64_t)m;
	}
	*n = x - off;
	return 0;
}

/*
 * What the bytes from x on are, where the record at x did not read whole
 * (rc: SPOOL_TORN or SPOOL_BAD): sets out's status, zeros, bad_offset and,
 * where it says more, why. Returns 1 when whole records follow (damage in
 * the middle), 0 when not (a torn tail), -1 on a read error.
 */
static int scan_tail(int fd, uint64_t x, int rc, struct spool_scan *out)
{
	uint64_t zeros;
	int later;

	out->bad_offset = x;
	out->zeros = 0;
	/*
	 * The size the loop decided on, not a newer one: on a live segment a
	 * later look finds the records written since (the one at x complete
	 * among them) and would call the writer's tail damage in the middle.
	 */
	if (zero_run(fd, x, out->size, &zeros) < 0)
		return -1;
	/*
	 * Zeros after the last whole record are space written ahead where the
	 * header says so (a record's first 8 bytes, crc and rec_len >= 64, are
	 * never all zero; fewer zeros may start a torn record). Elsewhere they
	 * are pages never written: part of the torn tail.
	 */
	if (zeros >= 8 && (out->fh.flags & SPOOL_FILE_ZERO_AHEAD))
		out->zeros = zeros;
	if (zeros > 0 && x + zeros >= out->size) {
		out->status = SPOOL_TORN; /* only zeros after the last whole record */
		return 0;
	}
	/* A record starting where its rec_len bytes (4..7) are still zeros is no record. */
	later = record_after(fd, zeros > 8 ? x + zeros - 7 : x + 1, out->size);
	if (later < 0)
		return -1;
	out->status = later ? SPOOL_BAD : SPOOL_TORN;
	if (later && rc == SPOOL_TORN)
		out->why = "bad record length (past the end of the file, whole records after it)";
	return later;
}

int spool_scan(int fd, struct spool_scan *out)
{
	struct spool_reader rd;
	struct spool_rec rec;
	const uint8_t *payload;
	struct stat st;
	uint64_t x = SPOOL_FILE_HDR, at = 0;
	unsigned tries = 0;
	int rc, later = 0;

	memset(out, 0, sizeof(*out));
	if (fstat(fd, &st) < 0)
		return -1;
	out->size = (uint64_t)st.st_size;
	rc = spool_reader_open(&rd, fd);
	if (rc != 0) {
		out->fh = rd.fh;
		out->why = rd.why;
		spool_reader_close(&rd);
		if (rc == -1)
			return -1;
		out->status = rc;
		return 0;
	}
	out->fh = rd.fh;
	for (;;) {
		while ((rc = spool_read_next(&rd, &rec, &payload, &x)) == 1) {
			if (out->records == 0)
				out->first_ts = rec.ts_ns;
			out->last_ts = rec.ts_ns;
			out->records++;
		}
		out->why = rd.why;
		out->end = x;
		if (rc == -1 || rc == 0) {
			/* Whole to its end (also where an earlier look saw damage). */
			out->status = 0;
			out->zeros = out->bad_offset = 0;
			break;
		}
		/*
		 * A torn tail is the last thing in the file: no whole record
		 * after it (a header that does not fit, zeros of pages never
		 * written or written ahead, the part of a batch that made it). A
		 * whole record after it means the damage is in the middle: a bad
		 * rec_len must not cut off what follows.
		 */
		if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > out->size)
			out->size = (uint64_t)st.st_size; /* a live writer added more */
		later = scan_tail(fd, x, rc, out);
		if (later <= 0)
			break;
		/*
		 * On a live segment the record at x may have been a write in
		 * progress that completed since, or zeros the writer has written
		 * over since: read it again. A writer appends in order, so if
		 * anything after it is whole, it soon is too. Damage stays.
		 */
		if (x != at) {
			at = x;
			tries = 0;
		}
		if (++tries > SCAN_REREADS)
			break;
		if (tries > 1)
			nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	spool_reader_close(&rd);
	if (rc == -1 || later < 0)
		return -1;
	return 0;
}

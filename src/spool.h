/*
 * The spool (docs/SPOOL.md): the segment file format, the writer of one
 * worker's segments, a reader and the scan of a whole segment (the recovery
 * of segments left by a dead writer is spool_recover.h's). A leaf: it never
 * logs and never exits; errors are -1 with errno set and, where a buffer is
 * given, a message in it. Shared by submitd and submit-spool.
 */
#ifndef SUBMITD_SPOOL_H
#define SUBMITD_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SPOOL_FILE_HDR	   64
#define SPOOL_REC_HDR	   64
#define SPOOL_IDENTITY_MAX 128 /* bytes of a record's identity (version 2) */
#define SPOOL_REC_MAX	   (64u * 1024 * 1024 + SPOOL_REC_HDR + SPOOL_IDENTITY_MAX)
#define SPOOL_MAGIC	   "SUBSPOOL"
#define SPOOL_VERSION	   2  /* what the writer writes; readers read 1 and 2 */
#define SPOOL_NAME_MAX	   64 /* a segment name with its NUL fits */

/*
 * A writer keeps the last SPOOL_CACHE_BEHIND bytes of its open segment in
 * the page cache (for a consumer tailing it) and lets the kernel drop the
 * clean pages before them (spool_seg_uncache). Sealing, once all is synced,
 * drops all but the last SPOOL_CACHE_SEALED: a segment in ready/ is read,
 * if at all, by a consumer that is behind, from the disk.
 */
#define SPOOL_CACHE_BEHIND (16u << 20)
#define SPOOL_CACHE_SEALED (1u << 20)

#define SPOOL_TYPE_SUBMIT  1
#define SPOOL_FLAG_CONN_ID 0x01 /* conn_id holds the last Conn id seen */

/* The spool's subdirectories (docs/SPOOL.md, "Directories"). */
#define SPOOL_ACTIVE	 "active"
#define SPOOL_READY	 "ready"
#define SPOOL_TAKEN	 "taken"
#define SPOOL_QUARANTINE "quarantine"
#define SPOOL_SUSPECT	 "suspect"
enum spool_dir {
	SPOOL_D_ACTIVE,
	SPOOL_D_READY,
	SPOOL_D_TAKEN,
	SPOOL_D_QUARANTINE,
	SPOOL_D_SUSPECT,
	SPOOL_NDIRS,
};
/* "active", "ready", ... */
const char *spool_dir_name(enum spool_dir d);
/*
 * SPOOL/d/name into out (name NULL: the directory SPOOL/d). 0, or -1 with
 * ENAMETOOLONG: never a truncated path.
 */
int spool_path(char *out, size_t len, const char *spool, enum spool_dir d, const char *name);
/* fsync the directory SPOOL/d: 0, or -1 with errno. */
int spool_fsync_dir(const char *spool, enum spool_dir d);
/*
 * A record's client address (IPv6, or IPv4-mapped) as text: IPv4 for a
 * mapped one, without the port; len >= INET6_ADDRSTRLEN.
 */
void spool_addr_str(const uint8_t addr[16], char *out, size_t len);
/* The same with the port: "192.0.2.1:5000", "[2001:db8::1]:5000". */
void spool_client_str(const uint8_t addr[16], uint16_t port, char *out, size_t len);

/* A record's header fields, decoded. */
struct spool_rec {
	uint64_t ts_ns, conn_seq;
	uint8_t submit_id[8], conn_id[8], addr[16];
	uint16_t port, worker;
	uint8_t type, flags;
	/*
	 * Who the client authenticated as (version 2; 0 bytes: no identity).
	 * Encoding reads identity_len bytes there; decoding points into the
	 * record (after spool_read_next, valid as its payload is).
	 */
	uint8_t identity_len;
	const uint8_t *identity;
	uint32_t len; /* payload length */
};

/* The bytes r takes in a segment: header, identity and payload. */
static inline uint64_t spool_rec_size(const struct spool_rec *r)
{
	return SPOOL_REC_HDR + (uint64_t)r->identity_len + r->len;
}

/*
 * Fill the 64-byte header for r followed by its identity (out has room for
 * 64 + identity_len bytes), the crc over both and payload p. Returns 64 +
 * identity_len: the payload goes after that.
 */
size_t spool_rec_header(uint8_t *out, const struct spool_rec *r, const void *p);
/*
 * The whole record into out (spool_rec_size bytes): the header, the
 * identity and a copy of payload p, without its CRC: spool_rec_crc_fill
 * computes it, for a batch of records at once. Returns spool_rec_size(r).
 */
size_t spool_rec_encode(uint8_t *out, const struct spool_rec *r, const void *p);
/*
 * The CRCs of n whole records (header and payload contiguous at rec[i],
 * rec_len already in place), written into their headers. With the CPU's
 * CRC instruction, three records at a time run interleaved.
 */
void spool_rec_crc_fill(uint8_t *const rec[], size_t n);
/*
 * The next record of a writer whose previous record prev (already encoded,
 * its identity after its header) has the same fields but for rec_len and
 * submit_id: one copy instead of field by field. With copy, as
 * spool_rec_encode (header, identity and payload into out, the CRC left to
 * spool_rec_crc_fill, returns their size); without, only the header and
 * identity, CRC over them and p included, returns 64 + identity length.
 */
size_t spool_rec_encode_like(uint8_t *out, const uint8_t *prev, const uint8_t id[8], const void *p,
			     uint32_t len, int copy);
/*
 * Decode a record header. Returns rec_len (64 + identity length + payload
 * length), or 0 if rec_len is out of range [64 + identity length,
 * SPOOL_REC_MAX], the identity length over SPOOL_IDENTITY_MAX or byte 63
 * not zero; *crc gets the stored CRC. r->identity is left NULL: it and the
 * payload follow the header. The CRC is not checked here (it covers them too).
 */
uint32_t spool_rec_decode(const uint8_t hdr[SPOOL_REC_HDR], struct spool_rec *r, uint32_t *crc);

/* The file header's fields. */
#define SPOOL_FILE_ZERO_AHEAD 0x01 /* flags: the writer writes zeros ahead of its records */
struct spool_file_hdr {
	uint16_t version, hdr_len;
	uint32_t worker, pid, gen, flags;
	uint64_t created_ns;
};
/*
 * h->version is written as it is: SPOOL_VERSION for a writer (1 only to
 * make segments of the first format, for tests of the readers).
 */
void spool_file_header(uint8_t out[SPOOL_FILE_HDR], const struct spool_file_hdr *h);
/* 0 if magic, version (1 or 2), length and CRC are right (h filled), -1 if not. */
int spool_file_header_check(const uint8_t in[SPOOL_FILE_HDR], struct spool_file_hdr *h);

/* "<created_ns:020>-w<worker:03>-p<pid>.seg"; out needs SPOOL_NAME_MAX bytes. */
void spool_seg_name(char *out, uint64_t created_ns, unsigned worker, long pid);
/* 0 and the fields if name is a segment name, else -1. Any pointer may be NULL. */
int spool_seg_name_parse(const char *name, uint64_t *created_ns, unsigned *worker, long *pid);

/*
 * Writer: one open segment per process. The writer holds flock(LOCK_EX) on
 * the file while it is open, so recovery can tell a live writer from a dead one.
 */
struct spool_seg {
	int fd; /* -1 when closed */
	char name[SPOOL_NAME_MAX];
	uint64_t size;	/* header + whole records written: where the next record goes */
	uint64_t alloc; /* the file's length: size plus zeros written ahead (>= size) */
	uint32_t flags; /* of the file header */
	uint64_t created_ns;
	unsigned worker, gen;
	int trunc_failed; /* a failed writev could not be truncated back: seal or suspect it */
};

/* mkdir dir and its five subdirectories (0750) if missing; fsync dir when it created any. */
int spool_dirs(const char *dir, char *err, size_t errlen);
/*
 * Create a new segment in dir/active/ with a name newer than *last_ns (and
 * now), write and fdatasync its header, lock it, fsync active/. *last_ns is
 * updated to the segment's created_ns; last_ns may be NULL.
 */
int spool_seg_open(struct spool_seg *s, const char *dir, unsigned worker, unsigned gen,
		   uint64_t *last_ns, char *err, size_t errlen) __attribute__((warn_unused_result));
/* The same with file header flags (SPOOL_FILE_ZERO_AHEAD before spool_seg_zero_ahead). */
int spool_seg_open_flags(struct spool_seg *s, const char *dir, unsigned worker, unsigned gen,
			 uint32_t flags, uint64_t *last_ns, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * Append the bytes of iov at s->size: all of them, or -1 with errno (a short
 * write counts as an error). On -1 the file is truncated back to s->size, so
 * a failed batch leaves nothing behind (if even that fails, trunc_failed is
 * set). Any number of iovecs (more than IOV_MAX are written in turns).
 */
ssize_t spool_seg_writev(struct spool_seg *s, const struct iovec *iov, int iovcnt)
    __attribute__((warn_unused_result));
/*
 * Start the writeback of the bytes [from, to) without waiting for it
 * (sync_file_range WRITE): no durability, but a later fdatasync has less
 * left to do. Errors are left for that fdatasync to report.
 */
void spool_seg_writeback(struct spool_seg *s, uint64_t from, uint64_t to);
/*
 * Let the kernel drop the cached pages of [from, to) that are clean
 * (posix_fadvise DONTNEED): pages still dirty or under writeback stay.
 * Nothing is lost; a later read of the range goes to the disk.
 */
void spool_seg_uncache(struct spool_seg *s, uint64_t from, uint64_t to);
/*
 * Write zeros from s->alloc up to to (no fdatasync); only in a segment
 * opened with SPOOL_FILE_ZERO_AHEAD (else -1, EINVAL). Appends into space
 * written (and synced) ahead change no metadata, so their fdatasync need
 * not commit the file system's journal. -1 with errno (ENOSPC...): the
 * zeros of this call are taken back and appends go on as before.
 */
int spool_seg_zero_ahead(struct spool_seg *s, uint64_t to);
/* fdatasync. After -1 never call it again on this segment: spool_seg_suspect() it. */
int spool_seg_sync(struct spool_seg *s) __attribute__((warn_unused_result));
/*
 * Cut the zeros written ahead, fdatasync, drop the now clean pages but the
 * last SPOOL_CACHE_SEALED bytes from the page cache, rename into ready/,
 * fsync active/ and ready/, close. A segment
 * without records is deleted instead. On -1 the segment could not be sealed:
 * it has been moved into suspect/ (or, if even that failed, left in active/;
 * or it is in ready/ and only a directory fsync failed) and closed; either
 * way the caller opens a new one.
 */
int spool_seg_seal(struct spool_seg *s, const char *dir);
/*
 * Cut the zeros written ahead (if that fails they stay), rename into
 * suspect/ (no fsync of the file, ever), fsync the directories, close.
 */
int spool_seg_suspect(struct spool_seg *s, const char *dir);
/* Close without moving (the segment stays in active/ for recovery). */
void spool_seg_close(struct spool_seg *s);

/*
 * A consumer's hand-over, steps 2-3 of docs/SPOOL.md: open dir/ready/name,
 * flock(LOCK_EX|LOCK_NB), check that it is still linked there, rename it
 * into taken/ and fsync taken/ and ready/. Returns the open, locked
 * descriptor (O_RDONLY): the segment is the caller's while it holds it,
 * which it keeps until it has deleted the segment (closing it earlier
 * leaves the segment in taken/ for a take-over). -1 with errno EWOULDBLOCK
 * (another consumer has it, or its writer is closing it: try later) or
 * ENOENT (gone or taken: next).
 */
int spool_take(const char *dir, const char *name);
/*
 * Take over dir/taken/name, left by a consumer that died (its lock is
 * free): open, lock and link check as above. The locked descriptor, or -1
 * with errno EWOULDBLOCK (its consumer is alive: not ours) or ENOENT.
 */
int spool_take_over(const char *dir, const char *name);

/*
 * Reader over an fd the caller owns. Reads ahead in large blocks. At the end
 * of what is there, it forgets what it read ahead, so a caller may call
 * spool_read_next() again later on a growing file (tail -f).
 */
#define SPOOL_TORN (-2) /* the record at *off does not fit in the file (yet) */
#define SPOOL_BAD  (-3) /* bad rec_len or CRC at *off (or a bad file header) */
struct spool_reader {
	int fd;
	uint64_t off; /* offset of the next record */
	struct spool_file_hdr fh;
	uint8_t *buf; /* file bytes [boff, boff + blen); owned by the reader */
	size_t cap, blen;
	uint64_t boff;
	const char *why; /* after SPOOL_TORN or SPOOL_BAD: what was wrong (a static string) */
};
/* Read and check the file header: 0, SPOOL_TORN (shorter than 64 bytes), SPOOL_BAD, -1. */
int spool_reader_open(struct spool_reader *r, int fd);
/*
 * The next record: 1 with rec, *payload (valid until the next call) and
 * *off (the record's offset); 0 at the end of the file; SPOOL_TORN or
 * SPOOL_BAD with *off at the record that is not whole (r->off stays there);
 * -1 on a read error.
 */
int spool_read_next(struct spool_reader *r, struct spool_rec *rec, const uint8_t **payload,
		    uint64_t *off);
void spool_reader_close(struct spool_reader *r); /* frees the buffer, not the fd */

/*
 * Read a whole segment (one pass, CRC of every record). status: 0 when every
 * record is whole to the end of the file; SPOOL_TORN when the first record
 * that is not whole (at bad_offset) has no whole record after it (a torn
 * tail; also a file shorter than its header); SPOOL_BAD when one does (the
 * damage is in the middle), or the file header is bad (end = 0). end: the
 * offset after the last whole record (0 if the header is not whole).
 * 0, or -1 on a read error.
 */
struct spool_scan {
	struct spool_file_hdr fh;
	int status;
	const char *why; /* status != 0: what was wrong (a static string) */
	uint64_t size, end, bad_offset;
	uint64_t zeros; /* status != 0 in a SPOOL_FILE_ZERO_AHEAD segment: the zero bytes
			   from end on, written ahead, if at least 8 (no record starts
			   with 8), else 0 */
	uint64_t records, first_ts, last_ts; /* of the whole records before end */
};
int spool_scan(int fd, struct spool_scan *out);

/*
 * The file and directory steps the recovery (spool_recover.c) shares with
 * the writer, the consumer's hand-over and the scan.
 */
/* rename dir/from/name to dir/to/name and fsync both directories: 0, or -1 with errno. */
int spool_move(const char *dir, enum spool_dir from, enum spool_dir to, const char *name);
/* fmt (with two %s: arg, then strerror(errno)) into err, errno kept; err may be NULL. */
void spool_set_err(char *err, size_t errlen, const char *fmt, const char *arg);
/* pread until n bytes or the end of the file, again on EINTR: the bytes read, or -1. */
ssize_t spool_pread_full(int fd, void *p, size_t n, uint64_t off);
/* pwritev, again on EINTR; no byte written is an error (EIO), never 0. */
ssize_t spool_pwritev_some(int fd, const struct iovec *iov, int cnt, uint64_t off);

#endif

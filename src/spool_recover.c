#include "spool_recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "spool.h"

static const char *const action_names[SPOOL_NACTIONS] = {
    [SPOOL_ACT_LOCKED] = "locked",	     [SPOOL_ACT_SEALED] = "sealed",
    [SPOOL_ACT_TRUNCATED] = "truncated",     [SPOOL_ACT_REMOVED] = "removed",
    [SPOOL_ACT_QUARANTINED] = "quarantined", [SPOOL_ACT_BAD_HEADER] = "bad-header",
};

const char *spool_recover_action_str(int action)
{
	return action >= 0 && action < SPOOL_NACTIONS ? action_names[action] : "unknown";
}

/* Copy bytes [0, len) of in to out. */
static int copy_prefix(int in, int out, uint64_t len)
{
	loff_t ioff = 0, ooff = 0;
	uint8_t b[65536];

	while ((uint64_t)ioff < len) {
		ssize_t n =
		    copy_file_range(in, &ioff, out, &ooff, (size_t)(len - (uint64_t)ioff), 0);
		if (n > 0)
			continue;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
			return -1;
		/* No copy_file_range here: plain reads and writes. */
		while ((uint64_t)ioff < len) {
			size_t want = len - (uint64_t)ioff < sizeof(b)
					  ? (size_t)(len - (uint64_t)ioff)
					  : sizeof(b);
			ssize_t m = spool_pread_full(in, b, want, (uint64_t)ioff);
			if (m <= 0) {
				if (m == 0)
					errno = EIO;
				return -1;
			}
			for (ssize_t done = 0; done < m;) {
				struct iovec v = {b + done, (size_t)(m - done)};
				ssize_t w = spool_pwritev_some(out, &v, 1, (uint64_t)ooff);
				if (w < 0)
					return -1;
				done += w;
				ooff += w;
			}
			ioff += m;
		}
	}
	return 0;
}

/*
 * Put the whole records [0, len) of the segment into ready/ under its own
 * name, through a temporary file in active/ so that ready/ never shows a
 * partial segment.
 */
static int salvage(int fd, const char *dir, const char *name, uint64_t len)
{
	char tmpname[SPOOL_NAME_MAX + 16], tmp[PATH_MAX], dst[PATH_MAX];
	int out, saved;

	snprintf(tmpname, sizeof(tmpname), ".%s.salvage", name);
	if (spool_path(tmp, sizeof(tmp), dir, SPOOL_D_ACTIVE, tmpname) < 0 ||
	    spool_path(dst, sizeof(dst), dir, SPOOL_D_READY, name) < 0)
		return -1;
	(void)unlink(tmp); /* a leftover of an earlier attempt that crashed */
	out = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (out < 0)
		return -1;
	if (flock(out, LOCK_EX | LOCK_NB) < 0 || copy_prefix(fd, out, len) < 0 ||
	    fdatasync(out) < 0)
		goto fail;
	if (rename(tmp, dst) < 0)
		goto fail;
	close(out);
	if (spool_fsync_dir(dir, SPOOL_D_READY) < 0 || spool_fsync_dir(dir, SPOOL_D_ACTIVE) < 0)
		return -1;
	return 0;
fail:
	saved = errno;
	unlink(tmp);
	close(out);
	errno = saved;
	return -1;
}

static int remove_seg(const char *dir, const char *name)
{
	char path[PATH_MAX];

	if (spool_path(path, sizeof(path), dir, SPOOL_D_ACTIVE, name) < 0 || unlink(path) < 0)
		return -1;
	return spool_fsync_dir(dir, SPOOL_D_ACTIVE);
}

/*
 * Open path and lock it: 1 with *fd when the segment is ours, 0 when its
 * writer is alive (holds the lock), -1 with err filled.
 */
static int lock_segment(const char *path, int *fd, char *err, size_t errlen)
{
	*fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0) {
		spool_set_err(err, errlen, "open %s: %s", path);
		return -1;
	}
	if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			spool_set_err(err, errlen, "flock %s: %s", path);
			close(*fd);
			return -1;
		}
		close(*fd);
		return 0;
	}
	return 1;
}

/*
 * A bad file header or corruption in the middle (sc: SPOOL_BAD): the whole
 * records before the damage salvaged into ready/, the original moved into
 * quarantine/. *what names the step, for the error message.
 */
static int recover_bad(int fd, const char *dir, const char *name, const struct spool_scan *sc,
		       struct spool_recovery *out, const char **what)
{
	if (sc->end == 0) {
		out->action = SPOOL_ACT_BAD_HEADER;
	} else {
		/* Corruption in the middle: keep the original aside, hand over the whole prefix. */
		out->action = SPOOL_ACT_QUARANTINED;
		*what = "salvage";
		if (sc->records > 0 && salvage(fd, dir, name, sc->end) < 0)
			return -1;
	}
	*what = "quarantine";
	return spool_move(dir, SPOOL_D_ACTIVE, SPOOL_D_QUARANTINE, name);
}

/*
 * Whole, or whole up to a torn tail (sc: 0 or SPOOL_TORN): the tail cut
 * off, then sealed into ready/, or removed when no whole record is left.
 * *what names the step, for the error message.
 */
static int recover_whole(int fd, const char *dir, const char *name, const struct spool_scan *sc,
			 struct spool_recovery *out, const char **what)
{
	if (sc->status == SPOOL_TORN) {
		/*
		 * Shorter than its header: died while creating it, no record in there.
		 * Zeros right after the last whole record were written ahead (or
		 * never written): cut, but not counted as torn.
		 */
		out->zero_bytes = sc->zeros;
		out->truncated_bytes = sc->size - sc->end - sc->zeros;
		*what = "truncate";
		if (sc->end > 0 && (ftruncate(fd, (off_t)sc->end) < 0 || fdatasync(fd) < 0))
			return -1;
	}
	if (sc->records == 0) {
		out->action = SPOOL_ACT_REMOVED;
		*what = "remove";
		return remove_seg(dir, name);
	}
	out->action = sc->status == SPOOL_TORN && out->truncated_bytes > 0 ? SPOOL_ACT_TRUNCATED
									   : SPOOL_ACT_SEALED;
	*what = "seal";
	if (fdatasync(fd) < 0)
		return -1;
	return spool_move(dir, SPOOL_D_ACTIVE, SPOOL_D_READY, name);
}

int spool_recover(const char *dir, const char *name, struct spool_recovery *out, char *err,
		  size_t errlen)
{
	char path[PATH_MAX];
	struct spool_scan sc;
	int fd, rc, saved;
	const char *what = "read";

	memset(out, 0, sizeof(*out));
	if (spool_path(path, sizeof(path), dir, SPOOL_D_ACTIVE, name) < 0) {
		spool_set_err(err, errlen, "%s: %s", name);
		return -1;
	}
	rc = lock_segment(path, &fd, err, errlen);
	if (rc <= 0) {
		if (rc == 0)
			out->action = SPOOL_ACT_LOCKED;
		return rc;
	}
	if (spool_scan(fd, &sc) < 0)
		goto fail;
	out->size = sc.size;
	out->records = sc.records;
	out->bad_offset = sc.bad_offset;
	if (sc.status == SPOOL_BAD)
		rc = recover_bad(fd, dir, name, &sc, out, &what);
	else
		rc = recover_whole(fd, dir, name, &sc, out, &what);
	if (rc < 0)
		goto fail;
	close(fd);
	return 0;
fail:
	saved = errno;
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(saved));
	close(fd);
	errno = saved;
	return -1;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A salvage file left by a recovery that crashed: nobody holds its lock. */
static void remove_stale_salvage(const char *dir, const char *name)
{
	char path[PATH_MAX];
	size_t len = strlen(name);
	int fd;

	if (name[0] != '.' || len < 9 || strcmp(name + len - 8, ".salvage") != 0 ||
	    spool_path(path, sizeof(path), dir, SPOOL_D_ACTIVE, name) < 0)
		return;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		(void)unlink(path);
	close(fd);
}

/*
 * Lists the segment names in dir's active/ (only pid's when pid > 0; with
 * pid <= 0 it also removes stale salvage files there), sorted by creation.
 * Returns 0 with *names (n of them, each and the array the caller's to
 * free), or -1 with err filled.
 */
static int list_active(const char *dir, long pid, char ***names, size_t *n, char *err,
		       size_t errlen)
{
	char path[PATH_MAX];
	char **v = NULL;
	size_t cap = 0;
	struct dirent *de;
	DIR *d;

	*n = 0;
	if (spool_path(path, sizeof(path), dir, SPOOL_D_ACTIVE, NULL) < 0 ||
	    (d = opendir(path)) == NULL) {
		spool_set_err(err, errlen, "opendir %s: %s", path);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		long p;

		if (spool_seg_name_parse(de->d_name, NULL, NULL, &p) < 0) {
			if (pid <= 0)
				remove_stale_salvage(dir, de->d_name);
			continue;
		}
		if (pid > 0 && p != pid)
			continue;
		if (*n == cap) {
			size_t c = cap ? cap * 2 : 16;
			char **nv = realloc(v, c * sizeof(*v));
			if (nv == NULL)
				goto nomem;
			v = nv;
			cap = c;
		}
		if ((v[*n] = strdup(de->d_name)) == NULL)
			goto nomem;
		(*n)++;
	}
	closedir(d);
	if (*n > 0)
		qsort(v, *n, sizeof(*v), cmp_names);
	*names = v;
	return 0;
nomem:
	closedir(d);
	for (size_t i = 0; i < *n; i++)
		free(v[i]);
	free(v);
	*n = 0;
	errno = ENOMEM;
	spool_set_err(err, errlen, "%s: %s", dir);
	return -1;
}

/* Adds one segment's recovery (rc and r as spool_recover returned them) to sum. */
static void count_recovery(struct spool_recover_totals *sum, int rc, const struct spool_recovery *r)
{
	unsigned *const by_action[SPOOL_NACTIONS] = {
	    [SPOOL_ACT_LOCKED] = &sum->locked,		 [SPOOL_ACT_SEALED] = &sum->sealed,
	    [SPOOL_ACT_TRUNCATED] = &sum->truncated,	 [SPOOL_ACT_REMOVED] = &sum->removed,
	    [SPOOL_ACT_QUARANTINED] = &sum->quarantined, [SPOOL_ACT_BAD_HEADER] = &sum->bad_header,
	};

	sum->segments++;
	if (rc < 0) {
		sum->failed++;
		return;
	}
	if (r->action >= 0 && r->action < SPOOL_NACTIONS)
		(*by_action[r->action])++;
	sum->truncated_bytes += r->truncated_bytes;
	sum->records += r->records;
}

int spool_recover_all(const char *dir, long pid, spool_recover_fn *fn, void *arg,
		      struct spool_recover_totals *t, char *err, size_t errlen)
{
	struct spool_recover_totals sum;
	char msg[PATH_MAX + 128];
	char **names = NULL;
	size_t n;

	memset(&sum, 0, sizeof(sum));
	if (list_active(dir, pid, &names, &n, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct spool_recovery r;
		int rc = spool_recover(dir, names[i], &r, msg, sizeof(msg));

		count_recovery(&sum, rc, &r);
		if (fn != NULL)
			fn(arg, names[i], rc, &r, rc < 0 ? msg : NULL);
		free(names[i]);
	}
	free(names);
	if (t != NULL)
		*t = sum;
	return 0;
}

/*
 * The recovery of the segments a dead writer left in active/ (docs/SPOOL.md,
 * "Recovery"): sealed, truncated, removed or quarantined. A leaf above the
 * spool's format and scan: it never logs and never exits; errors are -1 with
 * errno set and a message in the caller's buffer.
 */
#ifndef SUBMITD_SPOOL_RECOVER_H
#define SUBMITD_SPOOL_RECOVER_H

#include <stddef.h>
#include <stdint.h>

/* Recovery of one active/ segment per docs/SPOOL.md, "Recovery". */
enum spool_action {
	SPOOL_ACT_LOCKED,      /* its writer is alive: left alone */
	SPOOL_ACT_SEALED,      /* whole (up to zeros written ahead, cut): sealed into ready/ */
	SPOOL_ACT_TRUNCATED,   /* torn tail truncated, sealed into ready/ */
	SPOOL_ACT_REMOVED,     /* no whole record (torn or empty): deleted */
	SPOOL_ACT_QUARANTINED, /* corruption in the middle: moved into quarantine/,
				  the whole records before it salvaged into ready/ */
	SPOOL_ACT_BAD_HEADER,  /* bad file header: moved into quarantine/ */
	SPOOL_NACTIONS,
};
struct spool_recovery {
	int action;		  /* enum spool_action */
	uint64_t truncated_bytes; /* torn tail cut off, less zeros right after the
				     last whole record (TRUNCATED, REMOVED) */
	uint64_t zero_bytes;	  /* those zeros (written ahead), cut off too */
	uint64_t bad_offset;	  /* the first record not whole (TRUNCATED, QUARANTINED) */
	uint64_t records;	  /* whole records kept (into ready/) */
	uint64_t size;		  /* the file's size before recovery */
};
/* "sealed", "truncated", ...: the action's name. */
const char *spool_recover_action_str(int action);
/* Recover dir/active/name. 0 with *out filled, or -1 (errno, err): nothing was moved. */
int spool_recover(const char *dir, const char *name, struct spool_recovery *out, char *err,
		  size_t errlen);

/* Called by spool_recover_all for every segment it looked at (err set when rc is -1). */
typedef void spool_recover_fn(void *arg, const char *name, int rc, const struct spool_recovery *r,
			      const char *err);
struct spool_recover_totals {
	unsigned segments, locked, sealed, truncated, removed, quarantined, bad_header, failed;
	uint64_t truncated_bytes, records;
};
/*
 * Recover every segment in dir/active/ whose lock can be taken, in name
 * order; pid > 0: only the segments named "-p<pid>.seg". t (may be NULL)
 * gets the sums, fn (may be NULL) each result. -1 only if active/ cannot be
 * read; the failure of one segment is counted in t->failed and passed to fn.
 */
int spool_recover_all(const char *dir, long pid, spool_recover_fn *fn, void *arg,
		      struct spool_recover_totals *t, char *err, size_t errlen);

#endif

#include "spoolm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"
#include "spool_recover.h"

static const struct conf *cf;
static struct stats_shm *shm;
static pid_t recover_pid; /* 0: every unlocked segment */

/*
 * Run fn as the configured user: in a child that drops privileges when the
 * master is root, else here. Returns fn's result (-1 if the child failed).
 */
static int as_user(int (*fn)(void))
{
	struct passwd *pw;
	int status;
	pid_t pid;

	if (cf->user[0] == '\0' || geteuid() != 0)
		return fn();
	if ((pw = getpwnam(cf->user)) == NULL) {
		log_errorx("spool: user \"%s\" not found", cf->user);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1) {
		log_warn("spool: fork");
		return -1;
	}
	if (pid == 0) {
		if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
		    setuid(pw->pw_uid) == -1) {
			log_warn("spool: cannot switch to user %s", cf->user);
			_exit(1);
		}
		_exit(fn() == 0 ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void on_recovered(void *arg, const char *name, int rc, const struct spool_recovery *r,
			 const char *err)
{
	(void)arg;
	if (rc == -1) {
		log_warnx("spool: recovery of %s failed: %s", name, err);
		return;
	}
	switch (r->action) {
	case SPOOL_ACT_LOCKED:
		return;
	case SPOOL_ACT_SEALED:
		log_info("spool: recovered %s: %llu records, sealed into ready/", name,
			 (unsigned long long)r->records);
		STATS_ADD(shm->spool_recovered, 1);
		break;
	case SPOOL_ACT_TRUNCATED:
		log_warnx("spool: recovered %s: torn tail at offset %llu, %llu bytes truncated, "
			  "%llu records sealed into ready/",
			  name, (unsigned long long)r->bad_offset,
			  (unsigned long long)r->truncated_bytes, (unsigned long long)r->records);
		STATS_ADD(shm->spool_recovered, 1);
		STATS_ADD(shm->spool_truncated, 1);
		STATS_ADD(shm->spool_truncated_bytes, r->truncated_bytes);
		break;
	case SPOOL_ACT_REMOVED:
		log_info("spool: %s held no whole record (%llu bytes torn): removed", name,
			 (unsigned long long)r->truncated_bytes);
		STATS_ADD(shm->spool_removed, 1);
		STATS_ADD(shm->spool_truncated_bytes, r->truncated_bytes);
		break;
	case SPOOL_ACT_QUARANTINED:
		log_errorx("spool: %s: corrupt record at offset %llu: moved into quarantine/, "
			   "%llu records before it salvaged into ready/",
			   name, (unsigned long long)r->bad_offset, (unsigned long long)r->records);
		STATS_ADD(shm->spool_quarantined, 1);
		break;
	case SPOOL_ACT_BAD_HEADER:
		log_errorx("spool: %s: bad file header: moved into quarantine/", name);
		STATS_ADD(shm->spool_quarantined, 1);
		break;
	default:
		break;
	}
}

static int recover(void)
{
	struct spool_recover_totals t;
	char err[512];

	if (spool_recover_all(cf->spool_dir, (long)recover_pid, on_recovered, NULL, &t, err,
			      sizeof(err)) == -1) {
		log_warnx("spool: recovery: %s", err);
		return -1;
	}
	return 0;
}

static int make_dirs(void)
{
	char err[512];

	if (spool_dirs(cf->spool_dir, err, sizeof(err)) == -1) {
		log_errorx("spool: %s", err);
		return -1;
	}
	return 0;
}

/* Sum the segment bytes in dir/sub; ready/ also counts and finds the oldest. */
static uint64_t scan_dir(const char *sub, uint64_t *count, uint64_t *oldest_ns)
{
	char path[PATH_MAX];
	struct dirent *e;
	struct stat st;
	uint64_t bytes = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", cf->spool_dir, sub);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		uint64_t ns;
		if (spool_seg_name_parse(e->d_name, &ns, NULL, NULL) == -1 ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		bytes += (uint64_t)st.st_size;
		if (count != NULL) {
			(*count)++;
			if (*oldest_ns == 0 || ns < *oldest_ns)
				*oldest_ns = ns;
		}
	}
	closedir(d);
	return bytes;
}

static int scan(void)
{
	uint64_t net = 0, bytes = 0, ready = 0, oldest = 0;
	uint32_t hwm = STATS_LOAD(shm->ctl.slot_hwm);

	/*
	 * What the live workers wrote, taken before the scan: bytes written
	 * while it runs may be counted twice, never missed.
	 */
	for (uint32_t i = 0; i < hwm && i < STATS_MAX_SLOTS; i++) {
		const struct stats_slot *s = &shm->slot[i];
		if (STATS_LOAD(shm->ctl.slot[i].state) == CTL_SLOT_FREE)
			continue;
		net += STATS_LOAD(s->c[STATS_spool_bytes]) -
		       STATS_LOAD(s->c[STATS_spool_dropped_bytes]);
	}
	bytes += scan_dir(SPOOL_ACTIVE, NULL, NULL);
	bytes += scan_dir(SPOOL_READY, &ready, &oldest);
	bytes += scan_dir(SPOOL_TAKEN, NULL, NULL);
	bytes += scan_dir(SPOOL_QUARANTINE, NULL, NULL);
	bytes += scan_dir(SPOOL_SUSPECT, NULL, NULL);
	STATS_STORE(shm->ctl.spool_scan_net, net);
	STATS_STORE(shm->ctl.spool_scan_bytes, bytes);
	STATS_STORE(shm->spool_ready_segments, ready);
	STATS_STORE(shm->spool_oldest_ready_ns, oldest);
	return 0;
}

static int recover_and_scan(void)
{
	int r = recover();
	scan();
	return r;
}

static int start_work(void)
{
	if (make_dirs() == -1)
		return -1;
	return recover_and_scan();
}

int spoolm_start(const struct conf *c, struct stats_shm *sh)
{
	struct passwd *pw;
	struct stat st;
	int fd;

	cf = c;
	shm = sh;
	if (c->spool_dir[0] == '\0')
		return 0;
	spoolm_conf(c);
	/* The top directory may be in a place only root can write (/var/lib/submitd). */
	if (mkdir(c->spool_dir, 0750) == -1 && errno != EEXIST) {
		log_error("spool: mkdir %s", c->spool_dir);
		return -1;
	}
	/*
	 * O_PATH: under the unit the master is root without CAP_DAC_OVERRIDE, and
	 * the packaged directory (0750, the workers' user) is not readable by it.
	 */
	if ((fd = open(c->spool_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		log_error("spool: %s", c->spool_dir);
		return -1;
	}
	if (c->user[0] != '\0' && geteuid() == 0 && (pw = getpwnam(c->user)) != NULL &&
	    fstat(fd, &st) == 0 && (st.st_uid != pw->pw_uid || st.st_gid != pw->pw_gid) &&
	    fchownat(fd, "", pw->pw_uid, pw->pw_gid, AT_EMPTY_PATH) == -1)
		log_warn("spool: cannot give %s to user %s", c->spool_dir, c->user);
	close(fd);
	recover_pid = 0;
	if (as_user(start_work) == -1) {
		log_errorx("spool: %s cannot be used", c->spool_dir);
		return -1;
	}
	log_info("spool: %s, sync %s, segments of %ld bytes or %ld s, bound %ld bytes (%s)",
		 c->spool_dir, conf_spool_sync_name(c->spool_sync), c->spool_segment_size,
		 c->spool_segment_age, c->spool_max_size, conf_spool_full_name(c->spool_full));
	return 0;
}

void spoolm_conf(const struct conf *c)
{
	cf = c;
	if (shm != NULL)
		STATS_STORE(shm->ctl.spool_max, (uint64_t)c->spool_max_size);
}

void spoolm_reaped(pid_t pid)
{
	if (cf == NULL || cf->spool_dir[0] == '\0')
		return;
	recover_pid = pid;
	as_user(recover_and_scan);
}

void spoolm_tick(void)
{
	if (cf == NULL || cf->spool_dir[0] == '\0')
		return;
	as_user(scan);
}

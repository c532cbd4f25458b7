#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* The argv and environ strings, contiguous at the top of the stack: the title's room. */
static char *title_start, *title_end;

void proc_title_init(int argc, char **argv)
{
	char *aend, *end, **env;
	int n = 0;

	if (argc < 1 || argv[0] == NULL)
		return;
	aend = argv[0] + strlen(argv[0]) + 1;
	for (int i = 1; i < argc; i++)
		if (argv[i] == aend)
			aend += strlen(argv[i]) + 1;
	end = aend;
	while (environ[n] != NULL)
		n++;
	/* As nginx does: environ moves to the heap, its old room goes to the title. */
	if ((env = calloc((size_t)n + 1, sizeof(*env))) != NULL) {
		int i;
		for (i = 0; i < n; i++) {
			if (environ[i] == end)
				end += strlen(environ[i]) + 1;
			if ((env[i] = strdup(environ[i])) == NULL)
				break;
		}
		if (i == n) {
			environ = env;
		} else {
			while (i-- > 0)
				free(env[i]);
			free(env);
			end = aend;
		}
	}
	title_start = argv[0];
	title_end = end;
}

void proc_title_set(const char *fmt, ...)
{
	char buf[256];
	size_t room, n;
	va_list ap;
	int r;

	if (title_start == NULL)
		return;
	r = snprintf(buf, sizeof(buf), "submitd: ");
	va_start(ap, fmt);
	vsnprintf(buf + r, sizeof(buf) - (size_t)r, fmt, ap);
	va_end(ap);
	room = (size_t)(title_end - title_start);
	n = strlen(buf);
	if (n >= room)
		n = room - 1;
	memcpy(title_start, buf, n);
	memset(title_start + n, '\0', room - n);
}

static int report_fd = -1;
static pid_t report_pid;

static void report_at_exit(void)
{
	proc_detach_report("exited during start-up (see the log)");
}

int proc_detach(int *status, char *msg, size_t msglen)
{
	int p[2], fd;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) == -1)
		return -1;
	if ((pid = fork()) == -1) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		/* "0", or "1" and the message; nothing at all if the child died first. */
		while (n < msglen - 1 && ((r = read(p[0], msg + n, msglen - 1 - n)) > 0 ||
					  (r == -1 && errno == EINTR)))
			if (r > 0)
				n += (size_t)r;
		msg[n] = '\0';
		close(p[0]);
		if (n > 0 && msg[0] == '0') {
			*status = 0;
			msg[0] = '\0';
		} else if (n > 0) {
			*status = 1;
			memmove(msg, msg + 1, n);
		} else {
			*status = 1;
			snprintf(msg, msglen, "exited during start-up (see the log)");
		}
		return 1;
	}
	close(p[0]);
	report_fd = p[1];
	report_pid = getpid();
	atexit(report_at_exit);
	setsid();
	/* Hold no mount point busy. */
	if (chdir("/") == -1)
		return -1;
	if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return 0;
}

int proc_detach_report(const char *err)
{
	char buf[1024];
	int n;

	/* Forked workers inherit the exit handler, not the right to report. */
	if (report_fd == -1 || getpid() != report_pid)
		return 0;
	n = snprintf(buf, sizeof(buf), "%c%s", err ? '1' : '0', err ? err : "");
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	while (write(report_fd, buf, (size_t)n) == -1 && errno == EINTR)
		;
	close(report_fd);
	report_fd = -1;
	return 1;
}

int proc_drop_privileges(const char *user, char *err, size_t errlen)
{
	struct passwd *pw;

	if (user[0] == '\0' || geteuid() != 0)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, errlen, "user \"%s\" not found", user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1) {
		snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
		return -1;
	}
	if (getuid() != pw->pw_uid || geteuid() != pw->pw_uid || setuid(0) != -1) {
		snprintf(err, errlen, "privileges of user %s not dropped", user);
		return -1;
	}
	return 0;
}

int proc_signalfd(const int *sigs, int nsigs)
{
	sigset_t set;

	sigemptyset(&set);
	for (int i = 0; i < nsigs; i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Without close_range (Linux < 5.9): what /proc/self/fd lists. */
static int close_listed(const int *keep, int nkeep)
{
	struct dirent *e;
	DIR *d;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name), kept = e->d_name[0] < '0' || e->d_name[0] > '9';
		for (int i = 0; i < nkeep && !kept; i++)
			kept = keep[i] == fd;
		if (!kept && fd != dirfd(d))
			close(fd);
	}
	closedir(d);
	return 0;
}

int proc_close_fds(const int *keep, int nkeep)
{
	int sorted[64];
	unsigned lo = 0;

	if (nkeep > (int)(sizeof(sorted) / sizeof(sorted[0]))) {
		errno = EINVAL;
		return -1;
	}
	memcpy(sorted, keep, (size_t)nkeep * sizeof(int));
	qsort(sorted, (size_t)nkeep, sizeof(int), cmp_int);
	for (int i = 0; i < nkeep; i++) {
		if (sorted[i] < 0 || (unsigned)sorted[i] < lo)
			continue;
		if ((unsigned)sorted[i] > lo && close_range(lo, (unsigned)sorted[i] - 1, 0) == -1)
			return close_listed(keep, nkeep);
		lo = (unsigned)sorted[i] + 1;
	}
	if (close_range(lo, ~0U, 0) == -1)
		return close_listed(keep, nkeep);
	return 0;
}

static int lock_whole(int fd)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
	return fcntl(fd, F_SETLK, &fl);
}

/* The pid holding a lock on fd's file: 0 none; -1 error, or (ESRCH) a holder we cannot see. */
static pid_t holder_of(int fd)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};

	if (fcntl(fd, F_GETLK, &fl) == -1)
		return -1;
	if (fl.l_type == F_UNLCK)
		return 0;
	if (fl.l_pid <= 0) {
		errno = ESRCH; /* in a pid namespace we do not see */
		return -1;
	}
	return fl.l_pid;
}

pid_t proc_pidfile_holder(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	pid_t h;

	if (fd == -1)
		return errno == ENOENT || errno == ELOOP ? 0 : -1;
	h = holder_of(fd);
	close(fd);
	return h;
}

static int same_file(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

int proc_pidfile_acquire(const char *path, pid_t *holder, char *err, size_t errlen)
{
	char tmp[4200], buf[32];
	int fd, old, len;

	*holder = 0;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= sizeof(tmp)) {
		snprintf(err, errlen, "%s: name too long", path);
		return -1;
	}
	unlink(tmp); /* left by an earlier process that had our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd == -1 && errno == ENOENT) {
		/* Only the last component: /run/submitd is gone while the service is stopped. */
		char dir[4200];
		const char *slash = strrchr(path, '/');
		snprintf(dir, sizeof(dir), "%.*s", slash != NULL ? (int)(slash - path) : 0, path);
		if (dir[0] != '\0' && mkdir(dir, 0755) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "pid file %s: directory %s: %s", path, dir,
				 strerror(errno));
			return -1;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	}
	if (fd == -1) {
		snprintf(err, errlen, "pid file %s: %s", tmp, strerror(errno));
		return -1;
	}
	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (lock_whole(fd) == -1 || write(fd, buf, (size_t)len) != len)
		goto failed;
	/*
	 * The file appears complete and locked. link() puts it where nothing
	 * is; an existing file is replaced only while we hold its lock, so two
	 * instances starting at once cannot both win.
	 */
	for (int tries = 0; tries < 100; tries++) {
		if (link(tmp, path) == 0) {
			unlink(tmp);
			return fd;
		}
		if (errno != EEXIST)
			goto failed;
		if ((old = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) == -1) {
			if (errno == ENOENT)
				continue;
			goto failed;
		}
		if (lock_whole(old) == -1) {
			if (errno != EAGAIN && errno != EACCES) {
				close(old);
				goto failed;
			}
			*holder = holder_of(old);
			close(old);
			if (*holder == -1)
				*holder = 0;
			snprintf(err, errlen, "another submitd is running (pid %d, %s)",
				 (int)*holder, path);
			close(fd);
			unlink(tmp);
			return -1;
		}
		if (same_file(old, path)) {
			int r = rename(tmp, path);
			close(old);
			if (r == 0)
				return fd;
			goto failed;
		}
		close(old); /* replaced meanwhile: look again */
	}
	errno = EBUSY;
failed:
	snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
	close(fd);
	unlink(tmp);
	return -1;
}

void proc_pidfile_release(const char *path, int fd)
{
	if (fd < 0)
		return;
	if (same_file(fd, path))
		unlink(path);
	close(fd);
}

int proc_pidfile_pidfd(const char *path, pid_t *pid, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), pidfd;
	pid_t h;

	if (fd == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((h = holder_of(fd)) <= 0) {
		if (h == 0)
			snprintf(err, errlen, "no submitd is running: nothing holds the lock on %s",
				 path);
		else
			snprintf(err, errlen, "%s: lock holder: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if ((pidfd = pidfd_open(h, 0)) == -1) {
		snprintf(err, errlen, "pidfd_open %d: %s", (int)h, strerror(errno));
		close(fd);
		return -1;
	}
	/* Still the holder once the pidfd exists: the pidfd is the master's, not a reuse. */
	if (holder_of(fd) != h) {
		snprintf(err, errlen, "the master (pid %d) exited", (int)h);
		close(pidfd);
		close(fd);
		return -1;
	}
	close(fd);
	*pid = h;
	return pidfd;
}

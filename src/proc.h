/*
 * Process plumbing for the master and the workers: process titles, detaching
 * with a start-up report, the pid file and its lock, closing inherited
 * descriptors. Nothing here logs.
 */
#ifndef SUBMITD_PROC_H
#define SUBMITD_PROC_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Take over the argv and environ area for proc_title_set (environ moves to
 * the heap). Call once, after the last use of the argv strings.
 */
void proc_title_init(int argc, char **argv);
/* "submitd: " and fmt, in ps and /proc/PID/cmdline; no-op before proc_title_init. */
void proc_title_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Fork; the parent waits until the child calls proc_detach_report (or
 * exits) and returns 1 with *status the exit status it should end with and
 * msg the child's error ("" on success). The child returns 0 in a new
 * session, with "/" as working directory and /dev/null as stdin and stdout.
 * -1: fork failed.
 */
int proc_detach(int *status, char *msg, size_t msglen);
/*
 * In the detached child: start-up succeeded (err NULL) or failed. Only the
 * first call counts; an exit before any call reports a failure. 1 if this
 * call reported, 0 if there was nothing to report to.
 */
int proc_detach_report(const char *err);

/*
 * Become user (its uid, gid and groups) for good, if it is set and we are
 * root; a no-op otherwise. 0, or -1 with err: the user is unknown, a switch
 * failed, or root could be regained.
 */
int proc_drop_privileges(const char *user, char *err, size_t errlen);

/*
 * Block the nsigs signals in sigs and return a signalfd that reads them
 * (non-blocking, close-on-exec); SIGPIPE is ignored besides. A thread
 * started later inherits the mask. -1 with errno.
 */
int proc_signalfd(const int *sigs, int nsigs);

/* Close every descriptor but those in keep (and those in nothing else). */
int proc_close_fds(const int *keep, int nkeep);

/*
 * The pid file is "running" while a process holds a write lock on it (a
 * POSIX record lock: it is not inherited by fork and goes with the
 * process). The pid of the holder, 0 if there is none, -1 on error.
 */
pid_t proc_pidfile_holder(const char *path);
/*
 * Write our pid into a new file (O_EXCL|O_NOFOLLOW), lock it and put it at
 * path unless a live holder has it. A missing last component of path's
 * directory is created, 0755 (a RuntimeDirectory that exists only while
 * the service runs); a missing one above it is an error. Returns the
 * descriptor to keep for the life of the process: the lock lasts as long
 * as this process holds it and opens no other descriptor of the file. -1
 * with err, and *holder set when another process holds the lock.
 */
int proc_pidfile_acquire(const char *path, pid_t *holder, char *err, size_t errlen);
/* Remove path if it is still the file behind fd, then close fd. */
void proc_pidfile_release(const char *path, int fd);
/*
 * A pidfd for the process holding the lock on path, so that a signal cannot
 * reach a process that reused the pid. -1 with err if nobody holds it.
 */
int proc_pidfile_pidfd(const char *path, pid_t *pid, char *err, size_t errlen);

#endif

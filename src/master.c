#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "forwarder.h"
#include "iplimit.h"
#include "ratelimit.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "proc.h"
#include "spoolm.h"
#include "stats.h"
#include "worker.h"

#define RESPAWN_MIN_MS 100
#define RESPAWN_MAX_MS 5000
#define CRASH_LOOP_MS  1000 /* a child that dies younger than this backs off */
#define KILL_GRACE_MS  3000 /* past shutdown_timeout, before SIGKILL */

/*
 * One child process, as nginx's ngx_process_t: the workers and the
 * forwarder go through the same spawn(), reap() and respawn backoff.
 * children[] holds the workers in entries 0..STATS_MAX_SLOTS-1, each in
 * the statistics slot of its index, and the forwarder in FWD_CHILD.
 */
struct child {
	pid_t pid;     /* 0: entry free */
	int label;     /* a worker's label, FWD_LABEL for the forwarder: its respawns[] entry */
	char name[24]; /* "worker 3", "forwarder": for log lines */
	unsigned gen;  /* a worker's generation */
	int draining;  /* told to stop: its exit is expected */
	uint64_t started_ms;
	uint64_t kill_at_ms; /* a draining worker: SIGKILL after this */
	int hung;	     /* killed by the watchdog */
};

#define FWD_CHILD STATS_MAX_SLOTS /* the forwarder's entry in children[], after the workers' */
#define NCHILDREN (STATS_MAX_SLOTS + 1)
#define FWD_LABEL CONF_MAX_WORKERS /* its entry in respawns[], after the workers' labels */

/* A label's next child: kept across its children, since a worker's slot may change. */
struct respawn {
	uint64_t at_ms; /* 0: none due */
	uint64_t backoff_ms;
};

/* What a child is to close of the master's descriptors (see master_fds). */
struct inherit {
	int fds[8 + CONF_MAX_LISTEN];
	int n;
	pid_t master;
};

/* What a child runs after fork, in entry e of children[]; never returns. */
typedef void child_proc(int e, const struct inherit *in);

static struct conf conf;
static struct stats_shm *shm;
static struct child children[NCHILDREN];
static int slot_label[STATS_MAX_SLOTS];
static struct stats_slot retired[CONF_MAX_WORKERS];
static struct respawn respawns[CONF_MAX_WORKERS + 1];
static pid_t pids[STATS_MAX_SLOTS + 2]; /* the master, the workers, the forwarder */
static struct metrics_src msrc;
static struct tls_ctx *tls_ctx;	    /* the running generation's; NULL without tls:// listeners */
static struct iplimit *iplimit;	    /* connections per address, for every generation's workers */
static struct ratelimit *ratelimit; /* Submits per second per client, the same */
static struct metrics_worker wview[STATS_MAX_SLOTS]; /* for /status */
static uint64_t next_sample_ms;
static struct metrics *mx;
static int sfd = -1;
static unsigned gen;
static int gen_ready;
static int stopping;
static uint64_t stop_kill_at;
static int reload_asker = -1; /* pidfd of `submitd -s reload`, waiting for SIGUSR2 */
static uint64_t reload_asker_until;
static int pid_file_fd = -1;

static double wall_time(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	size_t n;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (n = strlen(path)) >= sizeof(sa.sun_path))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) == -1)
		log_warn("notify %s", path);
	close(fd);
}

static void reload_answer(int ok)
{
	siginfo_t si;

	if (reload_asker == -1)
		return;
	/* What sigqueue() sends, through the pidfd taken when the asker asked. */
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGUSR2;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = ok ? 0 : 1;
	if (pidfd_send_signal(reload_asker, SIGUSR2, &si, 0) == -1 && errno != ESRCH)
		log_warn("reload: answering the asker");
	close(reload_asker);
	reload_asker = -1;
}

/* Remember who asked for the reload, by pidfd: a pid reused meanwhile never gets SIGUSR2. */
static void reload_ask(pid_t pid, uint64_t now)
{
	if (reload_asker != -1)
		close(reload_asker);
	reload_asker = pidfd_open(pid, 0);
	reload_asker_until = now + (uint64_t)MASTER_RELOAD_WAIT_S * 1000;
}

/* Slot i holds a worker of the current generation that is not draining. */
static int serving(int i)
{
	return children[i].pid > 0 && children[i].gen == gen && !children[i].draining;
}

static int count_running(void)
{
	int n = 0;
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (serving(i) && STATS_LOAD(shm->ctl.slot[i].state) == CTL_SLOT_RUNNING)
			n++;
	return n;
}

/* The distinct generations of the live workers, the current one included or not. */
static int generations(int *gens, int with_current)
{
	int n = 0;

	for (int i = 0; i < STATS_MAX_SLOTS; i++) {
		if (children[i].pid <= 0 || (!with_current && children[i].gen == gen))
			continue;
		int seen = 0;
		for (int g = 0; g < n; g++)
			seen |= gens[g] == (int)children[i].gen;
		if (!seen)
			gens[n++] = (int)children[i].gen;
	}
	return n;
}

static void refresh_src(void)
{
	int np = 0, gens[STATS_MAX_SLOTS];
	int64_t draining = 0;

	pids[np++] = getpid();
	for (int i = 0; i < STATS_MAX_SLOTS; i++) {
		struct metrics_worker *w = &wview[i];
		if (children[i].pid <= 0) {
			w->pid = 0;
			continue;
		}
		if (w->pid != children[i].pid) {
			memset(w, 0, sizeof(*w));
			w->pid = children[i].pid;
		}
		w->label = children[i].label;
		w->gen = children[i].gen;
		w->draining = children[i].draining;
		w->hung = children[i].hung;
		pids[np++] = children[i].pid;
		if (children[i].draining)
			draining += STATS_LOAD(shm->slot[i].connected);
	}
	if (children[FWD_CHILD].pid > 0)
		pids[np++] = children[FWD_CHILD].pid;
	msrc.npids = np;
	msrc.workers_configured = conf.workers;
	msrc.workers_running = count_running();
	msrc.generations = generations(gens, 1);
	msrc.draining_connections = draining;
	msrc.generation = gen;
	msrc.config_path = conf.path;
	msrc.config_hash = conf.hash;
}

/* Once a second: the request counts that /status turns into rates. */
static void sample_workers(uint64_t now)
{
	if (now < next_sample_ms)
		return;
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (wview[i].pid > 0)
			metrics_sample(&wview[i], &shm->slot[i], now);
	next_sample_ms = now + 1000;
}

/* Descriptors a worker must not keep: the master's own, at most max of them. */
static int master_fds(int *fds, int max)
{
	int n = 0;

	fds[n++] = sfd;
	metrics_forget(mx, fds, &n, max);
	listen_forget(fds, &n, max);
	return n;
}

/* Tell the workers which of them accept now (see fair_to_accept in worker.c). */
static void publish_active(void)
{
	uint32_t n = 0;

	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (serving(i))
			STATS_STORE(shm->ctl.active[n++], (uint16_t)i);
	STATS_STORE(shm->ctl.nactive, n);
}

static int free_slot(void)
{
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (children[i].pid == 0 && slot_label[i] == -1)
			return i;
	return -1;
}

/* The worker's side of the fork: entry s is its statistics slot too. */
static void worker_proc(int s, const struct inherit *in) __attribute__((noreturn));
static void worker_proc(int s, const struct inherit *in)
{
	int fds[CONF_MAX_LISTEN];
	uint8_t tls[CONF_MAX_LISTEN];
	struct worker_args a;

	a.conf = &conf;
	a.index = children[s].label;
	a.generation = gen;
	a.slot = &shm->slot[s];
	a.shm = shm;
	a.listen_fds = fds;
	a.listen_tls = tls;
	a.nlisten = listen_fds(fds, tls, CONF_MAX_LISTEN);
	a.tls = tls_ctx;
	a.iplimit = iplimit;
	a.ratelimit = ratelimit;
	a.close_fds = in->fds;
	a.nclose = in->n;
	a.master = in->master;
	worker_main(&a);
}

static void forwarder_proc(int e, const struct inherit *in) __attribute__((noreturn));
static void forwarder_proc(int e, const struct inherit *in)
{
	struct forwarder_args a;

	(void)e;
	a.conf = &conf;
	a.shm = shm;
	a.close_fds = in->fds;
	a.nclose = in->n;
	a.master = in->master;
	forwarder_main(&a);
}

/*
 * Fork the child of label into entry e, running proc, as
 * ngx_spawn_process does. 0 once it runs; -1 if fork failed (logged), with
 * the label's respawn due in RESPAWN_MAX_MS. stdio is flushed first so that
 * the child cannot write out the master's buffered lines again.
 */
static int spawn_process(int e, int label, child_proc *proc, uint64_t now)
{
	struct child *ch = &children[e];
	struct inherit in;
	pid_t pid;

	*ch = (struct child){.label = label, .gen = gen, .started_ms = now};
	if (label == FWD_LABEL)
		snprintf(ch->name, sizeof(ch->name), "forwarder");
	else
		snprintf(ch->name, sizeof(ch->name), "worker %d", label);
	in.n = master_fds(in.fds, (int)(sizeof(in.fds) / sizeof(in.fds[0])));
	in.master = getpid();
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1) {
		log_warn("fork %s", ch->name);
		respawns[label].at_ms = now + RESPAWN_MAX_MS;
		return -1;
	}
	if (pid == 0)
		proc(e, &in); /* never returns */
	ch->pid = pid;
	log_info("%s started, pid %d", ch->name, (int)pid);
	return 0;
}

static void spawn_worker(int label, uint64_t now)
{
	int s = free_slot();

	if (s == -1) {
		log_errorx("no free statistics slot for worker %d", label);
		respawns[label].at_ms = now + RESPAWN_MAX_MS;
		return;
	}
	stats_slot_reset(&shm->slot[s]);
	ctl_slot_reset(&shm->ctl.slot[s]);
	STATS_STORE(shm->ctl.slot[s].state, CTL_SLOT_STARTING);
	if (spawn_process(s, label, worker_proc, now) == -1)
		return;
	if ((uint32_t)s + 1 > shm->ctl.slot_hwm)
		STATS_STORE(shm->ctl.slot_hwm, (uint32_t)s + 1);
	slot_label[s] = label;
	publish_active();
}

/* The NATS forwarder (docs/NATS.md): one, while nats_servers is set. */
static void spawn_forwarder(uint64_t now)
{
	if (conf.nnats == 0 || stopping || children[FWD_CHILD].pid > 0)
		return;
	if (spawn_process(FWD_CHILD, FWD_LABEL, forwarder_proc, now) == 0)
		STATS_ADD(shm->fwd.starts, 1);
}

/* Start label's child: the worker of that label, or the forwarder (FWD_LABEL). */
static void spawn(int label, uint64_t now)
{
	respawns[label].at_ms = 0;
	if (label == FWD_LABEL)
		spawn_forwarder(now);
	else
		spawn_worker(label, now);
}

/* The same, after an exit that was asked for: no backoff left from earlier crashes. */
static void restart(int label, uint64_t now)
{
	respawns[label].backoff_ms = 0;
	spawn(label, now);
}

/* Labels whose respawns are live: the configured workers' and the forwarder's. */
static int label_live(int label)
{
	return label < conf.workers || label == FWD_LABEL;
}

/* The entry of label's serving child, -1 if none. */
static int current_child(int label)
{
	if (label == FWD_LABEL)
		return children[FWD_CHILD].pid > 0 ? FWD_CHILD : -1;
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (serving(i) && children[i].label == label)
			return i;
	return -1;
}

static void drain_child(int s, int sig, uint64_t now, long timeout_s)
{
	struct child *ch = &children[s];

	ch->draining = 1;
	ch->kill_at_ms = now + (uint64_t)timeout_s * 1000 + KILL_GRACE_MS;
	kill(ch->pid, sig);
	publish_active();
}

/* The forwarder finishes what it has in flight and exits; reap() decides on its successor. */
static void stop_forwarder(void)
{
	kill(children[FWD_CHILD].pid, SIGTERM);
	children[FWD_CHILD].draining = 1;
}

/* An exit the master asked for (drain, stop), or of a worker no longer configured. */
static int exit_expected(const struct child *ch)
{
	if (ch->draining || stopping)
		return 1;
	return ch->label != FWD_LABEL && (ch->gen != gen || ch->label >= conf.workers);
}

/*
 * Whether ch, just reaped, gets a successor: a worker after an exit nobody
 * asked for, the forwarder after any exit while it is configured (a reload
 * restarts it this way).
 */
static int wants_respawn(const struct child *ch, int expected)
{
	if (ch->label == FWD_LABEL)
		return !stopping && conf.nnats > 0;
	return !expected;
}

/* A worker's exit is a warning when unexpected; the forwarder's also when its status is not 0. */
static void log_exit(const struct child *ch, int status, int expected)
{
	if (ch->label == FWD_LABEL) {
		if (WIFSIGNALED(status) && !expected)
			log_warnx("%s (pid %d) killed by signal %d", ch->name, (int)ch->pid,
				  WTERMSIG(status));
		else if (!expected || WEXITSTATUS(status) != 0)
			log_warnx("%s (pid %d) exited with status %d", ch->name, (int)ch->pid,
				  WIFSIGNALED(status) ? 128 + WTERMSIG(status)
						      : WEXITSTATUS(status));
		else
			log_info("%s (pid %d) exited", ch->name, (int)ch->pid);
		return;
	}
	void (*say)(const char *, ...) = expected ? log_info : log_warnx;
	if (WIFSIGNALED(status))
		say("%s (pid %d) killed by signal %d", ch->name, (int)ch->pid, WTERMSIG(status));
	else
		say("%s (pid %d) exited with status %d", ch->name, (int)ch->pid,
		    WEXITSTATUS(status));
}

/*
 * ch's successor is due now, or after a backoff if ch crashed young: a child
 * that dies at start-up is not respawned in a tight loop.
 */
static void respawn_later(const struct child *ch, int crashed, uint64_t now)
{
	struct respawn *r = &respawns[ch->label];

	if (crashed && now - ch->started_ms < CRASH_LOOP_MS) {
		r->backoff_ms = backoff_next(r->backoff_ms, RESPAWN_MIN_MS, RESPAWN_MAX_MS);
		log_warnx("%s died %llu ms after start: respawning in %llu ms", ch->name,
			  (unsigned long long)(now - ch->started_ms),
			  (unsigned long long)r->backoff_ms);
		r->at_ms = now + r->backoff_ms;
	} else {
		r->backoff_ms = 0;
		r->at_ms = now;
	}
}

/* A worker's slot, once it is reaped: counters folded first, so totals never go down. */
static void worker_gone(int s, const struct child *ch)
{
	stats_fold(&retired[ch->label], &shm->slot[s]);
	STATS_STORE(shm->ctl.slot[s].state, CTL_SLOT_FREE);
	slot_label[s] = -1;
	publish_active();
	spoolm_reaped(ch->pid);
}

static int find_child(pid_t pid)
{
	for (int e = 0; e < NCHILDREN; e++)
		if (children[e].pid == pid)
			return e;
	return -1;
}

static void reap(uint64_t now)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int e = find_child(pid);
		if (e == -1) {
			/* As PID 1 (a container's init) it inherits orphans: reap, ignore. */
			log_debug("reaped pid %d, not a worker", (int)pid);
			continue;
		}
		struct child ch = children[e];
		children[e].pid = 0;
		if (e != FWD_CHILD)
			worker_gone(e, &ch);
		int expected = exit_expected(&ch);
		log_exit(&ch, status, expected);
		if (!wants_respawn(&ch, expected))
			continue;
		if (e != FWD_CHILD) {
			if (WIFSIGNALED(status))
				msrc.restarts_signal++;
			else
				msrc.restarts_exit++;
		}
		respawn_later(&ch, !expected, now);
	}
}

/* The current generation serves: retire the older ones. */
static void on_ready(uint64_t now)
{
	int draining_gens[STATS_MAX_SLOTS], ndg;

	gen_ready = 1;
	log_info("ready: %d workers running", conf.workers);
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (children[i].pid > 0 && children[i].gen != gen && !children[i].draining)
			drain_child(i, SIGTERM, now, conf.shutdown_timeout);
	listen_close_retiring();
	/* Bound the old generations still draining: stop the oldest hard. */
	ndg = generations(draining_gens, 0);
	while (ndg > conf.max_draining) {
		int oldest = 0;
		for (int g = 1; g < ndg; g++)
			if (draining_gens[g] < draining_gens[oldest])
				oldest = g;
		log_warnx("more than %ld generations draining: stopping generation %d now",
			  conf.max_draining, draining_gens[oldest]);
		for (int i = 0; i < STATS_MAX_SLOTS; i++)
			if (children[i].pid > 0 && (int)children[i].gen == draining_gens[oldest])
				kill(children[i].pid, SIGKILL);
		draining_gens[oldest] = draining_gens[--ndg];
	}
	notify("READY=1\nSTATUS=serving");
	reload_answer(1);
}

/* A worker whose loop stopped stamping its heartbeat is killed; reap() replaces it. */
static void watchdog(uint64_t now)
{
	uint64_t limit = (uint64_t)conf.worker_timeout * 1000;

	if (limit == 0)
		return;
	for (int i = 0; i < STATS_MAX_SLOTS; i++) {
		struct child *ch = &children[i];
		if (ch->pid <= 0 || ch->hung)
			continue;
		uint64_t hb = STATS_LOAD(shm->ctl.slot[i].heartbeat_ms);
		if (STATS_LOAD(shm->ctl.slot[i].state) == CTL_SLOT_STARTING)
			hb = ch->started_ms;
		if (now > hb + limit) {
			log_errorx("worker %d (pid %d) unresponsive for %llu ms: killing it",
				   ch->label, (int)ch->pid, (unsigned long long)(now - hb));
			kill(ch->pid, SIGKILL);
			ch->hung = 1;
		}
	}
}

/*
 * Start the endpoint c asks for, if it differs from old's, into *m (NULL
 * when disabled); *m is mx when nothing changes. The caller swaps it in
 * with commit_metrics() once the rest of the reload has succeeded, so a
 * failed reload leaves the running endpoint where it was.
 */
static int open_metrics(const struct conf *old, const struct conf *c, struct metrics **m)
{
	char err[256], name[NET_ADDRSTRLEN];
	struct net_addr a;

	*m = mx;
	if (old != NULL && strcmp(old->metrics_listen, c->metrics_listen) == 0)
		return 0;
	*m = NULL;
	if (c->metrics_listen[0] == '\0')
		return 0;
	if ((*m = metrics_start(&c->metrics_addr, &msrc, err, sizeof(err))) == NULL) {
		log_errorx("%s", err);
		return -1;
	}
	metrics_addr(*m, &a);
	net_addr_str(&a, name, sizeof(name));
	log_info("metrics on %s", name);
	return 0;
}

static void commit_metrics(struct metrics *m, int ok)
{
	if (m == mx)
		return;
	if (!ok) {
		metrics_stop(m);
		return;
	}
	metrics_stop(mx);
	mx = m;
}

static void swap_str(char **a, char **b)
{
	char *t = *a;

	*a = *b;
	*b = t;
}

/*
 * The TLS context c's tls:// listeners need (none: *out NULL), loaded
 * before anything else of a start or reload changes. -1 (logged) if a
 * file is missing, bad or expired; a close expiry is logged as a warning.
 */
static int load_tls(const struct conf *c, struct tls_ctx **out)
{
	char err[512];

	*out = NULL;
	if (c->nlisten_tls == 0)
		return 0;
	if ((*out = tls_ctx_load(c, err, sizeof(err))) == NULL) {
		log_errorx("%s", err);
		return -1;
	}
	if (tls_check(c, *out, TLS_WARN_DAYS, err, sizeof(err)) != 0)
		log_warnx("%s", err);
	return 0;
}

/* The new context serves from the next fork on; the workers running keep their copy. */
static void commit_tls(struct tls_ctx *x)
{
	tls_ctx_free(tls_ctx);
	tls_ctx = x;
	msrc.tls_expiry = x != NULL ? tls_ctx_expiry(x) : 0;
}

static void reload(uint64_t now)
{
	struct tls_ctx *tx;
	struct conf next;
	struct metrics *m;
	char err[512], msg[64];

	/* systemd's notify-reload protocol takes RELOADING=1 only with the time it began. */
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)mono_us());
	notify(msg);
	log_info("reload: reading %s", conf.path);
	msrc.reload_last_ts = wall_time();
	if (conf_load(conf.path, &next, err, sizeof(err)) == -1) {
		log_errorx("%s", err);
		goto failed;
	}
	if (strcmp(next.user, conf.user) != 0 || strcmp(next.pid_file, conf.pid_file) != 0)
		log_warnx("reload: user and pid_file take effect only after a restart");
	if (strcmp(next.spool_dir, conf.spool_dir) != 0)
		log_warnx("reload: spool_dir takes effect only after a restart");
	if (load_tls(&next, &tx) == -1) {
		conf_free(&next);
		goto failed;
	}
	if (open_metrics(&conf, &next, &m) == -1) {
		tls_ctx_free(tx);
		conf_free(&next);
		goto failed;
	}
	if (listen_apply(&next, gen) == -1) {
		commit_metrics(m, 0);
		tls_ctx_free(tx);
		conf_free(&next);
		goto failed;
	}
	commit_metrics(m, 1);
	commit_tls(tx);
	if (strcmp(next.log_file, conf.log_file) != 0 &&
	    log_init(next.log_file, next.log_level) == -1)
		log_warn("reload: cannot open log_file %s, keeping the old one", next.log_file);
	log_set_level(next.log_level);
	/* Keep what a reload cannot change: swapped, not copied, so nothing here can fail. */
	swap_str(&next.user, &conf.user);
	swap_str(&next.pid_file, &conf.pid_file);
	swap_str(&next.spool_dir, &conf.spool_dir);
	conf_free(&conf);
	conf = next;
	spoolm_conf(&conf);
	/* The forwarder restarts with the new settings; it resumes from its checkpoints. */
	if (children[FWD_CHILD].pid > 0)
		stop_forwarder();
	else
		restart(FWD_LABEL, now);

	gen++;
	gen_ready = 0;
	for (int l = 0; l < conf.workers; l++)
		restart(l, now);
	if (conf.workers > msrc.nlabels)
		msrc.nlabels = conf.workers;
	msrc.reload_ok = 1;
	msrc.reload_ts = wall_time();
	log_info("reload: configuration %s applied, generation %u starting", conf.path, gen);
	return;
failed:
	msrc.reload_ok = 0;
	msrc.reloads_failed++;
	log_errorx("reload failed, keeping the running configuration");
	notify("READY=1\nSTATUS=reload failed");
	reload_answer(0);
}

/* sig: the signal received; SIGQUIT drains the workers as SIGTERM does. */
static void stop(int sig, uint64_t now)
{
	long t = sig == SIGINT ? 0 : conf.shutdown_timeout;

	if (!stopping)
		log_info("SIG%s: stopping", sigabbrev_np(sig));
	stopping = 1;
	if (sig == SIGQUIT)
		sig = SIGTERM;
	notify("STOPPING=1");
	/* Stop listening before the workers start to drain (see listen_stop). */
	listen_stop();
	stop_kill_at = now + (uint64_t)t * 1000 + KILL_GRACE_MS;
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (children[i].pid > 0)
			drain_child(i, sig, now, t);
}

static void add_worker(int delta, uint64_t now)
{
	int n = conf.workers + delta;

	if (n < 1 || n > CONF_MAX_WORKERS) {
		log_warnx("workers stays %d (limits 1..%d)", conf.workers, CONF_MAX_WORKERS);
		return;
	}
	conf.workers = n;
	conf.workers_auto = 0;
	log_info("workers: %d", n);
	if (delta > 0) {
		if (n > msrc.nlabels)
			msrc.nlabels = n;
		spawn(n - 1, now);
	} else {
		int s = current_child(n);
		respawns[n].at_ms = 0;
		if (s >= 0)
			drain_child(s, SIGTERM, now, conf.shutdown_timeout);
	}
}

static void reopen_log(void)
{
	struct passwd *pw;

	if (log_reopen() == -1) {
		log_warn("reopen %s", conf.log_file);
		return;
	}
	/*
	 * The workers reopen the file by name after the master, as the user
	 * they dropped to; a file the master just created is root's. Like
	 * nginx, hand it to that user.
	 */
	if (conf.log_file[0] == '\0' || conf.user[0] == '\0' || geteuid() != 0)
		return;
	if ((pw = getpwnam(conf.user)) == NULL || fchown(log_fileno(), pw->pw_uid, (gid_t)-1) == -1)
		log_warn("reopen: cannot give %s to user %s", conf.log_file, conf.user);
}

static void forward(int sig)
{
	for (int e = 0; e < NCHILDREN; e++)
		if (children[e].pid > 0)
			kill(children[e].pid, sig);
}

static void on_signals(uint64_t now)
{
	struct signalfd_siginfo si;

	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap(now);
			break;
		case SIGHUP:
			if (stopping)
				break;
			if (si.ssi_code == SI_QUEUE && si.ssi_int == MASTER_RELOAD_ASK)
				reload_ask((pid_t)si.ssi_pid, now);
			reload(now);
			break;
		case SIGTERM:
		case SIGQUIT:
			stop((int)si.ssi_signo, now);
			break;
		case SIGINT:
			stop(SIGINT, now);
			break;
		case SIGUSR1:
			reopen_log();
			forward(SIGUSR1);
			break;
		case SIGTTIN:
			if (!stopping)
				add_worker(1, now);
			break;
		case SIGTTOU:
			if (!stopping)
				add_worker(-1, now);
			break;
		case SIGUSR2:
			log_warnx("SIGUSR2 ignored (binary upgrade is not supported)");
			break;
		default:
			break;
		}
	}
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t old = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			log_warn("setrlimit RLIMIT_NOFILE %llu", (unsigned long long)rl.rlim_max);
			rl.rlim_cur = old;
		}
	}
	/* A worker needs a few descriptors of its own besides its clients. */
	unsigned long long lim = (unsigned long long)rl.rlim_cur;
	unsigned long long per = lim > 128 ? lim - 64 : lim > 8 ? lim - 8 : 0;
	log_info("open files limit %llu: up to %llu connections per worker (max_connections %ld)",
		 (unsigned long long)rl.rlim_cur, per, conf.max_connections);
	if ((unsigned long long)conf.max_connections > per)
		log_warnx("max_connections %ld exceeds what the open files limit allows (%llu)",
			  conf.max_connections, per);
}

/* The lock on the pid file, not the pid in it, says that a master runs (see proc.h). */
static int pid_file_write(void)
{
	char err[4400];
	pid_t holder;

	if (conf.pid_file[0] == '\0')
		return 0;
	if ((pid_file_fd = proc_pidfile_acquire(conf.pid_file, &holder, err, sizeof(err))) == -1) {
		log_errorx("%s", err);
		return -1;
	}
	return 0;
}

/* Refuse to start, before binding anything, while another master holds the pid file. */
static int pid_file_busy(void)
{
	pid_t h;

	if (conf.pid_file[0] == '\0' || (h = proc_pidfile_holder(conf.pid_file)) == 0)
		return 0;
	if (h == -1 && errno != ESRCH)
		return 0; /* pid_file_write() says what is wrong */
	log_errorx("another submitd is running (pid %d, %s)", h > 0 ? (int)h : 0, conf.pid_file);
	return 1;
}

static void pid_file_remove(void)
{
	proc_pidfile_release(conf.pid_file, pid_file_fd);
	pid_file_fd = -1;
}

/* Signals come through a signalfd read in the loop; none runs a handler. */
static void block_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTTIN);
	sigaddset(&set, SIGTTOU);
	/* Unused, but its default action would end the master (nginx users send it to upgrade). */
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd");
}

/* The shared-memory segment, and what /metrics reads besides it. */
static void map_stats(void)
{
	char err[256];
	if ((shm = stats_map(err, sizeof(err))) == NULL)
		fatalx("statistics: %s", err);
	msrc.shm = shm;
	if ((iplimit = iplimit_map(err, sizeof(err))) == NULL)
		fatalx("connections per address: %s", err);
	if ((ratelimit = ratelimit_map(err, sizeof(err))) == NULL)
		fatalx("Submits per client: %s", err);
	msrc.slot_label = slot_label;
	msrc.retired = retired;
	msrc.nlabels = conf.workers;
	msrc.reload_ok = 1;
	msrc.start_time = wall_time();
	msrc.reload_ts = msrc.start_time; /* as Prometheus does: the first load counts */
	msrc.pids = pids;
	msrc.workers = wview;
}

/*
 * Everything up to the first generation's fork: -1 if the master must not
 * run (the reason is logged), 0 once the children are started.
 */
static int start(struct conf *c, int detach)
{
	uint64_t now;

	conf = *c;
	memset(c, 0, sizeof(*c));
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		slot_label[i] = -1;
	log_set_tag(NULL);
	raise_nofile();

	/* Before anything else can fail: a second instance must not touch the first. */
	if (pid_file_busy())
		return -1;

	block_signals();
	map_stats();

	struct metrics *m;
	struct tls_ctx *tx;
	if (load_tls(&conf, &tx) == -1)
		return -1;
	commit_tls(tx);
	if (listen_apply(&conf, gen) == -1 || open_metrics(NULL, &conf, &m) == -1)
		return -1;
	commit_metrics(m, 1);
	if (spoolm_start(&conf, shm) == -1)
		return -1;
	/* As nginx: whatever can fail has been tried, so the caller's exit status is true. */
	if (detach) {
		char msg[1024];
		int status, r = proc_detach(&status, msg, sizeof(msg));
		if (r == -1)
			fatal("detach");
		if (r == 1) {
			if (msg[0] != '\0')
				fprintf(stderr, "submitd: %s\n", msg);
			_exit(status);
		}
	}
	if (pid_file_write() == -1)
		return -1;
	proc_detach_report(NULL);
	proc_title_set("master");
	now = mono_ms();
	gen = 1;
	for (int l = 0; l < conf.workers; l++)
		spawn(l, now);
	spawn(FWD_LABEL, now);
	return 0;
}

/* Lower *timeout to reach a deadline at_ms (0: none). */
static void timeout_until(int *timeout, uint64_t at_ms, uint64_t now)
{
	if (at_ms == 0)
		return;
	uint64_t t = at_ms > now ? at_ms - now : 0;
	if (t < (uint64_t)*timeout)
		*timeout = (int)t;
}

/* How long the loop may sleep: until the next timer of the master or of libmicrohttpd. */
static int poll_timeout(uint64_t now)
{
	int timeout = 1000;

	if (mx != NULL) {
		int t = metrics_timeout(mx);
		if (t >= 0 && t < timeout)
			timeout = t;
	}
	if (next_sample_ms > now && next_sample_ms - now < (uint64_t)timeout)
		timeout = (int)(next_sample_ms - now);
	if (!gen_ready && !stopping)
		timeout = timeout > 10 ? 10 : timeout; /* workers report ready in shared memory */
	for (int l = 0; l <= FWD_LABEL; l++)
		if (label_live(l))
			timeout_until(&timeout, respawns[l].at_ms, now);
	return timeout;
}

/* One round while stopping: 1 once every child is gone. */
static int stop_tick(uint64_t now)
{
	int alive = 0;
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		alive += children[i].pid > 0;
	/*
	 * The forwarder goes last: workers that wait for the stream
	 * (ack_after = stream) need it until they have drained.
	 */
	if (alive == 0 && children[FWD_CHILD].pid > 0 && !children[FWD_CHILD].draining)
		stop_forwarder();
	alive += children[FWD_CHILD].pid > 0;
	if (alive == 0)
		return 1;
	if (now >= stop_kill_at) {
		log_warnx("%d workers still running past the shutdown timeout: killing", alive);
		forward(SIGKILL);
		stop_kill_at = now + 60000;
	}
	return 0;
}

/* Draining workers past their deadline are killed. */
static void kill_overdue_drains(uint64_t now)
{
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (children[i].pid > 0 && children[i].draining && now >= children[i].kill_at_ms) {
			log_warnx("worker %d (pid %d) still draining: killing", children[i].label,
				  (int)children[i].pid);
			kill(children[i].pid, SIGKILL);
			children[i].kill_at_ms = now + 60000;
		}
}

/* One round while serving: respawns that are due, readiness, the watchdog, drain deadlines. */
static void serve_tick(uint64_t now)
{
	for (int l = 0; l <= FWD_LABEL; l++)
		if (label_live(l) && respawns[l].at_ms && now >= respawns[l].at_ms &&
		    current_child(l) < 0)
			spawn(l, now);
	if (!gen_ready && count_running() == conf.workers)
		on_ready(now);
	watchdog(now);
	kill_overdue_drains(now);
}

/* Every worker is folded by now: the totals are final, and /metrics is gone. */
static void log_totals(void)
{
	uint64_t req = 0, rsp = 0;
	for (int l = 0; l < msrc.nlabels; l++) {
		req += retired[l].c[STATS_req_submit] + retired[l].c[STATS_req_conn];
		rsp += retired[l].c[STATS_rsp_submit] + retired[l].c[STATS_rsp_conn];
	}
	log_info("stopped: %llu requests received, %llu acks sent", (unsigned long long)req,
		 (unsigned long long)rsp);
}

int master_run(struct conf *c, int detach)
{
	uint64_t now, next_spool_scan = 0;

	if (start(c, detach) == -1)
		return 1;
	for (;;) {
		struct pollfd pfd[2];
		int npfd = 1, timeout;

		now = mono_ms();
		pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		if (mx != NULL)
			pfd[npfd++] = (struct pollfd){.fd = metrics_fd(mx), .events = POLLIN};
		timeout = poll_timeout(now);

		if (poll(pfd, (nfds_t)npfd, timeout) == -1 && errno != EINTR)
			fatal("poll");
		now = mono_ms();
		if (pfd[0].revents)
			on_signals(now);
		if (reload_asker != -1 && now >= reload_asker_until) {
			close(reload_asker); /* it has given up waiting */
			reload_asker = -1;
		}
		refresh_src();
		sample_workers(now);
		if (mx != NULL)
			metrics_run(mx);
		if (now >= next_spool_scan) {
			spoolm_tick();
			next_spool_scan = now + 1000;
		}
		if (stopping) {
			if (stop_tick(now))
				break;
			continue;
		}
		serve_tick(now);
	}
	log_totals();
	metrics_stop(mx);
	pid_file_remove();
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * rsctl: hosts one runstate and --vcpus simulated vCPU threads, and reads
 * commands from a file or standard input.  The interactive demo and the
 * scenario harness; its language is specified in docs/rsctl.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runstate.h"
#include "rsutil.h"

static long long wait_ns = 10LL * 1000000000LL;  /* --wait-ms */
#define MAX_EVENTS  64
#define MAX_VCPUS   4096
#define MAX_TOKENS  4

#if defined(__SANITIZE_THREAD__)
#define KICK_SIGNAL_DEFAULT false  /* TSan delivers signals late */
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KICK_SIGNAL_DEFAULT false
#endif
#endif
#ifndef KICK_SIGNAL_DEFAULT
#define KICK_SIGNAL_DEFAULT true
#endif

#define KICK_SIGNAL SIGUSR1

/* A command run on a vCPU's own thread (`exclusive N`, `end-exclusive N`). */
enum job_kind { JOB_BEGIN = 1, JOB_END };
/* job_state: the management thread posts (IDLE -> POSTED) and may take a
 * job back that was not taken (POSTED -> IDLE); the vCPU takes it
 * (POSTED -> TAKEN) and finishes it (TAKEN -> DONE); the management
 * thread reads the result and makes it IDLE. */
enum { JOB_IDLE, JOB_POSTED, JOB_TAKEN, JOB_DONE };

/* A simulated vCPU.  Odd-numbered ones enter a "guest" that only a kick
 * ends, as a KVM vCPU in KVM_RUN does. */
struct vcpu {
	rs_vcpu rv;
	pthread_t thread;
	int index;
	bool blocking;
	_Atomic uint32_t kick_word;     /* futex kick (TSan builds) */
	_Atomic bool exit_flag;         /* set by unplug before the request */
	_Atomic uint64_t slices;         /* slices ended */
	_Atomic uint64_t entries;        /* slices begun */
	_Atomic int in_guest;
	_Atomic uint64_t epoch;          /* run epoch of the last slice entry */
	sem_t registered;
	int reg_result;
	_Atomic int job;                 /* enum job_kind, set before POSTED */
	_Atomic int job_state;
	int job_result;                  /* written before DONE */
	/* `mark` and `ran`, management thread only. */
	uint64_t mark_entries, mark_slices;
	bool ran;
};

static rs_runstate *rs;
static struct vcpu *vcpus[MAX_VCPUS];
static int nvcpus;
static bool kick_signal = KICK_SIGNAL_DEFAULT;
static _Atomic uint64_t run_epoch;
static _Atomic bool violation;

/* rsctl's account of the exclusive section: who holds it, as the commands
 * returned (management thread only).  Commands run one at a time, so no
 * section ever waits in the library's queue between two commands. */
#define EXCL_NONE  (-2)
#define EXCL_MGMT  (-1)
static int excl_owner = EXCL_NONE;

static _Thread_local volatile sig_atomic_t immediate_exit;

static void on_kick_signal(int sig)
{
	(void)sig;
	immediate_exit = 1;
}

static void kick_vcpu(rs_vcpu *rv, void *opaque)
{
	struct vcpu *v = opaque;

	(void)rv;
	if (kick_signal) {
		pthread_kill(v->thread, KICK_SIGNAL);
	} else {
		atomic_store_explicit(&v->kick_word, 1, memory_order_release);
		rsu_futex_wake((uint32_t *)&v->kick_word, 1);
	}
}

/* A guest slice that ends only on a kick: with signals, the signal is
 * unblocked only inside ppoll (as KVM_SET_SIGNAL_MASK does for KVM_RUN), so
 * a kick sent before the entry makes the entry return at once. */
static void blocking_slice(struct vcpu *v, const sigset_t *run_mask)
{
	if (kick_signal) {
		while (!immediate_exit && !atomic_load(&v->exit_flag))
			ppoll(NULL, 0, NULL, run_mask);
		immediate_exit = 0;
	} else {
		while (!atomic_exchange_explicit(&v->kick_word, 0, memory_order_acquire) &&
		       !atomic_load(&v->exit_flag))
			rsu_futex_wait((uint32_t *)&v->kick_word, 0, -1);
	}
}

static void busy_slice(void)
{
	for (volatile int i = 0; i < 200; i++)
		;
}

/*
 * Run the command posted to this vCPU, if any, on its thread.  True if one
 * ran: the caller goes back through rs_vcpu_enter() before guest code (a
 * begin takes the vCPU out).
 */
static bool run_job(struct vcpu *v)
{
	int st = JOB_POSTED, r;

	/* Acquire: pairs with post_job()'s release of POSTED (the kind). */
	if (!atomic_compare_exchange_strong_explicit(&v->job_state, &st, JOB_TAKEN,
						     memory_order_acquire, memory_order_relaxed))
		return false;
	if (atomic_load_explicit(&v->job, memory_order_relaxed) == JOB_BEGIN)
		r = rs_exclusive_begin(rs, wait_ns);
	else
		r = rs_exclusive_end(rs);
	v->job_result = r;
	/* Release: pairs with post_job()'s acquire of DONE (the result, and
	 * what the section's begin acquired from the other vCPUs). */
	atomic_store_explicit(&v->job_state, JOB_DONE, memory_order_release);
	return true;
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	sigset_t block, run_mask;

	sigemptyset(&block);
	sigaddset(&block, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &block, &run_mask);
	sigdelset(&run_mask, KICK_SIGNAL);

	v->reg_result = rs_vcpu_register(rs, &v->rv, kick_vcpu, v);
	sem_post(&v->registered);
	if (v->reg_result)
		return NULL;
	for (;;) {
		int r = rs_vcpu_enter(&v->rv);

		if (r == RS_VCPU_EXIT || atomic_load(&v->exit_flag))
			break;
		if (r == RS_VCPU_WORK) {
			run_job(v);     /* out: parked, or kept out */
			continue;
		}
		if (r != 0)
			continue;
		do {
			/* Between slices, active, as an emulator handles an
			 * exit.  The work request that came with the job is
			 * taken by the next rs_vcpu_enter(), with no job. */
			if (run_job(v))
				break;
			atomic_store_explicit(&v->epoch, atomic_load(&run_epoch), memory_order_relaxed);
			atomic_fetch_add_explicit(&v->entries, 1, memory_order_relaxed);
			atomic_store_explicit(&v->in_guest, 1, memory_order_relaxed);
			if (v->blocking)
				blocking_slice(v, &run_mask);
			else
				busy_slice();
			atomic_fetch_add_explicit(&v->slices, 1, memory_order_relaxed);
			atomic_store_explicit(&v->in_guest, 0, memory_order_release);
		} while (rs_may_run(rs) && !atomic_load(&v->exit_flag));
	}
	/* A thread must end its section before it exits (RS_ENOTHELD if it
	 * holds none). */
	rs_exclusive_end(rs);
	rs_vcpu_unregister(&v->rv);
	return NULL;
}

static int hotplug(void)
{
	struct vcpu *v;

	if (nvcpus == MAX_VCPUS)
		return -1;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -1;
	v->index = nvcpus;
	v->blocking = nvcpus % 2 == 1;
	sem_init(&v->registered, 0, 0);
	if (pthread_create(&v->thread, NULL, vcpu_main, v)) {
		free(v);
		return -1;
	}
	while (sem_wait(&v->registered) && errno == EINTR)
		;
	if (v->reg_result) {
		pthread_join(v->thread, NULL);
		free(v);
		return -1;
	}
	vcpus[nvcpus++] = v;
	return 0;
}

static int unplug(void)
{
	struct vcpu *v;

	if (!nvcpus)
		return -1;
	v = vcpus[--nvcpus];
	if (excl_owner == v->index)
		excl_owner = EXCL_NONE;   /* its thread ends it on the way out */
	atomic_store(&v->exit_flag, true);
	rs_vcpu_request(&v->rv, RS_REQ_EXIT);
	kick_vcpu(&v->rv, v);
	pthread_join(v->thread, NULL);
	sem_destroy(&v->registered);
	free(v);
	return 0;
}

static void report_violation(const char *fmt, const char *what)
{
	fprintf(stderr, "rsctl: violation: ");
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	atomic_store(&violation, true);
}

/*
 * For check_ms, no vCPU but `except` (-1: none) may execute a guest slice:
 * the VM is stopped, or (section) it runs while a section is held, and
 * `except` is the owner's vCPU.
 */
static void check_kept_out(const char *cmd, int check_ms, bool section, int except)
{
	uint64_t before[MAX_VCPUS], end = rsu_now_ns() + (uint64_t)check_ms * 1000000u;

	for (int i = 0; i < nvcpus; i++) {
		if (i == except)
			continue;
		before[i] = atomic_load(&vcpus[i]->slices);
		if (atomic_load_explicit(&vcpus[i]->in_guest, memory_order_acquire)) {
			report_violation(section ? "vCPU in guest code during a section after '%s' returned"
						 : "vCPU in guest code after '%s' returned", cmd);
			return;
		}
	}
	do {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
		for (int i = 0; i < nvcpus; i++)
			if (i != except && (atomic_load(&vcpus[i]->slices) != before[i] ||
					    atomic_load(&vcpus[i]->in_guest))) {
				report_violation(section ? "vCPU ran a guest slice during a section after '%s'"
							 : "vCPU ran a guest slice while stopped after '%s'", cmd);
				return;
			}
	} while (rsu_now_ns() < end);
}

/* ---------------------------------------------------------------------------
 * Events: rsctl keeps the newest MAX_EVENTS since the last `events`.
 */
static uint64_t ev_cursor;
static enum rs_event_kind ev_buf[MAX_EVENTS];
static unsigned ev_count;      /* kept, <= MAX_EVENTS */
static uint64_t ev_dropped;

static void collect_events(void)
{
	struct rs_event e[32];
	uint64_t lost;
	int n;

	while ((n = rs_events_read(rs, &ev_cursor, e, 32, sizeof(e[0]), &lost)) > 0 || lost) {
		ev_dropped += lost;
		for (int i = 0; i < n; i++) {
			if (ev_count == MAX_EVENTS) {
				memmove(ev_buf, ev_buf + 1, sizeof(ev_buf[0]) * (MAX_EVENTS - 1));
				ev_count--;
				ev_dropped++;
			}
			ev_buf[ev_count++] = e[i].kind;
		}
		if (n < 32)
			break;
	}
}

static void print_events(void)
{
	collect_events();
	fputs("events", stdout);
	if (ev_dropped)
		printf(" LOST:%llu", (unsigned long long)ev_dropped);
	if (!ev_count && !ev_dropped)
		fputs(" -", stdout);
	for (unsigned i = 0; i < ev_count; i++)
		fputs(ev_buf[i] == RS_EVENT_STOP ? " STOP" : " RESUME", stdout);
	fputc('\n', stdout);
	ev_count = 0;
	ev_dropped = 0;
}

static void print_status(void)
{
	static const char *const lock_order[] = { "debug", "savevm", "pre-migrate", "restore" };
	uint64_t w = rs_word(rs);
	struct rs_state st = { .size = sizeof(st) };
	bool any = false;

	rs_decode(w, &st);
	printf("%s locks=", st.running ? "running" : "stopped");
	for (int i = 0; i < 4; i++) {
		if (st.locks & (1u << rs_lock_parse(lock_order[i]))) {
			printf("%s%s", any ? "," : "", lock_order[i]);
			any = true;
		}
	}
	if (st.io_error) {
		printf("%sio-error", any ? "," : "");
		any = true;
	}
	if (!any)
		fputc('-', stdout);
	printf(" pause=%s legacy=%s\n", rs_pause_name(st.pause), rs_legacy_status(w));
}

static bool is_running(void)
{
	struct rs_state st = { .size = sizeof(st) };

	rs_decode(rs_word(rs), &st);
	return st.running;
}

/* May vCPU i run guest code now, by rsctl's account: the VM runs, and no
 * section is held or vCPU i's thread holds it. */
static bool may_run_now(int i)
{
	return is_running() && (excl_owner == EXCL_NONE || excl_owner == i);
}

/* `vcpus`: wait until every vCPU that may run entered a slice since the
 * VM last started, then count. */
static void print_vcpus(void)
{
	unsigned reg, out;

	if (is_running()) {
		uint64_t end = rsu_now_ns() + (uint64_t)wait_ns, epoch = atomic_load(&run_epoch);
		int i = 0;

		while (i < nvcpus) {
			if (!may_run_now(i) || atomic_load(&vcpus[i]->epoch) == epoch) {
				i++;
				continue;
			}
			if (rsu_now_ns() > end) {
				puts("error: timeout");
				report_violation("%s", "a vCPU did not run within the wait limit while running");
				return;
			}
			nanosleep(&(struct timespec){ 0, 100000 }, NULL);
		}
	}
	rs_vcpu_count(rs, &reg, &out);
	printf("vcpus=%u quiescent=%u\n", reg, out);
}

/* `mark`: from now on, `ran` tells which vCPUs were in guest code. */
static void mark_vcpus(void)
{
	for (int i = 0; i < nvcpus; i++) {
		struct vcpu *v = vcpus[i];

		v->mark_slices = atomic_load(&v->slices);
		v->mark_entries = atomic_load(&v->entries);
		v->ran = false;
	}
	puts("ok");
}

/* Has vCPU i been inside a guest slice since the mark?  Inside one now,
 * or it began or ended one since (one it was in at the mark ended since,
 * or it is still in it). */
static bool update_ran(int i)
{
	struct vcpu *v = vcpus[i];

	if (!v->ran)
		v->ran = atomic_load(&v->in_guest) || atomic_load(&v->entries) != v->mark_entries ||
			 atomic_load(&v->slices) != v->mark_slices;
	return v->ran;
}

/*
 * `ran`: wait, within the wait limit, until every vCPU that may run now has
 * been in guest code since the mark, then watch for check_ms more; print
 * the vCPUs that were.  One that may run and still was not is a violation.
 */
static void print_ran(int check_ms)
{
	uint64_t end = rsu_now_ns() + (uint64_t)wait_ns;
	bool all = nvcpus > 0, timed_out = false, missing = false;
	int i;

	for (;;) {
		for (i = 0; i < nvcpus; i++)
			if (!update_ran(i) && may_run_now(i))
				break;
		if (i == nvcpus)
			break;
		if (rsu_now_ns() > end) {
			timed_out = true;
			break;
		}
		nanosleep(&(struct timespec){ 0, 100000 }, NULL);
	}
	for (end = rsu_now_ns() + (uint64_t)check_ms * 1000000u; rsu_now_ns() < end;) {
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		for (i = 0; i < nvcpus; i++)
			update_ran(i);
	}
	for (i = 0; i < nvcpus; i++) {
		all = all && update_ran(i);
		missing = missing || (timed_out && !vcpus[i]->ran && may_run_now(i));
	}
	fputs("ran", stdout);
	if (all) {
		fputs(" all", stdout);
	} else {
		bool any = false;

		for (i = 0; i < nvcpus; i++) {
			if (vcpus[i]->ran) {
				printf("%c%d", any ? ',' : ' ', i);
				any = true;
			}
		}
		if (!any)
			fputs(" -", stdout);
	}
	fputc('\n', stdout);
	if (missing)
		report_violation("%s", "a vCPU that may run was not in guest code within the wait limit");
}

/* `dump`: the library's description, several lines, then `end`. */
static void print_dump(void)
{
	int need = rs_dump(rs, NULL, 0);
	char *buf = need > 0 ? malloc((size_t)need + 1) : NULL;

	if (buf) {
		rs_dump(rs, buf, (size_t)need + 1);
		fputs(buf, stdout);
		if (need && buf[need - 1] != '\n')
			fputc('\n', stdout);
		free(buf);
	}
	puts("end");
}

/* ---------------------------------------------------------------------------
 * Commands
 */

static int split(char *line, char **tok)
{
	int n = 0;

	for (char *p = strtok(line, " \t"); p; p = strtok(NULL, " \t")) {
		if (n == MAX_TOKENS)
			return -1;
		tok[n++] = p;
	}
	return n;
}

static void print_result(int r)
{
	if (r == 0)
		puts("ok");
	else
		printf("error: %s\n", rs_strerror(r));
}

/* A synchronous stopping call's result: a timeout is also a violation. */
static void print_stop_result(const char *cmd, int r)
{
	print_result(r);
	if (r == RS_ETIMEDOUT)
		report_violation("'%s' timed out waiting for the vCPUs", cmd);
}

/*
 * Run a section command on vCPU v's thread: post it, then a work request,
 * which wakes the vCPU if it is parked and kicks it if it is active.  Its
 * result, or 1 if the vCPU did not take it within the wait limit (it is
 * then taken back: it will never run).
 */
static int post_job(struct vcpu *v, enum job_kind kind)
{
	uint64_t end = rsu_now_ns() + (uint64_t)wait_ns;
	int st, r;

	atomic_store_explicit(&v->job, kind, memory_order_relaxed);
	/* Release: pairs with run_job()'s acquire (the kind). */
	atomic_store_explicit(&v->job_state, JOB_POSTED, memory_order_release);
	rs_vcpu_request(&v->rv, RS_REQ_WORK);
	for (;;) {
		/* Acquire: pairs with run_job()'s release of DONE. */
		st = atomic_load_explicit(&v->job_state, memory_order_acquire);
		if (st == JOB_DONE)
			break;
		if (st == JOB_POSTED && rsu_now_ns() > end &&
		    atomic_compare_exchange_strong_explicit(&v->job_state, &st, JOB_IDLE,
							    memory_order_relaxed, memory_order_relaxed))
			return 1;
		nanosleep(&(struct timespec){ 0, 100000 }, NULL);
	}
	r = v->job_result;
	atomic_store_explicit(&v->job_state, JOB_IDLE, memory_order_relaxed);
	return r;
}

/* `exclusive [N]` and `end-exclusive [N]`: who is EXCL_MGMT or a vCPU
 * index.  rsctl checks the library's answers against its account. */
static void section_command(const char *cmd, int who, bool begin)
{
	bool other = excl_owner != EXCL_NONE && excl_owner != who;
	int r;

	if (who == EXCL_MGMT)
		r = begin ? rs_exclusive_begin(rs, wait_ns) : rs_exclusive_end(rs);
	else
		r = post_job(vcpus[who], begin ? JOB_BEGIN : JOB_END);
	if (r == 1) {
		puts("error: timeout");
		report_violation("vCPU did not take '%s' within the wait limit", cmd);
		return;
	}
	print_result(r);
	if (begin && r == 0) {
		if (excl_owner != EXCL_NONE)
			report_violation("'%s' began a section while one was held", cmd);
		excl_owner = who;
	} else if (begin && r == RS_ETIMEDOUT && !other) {
		report_violation("'%s' timed out waiting for the vCPUs", cmd);
	} else if (!begin && r == 0) {
		if (excl_owner != who)
			report_violation("'%s' ended a section its thread did not hold", cmd);
		excl_owner = EXCL_NONE;
	}
}

/* A vCPU index token: decimal digits only.  The index (MAX_VCPUS for any
 * larger number: never a plugged vCPU), or -1 if the token is not one. */
static int parse_index(const char *s)
{
	long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > MAX_VCPUS)
			v = MAX_VCPUS;   /* stays out of range, whatever follows */
	}
	return (int)v;
}

enum { CMD_DONE, CMD_QUIT };

static int run_command(char **tok, int n, int check_ms)
{
	const char *c = tok[0];
	bool was_running = is_running();
	int r, a, b;

	/* A command that may start the VM opens a new run epoch first, so
	 * that `vcpus` knows which slices came after the start. */
	if (!was_running)
		atomic_fetch_add(&run_epoch, 1);

	if (!strcmp(c, "stop") && n == 1) {
		print_stop_result(c, rs_stop(rs, wait_ns));
	} else if (!strcmp(c, "start") && n == 1) {
		print_result(rs_start(rs, 0));
	} else if (!strcmp(c, "start") && n == 2 && !strcmp(tok[1], "-f")) {
		print_result(rs_start(rs, RS_START_FORCE));
	} else if (!strcmp(c, "retry") && n == 1) {
		print_result(rs_retry(rs));
	} else if (!strcmp(c, "cont") && n == 1) {
		print_result(rs_cont(rs));
	} else if (!strcmp(c, "reset") && n == 1) {
		print_result(rs_reset(rs));
	} else if (!strcmp(c, "io-error") && n == 1) {
		print_stop_result(c, rs_io_error(rs, wait_ns));
	} else if (!strcmp(c, "lock") && n == 2 && (a = rs_lock_parse(tok[1])) >= 0) {
		print_stop_result(c, rs_trylock(rs, (enum rs_lock)a, wait_ns));
	} else if (!strcmp(c, "unlock") && n == 2 && (a = rs_lock_parse(tok[1])) >= 0) {
		print_result(rs_unlock(rs, (enum rs_lock)a));
	} else if (!strcmp(c, "unlock") && n == 3 && (a = rs_lock_parse(tok[1])) >= 0 &&
		   (b = rs_pause_parse(tok[2])) > 0) {
		print_stop_result(c, rs_unlock_pause(rs, (enum rs_lock)a, (enum rs_pause)b, wait_ns));
	} else if (!strcmp(c, "pause") && n == 2 && (b = rs_pause_parse(tok[1])) > 0) {
		print_stop_result(c, rs_pause(rs, (enum rs_pause)b, wait_ns));
	} else if (!strcmp(c, "status") && n == 1) {
		print_status();
	} else if (!strcmp(c, "events") && n == 1) {
		print_events();
	} else if (!strcmp(c, "vcpus") && n == 1) {
		print_vcpus();
	} else if (!strcmp(c, "dump") && n == 1) {
		print_dump();
	} else if ((!strcmp(c, "exclusive") || !strcmp(c, "end-exclusive")) && n == 1) {
		section_command(c, EXCL_MGMT, !strcmp(c, "exclusive"));
	} else if ((!strcmp(c, "exclusive") || !strcmp(c, "end-exclusive")) && n == 2 &&
		   (a = parse_index(tok[1])) >= 0) {
		if (a >= nvcpus)
			puts("error: no-vcpu");
		else
			section_command(c, a, !strcmp(c, "exclusive"));
	} else if (!strcmp(c, "mark") && n == 1) {
		mark_vcpus();
	} else if (!strcmp(c, "ran") && n == 1) {
		print_ran(check_ms);
	} else if (!strcmp(c, "hotplug") && n == 1) {
		r = hotplug();
		puts(r ? "error: no-space" : "ok");
	} else if (!strcmp(c, "unplug") && n == 1) {
		r = unplug();
		puts(r ? "error: no-vcpu" : "ok");
	} else if (!strcmp(c, "quit") && n == 1) {
		puts("ok");
		fflush(stdout);
		return CMD_QUIT;
	} else {
		puts("error: invalid");
	}
	fflush(stdout);

	/* A releasing command returns before its edge settles: let it settle
	 * so its event is there.  (A synchronous stopping command already
	 * waited; waiting again here would hide a stop that did not.) */
	if (!strcmp(c, "start") || !strcmp(c, "cont") || !strcmp(c, "retry") ||
	    !strcmp(c, "reset") || !strcmp(c, "unlock")) {
		if (rs_wait(rs, wait_ns))
			report_violation("%s", "the VM did not settle within the wait limit");
	}
	collect_events();
	if (check_ms > 0) {
		if (!is_running())
			check_kept_out(c, check_ms, false, -1);
		else if (excl_owner != EXCL_NONE)
			check_kept_out(c, check_ms, true, excl_owner);
	}
	return CMD_DONE;
}

/* Strip a trailing newline and CR, and leading and trailing blanks. */
static char *trim(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = 0;
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

static void usage(void)
{
	fputs("usage: rsctl [-S] [--vcpus N] [--check-ms N] [--wait-ms N]"
	      " [--kick signal|futex] [FILE]\n", stderr);
	exit(2);
}

static int parse_count(const char *s, int max)
{
	char *end;
	long v;

	if (!s || !*s)
		usage();
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > max)
		usage();
	return (int)v;
}

/*
 * Read one line into buf (cap bytes, NUL-terminated, without the newline).
 * A line is taken whole or not at all: one longer than cap - 1 bytes, or
 * with a NUL byte in it, is read to its end and reported as *bad, so that
 * no part of it is ever executed.  False at end of input.
 */
static bool read_line(FILE *in, char *buf, size_t cap, bool *bad)
{
	size_t n = 0;
	int c;

	*bad = false;
	while ((c = getc(in)) != EOF && c != '\n') {
		if (c == '\0' || n + 1 >= cap)
			*bad = true;
		else
			buf[n++] = (char)c;
	}
	buf[n] = '\0';
	return c != EOF || n || *bad;
}

int main(int argc, char **argv)
{
	const char *file = NULL;
	bool prelaunch = false;
	int nv = 4, check_ms = 20;
	FILE *in = stdin;
	char buf[4096];
	bool prompt;
	struct sigaction sa = { 0 };

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-S"))
			prelaunch = true;
		else if (!strcmp(argv[i], "--vcpus") && i + 1 < argc)
			nv = parse_count(argv[++i], MAX_VCPUS);
		else if (!strcmp(argv[i], "--check-ms") && i + 1 < argc)
			check_ms = parse_count(argv[++i], 600000);
		else if (!strcmp(argv[i], "--wait-ms") && i + 1 < argc)
		{
			wait_ns = parse_count(argv[++i], 3600000) * 1000000LL;
			if (!wait_ns)
				usage();   /* 0 would mean "do not wait" */
		}
		else if (!strcmp(argv[i], "--kick") && i + 1 < argc) {
			i++;
			if (!strcmp(argv[i], "signal"))
				kick_signal = true;
			else if (!strcmp(argv[i], "futex"))
				kick_signal = false;
			else
				usage();
		} else if (argv[i][0] == '-' && argv[i][1])
			usage();
		else if (file)
			usage();
		else
			file = argv[i];
	}
	if (file && !(in = fopen(file, "r"))) {
		fprintf(stderr, "rsctl: %s: %s\n", file, strerror(errno));
		return 2;
	}

	sa.sa_handler = on_kick_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(KICK_SIGNAL, &sa, NULL);

	struct rs_config cfg = { .size = sizeof(cfg), .max_vcpus = MAX_VCPUS };

	if (rs_create(&cfg, &rs)) {
		fputs("rsctl: cannot create the runstate\n", stderr);
		return 1;
	}
	for (int i = 0; i < nv; i++)
		if (hotplug()) {
			fputs("rsctl: cannot start vCPU threads\n", stderr);
			return 1;
		}
	if (!prelaunch) {
		atomic_fetch_add(&run_epoch, 1);
		rs_start(rs, 0);
		rs_wait(rs, wait_ns);
	}
	/* Events before the first command are not listed. */
	ev_cursor = rs_events_cursor(rs);

	prompt = !file && isatty(0) && isatty(1);
	for (;;) {
		char *line, *tok[MAX_TOKENS];
		bool bad;
		int n;

		if (prompt) {
			fputs("rsctl> ", stdout);
			fflush(stdout);
		}
		if (!read_line(in, buf, sizeof(buf), &bad))
			break;
		if (bad) {
			puts("error: invalid");
			fflush(stdout);
			continue;
		}
		line = trim(buf);
		if (!*line || *line == '#')
			continue;
		n = split(line, tok);
		if (n <= 0) {
			puts("error: invalid");
			fflush(stdout);
			continue;
		}
		if (run_command(tok, n, check_ms) == CMD_QUIT)
			break;
	}
	while (nvcpus)
		unplug();
	if (excl_owner == EXCL_MGMT)
		rs_exclusive_end(rs);
	rs_destroy(rs);
	if (file)
		fclose(in);
	return atomic_load(&violation) ? 3 : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: races stop/start/cont/retry, internal lock holders,
 * device errors, vCPU-raised panics and vCPU hot-plug against each other
 * for --duration seconds, with vCPU threads running guest slices through
 * the real fast path, and checks all along:
 *
 *   exclusion        no guest slice while a lock returned by rs_lock is held
 *   stop             a stopping call that returned 0 left no vCPU in guest
 *   liveness         while the VM is runnable, every vCPU makes progress;
 *                    no thread stays in one operation for --hang-ms
 *   linearizability  every result is explained by some real-time-consistent
 *                    order under rs_transition() (lincheck.c)
 *   events           STOP/RESUME alternate and number the edges, for three
 *                    readers: polling, rs_events_wait() and the eventfd
 *   listener         each edge's listeners run once, in edge and priority
 *                    order, never overlapping, with every vCPU out (stop)
 *                    or none in yet (start); removal is final
 *   kick             no kick callback after rs_vcpu_unregister() returned
 *   result, word, final   results outside the contract, edge parity, and
 *                    the state after the run
 *
 * With --kvm the vCPUs are real KVM vCPUs (stress/kvm): the checks read the
 * guests' counters from guest memory and the module's in-KVM_RUN flags.
 *
 * Faults go through the library's ops table and delay points.  Every
 * violation prints the seed and the configuration to replay it.  The
 * checks, faults and figures are described in docs/stress.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runstate.h"
#include "lincheck.h"
#ifdef RS_STRESS_KVM
#include "kvm.h"
#endif

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define STRESS_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define STRESS_ASAN 1
#endif
#endif

#define MS ((int64_t)1000000)
#define US ((int64_t)1000)
#define EDGE_HALF  (UINT32_C(1) << 31)   /* edges are 32-bit and wrap */
#define KICK_SIGNAL SIGUSR1
#define MAX_VCPU_SLOTS 1024

/* ---------------------------------------------------------------------------
 * Configuration
 */

static struct config {
	double duration;
	uint64_t seed;
	int vcpus, mgmt, holders, devices;
	int hotplug_extra;          /* hot-plug keeps vcpus-1 .. vcpus+extra */
	int64_t slice_ns;
	double fault_rate, delay_rate;
	const char *delay_point;
	int64_t live_ns, hang_ns, storm_ns, calm_ns, rekick_ns;
	unsigned events;
	unsigned backlog;           /* max_backlog (0: the library's default) */
	int round_ops;
	bool kick_signal;
	bool json, quiet, keep_going;
	const char *expect;
	int lin_corrupt;            /* flip every Nth query result (checker test) */
	int listeners;              /* persistent listeners (0: no listener at all) */
	unsigned skip;              /* checks not made: bit per enum vkind */
	const char *plant;          /* a harness-side plant (checker tests) */
	bool kvm;                   /* real KVM vCPUs (stress/kvm) */
	unsigned kvm_io_shift;
} cfg;

static const char *argv0 = "runstate-stress";

/* ---------------------------------------------------------------------------
 * Small helpers: clock, random numbers, sleeping
 */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };

	if (ns > 0)
		nanosleep(&ts, NULL);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static void spin_ns(int64_t ns)
{
	uint64_t end = now_ns() + (uint64_t)ns;

	while (now_ns() < end)
		for (int i = 0; i < 16; i++)
			cpu_relax();
}

/* splitmix64: one word of state, good enough for choosing actions. */
struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

static bool chance(struct rng *r, double p)
{
	return p > 0 && (double)(rng_next(r) >> 11) * 0x1p-53 < p;
}

static int64_t rng_range(struct rng *r, int64_t lo, int64_t hi)
{
	return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo + 1));
}

static struct rng rng_for(uint64_t stream)
{
	struct rng r = { cfg.seed ^ (stream * 0xd1b54a32d192ed03ull) };

	rng_next(&r);
	return r;
}

/* Hooks run on whatever thread the library runs on. */
static _Atomic uint64_t hook_streams;
static _Thread_local struct rng hook_rng_state;
static _Thread_local bool hook_rng_ready;

static struct rng *hook_rng(void)
{
	if (!hook_rng_ready) {
		hook_rng_state = rng_for(0x100000 + atomic_fetch_add(&hook_streams, 1));
		hook_rng_ready = true;
	}
	return &hook_rng_state;
}

static uint32_t w_edge(uint64_t w)
{
	return (uint32_t)(w >> RS_W_EDGE_SHIFT);
}

/* a < b for edges less than half the counter apart */
static bool edge_lt(uint32_t a, uint32_t b)
{
	return a != b && b - a < EDGE_HALF;
}

static bool w_running(uint64_t w)
{
	return !(w & RS_W_STOPPED_MASK);
}

static bool w_may_run(uint64_t w)
{
	return !(w & RS_W_NORUN_MASK);
}

static bool w_settling(uint64_t w)
{
	return (w & RS_W_SETTLING_MASK) != 0;
}

/* ---------------------------------------------------------------------------
 * Statistics
 */

/* Log-linear histogram: 8 sub-buckets per power of two (about 6% wide). */
#define HIST_BUCKETS 512
struct hist {
	_Atomic uint64_t b[HIST_BUCKETS];
	_Atomic uint64_t n, max;
};

static unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < 16)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	return 16 + (e - 4) * 8 + (unsigned)((v >> (e - 3)) & 7);
}

static uint64_t hist_value(unsigned i)
{
	unsigned e;

	if (i < 16)
		return i;
	e = (i - 16) / 8 + 4;
	/* the middle of the bucket */
	return ((uint64_t)(8 + (i - 16) % 8) << (e - 3)) + ((uint64_t)1 << (e - 3)) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
	uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);

	atomic_fetch_add_explicit(&h->b[hist_index(v)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
	while (v > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, v, memory_order_relaxed,
							       memory_order_relaxed))
		;
}

static uint64_t hist_pct(struct hist *h, double p)
{
	uint64_t n = atomic_load(&h->n), want, acc = 0;

	if (!n)
		return 0;
	want = (uint64_t)((double)n * p);
	if (want >= n)
		want = n - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		acc += atomic_load(&h->b[i]);
		if (acc > want) {
			uint64_t v = hist_value(i), m = atomic_load(&h->max);

			return v > m ? m : v;
		}
	}
	return atomic_load(&h->max);
}

enum tclass { TC_ASYNC, TC_TIMED, TC_SYNC, TC_COUNT };
static const char *const tclass_name[TC_COUNT] = { "async", "timed", "sync" };

static struct stats {
	_Atomic uint64_t ops[LIN_KIND_COUNT][TC_COUNT];
	_Atomic uint64_t ops_total, waits, vcpu_panic_async, vcpu_panic_sync;
	_Atomic uint64_t r_timedout, r_busy, r_needforce, r_needreset;
	_Atomic uint64_t slices, halts, work, plugs, unplugs;
	_Atomic uint64_t kicks, rekicks, kicks_dropped, slow_kicks;
	_Atomic uint64_t parks, futex_waits, futex_wakes, inj_spurious, inj_eintr, inj_late_wake, delays;
	_Atomic uint64_t slow_acks, holder_desched;
	_Atomic uint64_t stop_checks, exclusion_checks, liveness_windows;
	_Atomic uint64_t events, events_lost, last_seq;
	/* listeners */
	_Atomic uint64_t l_calls, l_edges, l_add_out, l_add_in, l_rm_out, l_rm_in, l_rm_self;
	_Atomic uint64_t l_stop_in, l_start_in, l_queries, l_checks, l_max_live, l_norun;
	_Atomic uint64_t l_coalesced_runs;
	/* event consumers: rs_events_wait() and the eventfd */
	_Atomic uint64_t ew_calls, ew_woken, ew_timeouts, ew_events, ew_lost;
	_Atomic uint64_t ef_polls, ef_ready, ef_events, ef_lost, ef_lost_recs, ef_naps;
	_Atomic uint64_t kvm_hooks, kvm_slow_exits;
	struct hist stop_lat, start_lat, lock_lat, listener_lat;
} st;

#define INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)

/* ---------------------------------------------------------------------------
 * Threads: a table the watchdog reads (what each thread does, since when)
 */

struct thr {
	char name[24];
	bool vcpu;
	_Atomic bool used;
	_Atomic(const char *) op;
	_Atomic uint64_t since;
	struct rng rng;
};

static struct thr *thr_tab;
static int thr_count;

static const char *thread_name(unsigned i)
{
	return (int)i < thr_count ? thr_tab[i].name : "?";
}

static void set_op(struct thr *t, const char *op)
{
	atomic_store_explicit(&t->since, now_ns(), memory_order_relaxed);
	atomic_store_explicit(&t->op, op, memory_order_release);
}

/* Names are set once, before any thread starts (the watchdog reads them). */
static void thr_name(int i, bool vcpu, const char *fmt, int n)
{
	snprintf(thr_tab[i].name, sizeof(thr_tab[i].name), fmt, n);
	thr_tab[i].vcpu = vcpu;
}

static struct thr *thr_claim(int i)
{
	struct thr *t = &thr_tab[i];
	static _Atomic uint64_t claims;

	/* A fresh stream per claim: vCPU slots are reused by hot-plug. */
	t->rng = rng_for((uint64_t)i + 1 + (atomic_fetch_add(&claims, 1) << 20));
	set_op(t, "start");
	atomic_store_explicit(&t->used, true, memory_order_release);
	return t;
}

static void thr_release(struct thr *t)
{
	set_op(t, NULL);
	atomic_store_explicit(&t->used, false, memory_order_release);
}

/* Fixed indices; vCPU slot i uses THR_VCPU0 + i.  THR_LISTENER names the
 * operations listeners make, on whatever thread settles the edge. */
enum { THR_MAIN, THR_MONITOR, THR_CHECKER, THR_HOTPLUG, THR_CHURN, THR_EVWAIT, THR_EVFD,
       THR_LISTENER, THR_ROLES };
static int thr_vcpu0;

/* ---------------------------------------------------------------------------
 * Globals
 */

static rs_runstate *rs;
static _Atomic bool g_stop;        /* the run is over: threads finish up */
static _Atomic bool g_calm;        /* calm phase: only keep the VM running */
static _Atomic bool g_monitor_exit, g_checker_exit;
static _Atomic bool g_dumped;
static uint64_t g_t0;

/* ---------------------------------------------------------------------------
 * Violations
 */

enum vkind { V_EXCLUSION, V_STOP, V_LIVENESS, V_HANG, V_LIN, V_EVENTS, V_RESULT, V_KICK,
	     V_WORD, V_FINAL, V_LISTENER, V_COUNT };
static const char *const vname[V_COUNT] = {
	"exclusion", "stop", "liveness", "hang", "linearizability", "events", "result", "kick",
	"word", "final", "listener",
};
static _Atomic long vcount[V_COUNT];
static _Atomic long vtotal;
static _Atomic int vfirst = -1;     /* the kind of the first violation */
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_skip(FILE *f);

static void print_replay(FILE *f)
{
	fprintf(f, "  replay: %s%s --seed %" PRIu64 " --duration %g --vcpus %d --mgmt %d --holders %d "
		   "--devices %d --slice-ns %" PRId64 " --fault-rate %g --delay-rate %g%s%s "
		   "--kick %s --round-ops %d --events %u --live-ms %" PRId64 " --calm-ms %" PRId64
		   " --storm-ms %" PRId64 " --listeners %d --backlog %u",
		argv0, cfg.kvm ? " --kvm" : "", cfg.seed, cfg.duration, cfg.vcpus, cfg.mgmt,
		cfg.holders, cfg.devices, cfg.slice_ns, cfg.fault_rate, cfg.delay_rate,
		cfg.delay_point ? " --delay-point " : "", cfg.delay_point ? cfg.delay_point : "",
		cfg.kick_signal ? "signal" : "futex", cfg.round_ops, cfg.events, cfg.live_ns / MS,
		cfg.calm_ns / MS, cfg.storm_ns / MS, cfg.listeners, cfg.backlog);
	if (cfg.kvm)
		fprintf(f, " --kvm-io-shift %u", cfg.kvm_io_shift);
	if (cfg.plant)
		fprintf(f, " --plant %s", cfg.plant);
	print_skip(f);
	fputc('\n', f);
}

/* May run in a kick callback: no library call in here. */
static void violation(enum vkind k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(enum vkind k, const char *fmt, ...)
{
	long n;
	va_list ap;

	if (cfg.skip >> k & 1)
		return;   /* --skip-checks */
	n = atomic_fetch_add(&vtotal, 1);
	atomic_fetch_add(&vcount[k], 1);
	if (n == 0) {
		int none = -1;

		atomic_compare_exchange_strong(&vfirst, &none, (int)k);
	}
	if (n < 20) {
		pthread_mutex_lock(&report_lock);
		fprintf(stderr, "runstate-stress: VIOLATION [%s] at %.3f s: ", vname[k],
			(double)(now_ns() - g_t0) / 1e9);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
		if (n == 0)
			print_replay(stderr);
		pthread_mutex_unlock(&report_lock);
	}
	if (!cfg.keep_going)
		atomic_store(&g_stop, true);
}

/* --skip-checks: a check that is not made (to let another one be the first
 * to see a planted bug). */
static bool skipped(enum vkind k)
{
	return cfg.skip >> k & 1;
}

static void print_skip(FILE *f)
{
	const char *sep = " --skip-checks ";

	for (int k = 0; k < V_COUNT; k++) {
		if (!skipped((enum vkind)k))
			continue;
		fprintf(f, "%s%s", sep, vname[k]);
		sep = ",";
	}
}

/* ---------------------------------------------------------------------------
 * vCPUs
 */

enum { VL_FREE, VL_STARTING, VL_REGISTERED, VL_GONE };

struct vcpu {
	rs_vcpu rv;                    /* first: a futex wait inside it is a park */
	pthread_t tid;                 /* written by the thread itself */
	int index;
	bool blocking;                 /* guest entry that only a kick ends */
	_Atomic int life;
	_Atomic bool exit_flag;        /* the emulator's own exit flag */
	_Atomic bool halted;           /* quiescent (rs_vcpu_quiesce) */
	_Atomic uint32_t kick_word;    /* immediate_exit */
	_Atomic uint32_t in_guest;     /* 0, or 1 + the edge read at slice entry */
	_Atomic uint32_t stamp;        /* 1 + the edge of the latest slice entry, 0: none */
	_Atomic uint64_t slices;       /* slice entries, never reset */
	_Atomic uint64_t halts;
	_Atomic uint64_t period;       /* active periods so far */
	_Atomic uint64_t kicked_period;
	pthread_t thread;              /* the hot-plug thread's handle */
	uint64_t next_dev_ns;          /* --kvm: next device error (its own thread) */
	/* liveness bookkeeping, monitor thread only */
	uint64_t lv_since, lv_slices, lv_halts;
};

static struct vcpu *vcpus;
static int nslots;
static _Atomic int nplugged;
static _Atomic int sync_inflight;  /* vCPU-thread synchronous calls in flight */

#ifdef RS_STRESS_KVM
static struct rk_vm *g_vm;         /* --kvm: slot i is the VM's vCPU i */
#endif

/*
 * The checks see a vCPU through vc_in_guest() and vc_count(), whichever
 * kind runs it.  A simulated vCPU stamps each guest slice with the edge it
 * read at entry; a KVM vCPU has no stamp, and its progress is the guest's
 * own counter in guest memory.
 */
#define IN_GUEST_NOSTAMP 0xffffffffu

/* 0 when slot i is not in guest code; else 1 + the edge it read when it
 * entered, or IN_GUEST_NOSTAMP for a KVM vCPU inside KVM_RUN. */
static uint32_t vc_in_guest(int i)
{
#ifdef RS_STRESS_KVM
	if (cfg.kvm)
		return rk_vcpu_in_run(g_vm, (unsigned)i) ? IN_GUEST_NOSTAMP : 0;
#endif
	/* Acquire: pairs with the release stores in run_slice(). */
	return atomic_load_explicit(&vcpus[i].in_guest, memory_order_acquire);
}

/* Guest progress of slot i: slices entered, or the KVM guest's counter
 * (32 bits, wraps: compare for equality only). */
static uint64_t vc_count(int i)
{
#ifdef RS_STRESS_KVM
	if (cfg.kvm)
		return rk_guest_counter(g_vm, (unsigned)i);
#endif
	return atomic_load_explicit(&vcpus[i].slices, memory_order_acquire);
}

/* "in KVM_RUN" or "entered at edge N", for a vc_in_guest() value. */
static const char *in_guest_str(uint32_t g, char *buf, size_t n)
{
	if (g == IN_GUEST_NOSTAMP)
		return "in KVM_RUN";
	snprintf(buf, n, "entered at edge %u", g - 1);
	return buf;
}

/* Halts of slot i so far (liveness: a halted vCPU makes progress). */
static uint64_t vc_halts(int i)
{
#ifdef RS_STRESS_KVM
	if (cfg.kvm) {
		struct rk_vcpu_stats s;

		rk_vcpu_stats(g_vm, (unsigned)i, &s);
		return s.exits_hlt;
	}
#endif
	return atomic_load(&vcpus[i].halts);
}

static bool is_park_addr(const void *addr)
{
	uintptr_t a = (uintptr_t)addr, b = (uintptr_t)vcpus;

	if (!vcpus || a < b || a >= b + (uintptr_t)nslots * sizeof(struct vcpu))
		return false;
	return (a - b) % sizeof(struct vcpu) < sizeof(rs_vcpu);
}

static void deliver_kick(struct vcpu *v)
{
	/* Release: pairs with the exchange in the slice loops. */
	atomic_store_explicit(&v->kick_word, 1, memory_order_release);
	if (!v->blocking)
		return;
	if (cfg.kick_signal)
		pthread_kill(v->tid, KICK_SIGNAL);
	else
		syscall(SYS_futex, &v->kick_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The kick callback.  Must not call into the library. */
static void kick_cb(rs_vcpu *rv, void *opaque)
{
	struct vcpu *v = opaque;
	uint64_t per;

	(void)rv;
	if (atomic_load_explicit(&v->life, memory_order_acquire) == VL_GONE)
		violation(V_KICK, "kick callback for vCPU slot %d ran after its rs_vcpu_unregister() "
				  "returned", v->index);
	INC(st.kicks);
	per = atomic_load_explicit(&v->period, memory_order_relaxed);
	if (atomic_exchange_explicit(&v->kicked_period, per, memory_order_relaxed) == per)
		INC(st.rekicks);
	if (chance(hook_rng(), cfg.fault_rate)) {
		INC(st.kicks_dropped);  /* a lost kick: the re-kick must recover */
	} else {
		deliver_kick(v);
		if (chance(hook_rng(), cfg.fault_rate)) {
			/* The kicker is preempted right after the signal: the
			 * kicked vCPU runs meanwhile. */
			INC(st.slow_kicks);
			sleep_ns(rng_range(hook_rng(), 50 * US, 500 * US));
		}
	}
	/* "No kick callback runs after rs_vcpu_unregister() returns"
	 * (docs/protocol.md section 7): check at the end too. */
	if (atomic_load_explicit(&v->life, memory_order_acquire) == VL_GONE)
		violation(V_KICK, "kick callback for vCPU slot %d still running after its "
				  "rs_vcpu_unregister() returned", v->index);
}

static void on_kick_signal(int sig)
{
	(void)sig;  /* its only job is to end ppoll() */
}

/* ---------------------------------------------------------------------------
 * The library's ops table: fault injection and counting
 */

static int hook_futex_wait(void *ctx, uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	struct rng *r = hook_rng();
	struct timespec ts, *tsp = NULL;

	(void)ctx;
	if (chance(r, cfg.fault_rate)) {
		INC(st.inj_spurious);
		return 0;               /* a spurious wake-up */
	}
	if (chance(r, cfg.fault_rate)) {
		INC(st.inj_eintr);
		return -EINTR;
	}
	if (is_park_addr(addr))
		INC(st.parks);
	else
		INC(st.futex_waits);
	if (timeout_ns >= 0) {
		ts.tv_sec = (time_t)(timeout_ns / 1000000000);
		ts.tv_nsec = (long)(timeout_ns % 1000000000);
		tsp = &ts;
	}
	if (syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0) == 0) {
		if (chance(r, cfg.fault_rate)) {
			/* Descheduled right after the wake-up: whatever the
			 * waker handed over waits for us meanwhile. */
			INC(st.inj_late_wake);
			sleep_ns(rng_range(r, 200 * US, 2 * MS));
		}
		return 0;
	}
	return -errno;
}

static int hook_futex_wake(void *ctx, uint32_t *addr, int n)
{
	long r;

	(void)ctx;
	INC(st.futex_wakes);
	r = syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
	return r < 0 ? -errno : (int)r;
}

static void hook_delay(void *ctx, const char *point)
{
	struct rng *r = hook_rng();
	bool focus = cfg.delay_point && !strcmp(point, cfg.delay_point);

	(void)ctx;
	if (!chance(r, focus ? 0.5 : cfg.delay_rate))
		return;
	INC(st.delays);
	switch (rng_below(r, 4)) {
	case 0:
		spin_ns(rng_range(r, 0, focus ? 200 * US : 20 * US));
		break;
	case 1:
		sleep_ns(rng_range(r, 10 * US, focus ? 300 * US : 100 * US));
		break;
	case 2:
		sched_yield();
		break;
	default:
		for (int i = (int)rng_below(r, 500); i > 0; i--)
			cpu_relax();
	}
}

static const struct rs_ops stress_ops = {
	.futex_wait = hook_futex_wait,
	.futex_wake = hook_futex_wake,
	.delay = hook_delay,
};

/* ---------------------------------------------------------------------------
 * Recording operations for the linearizability check.
 *
 * Management, holder and device threads (and vCPU threads for their
 * asynchronous calls) record through a gate: a round closes after
 * --round-ops operations (or 20 ms), new operations wait at the gate, the
 * checker waits until every recorded operation has returned, reads the word
 * (the cut read) and checks the round.  Synchronous calls from vCPU
 * threads may park until the VM runs again, so they cannot be made to
 * finish before a cut: they are "ungated" and may straddle rounds.
 */

static struct gate {
	pthread_mutex_t m;
	pthread_cond_t open_cv, drained_cv;
	bool closed;
	int begun, inflight;
	uint64_t opened;
	struct lin_op ops[LIN_MAX_GATED];
	struct lin_op ung[LIN_UNGATED];
	int ung_this_round;
} gate = {
	.m = PTHREAD_MUTEX_INITIALIZER,
	.open_cv = PTHREAD_COND_INITIALIZER,
	.drained_cv = PTHREAD_COND_INITIALIZER,
};

static struct lin_checker lin;
static struct rs_stats lstats;   /* the library's counters, at the end */

struct opctx {
	int idx;                /* gate slot, or ungated slot */
	bool ungated;
	struct lin_op op;
	uint64_t w_before;      /* the word just before the call */
	struct thr *t;
};

static enum tclass tclass_of(int64_t timeout)
{
	return timeout == RS_ASYNC ? TC_ASYNC : timeout < 0 ? TC_SYNC : TC_TIMED;
}

/* Begin a gated operation; with try, give up (false) if the gate is closed. */
static bool op_begin(struct thr *t, struct opctx *c, int kind, int arg, int arg2, int64_t timeout,
		     bool try)
{
	memset(c, 0, sizeof(*c));
	c->t = t;
	pthread_mutex_lock(&gate.m);
	if (gate.closed && try) {
		pthread_mutex_unlock(&gate.m);
		return false;
	}
	if (gate.closed) {
		const char *was = atomic_load_explicit(&t->op, memory_order_relaxed);

		set_op(t, "gate");
		while (gate.closed)
			pthread_cond_wait(&gate.open_cv, &gate.m);
		set_op(t, was);
	}
	c->idx = gate.begun++;
	if (gate.begun == cfg.round_ops)
		gate.closed = true;
	gate.inflight++;
	pthread_mutex_unlock(&gate.m);
	c->op.kind = (uint8_t)kind;
	c->op.arg = (int8_t)arg;
	c->op.arg2 = (int8_t)arg2;
	c->op.async = timeout == RS_ASYNC;
	c->op.thread = (uint16_t)(t - thr_tab);
	INC(st.ops[kind][tclass_of(timeout)]);
	INC(st.ops_total);
	c->w_before = rs_word(rs);
	c->op.inv = now_ns();
	return true;
}

/* Begin an ungated operation (a synchronous call from a vCPU thread). */
static bool op_begin_ungated(struct thr *t, struct opctx *c, int kind, int arg, int64_t timeout)
{
	int i;

	memset(c, 0, sizeof(*c));
	c->t = t;
	c->ungated = true;
	c->op.kind = (uint8_t)kind;
	c->op.arg = (int8_t)arg;
	c->op.async = timeout == RS_ASYNC;
	c->op.pending = true;
	c->op.thread = (uint16_t)(t - thr_tab);
	pthread_mutex_lock(&gate.m);
	for (i = 0; i < LIN_UNGATED; i++)
		if (gate.ung[i].kind == LIN_NONE)
			break;
	if (i == LIN_UNGATED || gate.ung_this_round >= LIN_UNGATED) {
		pthread_mutex_unlock(&gate.m);
		return false;
	}
	gate.ung_this_round++;
	c->idx = i;
	c->w_before = rs_word(rs);
	c->op.inv = now_ns();
	gate.ung[i] = c->op;
	pthread_mutex_unlock(&gate.m);
	INC(st.ops[kind][tclass_of(timeout)]);
	INC(st.ops_total);
	return true;
}

static void op_end(struct opctx *c, int result)
{
	c->op.resp = now_ns();
	c->op.result = result;
	switch (result) {
	case RS_ETIMEDOUT: INC(st.r_timedout); break;
	case RS_EBUSY: INC(st.r_busy); break;
	case RS_ENEEDFORCE: INC(st.r_needforce); break;
	case RS_ENEEDRESET: INC(st.r_needreset); break;
	default: break;
	}
	pthread_mutex_lock(&gate.m);
	if (c->ungated) {
		gate.ung[c->idx].resp = c->op.resp;
		gate.ung[c->idx].result = result;
		gate.ung[c->idx].pending = false;
	} else {
		gate.ops[c->idx] = c->op;
		if (--gate.inflight == 0 && gate.closed)
			pthread_cond_signal(&gate.drained_cv);
	}
	pthread_mutex_unlock(&gate.m);
}

static void *checker_main(void *arg)
{
	struct thr *t = &thr_tab[THR_CHECKER];
	struct lin_op ops[LIN_MAX_GATED], ung[LIN_UNGATED];

	(void)arg;
	for (;;) {
		uint8_t retire = 0;
		bool any_ung = false, done;
		int n, r;

		set_op(t, NULL);
		pthread_mutex_lock(&gate.m);
		for (;;) {
			struct timespec ts;
			uint64_t now = now_ns();

			any_ung = false;
			for (int i = 0; i < LIN_UNGATED; i++)
				any_ung |= gate.ung[i].kind != LIN_NONE;
			if (gate.closed && gate.inflight == 0)
				break;
			if (!gate.closed && (gate.begun > 0 || any_ung || atomic_load(&g_checker_exit)) &&
			    (now - gate.opened >= 20 * (uint64_t)MS || atomic_load(&g_checker_exit))) {
				gate.closed = true;
				continue;
			}
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 2 * MS;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&gate.drained_cv, &gate.m, &ts);
		}
		set_op(t, "check round");
		/* The cut read: after every gated op of the round returned. */
		n = gate.begun;
		memcpy(ops, gate.ops, (size_t)n * sizeof(ops[0]));
		ops[n].kind = LIN_READ;
		ops[n].thread = THR_CHECKER;
		ops[n].async = false;
		ops[n].pending = false;
		ops[n].inv = now_ns();
		ops[n].result = lin_abstract(rs_word(rs));
		ops[n].resp = now_ns();
		n++;
		memcpy(ung, gate.ung, sizeof(ung));
		for (int i = 0; i < LIN_UNGATED; i++)
			if (ung[i].kind != LIN_NONE && !ung[i].pending)
				retire |= (uint8_t)(1u << i);
		pthread_mutex_unlock(&gate.m);

		{
			char *rep = NULL;
			size_t len = 0;
			FILE *mf = open_memstream(&rep, &len);

			r = lin_round(&lin, ops, n, ung, mf);
			if (mf)
				fclose(mf);
			if (r < 0) {
				violation(V_LIN, "round %" PRIu64 " (%d operations, ungated ones "
						 "included) is not linearizable:",
					  lin.rounds, n);
				pthread_mutex_lock(&report_lock);
				if (rep)
					fputs(rep, stderr);
				pthread_mutex_unlock(&report_lock);
			}
			free(rep);
		}

		pthread_mutex_lock(&gate.m);
		for (int i = 0; i < LIN_UNGATED; i++)
			if (retire >> i & 1)
				gate.ung[i].kind = LIN_NONE;
		gate.begun = 0;
		gate.ung_this_round = 0;
		gate.closed = false;
		gate.opened = now_ns();
		pthread_cond_broadcast(&gate.open_cv);
		done = atomic_load(&g_checker_exit);
		for (int i = 0; i < LIN_UNGATED; i++)
			if (gate.ung[i].kind != LIN_NONE)
				done = false;
		pthread_mutex_unlock(&gate.m);
		if (done)
			break;
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * The checks made by the threads that call the library
 */

/*
 * After a stopping call returned 0: every registered vCPU has been out of
 * guest code since the call's change.  e_lo is the first stopped edge at
 * or after the word read just before the call, so the change's edge is at
 * least e_lo.  (1) A vCPU in a slice it entered at an edge before e_lo
 * entered before the change and has not been out since: a violation,
 * whatever happened after the return.  (2) If the edge is still e_lo
 * before and after the scan, the VM has been stopped at that edge since
 * the change, so no vCPU may be in guest or start a slice at all.
 */
static void stop_check(const char *what, uint64_t w_before)
{
	uint32_t e_lo = w_edge(w_before), e1, e2;
	uint32_t g[MAX_VCPU_SLOTS];
	uint64_t c[MAX_VCPU_SLOTS];
	char gb[40];
	int moved = -1;

	if (skipped(V_STOP))
		return;
	/* While edges are coalesced the counter sits at the backlog's last
	 * edge or one past it, and the call's own edge is one of the two. */
	if (w_before & RS_W_OVERFLOW)
		e_lo = w_edge(w_before) - ((w_before & RS_W_COAL_MASK) >> RS_W_COAL_SHIFT & 1);
	if (e_lo & 1)
		e_lo++;
	INC(st.stop_checks);
	e1 = w_edge(rs_word(rs));
	for (int i = 0; i < nslots; i++) {
		g[i] = vc_in_guest(i);
		c[i] = vc_count(i);
	}
	for (int i = 0; i < 64; i++)
		cpu_relax();
	for (int i = 0; i < nslots; i++)
		if (vc_count(i) != c[i])
			moved = i;
	e2 = w_edge(rs_word(rs));
	for (int i = 0; i < nslots; i++) {
		/* (1) needs the stamp: simulated vCPUs only. */
		if (g[i] && g[i] != IN_GUEST_NOSTAMP && edge_lt(g[i] - 1, e_lo))
			violation(V_STOP, "%s returned 0, but vCPU slot %d is still in the guest slice it "
					  "entered at edge %u (the call's stop is at edge >= %u)",
				  what, i, g[i] - 1, e_lo);
	}
	if (e1 == e_lo && e2 == e_lo) {
		for (int i = 0; i < nslots; i++)
			if (g[i])
				violation(V_STOP, "%s returned 0 and the VM stayed stopped at edge %u, but "
						  "vCPU slot %d is in guest (%s)",
					  what, e_lo, i, in_guest_str(g[i], gb, sizeof(gb)));
		if (moved >= 0)
			violation(V_STOP, "%s returned 0 and the VM stayed stopped at edge %u, but vCPU "
					  "slot %d started a guest slice",
				  what, e_lo, moved);
	}
}

/* Unexpected result: one the contract never gives for this call. */
static void bad_result(const char *what, int r)
{
	violation(V_RESULT, "%s returned %d (%s), which the contract does not allow here", what, r,
		  rs_strerror(r));
}

static void check_word(uint64_t w, const char *where)
{
	if ((w_edge(w) & 1) != (uint32_t)w_running(w))
		violation(V_WORD, "%s: edge %u parity differs from running=%d (word 0x%016" PRIx64 ")",
			  where, w_edge(w), w_running(w), w);
	if ((w & RS_W_OVERFLOW) && !((w & RS_W_BACKLOG_MASK) >> RS_W_BACKLOG_SHIFT) && !w_settling(w))
		violation(V_WORD, "%s: word 0x%016" PRIx64 " overflows without settling", where, w);
}

/* ---------------------------------------------------------------------------
 * vCPU threads
 */

static void blocking_wait(struct vcpu *v, const sigset_t *run_mask)
{
	if (cfg.kick_signal) {
		/* KVM_RUN with KVM_SET_SIGNAL_MASK: the kick signal is blocked
		 * except inside ppoll, so a kick sent before the entry makes
		 * it return at once; kick_word plays immediate_exit. */
		while (!atomic_exchange_explicit(&v->kick_word, 0, memory_order_acquire) &&
		       !atomic_load_explicit(&v->exit_flag, memory_order_acquire))
			ppoll(NULL, 0, NULL, run_mask);
	} else {
		/* TSan delivers signals late: a futex kick instead. */
		while (!atomic_exchange_explicit(&v->kick_word, 0, memory_order_acquire) &&
		       !atomic_load_explicit(&v->exit_flag, memory_order_acquire))
			syscall(SYS_futex, &v->kick_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	}
}

/* One guest slice; true if a kick ended it. */
static bool run_slice(struct vcpu *v, struct thr *t, const sigset_t *run_mask)
{
	uint32_t e = w_edge(rs_word(rs));
	bool kicked = false;

	atomic_fetch_add_explicit(&v->slices, 1, memory_order_relaxed);
	atomic_store_explicit(&v->stamp, e + 1, memory_order_relaxed);
	/* Release: a checker that sees in_guest sees the slice count (and the
	 * stamp) too. */
	atomic_store_explicit(&v->in_guest, e + 1, memory_order_release);
	INC(st.slices);
	if (chance(&t->rng, cfg.fault_rate / 4)) {
		/* Slow to acknowledge: busy in guest, deaf to kicks. */
		INC(st.slow_acks);
		if (rng_below(&t->rng, 2))
			spin_ns(rng_range(&t->rng, 200 * US, 2 * MS));
		else
			sleep_ns(rng_range(&t->rng, 200 * US, 4 * MS));
	}
	if (v->blocking) {
		blocking_wait(v, run_mask);
		kicked = true;
	} else {
		int64_t len = rng_range(&t->rng, cfg.slice_ns / 2, cfg.slice_ns * 3 / 2);
		uint64_t end = now_ns() + (uint64_t)len;

		for (int i = 0;; i++) {
			if (atomic_load_explicit(&v->kick_word, memory_order_relaxed) &&
			    atomic_exchange_explicit(&v->kick_word, 0, memory_order_acquire)) {
				kicked = true;
				break;
			}
			if ((i & 15) == 15 && now_ns() >= end)
				break;
			cpu_relax();
		}
	}
	atomic_store_explicit(&v->in_guest, 0, memory_order_release);
	return kicked;
}

/*
 * A guest panic raised during device emulation, from inside the vCPU.
 * VD_ANY: synchronous one time in five.  A call that may wait, made on a
 * vCPU thread, returns with the vCPU out (docs/semantics.md, "Calls from a
 * vCPU thread"), so the caller must go back to rs_vcpu_enter() before
 * guest code; the checking build's rs_may_run_func() in the loop below
 * aborts if it does not.  A KVM exit hook, whose loop goes back to the
 * fast path, uses VD_ASYNC.
 */
enum { VD_ANY, VD_ASYNC, VD_SYNC };

static bool vcpu_device(struct thr *t, int mode)
{
	enum rs_pause p = rng_below(&t->rng, 2) ? RS_PAUSE_PANICKED : RS_PAUSE_WATCHDOG;
	bool sync = mode == VD_SYNC || (mode == VD_ANY && rng_below(&t->rng, 5) == 0);
	struct opctx c;
	int r;

	if (sync && atomic_load(&sync_inflight) < LIN_UNGATED / 2) {
		/* Synchronous: this vCPU counts as out from the call on, and
		 * stays out after it: no waiting for itself, no park inside. */
		if (!op_begin_ungated(t, &c, LIN_PAUSE, p, RS_FOREVER))
			return false;
		atomic_fetch_add(&sync_inflight, 1);
		INC(st.vcpu_panic_sync);
		set_op(t, "vcpu sync pause");
		r = rs_pause(rs, p, RS_FOREVER);
		op_end(&c, r);
		atomic_fetch_sub(&sync_inflight, 1);
		set_op(t, "guest");
		if (r)
			bad_result("rs_pause(FOREVER) from a vCPU thread", r);
		else
			stop_check("rs_pause(FOREVER) from a vCPU thread", c.w_before);
		return true;  /* back to rs_vcpu_enter() */
	}
	if (!op_begin(t, &c, LIN_PAUSE, p, 0, RS_ASYNC, true))
		return false;
	INC(st.vcpu_panic_async);
	r = rs_pause(rs, p, RS_ASYNC);
	op_end(&c, r);
	if (r)
		bad_result("rs_pause(ASYNC) from a vCPU thread", r);
	return false;  /* finish the exit; the fast path then fails */
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct thr *t = thr_claim(thr_vcpu0 + v->index);
	double p_dev = (double)cfg.slice_ns / (2.0 * MS);  /* one per 2 ms of guest time */
	sigset_t block, run_mask;
	int r;

	sigemptyset(&block);
	sigaddset(&block, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &block, &run_mask);
	sigdelset(&run_mask, KICK_SIGNAL);
	v->tid = pthread_self();

	set_op(t, "register");
	r = rs_vcpu_register(rs, &v->rv, kick_cb, v);
	if (r) {
		bad_result("rs_vcpu_register", r);
		atomic_store_explicit(&v->life, VL_GONE, memory_order_release);
		thr_release(t);
		return NULL;
	}
	/* Release: pairs with the hot-plug thread's acquire wait. */
	atomic_store_explicit(&v->life, VL_REGISTERED, memory_order_release);
	for (;;) {
		if (atomic_load_explicit(&v->exit_flag, memory_order_acquire))
			break;
		set_op(t, "enter");
		r = rs_vcpu_enter(&v->rv);
		if (r == RS_VCPU_EXIT)
			break;
		if (r == RS_VCPU_WORK) {
			INC(st.work);
			continue;
		}
		if (r) {
			bad_result("rs_vcpu_enter", r);
			break;
		}
		atomic_fetch_add_explicit(&v->period, 1, memory_order_relaxed);
		set_op(t, "guest");
		for (;;) {
			bool kicked;

			if (chance(&t->rng, 0.01)) {
				/* HLT: quiescent until the "interrupt". */
				atomic_store(&v->halted, true);
				atomic_fetch_add(&v->halts, 1);
				INC(st.halts);
				set_op(t, "halted");
				r = rs_vcpu_quiesce(&v->rv);
				if (r)
					bad_result("rs_vcpu_quiesce", r);
				sleep_ns(rng_range(&t->rng, 20 * US, 300 * US));
				atomic_store(&v->halted, false);
				break;
			}
			kicked = run_slice(v, t, &run_mask);
			if (!atomic_load(&g_calm) && !atomic_load(&g_stop) && chance(&t->rng, p_dev) &&
			    vcpu_device(t, VD_ANY))
				break;
			/* The fast path's check, out of line: in checking builds
			 * it aborts if the library counts this vCPU out (a
			 * missed rs_vcpu_enter() after a call that waited). */
			if (kicked || !rs_may_run_func(rs) ||
			    atomic_load_explicit(&v->exit_flag, memory_order_relaxed))
				break;
		}
	}
	set_op(t, "unregister");
	r = rs_vcpu_unregister(&v->rv);
	if (r)
		bad_result("rs_vcpu_unregister", r);
	/* Release: a kick callback that sees GONE ran after the return. */
	atomic_store_explicit(&v->life, VL_GONE, memory_order_release);
	thr_release(t);
	return NULL;
}

/* The library handle of slot i. */
static rs_vcpu *vc_rs(int i)
{
#ifdef RS_STRESS_KVM
	if (cfg.kvm)
		return rk_vcpu_rs(g_vm, (unsigned)i);
#endif
	return &vcpus[i].rv;
}

#ifdef RS_STRESS_KVM
/*
 * --kvm: slot i runs the VM's vCPU i with rk_vcpu_run() on a thread of its
 * own; an unplug ends it with an exit request and a later plug runs the
 * same KVM vCPU on a new thread (QEMU too keeps an unplugged vCPU's fd).
 */
static void *kvm_vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct thr *t = thr_claim(thr_vcpu0 + v->index);
	int r;

	v->tid = pthread_self();
	set_op(t, "kvm");
	r = rk_vcpu_run(g_vm, (unsigned)v->index);
	if (r) {
		const char *why = rk_vm_error(g_vm);

		violation(V_RESULT, "rk_vcpu_run(vCPU %d) failed: %s", v->index,
			  why ? why : rs_strerror(r));
	}
	/* Release: pairs with the acquire loads in plug(). */
	atomic_store_explicit(&v->life, VL_GONE, memory_order_release);
	thr_release(t);
	return NULL;
}

struct find_arg {
	const rs_vcpu *v;
	bool found;
};

static void find_one(const struct rs_vcpu_info *info, void *arg)
{
	struct find_arg *a = arg;

	if (info->vcpu == a->v)
		a->found = true;
}

/* Has rk_vcpu_run() registered slot i yet? */
static bool kvm_registered(int i)
{
	struct find_arg a = { vc_rs(i), false };

	rs_vcpu_foreach(rs, find_one, &a);
	return a.found;
}

/* Device emulation of a KVM vCPU: called on its thread for every I/O and
 * MMIO exit, with the exit's data supplied.  About once per 1-3 ms a guest
 * panic or watchdog (vcpu_device()); sometimes a slow exit. */
static void kvm_exit_hook(struct rk_vm *vm, unsigned idx, const struct rk_exit *ex, void *arg)
{
	struct vcpu *v = &vcpus[idx];
	struct thr *t = &thr_tab[thr_vcpu0 + (int)idx];
	uint64_t now;

	(void)vm;
	(void)ex;
	(void)arg;
	INC(st.kvm_hooks);
	if (chance(&t->rng, cfg.fault_rate / 16)) {
		/* Slow device emulation: the vCPU is slow to acknowledge. */
		INC(st.kvm_slow_exits);
		if (rng_below(&t->rng, 2))
			spin_ns(rng_range(&t->rng, 200 * US, 2 * MS));
		else
			sleep_ns(rng_range(&t->rng, 200 * US, 4 * MS));
	}
	now = now_ns();
	if (now < v->next_dev_ns)
		return;
	v->next_dev_ns = now + (uint64_t)rng_range(&t->rng, 1 * MS, 3 * MS);
	/* Asynchronous only: the loop goes on with the fast path. */
	if (!atomic_load(&g_calm) && !atomic_load(&g_stop))
		vcpu_device(t, VD_ASYNC);
}

/* RS_REQ_WORK (run_on_cpu), with the vCPU out; rs_vcpu_enter() follows.
 * Half the time a synchronous panic from there. */
static void kvm_work(struct rk_vm *vm, unsigned idx, void *arg)
{
	struct thr *t = &thr_tab[thr_vcpu0 + (int)idx];

	(void)vm;
	(void)arg;
	INC(st.work);
	if (!atomic_load(&g_calm) && !atomic_load(&g_stop) && rng_below(&t->rng, 2))
		vcpu_device(t, VD_SYNC);
}
#endif

/* Plug a vCPU into a free slot; returns the slot or -1. */
static int plug(struct thr *t, struct rng *r)
{
	struct vcpu *v = NULL;
	void *(*fn)(void *) = vcpu_main;

	for (int i = 0; i < nslots; i++) {
		if (atomic_load(&vcpus[i].life) == VL_FREE) {
			v = &vcpus[i];
			break;
		}
	}
	if (!v)
		return -1;
	set_op(t, "plug");
	v->blocking = !cfg.kvm && rng_below(r, 3) == 0;
	atomic_store(&v->exit_flag, false);
	atomic_store(&v->halted, false);
	atomic_store(&v->kick_word, 0);
	atomic_store(&v->stamp, 0);
	v->next_dev_ns = now_ns() + (uint64_t)rng_range(r, 0, 2 * MS);
	atomic_store(&v->life, VL_STARTING);
#ifdef RS_STRESS_KVM
	if (cfg.kvm)
		fn = kvm_vcpu_main;
#endif
	if (pthread_create(&v->thread, NULL, fn, v)) {
		atomic_store(&v->life, VL_FREE);
		return -1;
	}
	/* Acquire: pairs with the release store after registration. */
	while (atomic_load_explicit(&v->life, memory_order_acquire) == VL_STARTING) {
#ifdef RS_STRESS_KVM
		int starting = VL_STARTING;

		if (cfg.kvm && kvm_registered(v->index) &&
		    atomic_compare_exchange_strong(&v->life, &starting, VL_REGISTERED))
			break;
#endif
		sleep_ns(20 * US);
	}
	if (atomic_load_explicit(&v->life, memory_order_acquire) == VL_GONE) {
		/* It failed to register (reported) or ran into an error. */
		pthread_join(v->thread, NULL);
		atomic_store(&v->life, VL_FREE);
		set_op(t, NULL);
		return -1;
	}
	atomic_fetch_add(&nplugged, 1);
	INC(st.plugs);
	set_op(t, NULL);
	return v->index;
}

/* Unplug: exit flag, exit request, kick, join. */
static void unplug(struct thr *t, struct vcpu *v)
{
	int r;

	set_op(t, "unplug");
	atomic_store_explicit(&v->exit_flag, true, memory_order_release);
	r = rs_vcpu_request(vc_rs(v->index), RS_REQ_EXIT);
	if (r && r != RS_EINVAL)   /* EINVAL: it already saw the flag and left */
		bad_result("rs_vcpu_request(EXIT)", r);
	/* A KVM vCPU has only the library's kick: a lost exit request shows
	 * as a hang in the join. */
	if (!cfg.kvm)
		deliver_kick(v);
	set_op(t, "unplug: join");
	pthread_join(v->thread, NULL);
	atomic_store(&v->life, VL_FREE);
	atomic_fetch_sub(&nplugged, 1);
	INC(st.unplugs);
	set_op(t, NULL);
}

static void *hotplug_main(void *arg)
{
	struct thr *t = &thr_tab[THR_HOTPLUG];
	int lo = cfg.vcpus > 1 ? cfg.vcpus - 1 : 1, hi = cfg.vcpus + cfg.hotplug_extra;

	(void)arg;
	while (!atomic_load(&g_stop)) {
		int n = atomic_load(&nplugged), pick;
		bool calm;

		set_op(t, NULL);
		sleep_ns(rng_range(&t->rng, 2 * MS, 20 * MS));
		if (atomic_load(&g_stop))
			break;
		/* Calm phases are the liveness windows: plug only (a new vCPU
		 * must start running), never unplug or post requests, which
		 * would wake a vCPU that a start failed to wake. */
		calm = atomic_load(&g_calm);
		pick = (int)rng_below(&t->rng, (uint64_t)nslots);
		if (rng_below(&t->rng, 8) == 0 && !calm) {
			/* A work request (run_on_cpu). */
			if (atomic_load(&vcpus[pick].life) == VL_REGISTERED &&
			    !atomic_load(&vcpus[pick].exit_flag)) {
				int r = rs_vcpu_request(vc_rs(pick), RS_REQ_WORK);

				if (r)
					bad_result("rs_vcpu_request(WORK)", r);
			}
			continue;
		}
		if (n < lo || (n < hi && rng_below(&t->rng, 2))) {
			plug(t, &t->rng);
		} else if (n > lo && !calm) {
			for (int k = 0; k < nslots; k++) {
				struct vcpu *v = &vcpus[(pick + k) % nslots];

				if (atomic_load(&v->life) == VL_REGISTERED) {
					unplug(t, v);
					break;
				}
			}
		}
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Management threads
 */

static int64_t pick_timeout(struct rng *r)
{
	switch (rng_below(r, 10)) {
	case 0: case 1: case 2:
		return RS_ASYNC;
	case 3: case 4:
		return RS_FOREVER;
	case 5:
		return rng_range(r, 20 * US, 300 * US);   /* may time out */
	default:
		return 2000 * MS;
	}
}

static void between_ops(struct rng *r)
{
	switch (rng_below(r, 4)) {
	case 0:
		break;
	case 1:
		for (int i = (int)rng_below(r, 2000); i > 0; i--)
			cpu_relax();
		break;
	case 2:
		sched_yield();
		break;
	default:
		sleep_ns(rng_range(r, 5 * US, 200 * US));
	}
}

static void do_read(struct thr *t, bool try)
{
	static _Atomic uint64_t nreads;
	struct opctx c;
	uint64_t w;
	int res;

	if (!op_begin(t, &c, LIN_READ, 0, 0, RS_ASYNC, try))
		return;
	w = rs_word(rs);
	res = lin_abstract(w);
	/* --lin-corrupt: record a state the word never had. */
	if (cfg.lin_corrupt && atomic_fetch_add(&nreads, 1) % (uint64_t)cfg.lin_corrupt ==
				       (uint64_t)cfg.lin_corrupt - 1)
		res ^= 0x10;
	op_end(&c, res);
	check_word(w, "query");
}

static int do_releasing(struct thr *t, int kind, int arg)
{
	struct opctx c;
	int r;

	op_begin(t, &c, kind, arg, 0, RS_ASYNC, false);
	switch (kind) {
	case LIN_START: r = rs_start(rs, (unsigned)arg); break;
	case LIN_RETRY: r = rs_retry(rs); break;
	case LIN_CONT: r = rs_cont(rs); break;
	default: r = rs_reset(rs); break;
	}
	op_end(&c, r);
	/* start: needs-force (plain only) or needs-reset; cont: needs-reset;
	 * retry and reset never fail. */
	if (r && !((kind == LIN_START && (r == RS_ENEEDRESET || (r == RS_ENEEDFORCE && !arg))) ||
		   (kind == LIN_CONT && r == RS_ENEEDRESET)))
		bad_result(lin_kind_name(kind), r);
	/* Start latency: from the call until the edge settled. */
	if (!r && kind != LIN_RESET && !w_running(c.w_before) && rng_below(&t->rng, 2)) {
		int w;

		set_op(t, "wait after start");
		INC(st.waits);
		w = rs_wait(rs, 2000 * MS);
		if (w == 0 && w_may_run(rs_word(rs)))
			hist_add(&st.start_lat, now_ns() - c.op.inv);
		else if (w && w != RS_ETIMEDOUT)
			bad_result("rs_wait", w);
	}
	return r;
}

/* A stopping call from a non-vCPU thread: stop, io-error or pause. */
static void do_stopping(struct thr *t, int kind, int arg, int64_t timeout, const char *what)
{
	struct opctx c;
	int r;

	op_begin(t, &c, kind, arg, 0, timeout, false);
	set_op(t, what);
	if (kind == LIN_STOP)
		r = rs_stop(rs, timeout);
	else if (kind == LIN_IO_ERROR)
		r = rs_io_error(rs, timeout);
	else
		r = rs_pause(rs, (enum rs_pause)arg, timeout);
	op_end(&c, r);
	if (r && !(r == RS_ETIMEDOUT && timeout > 0))
		bad_result(what, r);
	if (r == 0 && timeout != RS_ASYNC) {
		/* Latency of stops that had to stop a running VM. */
		if (kind == LIN_STOP && w_running(c.w_before))
			hist_add(&st.stop_lat, c.op.resp - c.op.inv);
		stop_check(what, c.w_before);
	}
}

/* In calm phases one management thread keeps the VM running. */
static void keep_running(struct thr *t)
{
	uint64_t w = rs_word(rs);
	struct rs_state s;

	set_op(t, "calm");
	rs_decode(w, &s);
	do_read(t, false);
	if (rs_pause_rank(s.pause) == 4)
		do_releasing(t, LIN_RESET, 0);
	if (s.pause != RS_PAUSE_NONE || s.io_error || rs_pause_rank(s.pause) == 4)
		do_releasing(t, LIN_CONT, 0);
	INC(st.waits);
	rs_wait(rs, 50 * MS);
	sleep_ns(2 * MS);
}

static void *mgmt_main(void *arg)
{
	struct thr *t = arg;
	bool keeper = t == &thr_tab[THR_ROLES];

	while (!atomic_load(&g_stop)) {
		unsigned x;

		set_op(t, NULL);
		if (atomic_load(&g_calm)) {
			if (keeper)
				keep_running(t);
			else
				sleep_ns(1 * MS);
			continue;
		}
		between_ops(&t->rng);
		x = (unsigned)rng_below(&t->rng, 100);
		if (x < 20) {
			do_stopping(t, LIN_STOP, 0, pick_timeout(&t->rng), "rs_stop");
		} else if (x < 38) {
			do_releasing(t, LIN_START, 0);
		} else if (x < 48) {
			do_releasing(t, LIN_START, RS_START_FORCE);
		} else if (x < 60) {
			do_releasing(t, LIN_RETRY, 0);
		} else if (x < 74) {
			do_releasing(t, LIN_CONT, 0);
		} else if (x < 78) {
			do_releasing(t, LIN_RESET, 0);
		} else if (x < 92) {
			set_op(t, "query");
			do_read(t, false);
		} else {
			int r;

			set_op(t, "rs_wait");
			INC(st.waits);
			r = rs_wait(rs, rng_below(&t->rng, 2) ? RS_ASYNC : 5 * MS);
			if (r && r != RS_ETIMEDOUT)
				bad_result("rs_wait", r);
		}
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Internal lock holders
 */

/* While holding a lock that returned 0 (or settled after): no vCPU in a
 * guest slice, and no slice started. */
static void hold_and_check(struct thr *t, enum rs_lock lk, uint64_t w_locked)
{
	uint64_t c[MAX_VCPU_SLOTS];
	char gb[40];
	int64_t hold;
	int checks;

	if (skipped(V_EXCLUSION))
		return;
	INC(st.exclusion_checks);
	for (int i = 0; i < nslots; i++) {
		uint32_t g = vc_in_guest(i);

		c[i] = vc_count(i);
		if (g)
			violation(V_EXCLUSION, "%s held (lock returned 0 at edge %u), yet vCPU slot %d is "
					       "in guest (%s)",
				  rs_lock_name(lk), w_edge(w_locked), i, in_guest_str(g, gb, sizeof(gb)));
	}
	if (!(rs_word(rs) & RS_W_LOCK(lk)))
		violation(V_EXCLUSION, "%s held, but its bit reads clear", rs_lock_name(lk));
	set_op(t, "holding");
	if (chance(&t->rng, cfg.fault_rate * 5)) {
		/* Descheduled while holding. */
		INC(st.holder_desched);
		hold = rng_range(&t->rng, 2 * MS, 10 * MS);
		checks = 2;
	} else {
		hold = rng_range(&t->rng, 0, 300 * US);
		checks = 1 + (int)rng_below(&t->rng, 4);
	}
	for (int k = 0; k < checks; k++) {
		if (rng_below(&t->rng, 2))
			sleep_ns(hold / checks);
		else
			spin_ns(hold / checks);
		for (int i = 0; i < nslots; i++) {
			uint32_t g = vc_in_guest(i);
			uint64_t s = vc_count(i);

			if (g || s != c[i]) {
				violation(V_EXCLUSION, "%s held since edge %u, yet vCPU slot %d %s "
						       "(%s %" PRIu64 " -> %" PRIu64 "%s%s)",
					  rs_lock_name(lk), w_edge(w_locked), i,
					  g ? "is in guest" : "ran guest code",
					  cfg.kvm ? "guest counter" : "slices", c[i], s, g ? ", " : "",
					  g ? in_guest_str(g, gb, sizeof(gb)) : "");
				c[i] = s;
			}
		}
	}
}

static void *holder_main(void *arg)
{
	struct thr *t = arg;

	while (!atomic_load(&g_stop)) {
		enum rs_lock lk = (enum rs_lock)rng_below(&t->rng, RS_LOCK_COUNT);
		bool try = rng_below(&t->rng, 2);
		int64_t to;
		struct opctx c;
		bool checked = false;
		int r;

		set_op(t, NULL);
		if (atomic_load(&g_calm)) {
			sleep_ns(1 * MS);
			continue;
		}
		between_ops(&t->rng);
		sleep_ns(rng_range(&t->rng, 0, 1 * MS));
		switch (rng_below(&t->rng, 8)) {
		case 0: to = RS_ASYNC; break;
		case 1: to = rng_range(&t->rng, 20 * US, 300 * US); break;
		case 2:
			/* A try form waits only for the vCPUs: forever is safe. */
			if (try) {
				to = RS_FOREVER;
				break;
			}
			/* fall through */
		default: to = rng_range(&t->rng, 1 * MS, 4 * MS);
		}
		op_begin(t, &c, try ? LIN_TRYLOCK : LIN_LOCK, lk, 0, to, false);
		set_op(t, try ? "rs_trylock" : "rs_lock");
		r = try ? rs_trylock(rs, lk, to) : rs_lock(rs, lk, to);
		op_end(&c, r);
		if (r == RS_EBUSY)
			continue;
		if (r && r != RS_ETIMEDOUT) {
			bad_result(try ? "rs_trylock" : "rs_lock", r);
			continue;
		}
		if (r == 0 && to != RS_ASYNC) {
			hist_add(&st.lock_lat, c.op.resp - c.op.inv);
			checked = true;
		} else {
			/* Not waited for (async) or timed out: wait, then the
			 * lock's guarantee holds. */
			set_op(t, "rs_wait while holding");
			INC(st.waits);
			r = rs_wait(rs, 2000 * MS);
			if (r == 0)
				checked = true;
			else if (r != RS_ETIMEDOUT)
				bad_result("rs_wait", r);
		}
		if (checked)
			hold_and_check(t, lk, rs_word(rs));

		/* Release, sometimes with a pause reason in the same CAS. */
		{
			enum rs_pause p = RS_PAUSE_NONE;
			unsigned x = (unsigned)rng_below(&t->rng, 10);

			if (lk == RS_LOCK_PRE_MIGRATE && x < 4)
				p = RS_PAUSE_POSTMIGRATE;        /* migration succeeded */
			else if (lk == RS_LOCK_RESTORE && x < 4)
				p = RS_PAUSE_PAUSED;             /* restore failed */
			else if (x == 9)
				p = rng_below(&t->rng, 2) ? RS_PAUSE_PAUSED : RS_PAUSE_WATCHDOG;
			if (p == RS_PAUSE_NONE) {
				op_begin(t, &c, LIN_UNLOCK, lk, 0, RS_ASYNC, false);
				set_op(t, "rs_unlock");
				r = rs_unlock(rs, lk);
				op_end(&c, r);
				if (r)
					bad_result("rs_unlock of a held bit", r);
			} else {
				to = pick_timeout(&t->rng);
				op_begin(t, &c, LIN_UNLOCK_PAUSE, lk, p, to, false);
				set_op(t, "rs_unlock_pause");
				r = rs_unlock_pause(rs, lk, p, to);
				op_end(&c, r);
				if (r && !(r == RS_ETIMEDOUT && to > 0))
					bad_result("rs_unlock_pause of a held bit", r);
				if (r == 0 && to != RS_ASYNC)
					stop_check("rs_unlock_pause", c.w_before);
			}
		}
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Device threads: io-error, watchdog, panicked (and rarely shutdown)
 */

static void *device_main(void *arg)
{
	struct thr *t = arg;

	while (!atomic_load(&g_stop)) {
		unsigned x;

		set_op(t, NULL);
		if (atomic_load(&g_calm)) {
			sleep_ns(1 * MS);
			continue;
		}
		sleep_ns(rng_range(&t->rng, 100 * US, 3 * MS));
		x = (unsigned)rng_below(&t->rng, 100);
		if (x < 45)
			do_stopping(t, LIN_IO_ERROR, 0, pick_timeout(&t->rng), "rs_io_error");
		else if (x < 70)
			do_stopping(t, LIN_PAUSE, RS_PAUSE_WATCHDOG, pick_timeout(&t->rng),
				    "rs_pause(watchdog)");
		else if (x < 97)
			do_stopping(t, LIN_PAUSE, RS_PAUSE_PANICKED, pick_timeout(&t->rng),
				    "rs_pause(panicked)");
		else
			do_stopping(t, LIN_PAUSE,
				    rng_below(&t->rng, 2) ? RS_PAUSE_SHUTDOWN : RS_PAUSE_INTERNAL_ERROR,
				    pick_timeout(&t->rng), "rs_pause(rank 4)");
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Listeners
 *
 * --listeners N persistent listeners are added before the first edge and
 * stay to the end.  The churn thread adds and removes others all along,
 * and listeners add and remove some (themselves included) from inside a
 * run, call the query API and, now and then, rs_stop(RS_ASYNC) or
 * rs_start().  Every call checks, for the run it belongs to:
 *
 *   - runs never overlap (one call at a time), edges come in order, and
 *     within an edge the order is ascending priority on a start,
 *     descending on a stop (ties: the order of adding, reversed on a
 *     stop); a run skips edges only when the library coalesced them (an
 *     odd number in between, so that runs still alternate, and no more in
 *     all than rs_get_stats() says were coalesced);
 *   - each listener sees consecutive runs from its first to its last: no
 *     run twice, none missed; it sees no run that began before it was
 *     added, and sees the first run at or after the first edge made after
 *     rs_listener_add() returned (added inside a run: exactly the next
 *     run);
 *   - after rs_listener_remove() returned (outside a listener) it is never
 *     called again, and it was called for every run that began before the
 *     call; removed inside edge e's run, it sees no edge after e;
 *   - the state is the edge's own (running == odd edge, settling), the
 *     same for every listener of the edge, and the same as the event's;
 *     the word is still settling; RESUME e (or the record of the
 *     coalesced run that ends at e) has been produced (start), STOP e has
 *     not (stop);
 *   - stop: every vCPU is out of guest code, and no guest code runs from
 *     the stop listeners of edge e - 1 to the end of the start listeners
 *     of edge e (no vCPU in a slice; slice counters, or KVM guest
 *     counters, unchanged), nor, when a stop edge came during a start's
 *     run, until that stop's listeners.
 */

#define LREC_MAX 4096   /* listener records; a reused record gets a new generation */
#define LDYN_MAX 12     /* non-persistent listeners at once, at most */
#define LRING 1024      /* edge states seen by listeners, for the event checks */

enum { LR_FREE, LR_ADDING, LR_LIVE, LR_REMOVING, LR_REMOVED, LR_REMOVING_IN, LR_REMOVED_IN };

struct lrec {
	_Atomic uint32_t gen;          /* also in the opaque pointer: stale calls show */
	_Atomic int state;
	_Atomic int prio;
	_Atomic uint64_t order;        /* the library's add order (ties) */
	_Atomic bool persistent;
	_Atomic(rs_listener *) h;
	/*
	 * Edges, unwrapped (the first edge is 1).  lo: the first edge it may
	 * see; must_first: added inside the run of must_first - 1, it sees
	 * exactly that edge first; hi_first: added outside, the first edge
	 * made after rs_listener_add() returned, which it must see;
	 * dead_after: removed inside that edge's run.
	 */
	_Atomic uint64_t lo, must_first, hi_first, dead_after;
	_Atomic uint64_t first, last, calls;
};

static struct lrec *lrecs;
static _Atomic int lrec_hi;                  /* records used so far */
static pthread_mutex_t lpool_m = PTHREAD_MUTEX_INITIALIZER;  /* allocation, add order */
static uint64_t lorder;
static _Atomic int ldyn_live;

/* The runs as the listeners see them.  Calls never overlap (checked), so
 * only one writer at a time; atomics keep a race well defined when they
 * do overlap (a violation). */
static _Atomic int l_inflight;
static _Atomic uint64_t l_enter_ns;          /* a call runs since (the watchdog) */
static _Atomic uint64_t g_ledge;             /* the last edge whose run began */
static _Atomic uint64_t g_lprev, g_lprev2;   /* the runs before it (0: none) */
static _Atomic uint64_t g_lruns, g_lfirst;   /* runs so far; the first run's edge */
static _Atomic uint64_t g_lskipped;          /* edges between runs (coalesced) */
static _Atomic int l_prev_prio;
static _Atomic uint64_t l_prev_order;
static _Atomic uint64_t lring[LRING];        /* (edge << 32) | enc_state() */
static _Atomic uint64_t snap_edge;           /* the stop edge whose run took snap[] */
static _Atomic uint64_t snap[MAX_VCPU_SLOTS];
static _Atomic uint64_t l_norun;             /* a start run during which a stop edge came */

static void listener_fn(void *opaque, bool running, const struct rs_state *s);

/* A decoded state in 32 bits, to compare states: locks, io-error,
 * settling, pause (the edge is kept beside it). */
static uint32_t enc_state(const struct rs_state *s)
{
	return (s->locks & 0x3fu) | (s->io_error ? 1u << 6 : 0) | (s->settling ? 1u << 7 : 0) |
	       (uint32_t)s->pause << 8;
}

/* An edge (mod 2^32) as the full count, near ref. */
static uint64_t unwrap_edge(uint32_t e, uint64_t ref)
{
	uint32_t d = e - (uint32_t)ref;

	if (d < EDGE_HALF)
		return ref + d;
	d = -d;
	return ref > d ? ref - d : 0;
}

/* Was there a listener run for an edge in [a, b)?  From the ring of runs,
 * so only for ranges it still holds; else no. */
static bool run_between(uint64_t a, uint64_t b)
{
	for (uint64_t x = a; x < b && x < a + LRING; x++)
		if ((uint32_t)(atomic_load(&lring[x % LRING]) >> 32) == (uint32_t)x)
			return true;
	return false;
}

static void *lrec_opaque(int idx, uint32_t gen)
{
	return (void *)(((uintptr_t)gen << 16) | (uintptr_t)idx);
}

static int pick_prio(struct rng *r)
{
	static const int p[] = { -100, -50, -1, 0, 0, 1, 50, 100 };

	return p[rng_below(r, sizeof(p) / sizeof(p[0]))];
}

/*
 * Add a listener.  inside: from the listener run of edge u.  Returns the
 * record, or -1.
 */
static int listener_add(bool inside, uint64_t u, int prio, bool persistent)
{
	struct lrec *l = NULL;
	rs_listener *h = NULL;
	int idx = -1, hi, r, lib_prio = prio;
	uint32_t gen;

	pthread_mutex_lock(&lpool_m);
	hi = atomic_load(&lrec_hi);
	for (int i = 0; i < hi; i++)
		if (atomic_load(&lrecs[i].state) == LR_FREE) {
			idx = i;
			break;
		}
	if (idx < 0 && hi < LREC_MAX)
		atomic_store(&lrec_hi, (idx = hi) + 1);
	if (idx < 0) {
		pthread_mutex_unlock(&lpool_m);
		return -1;
	}
	l = &lrecs[idx];
	gen = atomic_load(&l->gen) + 1;
	atomic_store(&l->gen, gen);
	atomic_store(&l->state, LR_ADDING);
	atomic_store(&l->prio, prio);
	atomic_store(&l->persistent, persistent);
	atomic_store(&l->h, NULL);
	atomic_store(&l->first, 0);
	atomic_store(&l->last, 0);
	atomic_store(&l->calls, 0);
	atomic_store(&l->dead_after, 0);
	atomic_store(&l->hi_first, persistent ? 1 : 0);
	atomic_store(&l->lo, inside ? u + 1 : atomic_load(&g_ledge) + 1);
	atomic_store(&l->must_first, inside ? u + 1 : persistent ? 1 : 0);
	/* Ties run in the order of adding: the library numbers adds under its
	 * mutex, and this one (held across the call) makes ours the same. */
	atomic_store(&l->order, ++lorder);
	/* --plant order: one listener's priority is not the one the checker
	 * believes. */
	if (cfg.plant && !strcmp(cfg.plant, "order") && persistent && idx == 1)
		lib_prio = prio + 75;
	r = rs_listener_add(rs, listener_fn, lrec_opaque(idx, gen), lib_prio, &h);
	pthread_mutex_unlock(&lpool_m);
	if (r) {
		bad_result("rs_listener_add", r);
		atomic_store(&l->state, LR_FREE);
		return -1;
	}
	atomic_store(&l->h, h);
	if (!inside && !persistent) {
		/* Any edge after the word's current one is made after this
		 * point: its run sees the listener. */
		uint64_t e = unwrap_edge(w_edge(rs_word(rs)), atomic_load(&g_ledge));

		atomic_store(&l->hi_first, e + 1);
	}
	atomic_store(&l->state, LR_LIVE);
	if (!persistent) {
		int n = atomic_fetch_add(&ldyn_live, 1) + 1;

		if ((uint64_t)n > atomic_load(&st.l_max_live))
			atomic_store(&st.l_max_live, (uint64_t)n);
	}
	INC(*(inside ? &st.l_add_in : &st.l_add_out));
	return idx;
}

/* The first edge a listener had to see, or 0 if unknown yet. */
static uint64_t lrec_bound(struct lrec *l)
{
	uint64_t m = atomic_load(&l->must_first);

	return m ? m : atomic_load(&l->hi_first);
}

/* Checks once a listener is gone: it saw every edge up to `through` that
 * it had to see (runs that began before it was removed). */
static void lrec_gone_check(struct lrec *l, int idx, uint64_t through, const char *how)
{
	uint64_t b = lrec_bound(l), first = atomic_load(&l->first), last = atomic_load(&l->last);

	if (b && b <= through && last < through)
		violation(V_LISTENER, "listener #%d (prio %d) %s; edges %" PRIu64 "..%" PRIu64
				      " ran with it in their set, yet it was last called for edge %" PRIu64,
			  idx, atomic_load(&l->prio), how, b, through, last);
	if (first && b && first > b && run_between(b, first))
		violation(V_LISTENER, "listener #%d (prio %d) was first called for edge %" PRIu64
				      ", but a run at or after edge %" PRIu64 " had it in its set",
			  idx, atomic_load(&l->prio), first, b);
}

/* Remove a listener from outside any listener. */
static void listener_remove(int idx)
{
	struct lrec *l = &lrecs[idx];
	int expect = LR_LIVE, r;
	uint64_t began;

	if (!atomic_compare_exchange_strong(&l->state, &expect, LR_REMOVING))
		return;
	/* Every run up to this edge began before the call: once the remove
	 * returns, they are over and each of them called the listener. */
	began = atomic_load(&g_ledge);
	if (cfg.plant && !strcmp(cfg.plant, "remove")) {
		/* --plant remove: believe it removed before it is. */
		atomic_store(&l->state, LR_REMOVED);
		sleep_ns(2 * MS);
	}
	r = rs_listener_remove(rs, atomic_load(&l->h));
	if (r)
		bad_result("rs_listener_remove of a current listener", r);
	/* Release: a call that sees REMOVED came after the return. */
	atomic_store_explicit(&l->state, LR_REMOVED, memory_order_release);
	lrec_gone_check(l, idx, began, "was removed");
	if (!atomic_load(&l->persistent))
		atomic_fetch_sub(&ldyn_live, 1);
	INC(st.l_rm_out);
	atomic_store(&l->state, LR_FREE);
}

/* Records removed inside a run, once that run is over: final checks, then
 * free.  With all, every one (the end of the run). */
static void listener_retire(bool all)
{
	int hi = atomic_load(&lrec_hi);
	uint64_t gl = atomic_load(&g_ledge);

	for (int i = 0; i < hi; i++) {
		struct lrec *l = &lrecs[i];
		uint64_t da;

		if (atomic_load(&l->state) != LR_REMOVED_IN)
			continue;
		da = atomic_load(&l->dead_after);
		if (!all && gl <= da)
			continue;   /* its last run may still be going on */
		lrec_gone_check(l, i, da, "was removed inside a run");
		atomic_store(&l->state, LR_FREE);
	}
}

/* A live non-persistent listener, at random, or -1. */
static int pick_dynamic(struct rng *r)
{
	int hi = atomic_load(&lrec_hi), start;

	if (!hi)
		return -1;
	start = (int)rng_below(r, (uint64_t)hi);
	for (int k = 0; k < hi; k++) {
		int i = (start + k) % hi;

		if (atomic_load(&lrecs[i].state) == LR_LIVE && !atomic_load(&lrecs[i].persistent))
			return i;
	}
	return -1;
}

/* An asynchronous command from inside a listener, recorded for the
 * linearizability check (skipped while the gate is closed). */
static void listener_command(int kind)
{
	struct opctx c;
	int r;

	if (!op_begin(&thr_tab[THR_LISTENER], &c, kind, 0, 0, RS_ASYNC, true))
		return;
	if (kind == LIN_STOP) {
		INC(st.l_stop_in);
		r = rs_stop(rs, RS_ASYNC);
	} else {
		INC(st.l_start_in);
		r = rs_start(rs, 0);
	}
	op_end(&c, r);
	if (kind == LIN_STOP && r)
		bad_result("rs_stop(RS_ASYNC) from a listener", r);
	if (kind == LIN_START && r && r != RS_ENEEDFORCE && r != RS_ENEEDRESET)
		bad_result("rs_start from a listener", r);
}

/* The vCPUs, from a listener of edge e (unwrapped u); w: the word now. */
static void listener_vcpus(uint64_t u, uint32_t e, bool running, uint64_t w)
{
	uint64_t se = atomic_load(&snap_edge);
	uint64_t prev = atomic_load(&g_lprev), prev2 = atomic_load(&g_lprev2);
	/*
	 * Counters to compare with: on a start, the ones the stop listeners
	 * of the edge before left; on a stop, those of this run's earlier
	 * calls, or, if the stop edge came while the start listeners before
	 * it ran, those of the stop before that: the start never let a vCPU
	 * run ("a stop made during a start's listeners waits its turn").
	 * Before edge 1 no guest code ever ran: all zero.  ("Before" is the
	 * previous run: edges coalesced in between ran none.  But a stop edge
	 * that came during a start's run may have been coalesced away, with
	 * no net change, and then vCPUs ran: that case is only this stop
	 * edge coming right after the start.)
	 */
	bool norun = atomic_load(&l_norun) == prev && u == prev + 1;
	bool have = running ? se == prev : se == u || (se == prev2 && norun);
	char gb[40];

	if (running && edge_lt(e, w_edge(w)))
		atomic_store(&l_norun, u);
	if (!running && se == prev2 && norun)
		INC(st.l_norun);

	INC(st.l_checks);
	for (int i = 0; i < nslots; i++) {
		uint32_t g = vc_in_guest(i);
		uint64_t c = vc_count(i);

		if (g)
			violation(V_LISTENER, "a %s listener of edge %u runs while vCPU slot %d is in "
					      "guest (%s)",
				  running ? "start" : "stop", e, i, in_guest_str(g, gb, sizeof(gb)));
		/*
		 * No stamp verdict: a vCPU still active from before the stop
		 * may start one more slice after the next start's CAS, stamped
		 * with that start's edge, and only then go out; its stop and
		 * start listeners legitimately run after that.  What must not
		 * happen is a slice starting after the stop listeners: the
		 * counters.  The stamp says where such a slice came from.
		 */
		if (have && c != atomic_load(&snap[i])) {
			uint32_t sp = cfg.kvm ? 0 : atomic_load(&vcpus[i].stamp);
			char sb[48] = "";

			if (sp)
				snprintf(sb, sizeof(sb), ", last slice stamped edge %u", sp - 1);
			violation(V_LISTENER, "a %s listener of edge %u: vCPU slot %d ran guest code "
					      "since the stop listeners of edge %" PRIu64
					      " (%s %" PRIu64 " -> %" PRIu64 "%s)",
				  running ? "start" : "stop", e, i, se,
				  cfg.kvm ? "guest counter" : "slices", atomic_load(&snap[i]), c, sb);
		}
		if (!running)
			atomic_store(&snap[i], c);
	}
	if (!running)
		atomic_store(&snap_edge, u);
}

/* The edge counter (unwrapped near ref) of the newest event or record of
 * coalesced edges, or UINT64_MAX if there is none (or it is a reader-side
 * record). */
static uint64_t newest_record_edge(uint64_t ref)
{
	struct rs_event ev;
	uint64_t cursor = rs_events_cursor(rs) - 1;

	if (!cursor || rs_events_read(rs, &cursor, &ev, 1, NULL) != 1 || !ev.word)
		return UINT64_MAX;
	return unwrap_edge(w_edge(ev.word), ref);
}

static void listener_fn(void *opaque, bool running, const struct rs_state *s)
{
	uintptr_t o = (uintptr_t)opaque;
	int idx = (int)(o & 0xffff);
	uint32_t gen = (uint32_t)(o >> 16), e = s->edge;
	struct lrec *l = idx < atomic_load(&lrec_hi) ? &lrecs[idx] : NULL;
	uint64_t t0 = now_ns(), gl, u;
	int prio = l ? atomic_load(&l->prio) : 0;
	uint64_t order = l ? atomic_load(&l->order) : 0;
	struct rng *r = hook_rng();

	if (atomic_fetch_add(&l_inflight, 1) != 0)
		violation(V_LISTENER, "two listener calls overlap (one for edge %u)", e);
	atomic_store(&l_enter_ns, t0);
	INC(st.l_calls);

	/* The run this call belongs to. */
	gl = atomic_load(&g_ledge);
	u = unwrap_edge(e, gl);
	if (u > gl) {
		/* A new run.  Edges in between were coalesced: an odd jump,
		 * so that runs alternate (totals checked at the end). */
		if (u != gl + 1) {
			if (!((u - gl) & 1))
				violation(V_LISTENER, "a listener ran for edge %" PRIu64 " right after "
						      "the run of edge %" PRIu64 ": runs no longer "
						      "alternate", u, gl);
			atomic_fetch_add(&g_lskipped, u - gl - 1);
			INC(st.l_coalesced_runs);
		}
		atomic_store(&g_lprev2, atomic_load(&g_lprev));
		atomic_store(&g_lprev, gl);
		atomic_store(&g_ledge, u);
		if (!atomic_fetch_add(&g_lruns, 1))
			atomic_store(&g_lfirst, u);
		INC(st.l_edges);
		atomic_store(&lring[u % LRING], (u << 32) | enc_state(s));
	} else if (u == gl && gl) {
		int pp = atomic_load(&l_prev_prio);
		uint64_t po = atomic_load(&l_prev_order), rv = atomic_load(&lring[u % LRING]);
		bool ok = running ? prio > pp || (prio == pp && order > po)
				  : prio < pp || (prio == pp && order < po);

		if (!ok)
			violation(V_LISTENER, "%s edge %u: a listener of priority %d (added #%" PRIu64
					      ") ran after one of priority %d (#%" PRIu64 "); expected "
					      "%s priority",
				  running ? "start" : "stop", e, prio, order, pp, po,
				  running ? "ascending" : "descending");
		if ((uint32_t)(rv >> 32) == (uint32_t)u && (uint32_t)rv != enc_state(s))
			violation(V_LISTENER, "edge %u: listeners got different states (0x%08x, then "
					      "0x%08x)", e, (uint32_t)rv, enc_state(s));
	} else {
		violation(V_LISTENER, "a listener ran for edge %" PRIu64 " right after the run of "
				      "edge %" PRIu64 ": out of order or twice", u, gl);
	}
	atomic_store(&l_prev_prio, prio);
	atomic_store(&l_prev_order, order);

	/* This listener's own edges. */
	if (!l || atomic_load(&l->gen) != gen) {
		violation(V_LISTENER, "listener #%d (generation %u) called for edge %" PRIu64
				      " after its rs_listener_remove() returned (record reused)",
			  idx, gen, u);
	} else {
		int lst = atomic_load_explicit(&l->state, memory_order_acquire);
		uint64_t last = atomic_load(&l->last), da = atomic_load(&l->dead_after);
		uint64_t lo = atomic_load(&l->lo), mf = atomic_load(&l->must_first);
		uint64_t hf = atomic_load(&l->hi_first), prev = atomic_load(&g_lprev);

		if (lst == LR_REMOVED || lst == LR_FREE)
			violation(V_LISTENER, "listener #%d (prio %d) called for edge %" PRIu64
					      " after its rs_listener_remove() returned", idx, prio, u);
		if ((lst == LR_REMOVING_IN || lst == LR_REMOVED_IN) && da && u > da)
			violation(V_LISTENER, "listener #%d (prio %d), removed inside the run of edge "
					      "%" PRIu64 ", called for edge %" PRIu64, idx, prio, da, u);
		if (!last) {
			if (u < lo)
				violation(V_LISTENER, "listener #%d (prio %d) called for edge %" PRIu64
						      ", whose run began before it was added", idx, prio, u);
			else if (mf && prev != mf - 1)
				violation(V_LISTENER, "listener #%d (prio %d) first called for edge %"
						      PRIu64 ", not in the run right after edge %" PRIu64
						      "'s, where it was added", idx, prio, u, mf - 1);
			else if (hf && prev >= hf)
				violation(V_LISTENER, "listener #%d (prio %d) first called for edge %"
						      PRIu64 ": the run of edge %" PRIu64 ", made after it "
						      "was added, did not call it", idx, prio, u, prev);
			atomic_store(&l->first, u);
		} else if (last != prev) {
			violation(V_LISTENER, "listener #%d (prio %d) called for edge %" PRIu64
					      " after edge %" PRIu64 ": %s",
				  idx, prio, u, last, u <= last ? "twice or out of order" : "runs missed");
		}
		atomic_store(&l->last, u);
		INC(l->calls);
	}

	/* The edge's state, the word, the events. */
	if (s->running != running || (e & 1) != (uint32_t)running || !s->settling || s->may_run)
		violation(V_LISTENER, "a listener of edge %u got running=%d with state running=%d "
				      "settling=%d may_run=%d",
			  e, running, s->running, s->settling, s->may_run);
	{
		uint64_t w = rs_word(rs);
		uint64_t newest = newest_record_edge(u);
		uint64_t prev = atomic_load(&g_lprev);

		if (!w_settling(w) || edge_lt(w_edge(w) + ((w & RS_W_OVERFLOW) ? 1 : 0), e))
			violation(V_LISTENER, "a listener of edge %u runs while the word is 0x%016" PRIx64
					      " (edge %u, %s)", e, w, w_edge(w),
				  w_settling(w) ? "settling" : "settled");
		/* RESUME (or the record of the coalesced run ending here)
		 * comes before the start listeners; STOP (or that record)
		 * after the stop listeners, and every edge before this run's
		 * has its event or record.  (The newest record cannot change
		 * meanwhile: records are produced by the settler, which is
		 * running this listener.) */
		if (newest != UINT64_MAX &&
		    (running ? newest != u : newest < prev || newest >= u))
			violation(V_LISTENER, "a %s listener of edge %u runs when the newest event is "
					      "at edge %" PRIu64 " (expected %s)",
				  running ? "start" : "stop", e, newest,
				  running ? "this edge" : "between the previous run and this edge");
		listener_vcpus(u, e, running, w);
	}

	/* What a device model may do from here: queries, asynchronous
	 * commands, adding and removing listeners. */
	if (chance(r, 0.25)) {
		unsigned reg = 0, out = 0;

		INC(st.l_queries);
		rs_vcpu_count(rs, &reg, &out);
		if (out > reg || reg > (unsigned)nslots)
			violation(V_RESULT, "rs_vcpu_count from a listener: %u registered, %u out", reg,
				  out);
	}
	if (!atomic_load(&g_calm) && !atomic_load(&g_stop)) {
		if (chance(r, 1.0 / 256)) {
			listener_command(LIN_STOP);
			/* (A stop edge during a start run: no vCPU may run
			 * before its own listeners.) */
			if (running && edge_lt(e, w_edge(rs_word(rs))))
				atomic_store(&l_norun, u);
		}
		else if (!running && chance(r, 1.0 / 1024))
			listener_command(LIN_START);
	}
	if (!atomic_load(&g_stop)) {
		if (chance(r, 1.0 / 128) && atomic_load(&ldyn_live) < LDYN_MAX)
			listener_add(true, u, pick_prio(r), false);
		if (chance(r, 1.0 / 128)) {
			/* Now and then itself. */
			int victim = l && !atomic_load(&l->persistent) && chance(r, 0.25) ? idx
											  : pick_dynamic(r);
			int expect = LR_LIVE;

			if (victim >= 0 &&
			    atomic_compare_exchange_strong(&lrecs[victim].state, &expect, LR_REMOVING_IN)) {
				int rr;

				atomic_store(&lrecs[victim].dead_after, u);
				rr = rs_listener_remove(rs, atomic_load(&lrecs[victim].h));
				if (rr)
					bad_result("rs_listener_remove from a listener", rr);
				atomic_store(&lrecs[victim].state, LR_REMOVED_IN);
				atomic_fetch_sub(&ldyn_live, 1);
				INC(st.l_rm_in);
				if (victim == idx)
					INC(st.l_rm_self);
			}
		}
	}

	hist_add(&st.listener_lat, now_ns() - t0);
	atomic_store(&l_enter_ns, 0);
	atomic_fetch_sub(&l_inflight, 1);
}

static void *churn_main(void *arg)
{
	struct thr *t = &thr_tab[THR_CHURN];

	(void)arg;
	while (!atomic_load(&g_stop)) {
		int n;

		set_op(t, NULL);
		sleep_ns(rng_range(&t->rng, 200 * US, 3 * MS));
		listener_retire(false);
		n = atomic_load(&ldyn_live);
		if (n < 2 || (n < LDYN_MAX && rng_below(&t->rng, 2))) {
			set_op(t, "rs_listener_add");
			listener_add(false, 0, pick_prio(&t->rng), false);
		} else {
			int i = pick_dynamic(&t->rng);

			set_op(t, "rs_listener_remove");
			if (i >= 0)
				listener_remove(i);
		}
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Event readers
 *
 * Three readers apply the same rules: the monitor polls rs_events_read()
 * with lost != NULL; a waiter blocks in rs_events_wait(); a main-loop
 * reader polls the eventfd, reads it, then drains rs_events_read() with
 * lost == NULL, so losses come as RS_EVENT_LOST records.
 */

static _Atomic bool g_cons_exit;   /* the consumers drain once more and end */

struct evr {
	const char *name;
	uint64_t cursor, expect, last_time, last_seq;
	uint64_t last_edge;        /* the edge counter of the last record, unwrapped */
	_Atomic uint64_t *n_events, *n_lost;
};

static void evr_init(struct evr *r, const char *name, uint64_t cursor, _Atomic uint64_t *n_events,
		     _Atomic uint64_t *n_lost)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->cursor = r->expect = cursor ? cursor : 1;
	r->n_events = n_events;
	r->n_lost = n_lost;
}

/* A record of coalesced edges (lost, with the word that ended the run): the
 * run changed running exactly when it has an odd number of edges, and the
 * edge counter went up by one then, by two if not. */
static void lost_run_check(struct evr *r, const struct rs_event *e)
{
	uint64_t ue = unwrap_edge(w_edge(e->word), r->last_edge);
	bool odd = e->lost & 1;

	if ((w_edge(e->word) & 1) != (uint32_t)w_running(e->word) ||
	    ((e->seq + e->lost - 1) & 1) != (uint32_t)w_running(e->word))
		violation(V_EVENTS, "%s: a run of %" PRIu64 " coalesced edges from %" PRIu64
				    " ends with word 0x%016" PRIx64 ", whose edge counter or running "
				    "flag does not fit", r->name, e->lost, e->seq, e->word);
	if (r->last_edge && r->last_seq + 1 == e->seq && ue != r->last_edge + (odd ? 1 : 2))
		violation(V_EVENTS, "%s: a run of %" PRIu64 " coalesced edges moved the edge counter "
				    "from %" PRIu64 " to %" PRIu64, r->name, e->lost, r->last_edge, ue);
	r->last_seq = e->seq + e->lost - 1;
	r->last_edge = ue;
}

/* What one rs_events_read() returned: n records from cursor `before`, and
 * the loss it reported through *lost (lost_null: it was called with NULL). */
static void evr_check(struct evr *r, const struct rs_event *buf, int n, uint64_t before,
		      uint64_t lost, bool lost_null)
{
	if (lost) {
		atomic_fetch_add(r->n_lost, lost);
		r->expect = before + lost;
		if (n > 0 && buf[0].seq != r->expect)
			violation(V_EVENTS, "%s: after a loss of %" PRIu64 " from cursor %" PRIu64
					    ", the first event is %" PRIu64 ", not %" PRIu64,
				  r->name, lost, before, buf[0].seq, r->expect);
	}
	for (int i = 0; i < n; i++) {
		const struct rs_event *e = &buf[i];
		enum rs_event_kind want = e->seq & 1 ? RS_EVENT_RESUME : RS_EVENT_STOP;

		if (e->kind == RS_EVENT_LOST) {
			/* Never a silent gap: the record names the first seq lost
			 * (where the reader was) and how many; it comes first. */
			if (!lost_null || i != 0 || e->seq != r->expect || !e->lost)
				violation(V_EVENTS, "%s: a loss record at position %d says %" PRIu64
						    " lost from %" PRIu64 " (expected from %" PRIu64 "%s)",
					  r->name, i, e->lost, e->seq, r->expect,
					  lost_null ? "" : "; lost was not NULL");
			atomic_fetch_add(r->n_lost, e->lost);
			INC(st.ef_lost_recs);
			r->expect = e->seq + e->lost;
			if (e->word)
				lost_run_check(r, e);
			continue;
		}
		if (e->seq != r->expect)
			violation(V_EVENTS, "%s: event %" PRIu64 " follows %" PRIu64 " (expected %" PRIu64
					    ")", r->name, e->seq, r->expect - 1, r->expect);
		if (e->kind != want)
			violation(V_EVENTS, "%s: event %" PRIu64 " is %s: edge %" PRIu64 " is a %s edge",
				  r->name, e->seq, e->kind == RS_EVENT_STOP ? "STOP" : "RESUME", e->seq,
				  want == RS_EVENT_STOP ? "stop" : "start");
		/* The word just after the edge's CAS: its running flag says
		 * which kind, its edge counter's parity too, and the counter
		 * goes up by one from the event before (when no record came in
		 * between). */
		if (w_running(e->word) != (e->kind == RS_EVENT_RESUME) ||
		    (w_edge(e->word) & 1) != (e->seq & 1) ||
		    (r->last_edge && r->expect == e->seq && r->last_seq + 1 == e->seq &&
		     w_edge(e->word) != (uint32_t)(r->last_edge + 1))) {
			violation(V_EVENTS, "%s: event %" PRIu64 " (%s) carries word 0x%016" PRIx64
					    " (edge %u, %s)",
				  r->name, e->seq, e->kind == RS_EVENT_STOP ? "STOP" : "RESUME", e->word,
				  w_edge(e->word), w_running(e->word) ? "running" : "stopped");
		} else {
			struct rs_state d;

			rs_decode(e->word, &d);
			if (d.running != e->state.running || d.edge != e->state.edge ||
			    d.locks != e->state.locks || d.pause != e->state.pause ||
			    d.io_error != e->state.io_error)
				violation(V_EVENTS, "%s: event %" PRIu64 ": state differs from its decoded "
						    "word 0x%016" PRIx64, r->name, e->seq, e->word);
		}
		if (e->time_ns < r->last_time)
			violation(V_EVENTS, "%s: event %" PRIu64 " is older than the one before it",
				  r->name, e->seq);
		if (cfg.listeners) {
			/* STOP comes after the stop listeners; both kinds carry
			 * the state the listeners got.  (Listener runs go by
			 * the edge counter.) */
			uint64_t gl = atomic_load(&g_ledge);
			uint64_t ue = unwrap_edge(w_edge(e->word), gl);
			uint64_t rv = atomic_load(&lring[ue % LRING]);

			if (e->kind == RS_EVENT_STOP && gl < ue)
				violation(V_LISTENER, "%s: %s event %" PRIu64 " read, but the listeners "
						      "have run only up to edge %" PRIu64, r->name,
					  e->kind == RS_EVENT_STOP ? "STOP" : "RESUME", e->seq, gl);
			if ((uint32_t)(rv >> 32) == (uint32_t)ue &&
			    (uint32_t)rv != enc_state(&e->state))
				violation(V_LISTENER, "%s: event %" PRIu64 " carries state 0x%08x, its "
						      "listeners got 0x%08x", r->name, e->seq,
					  enc_state(&e->state), (uint32_t)rv);
		}
		r->last_time = e->time_ns;
		r->expect = e->seq + 1;
		r->last_seq = e->seq;
		r->last_edge = unwrap_edge(w_edge(e->word), r->last_edge);
		atomic_fetch_add(r->n_events, 1);
	}
	if (n > 0 || lost) {
		uint64_t w = rs_word(rs);
		uint32_t we = w_edge(w), s = (uint32_t)r->last_edge;

		/* An event is produced after its edge: the word's edge is at
		 * or beyond it (while edges are coalesced, the counter may sit
		 * one below the last edge that joined the backlog). */
		if (r->last_seq && (w & RS_W_OVERFLOW ? edge_lt(we + 1, s) : edge_lt(we, s)))
			violation(V_EVENTS, "%s: event %" PRIu64 " (edge counter %u) seen before the word "
					    "reached it (edge %u)", r->name, r->last_seq, s, we);
	}
}

/* Read everything there is; returns the number of calls that returned
 * something. */
static int evr_drain(struct evr *r, struct rng *rng, bool lost_null)
{
	struct rs_event buf[16];
	int calls = 0;

	for (;;) {
		uint64_t lost = 0, before = r->cursor;
		size_t want = 1 + (size_t)rng_below(rng, 16);
		int n = rs_events_read(rs, &r->cursor, buf, want, lost_null ? NULL : &lost);

		if (n < 0) {
			bad_result("rs_events_read", n);
			return calls;
		}
		evr_check(r, buf, n, before, lost, lost_null);
		if (n == 0 && !lost)
			return calls;
		calls++;
	}
}

/* Sometimes a reader naps long enough for the ring to overwrite events. */
static void evr_nap(struct thr *t, double p)
{
	if (atomic_load(&g_stop) || !chance(&t->rng, p))
		return;
	uint64_t end = now_ns() + (uint64_t)rng_range(&t->rng, 20 * MS, 150 * MS);

	INC(st.ef_naps);
	set_op(t, "nap");
	while (now_ns() < end && !atomic_load(&g_stop))
		sleep_ns(2 * MS);
}

static struct evr ew_reader, ef_reader;

/*
 * The blocking reader.  rs_events_wait(cursor) must return 0 at once when
 * an event >= cursor already exists, must then have something to read,
 * must not time out early, and must not sleep through an event for long.
 */
static void *evwait_main(void *arg)
{
	struct thr *t = &thr_tab[THR_EVWAIT];
	struct evr *r = &ew_reader;

	(void)arg;
	while (!atomic_load(&g_cons_exit)) {
		uint64_t c0, t0, t1;
		int64_t to;
		int res;

		set_op(t, NULL);
		evr_nap(t, 0.01);
		/* Long waits (beyond the liveness bound, the limit on a
		 * wake-up's delay) only while the run goes on: the teardown
		 * does not wait for them. */
		switch (rng_below(&t->rng, 10)) {
		case 0: to = RS_ASYNC; break;
		case 1: case 2:
			if (!atomic_load(&g_stop)) {
				to = cfg.live_ns + rng_range(&t->rng, 50 * MS, 200 * MS);
				break;
			}
			/* fall through */
		default: to = rng_range(&t->rng, 1 * MS, 20 * MS);
		}
		c0 = rs_events_cursor(rs);
		set_op(t, "rs_events_wait");
		t0 = now_ns();
		res = rs_events_wait(rs, r->cursor, to);
		t1 = now_ns();
		INC(st.ew_calls);
		if (res == RS_ETIMEDOUT) {
			struct rs_event ev;
			uint64_t peek = r->cursor, lost = 0;

			INC(st.ew_timeouts);
			if (c0 > r->cursor)
				violation(V_EVENTS, "rs_events_wait(cursor %" PRIu64 ") timed out, but event %"
						    PRIu64 " existed before the call", r->cursor, c0 - 1);
			if (to != RS_ASYNC && t1 - t0 < (uint64_t)to)
				violation(V_EVENTS, "rs_events_wait timed out after %.3f ms, before its "
						    "timeout of %.3f ms", (double)(t1 - t0) / 1e6,
					  (double)to / 1e6);
			/* A wake-up slept through: an event produced well before
			 * the wait gave up (the bound is the liveness bound). */
			if (rs_events_read(rs, &peek, &ev, 1, &lost) == 1 && !lost &&
			    ev.time_ns >= t0 && ev.time_ns + (uint64_t)cfg.live_ns < t1)
				violation(V_EVENTS, "rs_events_wait(cursor %" PRIu64 ") slept through event %"
						    PRIu64 ", produced %.1f ms before it timed out",
					  r->cursor, ev.seq, (double)(t1 - ev.time_ns) / 1e6);
			continue;
		}
		if (res) {
			bad_result("rs_events_wait", res);
			continue;
		}
		INC(st.ew_woken);
		set_op(t, "read");
		if (!evr_drain(r, &t->rng, false))
			violation(V_EVENTS, "rs_events_wait(cursor %" PRIu64 ") returned 0, but "
					    "rs_events_read() found nothing", r->cursor);
	}
	set_op(t, "final drain");
	evr_drain(r, &t->rng, false);
	set_op(t, NULL);
	return NULL;
}

/*
 * The main-loop reader: poll the eventfd, read it (clearing the
 * readiness), then drain with lost == NULL.  An unread event with the fd
 * not readable is an eventfd write still to come; for longer than twice
 * the liveness bound, it is a missed notification.
 */
static void *evfd_main(void *arg)
{
	struct thr *t = &thr_tab[THR_EVFD];
	struct evr *r = &ef_reader;
	uint64_t stale_since = 0;
	int fd, fd2;

	(void)arg;
	set_op(t, "rs_events_fd");
	fd = rs_events_fd(rs);
	fd2 = rs_events_fd(rs);
	if (fd < 0 || fd2 != fd) {
		violation(V_RESULT, "rs_events_fd returned %d, then %d", fd, fd2);
		fd = -1;
	}
	while (fd >= 0 && !atomic_load(&g_cons_exit)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t pending, now, v = 0;
		ssize_t k;
		int pr;

		set_op(t, NULL);
		evr_nap(t, 0.02);
		/* Events below this exist now. */
		pending = rs_events_cursor(rs);
		set_op(t, "poll");
		pr = poll(&p, 1, (int)rng_range(&t->rng, 1, 20));
		INC(st.ef_polls);
		now = now_ns();
		if (pr < 0) {
			if (errno != EINTR)
				violation(V_RESULT, "poll on the events fd: %s", strerror(errno));
			continue;
		}
		if (pr == 0) {
			if (pending <= r->cursor)
				stale_since = 0;
			else if (!stale_since)
				stale_since = now;
			else if (now - stale_since > 2 * (uint64_t)cfg.live_ns)
				violation(V_EVENTS, "the events fd has not been readable for %.0f ms while "
						    "event %" PRIu64 " is unread", (double)(now - stale_since) / 1e6,
					  r->cursor);
			continue;
		}
		stale_since = 0;
		INC(st.ef_ready);
		/* Clear first, then drain: nothing is missed that way. */
		k = read(fd, &v, sizeof(v));
		if (k != (ssize_t)sizeof(v) || v == 0)
			violation(V_RESULT, "the events fd polled readable, but read returned %zd (%s)", k,
				  k < 0 ? strerror(errno) : "no count");
		set_op(t, "read");
		evr_drain(r, &t->rng, true);
	}
	set_op(t, "final drain");
	evr_drain(r, &t->rng, true);
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Monitor: events, liveness, watchdog, phases, progress
 */

static struct evr mon_reader;

/* The monitor's reader: rs_events_read() every 2 ms, lost != NULL. */
static void read_events(void)
{
	struct rs_event buf[64];

	for (;;) {
		uint64_t lost = 0, before = mon_reader.cursor;
		int n = rs_events_read(rs, &mon_reader.cursor, buf, 64, &lost);

		if (n < 0) {
			bad_result("rs_events_read", n);
			return;
		}
		evr_check(&mon_reader, buf, n, before, lost, false);
		if (n > 0 || lost)
			atomic_store(&st.last_seq, mon_reader.last_seq);
		if (n < 64 && !lost)
			return;
	}
}

static bool live_valid;
static uint32_t live_edge;

static void liveness(uint64_t now)
{
	uint64_t w = rs_word(rs);
	uint32_t e = w_edge(w);

	check_word(w, "monitor");
	if (!w_may_run(w)) {
		live_valid = false;
		return;
	}
	if (!live_valid || e != live_edge) {
		/* A new run period: start every vCPU's clock now. */
		live_valid = true;
		live_edge = e;
		INC(st.liveness_windows);
		for (int i = 0; i < nslots; i++)
			vcpus[i].lv_since = 0;
		return;
	}
	for (int i = 0; i < nslots; i++) {
		struct vcpu *v = &vcpus[i];
		uint64_t s, h;
		uint32_t g;

		if (atomic_load(&v->life) != VL_REGISTERED || atomic_load(&v->exit_flag)) {
			v->lv_since = 0;
			continue;
		}
		s = vc_count(i);
		h = vc_halts(i);
		g = vc_in_guest(i);
		/* Progress: a slice entered or the guest counter moved, a halt,
		 * or (simulated) in a slice of this very run. */
		if (!v->lv_since || atomic_load(&v->halted) || h != v->lv_halts || s != v->lv_slices ||
		    (g && g != IN_GUEST_NOSTAMP && g - 1 == e)) {
			v->lv_since = now;
			v->lv_slices = s;
			v->lv_halts = h;
			continue;
		}
		if (now - v->lv_since > (uint64_t)cfg.live_ns) {
			violation(V_LIVENESS, "vCPU slot %d (%s) made no progress for %.0f ms while the VM "
					      "was runnable (edge %u, word 0x%016" PRIx64 ")",
				  i, cfg.kvm ? "kvm" : v->blocking ? "blocking" : "busy",
				  (double)(now - v->lv_since) / 1e6, e, w);
			v->lv_since = now;
		}
	}
}

static void print_vcpu_info(const struct rs_vcpu_info *info, void *arg)
{
	const struct vcpu *v = info->opaque;

	(void)arg;
#ifdef RS_STRESS_KVM
	if (cfg.kvm) {
		int i = rk_vcpu_index(g_vm, info->opaque);
		char d[200] = "?";

		if (i >= 0)
			rk_vcpu_describe(g_vm, (unsigned)i, d, sizeof(d));
		fprintf(stderr, "    vcpu slot %d: %s%s, out for %.3f ms, unacked for %.3f ms; %s, "
				"guest counter %u\n",
			i, info->active ? "active" : "out", info->parked ? " parked" : "",
			(double)info->out_for_ns / 1e6, (double)info->unacked_ns / 1e6, d,
			i >= 0 ? rk_guest_counter(g_vm, (unsigned)i) : 0);
		return;
	}
#endif
	fprintf(stderr, "    vcpu slot %d: %s%s, out for %.3f ms, unacked for %.3f ms; harness: %s, "
			"in_guest=%u, slices=%" PRIu64 ", halted=%d, exit=%d\n",
		v->index, info->active ? "active" : "out", info->parked ? " parked" : "",
		(double)info->out_for_ns / 1e6, (double)info->unacked_ns / 1e6,
		v->blocking ? "blocking" : "busy", atomic_load(&v->in_guest),
		atomic_load(&v->slices), atomic_load(&v->halted), atomic_load(&v->exit_flag));
}

static void dump_state(const char *why)
{
	uint64_t w = rs_word(rs);
	struct rs_state s;
	uint64_t now = now_ns();
	char locks[64] = "";

	rs_decode(w, &s);
	for (int r = 0; r < RS_LOCK_COUNT; r++)
		if (s.locks & (1u << r))
			snprintf(locks + strlen(locks), sizeof(locks) - strlen(locks), "%s%s",
				 locks[0] ? "," : "", rs_lock_name(r));
	pthread_mutex_lock(&report_lock);
	fprintf(stderr, "runstate-stress: state dump (%s) at %.3f s\n", why, (double)(now - g_t0) / 1e9);
	fprintf(stderr, "  word 0x%016" PRIx64 ": %s%s%s io-error=%d locks=%s pause=%s edge=%u%s%s (%s)\n", w,
		s.running ? "running" : "stopped", s.may_run ? " may-run" : "",
		s.settling ? " settling" : "", s.io_error, locks[0] ? locks : "-",
		rs_pause_name(s.pause), s.edge, w & RS_W_PARKED ? " PK" : "",
		w & RS_W_LOCKWAIT ? " LW" : "", rs_legacy_status(w));
	fprintf(stderr, "  threads (operation, for how long):\n");
	for (int i = 0; i < thr_count; i++) {
		struct thr *t = &thr_tab[i];
		const char *op;

		if (!atomic_load(&t->used))
			continue;
		op = atomic_load(&t->op);
		fprintf(stderr, "    %-10s %-24s %.3f ms\n", t->name, op ? op : "(between ops)",
			(double)(now - atomic_load(&t->since)) / 1e6);
	}
	fprintf(stderr, "  vCPUs (rs_vcpu_foreach):\n");
	pthread_mutex_unlock(&report_lock);
	rs_vcpu_foreach(rs, print_vcpu_info, NULL);
	print_replay(stderr);
}

static void print_summary(FILE *f, double elapsed);
static int expect_status(void);

static void hang_exit(uint64_t now)
{
	dump_state("hang");
	print_summary(stdout, (double)(now - g_t0) / 1e9);
	fflush(stdout);
	_exit(cfg.expect ? expect_status() : 1);
}

static void watchdog(uint64_t now)
{
	for (int i = 0; i < thr_count; i++) {
		struct thr *t = &thr_tab[i];
		const char *op;
		uint64_t since;

		if (!atomic_load_explicit(&t->used, memory_order_acquire))
			continue;
		op = atomic_load_explicit(&t->op, memory_order_acquire);
		since = atomic_load_explicit(&t->since, memory_order_relaxed);
		if (!op || now < since || now - since <= (uint64_t)cfg.hang_ns)
			continue;
		/* vCPUs may legitimately wait while the VM is stopped; the
		 * liveness check covers them when it is runnable. */
		if (t->vcpu && strcmp(op, "register") && strcmp(op, "unregister"))
			continue;
		violation(V_HANG, "thread %s has been in '%s' for %.0f ms", t->name, op,
			  (double)(now - since) / 1e6);
		hang_exit(now);
	}
	/* A listener call, on whatever thread (a vCPU's too). */
	{
		uint64_t since = atomic_load(&l_enter_ns);

		if (since && now > since && now - since > (uint64_t)cfg.hang_ns) {
			violation(V_HANG, "a listener call has been running for %.0f ms",
				  (double)(now - since) / 1e6);
			hang_exit(now);
		}
	}
}

static void *monitor_main(void *arg)
{
	struct thr *t = &thr_tab[THR_MONITOR];
	bool tty = isatty(1) && !cfg.quiet && !cfg.json;
	uint64_t next_progress = 0, phase_end = g_t0 + (uint64_t)cfg.storm_ns;

	(void)arg;
	while (!atomic_load(&g_monitor_exit)) {
		uint64_t now;

		set_op(t, NULL);
		sleep_ns(2 * MS);
		now = now_ns();
		if (now >= phase_end && !atomic_load(&g_stop)) {
			bool calm = !atomic_load(&g_calm);

			atomic_store(&g_calm, calm);
			phase_end = now + (uint64_t)(calm ? cfg.calm_ns : cfg.storm_ns);
		}
		set_op(t, "events");
		read_events();
		set_op(t, "liveness");
		liveness(now);
		set_op(t, NULL);
		watchdog(now);
		if (atomic_load(&vtotal) && !atomic_exchange(&g_dumped, true))
			dump_state("first violation");
		if (tty && now >= next_progress) {
			next_progress = now + 250 * MS;
			printf("\r%7.1f s  ops %-10" PRIu64 " transitions %-9" PRIu64 " violations %-3ld "
			       "vcpus %-3d listeners %-3d %s ",
			       (double)(now - g_t0) / 1e9, atomic_load(&st.ops_total),
			       atomic_load(&st.last_seq), atomic_load(&vtotal), atomic_load(&nplugged),
			       cfg.listeners + atomic_load(&ldyn_live),
			       atomic_load(&g_calm) ? "calm " : "storm");
			fflush(stdout);
		}
	}
	if (tty)
		printf("\n");
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Output
 */

static bool is_stopping_kind(int k)
{
	return k == LIN_STOP || k == LIN_IO_ERROR || k == LIN_PAUSE || k == LIN_LOCK ||
	       k == LIN_TRYLOCK || k == LIN_UNLOCK_PAUSE;
}

static void print_lat(FILE *f, const char *name, struct hist *h)
{
	fprintf(f, "%-22s p50 %9.1f us  p99 %9.1f us  max %9.1f us  (n=%" PRIu64 ")\n", name,
		(double)hist_pct(h, 0.5) / 1e3, (double)hist_pct(h, 0.99) / 1e3,
		(double)atomic_load(&h->max) / 1e3, atomic_load(&h->n));
}

static void print_summary(FILE *f, double elapsed)
{
	fprintf(f, "runstate-stress: seed %" PRIu64 ", %.2f s, %d %svcpus (+%d hot-plug), %d mgmt, "
		   "%d holders, %d devices, %d listeners, slice %" PRId64 " ns, fault rate %g, "
		   "delay rate %g%s%s, kick %s\n",
		cfg.seed, elapsed, cfg.vcpus, cfg.kvm ? "KVM " : "", cfg.hotplug_extra, cfg.mgmt,
		cfg.holders, cfg.devices, cfg.listeners, cfg.slice_ns, cfg.fault_rate, cfg.delay_rate,
		cfg.delay_point ? ", focus " : "", cfg.delay_point ? cfg.delay_point : "",
		cfg.kvm ? "signal + immediate_exit" : cfg.kick_signal ? "signal" : "futex");
	fprintf(f, "operations: %" PRIu64 "\n", atomic_load(&st.ops_total));
	for (int k = 0; k < LIN_KIND_COUNT; k++) {
		uint64_t tot = 0;

		for (int c = 0; c < TC_COUNT; c++)
			tot += atomic_load(&st.ops[k][c]);
		if (!tot)
			continue;
		fprintf(f, "  %-14s %10" PRIu64, lin_kind_name(k), tot);
		if (is_stopping_kind(k))
			for (int c = 0; c < TC_COUNT; c++)
				fprintf(f, "  %s %" PRIu64, tclass_name[c], atomic_load(&st.ops[k][c]));
		fputc('\n', f);
	}
	fprintf(f, "  %-14s %10" PRIu64 "\n", "wait", atomic_load(&st.waits));
	fprintf(f, "  from vCPUs:    panics async %" PRIu64 ", sync %" PRIu64 "\n",
		atomic_load(&st.vcpu_panic_async), atomic_load(&st.vcpu_panic_sync));
	fprintf(f, "results: timeout %" PRIu64 ", busy %" PRIu64 ", needs-force %" PRIu64
		   ", needs-reset %" PRIu64 "\n",
		atomic_load(&st.r_timedout), atomic_load(&st.r_busy), atomic_load(&st.r_needforce),
		atomic_load(&st.r_needreset));
	fprintf(f, "transitions: %" PRIu64 " (events read %" PRIu64 ", lost by the reader %" PRIu64
		   ")\n",
		atomic_load(&st.last_seq), atomic_load(&st.events), atomic_load(&st.events_lost));
	if (cfg.kvm) {
		/* Slices, halts and kicks: the kvm line below. */
		fprintf(f, "vcpus: work requests %" PRIu64 ", plugged %" PRIu64 ", unplugged %" PRIu64
			   "\n",
			atomic_load(&st.work), atomic_load(&st.plugs), atomic_load(&st.unplugs));
	} else {
		fprintf(f, "vcpus: slices %" PRIu64 ", halts %" PRIu64 ", work requests %" PRIu64
			   ", plugged %" PRIu64 ", unplugged %" PRIu64 "\n",
			atomic_load(&st.slices), atomic_load(&st.halts), atomic_load(&st.work),
			atomic_load(&st.plugs), atomic_load(&st.unplugs));
		fprintf(f, "parks: %" PRIu64 "  kicks: %" PRIu64 "  re-kicks (same active period): %"
			   PRIu64 "  dropped kicks: %" PRIu64 "  slow kicks: %" PRIu64 "\n",
			atomic_load(&st.parks), atomic_load(&st.kicks), atomic_load(&st.rekicks),
			atomic_load(&st.kicks_dropped), atomic_load(&st.slow_kicks));
	}
	fprintf(f, "library counters: parks %" PRIu64 ", wakes %" PRIu64 ", kicks %" PRIu64
		   ", timed re-kicks %" PRIu64 ", stop edges %" PRIu64 ", start edges %" PRIu64
		   ", timeouts %" PRIu64 ", listener runs %" PRIu64 ", events lost %" PRIu64
		   ", edges coalesced %" PRIu64 "\n",
		lstats.parks, lstats.wakes, lstats.kicks, lstats.rekicks, lstats.stop_edges,
		lstats.start_edges, lstats.timeouts, lstats.listener_runs, lstats.events_lost,
		lstats.coalesced);
	fprintf(f, "listeners: %d persistent; calls %" PRIu64 " over %" PRIu64 " edges; added %"
		   PRIu64 " outside, %" PRIu64 " inside; removed %" PRIu64 " outside, %" PRIu64
		   " inside (%" PRIu64 " themselves); at most %" PRIu64 " others at once; from "
		   "listeners: %" PRIu64 " stops, %" PRIu64 " starts, %" PRIu64 " vCPU counts; "
		   "stop runs checked against the stop before (stop edge during the start's run): %"
		   PRIu64 "; runs after coalesced edges: %" PRIu64 "\n",
		cfg.listeners, atomic_load(&st.l_calls), atomic_load(&st.l_edges),
		atomic_load(&st.l_add_out), atomic_load(&st.l_add_in), atomic_load(&st.l_rm_out),
		atomic_load(&st.l_rm_in), atomic_load(&st.l_rm_self), atomic_load(&st.l_max_live),
		atomic_load(&st.l_stop_in), atomic_load(&st.l_start_in), atomic_load(&st.l_queries),
		atomic_load(&st.l_norun), atomic_load(&st.l_coalesced_runs));
	fprintf(f, "event readers: rs_events_wait %" PRIu64 " calls (%" PRIu64 " woken, %" PRIu64
		   " timed out), read %" PRIu64 ", lost %" PRIu64 "; eventfd %" PRIu64 " polls (%"
		   PRIu64 " readable), read %" PRIu64 ", lost %" PRIu64 " in %" PRIu64
		   " loss records; naps %" PRIu64 "\n",
		atomic_load(&st.ew_calls), atomic_load(&st.ew_woken), atomic_load(&st.ew_timeouts),
		atomic_load(&st.ew_events), atomic_load(&st.ew_lost), atomic_load(&st.ef_polls),
		atomic_load(&st.ef_ready), atomic_load(&st.ef_events), atomic_load(&st.ef_lost),
		atomic_load(&st.ef_lost_recs), atomic_load(&st.ef_naps));
#ifdef RS_STRESS_KVM
	if (cfg.kvm && g_vm) {
		struct rk_vcpu_stats k;

		rk_vm_stats(g_vm, &k);
		fprintf(f, "kvm: KVM_RUN %" PRIu64 ", kicked out (EINTR) %" PRIu64 ", exits: out %" PRIu64
			   ", in %" PRIu64 ", mmio %" PRIu64 "/%" PRIu64 ", hlt %" PRIu64
			   ", completed before acknowledging %" PRIu64 "; device hooks %" PRIu64
			   " (slow %" PRIu64 "); kick signals %" PRIu64 " (%" PRIu64
			   " in the check-to-KVM_RUN window), lost kicks %" PRIu64 "\n",
			k.runs, k.eintr, k.exits_out, k.exits_in, k.exits_mmio_w, k.exits_mmio_r,
			k.exits_hlt, k.completions, atomic_load(&st.kvm_hooks),
			atomic_load(&st.kvm_slow_exits), k.signals, k.window_kicks, k.lost_kicks);
	}
#endif
	fprintf(f, "futex: other waits %" PRIu64 ", wakes %" PRIu64 ", injected spurious %" PRIu64
		   ", injected EINTR %" PRIu64 ", late wake-ups %" PRIu64 "; delays %" PRIu64
		   ", slow acks %" PRIu64 ", holders descheduled %" PRIu64 "\n",
		atomic_load(&st.futex_waits), atomic_load(&st.futex_wakes),
		atomic_load(&st.inj_spurious), atomic_load(&st.inj_eintr),
		atomic_load(&st.inj_late_wake), atomic_load(&st.delays),
		atomic_load(&st.slow_acks), atomic_load(&st.holder_desched));
	fprintf(f, "checks: stop %" PRIu64 ", exclusion %" PRIu64 ", run windows %" PRIu64
		   ", linearizability rounds %" PRIu64 " (ops %" PRIu64 ", max states %d, "
		   "max nodes %" PRIu64 ", gave up %" PRIu64 ")\n",
		atomic_load(&st.stop_checks), atomic_load(&st.exclusion_checks),
		atomic_load(&st.liveness_windows), lin.rounds, lin.ops, lin.max_set, lin.max_nodes,
		lin.gave_up);
	print_lat(f, "stop latency (edge):", &st.stop_lat);
	print_lat(f, "start latency (settled):", &st.start_lat);
	print_lat(f, "lock latency (waited):", &st.lock_lat);
	print_lat(f, "listener call:", &st.listener_lat);
	if (atomic_load(&vtotal)) {
		fprintf(f, "violations: %ld (", atomic_load(&vtotal));
		for (int k = 0, first = 1; k < V_COUNT; k++) {
			if (!atomic_load(&vcount[k]))
				continue;
			fprintf(f, "%s%s %ld", first ? "" : ", ", vname[k], atomic_load(&vcount[k]));
			first = 0;
		}
		fprintf(f, ")\n");
		print_replay(f);
	} else {
		fprintf(f, "violations: 0\n");
	}
}

static void json_lat(FILE *f, const char *name, struct hist *h, bool comma)
{
	fprintf(f, "    \"%s\": {\"n\": %" PRIu64 ", \"p50_ns\": %" PRIu64 ", \"p99_ns\": %" PRIu64
		   ", \"max_ns\": %" PRIu64 "}%s\n",
		name, atomic_load(&h->n), hist_pct(h, 0.5), hist_pct(h, 0.99), atomic_load(&h->max),
		comma ? "," : "");
}

static void print_json(FILE *f, double elapsed)
{
	fprintf(f, "{\n  \"seed\": %" PRIu64 ",\n  \"elapsed_s\": %.3f,\n  \"kvm\": %s,\n", cfg.seed,
		elapsed, cfg.kvm ? "true" : "false");
	fprintf(f, "  \"config\": {\"duration\": %g, \"vcpus\": %d, \"hotplug_extra\": %d, "
		   "\"mgmt\": %d, \"holders\": %d, \"devices\": %d, \"slice_ns\": %" PRId64
		   ", \"fault_rate\": %g, \"delay_rate\": %g, \"delay_point\": \"%s\", \"kick\": \"%s\", "
		   "\"round_ops\": %d, \"events\": %u, \"live_ms\": %" PRId64 "},\n",
		cfg.duration, cfg.vcpus, cfg.hotplug_extra, cfg.mgmt, cfg.holders, cfg.devices,
		cfg.slice_ns, cfg.fault_rate, cfg.delay_rate, cfg.delay_point ? cfg.delay_point : "",
		cfg.kick_signal ? "signal" : "futex", cfg.round_ops, cfg.events, cfg.live_ns / MS);
	fprintf(f, "  \"operations\": {\"total\": %" PRIu64, atomic_load(&st.ops_total));
	for (int k = 0; k < LIN_KIND_COUNT; k++) {
		for (int c = 0; c < TC_COUNT; c++) {
			uint64_t n = atomic_load(&st.ops[k][c]);

			if (!n)
				continue;
			if (is_stopping_kind(k))
				fprintf(f, ", \"%s-%s\": %" PRIu64, lin_kind_name(k), tclass_name[c], n);
			else
				fprintf(f, ", \"%s\": %" PRIu64, lin_kind_name(k), n);
		}
	}
	fprintf(f, ", \"wait\": %" PRIu64 ", \"vcpu-panic-async\": %" PRIu64
		   ", \"vcpu-panic-sync\": %" PRIu64 "},\n",
		atomic_load(&st.waits), atomic_load(&st.vcpu_panic_async),
		atomic_load(&st.vcpu_panic_sync));
	fprintf(f, "  \"results\": {\"timeout\": %" PRIu64 ", \"busy\": %" PRIu64
		   ", \"needs-force\": %" PRIu64 ", \"needs-reset\": %" PRIu64 "},\n",
		atomic_load(&st.r_timedout), atomic_load(&st.r_busy), atomic_load(&st.r_needforce),
		atomic_load(&st.r_needreset));
	fprintf(f, "  \"transitions\": %" PRIu64 ",\n  \"events\": {\"read\": %" PRIu64
		   ", \"lost\": %" PRIu64 "},\n",
		atomic_load(&st.last_seq), atomic_load(&st.events), atomic_load(&st.events_lost));
	fprintf(f, "  \"vcpus\": {\"slices\": %" PRIu64 ", \"halts\": %" PRIu64 ", \"work\": %" PRIu64
		   ", \"plugged\": %" PRIu64 ", \"unplugged\": %" PRIu64 "},\n",
		atomic_load(&st.slices), atomic_load(&st.halts), atomic_load(&st.work),
		atomic_load(&st.plugs), atomic_load(&st.unplugs));
	fprintf(f, "  \"parks\": %" PRIu64 ",\n  \"kicks\": %" PRIu64 ",\n  \"rekicks\": %" PRIu64
		   ",\n  \"kicks_dropped\": %" PRIu64 ",\n  \"kicks_slow\": %" PRIu64 ",\n",
		atomic_load(&st.parks), atomic_load(&st.kicks), atomic_load(&st.rekicks),
		atomic_load(&st.kicks_dropped), atomic_load(&st.slow_kicks));
	fprintf(f, "  \"faults\": {\"futex_spurious\": %" PRIu64 ", \"futex_eintr\": %" PRIu64
		   ", \"late_wakeups\": %" PRIu64 ", \"delays\": %" PRIu64 ", \"slow_acks\": %" PRIu64 ", \"holders_descheduled\": %" PRIu64
		   "},\n",
		atomic_load(&st.inj_spurious), atomic_load(&st.inj_eintr), atomic_load(&st.inj_late_wake),
		atomic_load(&st.delays), atomic_load(&st.slow_acks), atomic_load(&st.holder_desched));
	fprintf(f, "  \"library\": {\"parks\": %" PRIu64 ", \"wakes\": %" PRIu64 ", \"kicks\": %" PRIu64
		   ", \"rekicks\": %" PRIu64 ", \"stop_edges\": %" PRIu64 ", \"start_edges\": %" PRIu64
		   ", \"timeouts\": %" PRIu64 ", \"listener_runs\": %" PRIu64 ", \"events_lost\": %"
		   PRIu64 ", \"coalesced\": %" PRIu64 "},\n",
		lstats.parks, lstats.wakes, lstats.kicks, lstats.rekicks, lstats.stop_edges,
		lstats.start_edges, lstats.timeouts, lstats.listener_runs, lstats.events_lost,
		lstats.coalesced);
	fprintf(f, "  \"listeners\": {\"persistent\": %d, \"calls\": %" PRIu64 ", \"edges\": %" PRIu64
		   ", \"added_outside\": %" PRIu64 ", \"added_inside\": %" PRIu64
		   ", \"removed_outside\": %" PRIu64 ", \"removed_inside\": %" PRIu64
		   ", \"removed_self\": %" PRIu64 ", \"max_others\": %" PRIu64 ", \"stops\": %" PRIu64
		   ", \"starts\": %" PRIu64 ", \"vcpu_counts\": %" PRIu64
		   ", \"after_coalesced\": %" PRIu64 "},\n",
		cfg.listeners, atomic_load(&st.l_calls), atomic_load(&st.l_edges),
		atomic_load(&st.l_add_out), atomic_load(&st.l_add_in), atomic_load(&st.l_rm_out),
		atomic_load(&st.l_rm_in), atomic_load(&st.l_rm_self), atomic_load(&st.l_max_live),
		atomic_load(&st.l_stop_in), atomic_load(&st.l_start_in), atomic_load(&st.l_queries),
		atomic_load(&st.l_coalesced_runs));
	fprintf(f, "  \"event_readers\": {\"wait_calls\": %" PRIu64 ", \"wait_woken\": %" PRIu64
		   ", \"wait_timeouts\": %" PRIu64 ", \"wait_read\": %" PRIu64 ", \"wait_lost\": %" PRIu64
		   ", \"fd_polls\": %" PRIu64 ", \"fd_readable\": %" PRIu64 ", \"fd_read\": %" PRIu64
		   ", \"fd_lost\": %" PRIu64 ", \"fd_loss_records\": %" PRIu64 ", \"naps\": %" PRIu64
		   "},\n",
		atomic_load(&st.ew_calls), atomic_load(&st.ew_woken), atomic_load(&st.ew_timeouts),
		atomic_load(&st.ew_events), atomic_load(&st.ew_lost), atomic_load(&st.ef_polls),
		atomic_load(&st.ef_ready), atomic_load(&st.ef_events), atomic_load(&st.ef_lost),
		atomic_load(&st.ef_lost_recs), atomic_load(&st.ef_naps));
#ifdef RS_STRESS_KVM
	if (cfg.kvm && g_vm) {
		struct rk_vcpu_stats k;

		rk_vm_stats(g_vm, &k);
		fprintf(f, "  \"kvm_stats\": {\"runs\": %" PRIu64 ", \"eintr\": %" PRIu64 ", \"exits_io\": %"
			   PRIu64 ", \"exits_mmio\": %" PRIu64 ", \"exits_hlt\": %" PRIu64
			   ", \"completions\": %" PRIu64 ", \"hooks\": %" PRIu64 ", \"signals\": %" PRIu64
			   ", \"window_kicks\": %" PRIu64 ", \"lost_kicks\": %" PRIu64 "},\n",
			k.runs, k.eintr, k.exits_out + k.exits_in, k.exits_mmio_w + k.exits_mmio_r,
			k.exits_hlt, k.completions, atomic_load(&st.kvm_hooks), k.signals,
			k.window_kicks, k.lost_kicks);
	}
#endif
	fprintf(f, "  \"futex\": {\"other_waits\": %" PRIu64 ", \"wakes\": %" PRIu64 "},\n",
		atomic_load(&st.futex_waits), atomic_load(&st.futex_wakes));
	fprintf(f, "  \"checks\": {\"stop\": %" PRIu64 ", \"exclusion\": %" PRIu64
		   ", \"run_windows\": %" PRIu64 ", \"lin_rounds\": %" PRIu64 ", \"lin_ops\": %" PRIu64
		   ", \"lin_max_states\": %d, \"lin_max_nodes\": %" PRIu64 ", \"lin_gave_up\": %" PRIu64
		   "},\n",
		atomic_load(&st.stop_checks), atomic_load(&st.exclusion_checks),
		atomic_load(&st.liveness_windows), lin.rounds, lin.ops, lin.max_set, lin.max_nodes,
		lin.gave_up);
	fprintf(f, "  \"latency\": {\n");
	json_lat(f, "stop", &st.stop_lat, true);
	json_lat(f, "start", &st.start_lat, true);
	json_lat(f, "lock", &st.lock_lat, true);
	json_lat(f, "listener_call", &st.listener_lat, false);
	fprintf(f, "  },\n  \"violations\": %ld,\n  \"violations_by_kind\": {", atomic_load(&vtotal));
	for (int k = 0; k < V_COUNT; k++)
		fprintf(f, "%s\"%s\": %ld", k ? ", " : "", vname[k], atomic_load(&vcount[k]));
	fprintf(f, "}\n}\n");
}

/* ---------------------------------------------------------------------------
 * Options
 */

static void usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
		"usage: %s [options]\n"
		"  --duration SECONDS   how long to run (float; default 4)\n"
		"  --seed N             random seed (default: from the clock, printed)\n"
		"  --vcpus N            vCPU threads (default: number of CPUs); hot-plug keeps\n"
		"                       N-1 .. N+--hotplug-extra registered\n"
		"  --hotplug-extra N    (default 2)\n"
		"  --mgmt N             management threads (default 2)\n"
		"  --holders N          internal lock holder threads (default 2)\n"
		"  --devices N          device threads (default 1)\n"
		"  --slice-ns N         guest slice length (default 20000)\n"
		"  --fault-rate P       futex spurious/EINTR/late wake-up, lost kicks, slow acks,\n"
		"                       holders descheduled: probability per opportunity\n"
		"                       (default 0.02)\n"
		"  --delay-rate P       probability at each delay point (default 0.05; only in\n"
		"                       builds with delay points)\n"
		"  --delay-point NAME   delay this point at rate 0.5 with longer delays\n"
		"  --kick signal|futex  how kicks end a blocking guest entry (default: signal,\n"
		"                       futex under ThreadSanitizer)\n"
		"  --round-ops N        operations per linearizability round (default 32, max 48)\n"
		"  --events N           event ring capacity (default 64)\n"
		"  --backlog N          edges settled one by one before coalescing, 1-127\n"
		"                       (default: the library's, 64)\n"
		"  --live-ms N          liveness bound (default 250; x4 under sanitizers)\n"
		"  --hang-ms N          watchdog bound for one operation (default 10000; x3)\n"
		"  --storm-ms N, --calm-ms N   phase lengths (default 1000 and 2*live+150)\n"
		"  --rekick-ns N        the library's re-kick delay (default 1 ms)\n"
		"  --listeners N        persistent listeners (default 4); others come and go;\n"
		"                       0: no listener at all\n"
		"  --kvm                real KVM vCPUs (stress/kvm); exit 77 if /dev/kvm is unusable\n"
		"  --kvm-io-shift N     a KVM guest exits every 2^N loop iterations (default 10)\n"
		"  --skip-checks K,...  do not make these checks (so another catches a plant)\n"
		"  --plant order|remove a checker test: one listener's priority is not what the\n"
		"                       checker believes / removals are believed early\n"
		"  --json               summary as JSON\n"
		"  --quiet              no progress line\n"
		"  --keep-going         do not stop at the first violation\n"
		"  --lin-selftest       check the linearizability checker on canned histories\n"
		"  --lin-corrupt N      flip io-error in every Nth recorded query result: the\n"
		"                       checker must report it (a test of the checker)\n"
		"  --expect K[,K...]    planted-bug mode: exit 1 when the first violation is of\n"
		"                       one of these kinds, else 0 (for should_fail tests)\n"
		"exit status: 0 no violation, 1 violation, 2 usage, 77 --kvm unavailable\n",
		argv0);
	exit(status);
}

static const char *need(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		usage(2);
	return argv[++*i];
}

static long long parse_int(const char *s, long long lo, long long hi)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 0);
	if (errno || !*s || *end || v < lo || v > hi) {
		fprintf(stderr, "%s: bad number '%s'\n", argv0, s);
		usage(2);
	}
	return v;
}

static double parse_double(const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || !*s || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr, "%s: bad number '%s'\n", argv0, s);
		usage(2);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int scale_live = 1, scale_hang = 1;
	int64_t live_ms = -1, hang_ms = -1, calm_ms = -1;
	bool seeded = false;

#if defined(STRESS_TSAN) || defined(STRESS_ASAN)
	scale_live = 4;
	scale_hang = 3;
#endif
	cfg.duration = 4;
	cfg.vcpus = ncpu > 0 ? (int)ncpu : 2;
	cfg.hotplug_extra = 2;
	cfg.mgmt = 2;
	cfg.holders = 2;
	cfg.devices = 1;
	cfg.slice_ns = 20000;
	cfg.fault_rate = 0.02;
	cfg.delay_rate = 0.05;
	cfg.round_ops = 32;
	cfg.events = 64;
	cfg.listeners = 4;
	cfg.kvm_io_shift = 10;
	cfg.storm_ns = 1000 * MS;
	cfg.rekick_ns = 1 * MS;
#if defined(STRESS_TSAN)
	cfg.kick_signal = false;
#else
	cfg.kick_signal = true;
#endif
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--duration"))
			cfg.duration = parse_double(need(argc, argv, &i), 0, 1e7);
		else if (!strcmp(a, "--seed")) {
			const char *s = need(argc, argv, &i);
			char *end;

			errno = 0;
			cfg.seed = strtoull(s, &end, 0);
			if (errno || !*s || *end)
				usage(2);
			seeded = true;
		} else if (!strcmp(a, "--vcpus"))
			cfg.vcpus = (int)parse_int(need(argc, argv, &i), 1, MAX_VCPU_SLOTS / 2);
		else if (!strcmp(a, "--hotplug-extra"))
			cfg.hotplug_extra = (int)parse_int(need(argc, argv, &i), 0, MAX_VCPU_SLOTS / 2);
		else if (!strcmp(a, "--mgmt"))
			cfg.mgmt = (int)parse_int(need(argc, argv, &i), 1, 64);
		else if (!strcmp(a, "--holders"))
			cfg.holders = (int)parse_int(need(argc, argv, &i), 0, 64);
		else if (!strcmp(a, "--devices"))
			cfg.devices = (int)parse_int(need(argc, argv, &i), 0, 64);
		else if (!strcmp(a, "--slice-ns"))
			cfg.slice_ns = parse_int(need(argc, argv, &i), 100, 1000000000);
		else if (!strcmp(a, "--fault-rate"))
			cfg.fault_rate = parse_double(need(argc, argv, &i), 0, 0.5);
		else if (!strcmp(a, "--delay-rate"))
			cfg.delay_rate = parse_double(need(argc, argv, &i), 0, 1);
		else if (!strcmp(a, "--delay-point"))
			cfg.delay_point = need(argc, argv, &i);
		else if (!strcmp(a, "--kick")) {
			const char *k = need(argc, argv, &i);

			if (!strcmp(k, "signal"))
				cfg.kick_signal = true;
			else if (!strcmp(k, "futex"))
				cfg.kick_signal = false;
			else
				usage(2);
		} else if (!strcmp(a, "--round-ops"))
			cfg.round_ops = (int)parse_int(need(argc, argv, &i), 1, 48);
		else if (!strcmp(a, "--events"))
			cfg.events = (unsigned)parse_int(need(argc, argv, &i), 1, 1 << 20);
		else if (!strcmp(a, "--backlog"))
			cfg.backlog = (unsigned)parse_int(need(argc, argv, &i), 1, RS_W_BACKLOG_MAX);
		else if (!strcmp(a, "--live-ms"))
			live_ms = parse_int(need(argc, argv, &i), 1, 3600000);
		else if (!strcmp(a, "--hang-ms"))
			hang_ms = parse_int(need(argc, argv, &i), 1, 3600000);
		else if (!strcmp(a, "--storm-ms"))
			cfg.storm_ns = parse_int(need(argc, argv, &i), 1, 3600000) * MS;
		else if (!strcmp(a, "--calm-ms"))
			calm_ms = parse_int(need(argc, argv, &i), 1, 3600000);
		else if (!strcmp(a, "--rekick-ns"))
			cfg.rekick_ns = parse_int(need(argc, argv, &i), 1, 1000000000);
		else if (!strcmp(a, "--json"))
			cfg.json = true;
		else if (!strcmp(a, "--quiet"))
			cfg.quiet = true;
		else if (!strcmp(a, "--keep-going"))
			cfg.keep_going = true;
		else if (!strcmp(a, "--expect"))
			cfg.expect = need(argc, argv, &i);
		else if (!strcmp(a, "--lin-corrupt"))
			cfg.lin_corrupt = (int)parse_int(need(argc, argv, &i), 1, 1000000000);
		else if (!strcmp(a, "--listeners"))
			cfg.listeners = (int)parse_int(need(argc, argv, &i), 0, 64);
		else if (!strcmp(a, "--kvm"))
			cfg.kvm = true;
		else if (!strcmp(a, "--kvm-io-shift"))
			cfg.kvm_io_shift = (unsigned)parse_int(need(argc, argv, &i), 0, 32);
		else if (!strcmp(a, "--plant")) {
			cfg.plant = need(argc, argv, &i);
			if (strcmp(cfg.plant, "order") && strcmp(cfg.plant, "remove"))
				usage(2);
		} else if (!strcmp(a, "--skip-checks")) {
			char buf[256], *save = NULL;

			snprintf(buf, sizeof(buf), "%s", need(argc, argv, &i));
			for (char *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
				int j;

				for (j = 0; j < V_COUNT && strcmp(k, vname[j]); j++)
					;
				if (j == V_COUNT) {
					fprintf(stderr, "%s: unknown check '%s'\n", argv0, k);
					usage(2);
				}
				cfg.skip |= 1u << j;
			}
		} else if (!strcmp(a, "--lin-selftest"))
			exit(lin_selftest(stdout) ? 1 : 0);
		else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			usage(0);
		else {
			fprintf(stderr, "%s: unknown option '%s'\n", argv0, a);
			usage(2);
		}
	}
	if (cfg.events & (cfg.events - 1)) {
		fprintf(stderr, "%s: --events must be a power of two\n", argv0);
		usage(2);
	}
	if (cfg.plant && !cfg.listeners) {
		fprintf(stderr, "%s: --plant needs listeners\n", argv0);
		usage(2);
	}
#ifdef RS_STRESS_KVM
	if (cfg.kvm && cfg.vcpus > RK_MAX_VCPUS) {
		fprintf(stderr, "%s: --kvm takes at most %d vCPUs\n", argv0, RK_MAX_VCPUS);
		usage(2);
	}
#endif
	if (!seeded)
		cfg.seed = now_ns() ^ ((uint64_t)getpid() << 32);
	cfg.live_ns = (live_ms > 0 ? live_ms : 250 * scale_live) * MS;
	cfg.hang_ns = (hang_ms > 0 ? hang_ms : 10000 * scale_hang) * MS;
	cfg.calm_ns = calm_ms > 0 ? calm_ms * MS : 2 * cfg.live_ns + 150 * MS;
}

/* --expect: was the first violation one of the expected kinds?  (Later
 * ones may be consequences of the first: the run stops at the first.) */
static int expect_status(void)
{
	int k = atomic_load(&vfirst);
	char buf[256], key[40];

	if (k < 0) {
		fprintf(stderr, "runstate-stress: NOT caught (%s expected): no violation\n", cfg.expect);
		return 0;
	}
	snprintf(buf, sizeof(buf), ",%s,", cfg.expect);
	snprintf(key, sizeof(key), ",%s,", vname[k]);
	if (strstr(buf, key)) {
		fprintf(stderr, "runstate-stress: caught: the first violation is '%s' (expected %s)\n",
			vname[k], cfg.expect);
		return 1;
	}
	fprintf(stderr, "runstate-stress: NOT caught as expected: the first violation is '%s', "
			"not one of %s\n", vname[k], cfg.expect);
	return 0;
}

/* ---------------------------------------------------------------------------
 * main
 */

/* After the run: every listener left is removed from outside (with the
 * removal checks), and the runs add up. */
static void listeners_final(uint64_t w)
{
	uint64_t u = unwrap_edge(w_edge(w), atomic_load(&g_ledge)), gl = atomic_load(&g_ledge);
	uint64_t runs = atomic_load(&g_lruns);
	struct rs_stats ls;
	rs_listener *gone = NULL;
	int hi = atomic_load(&lrec_hi), r;

	/* The last run is for the word's edge, or a coalesced run with no
	 * net change came after it. */
	if (gl > u || ((u - gl) & 1))
		violation(V_LISTENER, "the last listener run was for edge %" PRIu64 ", but the word is "
				      "at edge %" PRIu64, gl, u);
	if (rs_get_stats(rs, &ls) == 0 &&
	    atomic_load(&g_lskipped) + (u - gl) > ls.coalesced)
		violation(V_LISTENER, "%" PRIu64 " edges had no listener run, but the library "
				      "coalesced only %" PRIu64, atomic_load(&g_lskipped) + (u - gl),
			  ls.coalesced);
	for (int i = 0; i < hi; i++) {
		struct lrec *l = &lrecs[i];

		if (atomic_load(&l->state) != LR_LIVE)
			continue;
		if (atomic_load(&l->persistent) &&
		    (atomic_load(&l->first) != atomic_load(&g_lfirst) || atomic_load(&l->calls) != runs))
			violation(V_LISTENER, "persistent listener #%d saw edges %" PRIu64 "..%" PRIu64
					      " in %" PRIu64 " calls; there were %" PRIu64 " runs",
				  i, atomic_load(&l->first), atomic_load(&l->last),
				  atomic_load(&l->calls), runs);
		gone = atomic_load(&l->h);
		listener_remove(i);
	}
	listener_retire(true);
	/* A handle already removed is not a listener any more. */
	if (gone && (r = rs_listener_remove(rs, gone)) != RS_EINVAL)
		violation(V_RESULT, "rs_listener_remove of a removed listener returned %d, not "
				    "RS_EINVAL", r);
}

static void final_reader(const struct evr *r, uint64_t w)
{
	struct rs_stats ls;

	/* Every edge has its event or is covered by a record of loss, and
	 * the last event is at the word's edge counter. */
	if (rs_get_stats(rs, &ls) == 0 && r->expect - 1 != ls.stop_edges + ls.start_edges)
		violation(V_EVENTS, "%s: the events end at seq %" PRIu64 ", but %" PRIu64 " edges "
				    "were made", r->name, r->expect - 1,
			  ls.stop_edges + ls.start_edges);
	if (r->last_seq == r->expect - 1 && (uint32_t)r->last_edge != w_edge(w))
		violation(V_EVENTS, "%s: the last event's edge counter is %u, the word's %u",
			  r->name, (uint32_t)r->last_edge, w_edge(w));
}

int main(int argc, char **argv)
{
	struct rs_config rcfg = { 0 };
	pthread_t *th, mon, chk, hp, churn, evw, evf;
	struct thr *me;
	struct sigaction sa;
	int nroles, r;
	uint64_t deadline, kicks;
	uint64_t w;
	double elapsed;

	argv0 = argv[0];
	parse_args(argc, argv);

	if (cfg.kvm) {
#ifdef RS_STRESS_KVM
		char why[256] = "";

		if (rk_probe(NULL, why, sizeof(why))) {
			fprintf(stderr, "%s: --kvm: %s; skipped\n", argv0, why);
			return 77;
		}
#else
		fprintf(stderr, "%s: --kvm: built without the KVM harness (stress/kvm); skipped\n",
			argv0);
		return 77;
#endif
	} else {
		/* (KVM vCPUs: rk_vm_create() installs the module's handler.) */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_kick_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(KICK_SIGNAL, &sa, NULL);
	}

	nslots = cfg.vcpus + cfg.hotplug_extra + 1;
	if (nslots > MAX_VCPU_SLOTS)
		nslots = MAX_VCPU_SLOTS;
#ifdef RS_STRESS_KVM
	if (cfg.kvm && nslots > RK_MAX_VCPUS)
		nslots = RK_MAX_VCPUS;
#endif
	nroles = cfg.mgmt + cfg.holders + cfg.devices;
	thr_vcpu0 = THR_ROLES + nroles;
	thr_count = thr_vcpu0 + nslots;
	thr_tab = calloc((size_t)thr_count, sizeof(*thr_tab));
	vcpus = aligned_alloc(64, (size_t)nslots * sizeof(*vcpus));
	th = calloc((size_t)nroles, sizeof(*th));
	lrecs = calloc(LREC_MAX, sizeof(*lrecs));
	if (!thr_tab || !vcpus || !th || !lrecs) {
		fprintf(stderr, "%s: out of memory\n", argv0);
		return 2;
	}
	memset(vcpus, 0, (size_t)nslots * sizeof(*vcpus));
	for (int i = 0; i < nslots; i++)
		vcpus[i].index = i;

	g_t0 = now_ns();
	thr_name(THR_MAIN, false, "main", 0);
	thr_name(THR_MONITOR, false, "monitor", 0);
	thr_name(THR_CHECKER, false, "checker", 0);
	thr_name(THR_HOTPLUG, false, "hotplug", 0);
	thr_name(THR_CHURN, false, "churn", 0);
	thr_name(THR_EVWAIT, false, "evwait", 0);
	thr_name(THR_EVFD, false, "evfd", 0);
	thr_name(THR_LISTENER, false, "listener", 0);
	for (int i = 0; i < nroles; i++) {
		if (i < cfg.mgmt)
			thr_name(THR_ROLES + i, false, "mgmt%d", i);
		else if (i < cfg.mgmt + cfg.holders)
			thr_name(THR_ROLES + i, false, "holder%d", i - cfg.mgmt);
		else
			thr_name(THR_ROLES + i, false, "device%d", i - cfg.mgmt - cfg.holders);
	}
	for (int i = 0; i < nslots; i++)
		thr_name(thr_vcpu0 + i, true, "vcpu%d", i);
	lin_thread_name = thread_name;
	me = thr_claim(THR_MAIN);
	thr_claim(THR_MONITOR);
	thr_claim(THR_CHECKER);
	thr_claim(THR_HOTPLUG);
	thr_claim(THR_EVWAIT);
	thr_claim(THR_EVFD);
	if (cfg.listeners)
		thr_claim(THR_CHURN);

	rcfg.ops = &stress_ops;
	rcfg.rekick_ns = cfg.rekick_ns;
	rcfg.event_capacity = cfg.events;
	rcfg.max_backlog = cfg.backlog;
	rcfg.max_vcpus = (unsigned)nslots;
	r = rs_create(&rcfg, &rs);
	if (r) {
		fprintf(stderr, "%s: rs_create: %s\n", argv0, rs_strerror(r));
		return 2;
	}
#ifdef RS_STRESS_KVM
	if (cfg.kvm) {
		struct rk_config kc = { 0 };
		char why[256] = "";

		/* Every slot a KVM vCPU from the start; hot-plug runs them on
		 * threads of their own, or not. */
		kc.nvcpus = (unsigned)nslots;
		kc.io_shift = cfg.kvm_io_shift;
		kc.hlt_every = 32;
		kc.exit_hook = kvm_exit_hook;
		kc.work = kvm_work;
		r = rk_vm_create(rs, &kc, &g_vm, why, sizeof(why));
		if (r) {
			fprintf(stderr, "%s: --kvm: %s\n", argv0, why);
			return 2;
		}
	}
#endif
	if (lin_init(&lin, lin_abstract(rs_word(rs)), 2000000)) {
		fprintf(stderr, "%s: out of memory\n", argv0);
		return 2;
	}
	for (int i = 0; i < LIN_UNGATED; i++)
		gate.ung[i].kind = LIN_NONE;
	gate.opened = now_ns();
	evr_init(&mon_reader, "monitor", rs_events_cursor(rs), &st.events, &st.events_lost);
	evr_init(&ew_reader, "rs_events_wait reader", 1, &st.ew_events, &st.ew_lost);
	evr_init(&ef_reader, "eventfd reader", 1, &st.ef_events, &st.ef_lost);

	/* The persistent listeners, before the first edge: priorities -50, 0
	 * and 50 (ties with each other and with the others). */
	for (int i = 0; i < cfg.listeners; i++)
		if (listener_add(false, 0, (i % 3 - 1) * 50, true) < 0) {
			fprintf(stderr, "%s: cannot add listeners\n", argv0);
			return 2;
		}

	if (!cfg.quiet && !cfg.json)
		printf("runstate-stress: seed %" PRIu64 ", %g s, %d %svcpus, kick %s%s\n", cfg.seed,
		       cfg.duration, cfg.vcpus, cfg.kvm ? "KVM " : "",
		       cfg.kvm ? "signal + immediate_exit" : cfg.kick_signal ? "signal" : "futex",
#if defined(STRESS_TSAN)
		       " (ThreadSanitizer)"
#elif defined(STRESS_ASAN)
		       " (AddressSanitizer)"
#else
		       ""
#endif
		);
	fflush(stdout);

	for (int i = 0; i < cfg.vcpus; i++)
		if (plug(me, &me->rng) < 0) {
			fprintf(stderr, "%s: cannot start vCPU threads\n", argv0);
			return 2;
		}
	pthread_create(&chk, NULL, checker_main, NULL);
	pthread_create(&mon, NULL, monitor_main, NULL);
	pthread_create(&evw, NULL, evwait_main, NULL);
	pthread_create(&evf, NULL, evfd_main, NULL);
	do_releasing(me, LIN_START, 0);
	for (int i = 0; i < nroles; i++) {
		struct thr *t;
		void *(*fn)(void *);

		t = thr_claim(THR_ROLES + i);
		if (i < cfg.mgmt)
			fn = mgmt_main;
		else if (i < cfg.mgmt + cfg.holders)
			fn = holder_main;
		else
			fn = device_main;
		pthread_create(&th[i], NULL, fn, t);
	}
	pthread_create(&hp, NULL, hotplug_main, NULL);
	if (cfg.listeners)
		pthread_create(&churn, NULL, churn_main, NULL);

	set_op(me, NULL);
	deadline = g_t0 + (uint64_t)(cfg.duration * 1e9);
	while (!atomic_load(&g_stop) && now_ns() < deadline)
		sleep_ns(5 * MS);
	atomic_store(&g_stop, true);

	/* Teardown: the callers finish (holders release their locks). */
	set_op(me, "join callers");
	for (int i = 0; i < nroles; i++)
		pthread_join(th[i], NULL);
	pthread_join(hp, NULL);
	if (cfg.listeners)
		pthread_join(churn, NULL);
	atomic_store(&g_calm, false);

	/* Let vCPUs parked inside synchronous calls return, then stop with
	 * every vCPU still registered and check that stop once more. */
	set_op(me, "teardown: cont");
	do_read(me, false);
	w = rs_word(rs);
	if (rs_pause_rank((int)((w & RS_W_PAUSE_MASK) >> RS_W_PAUSE_SHIFT)) == 4)
		do_releasing(me, LIN_RESET, 0);
	do_releasing(me, LIN_CONT, 0);
	set_op(me, "teardown: wait");
	r = rs_wait(rs, RS_FOREVER);
	if (r)
		bad_result("rs_wait(FOREVER) at teardown", r);
	set_op(me, "teardown: stop");
	do_stopping(me, LIN_STOP, 0, RS_FOREVER, "final rs_stop");
	for (int i = 0; i < nslots; i++)
		if (atomic_load(&vcpus[i].life) == VL_REGISTERED)
			unplug(me, &vcpus[i]);
	set_op(me, "teardown: checker");
	atomic_store(&g_checker_exit, true);
	pthread_join(chk, NULL);
	set_op(me, "teardown: final wait");
	r = rs_wait(rs, RS_FOREVER);
	if (r)
		bad_result("final rs_wait", r);
	set_op(me, "teardown: readers");
	atomic_store(&g_cons_exit, true);
	pthread_join(evw, NULL);
	pthread_join(evf, NULL);
	atomic_store(&g_monitor_exit, true);
	pthread_join(mon, NULL);
	set_op(me, "teardown: listeners");
	if (cfg.listeners)
		listeners_final(rs_word(rs));
	set_op(me, NULL);

	/* Final state: nothing registered, settled, no lock, events whole. */
	read_events();
	w = rs_word(rs);
	check_word(w, "final");
	{
		unsigned reg = 0, out = 0;

		rs_vcpu_count(rs, &reg, &out);
		if (reg)
			violation(V_FINAL, "%u vCPUs still registered after every unplug", reg);
	}
	kicks = atomic_load(&st.kicks);
#ifdef RS_STRESS_KVM
	if (cfg.kvm) {
		struct rk_vcpu_stats k;

		rk_vm_stats(g_vm, &k);
		kicks = k.kicks_sent;
		/* With the immediate_exit handshake no kick is lost (kvm.h). */
		if (k.lost_kicks)
			violation(V_KICK, "%" PRIu64 " kicks landed between the check and KVM_RUN, and "
					  "the guest ran anyway", k.lost_kicks);
	}
#endif
	if (rs_get_stats(rs, &lstats) == 0) {
		/* Every kick() the library counts calls our callback once. */
		if (lstats.kicks != kicks)
			violation(V_FINAL, "library counted %" PRIu64 " kicks, the callback ran %" PRIu64
					   " times", lstats.kicks, kicks);
		/* Every listener call the library counts reached us once. */
		if (lstats.listener_runs != atomic_load(&st.l_calls))
			violation(V_LISTENER, "library counted %" PRIu64 " listener runs, the listeners "
					      "ran %" PRIu64 " times", lstats.listener_runs,
				  atomic_load(&st.l_calls));
	} else {
		violation(V_FINAL, "rs_get_stats failed");
	}
	if (w & (RS_W_SETTLING_MASK | RS_W_LOCKWAIT | RS_W_LOCKS))
		violation(V_FINAL, "final word 0x%016" PRIx64 " still has settling, lock-wait or a lock "
				   "bit", w);
	final_reader(&mon_reader, w);
	final_reader(&ew_reader, w);
	final_reader(&ef_reader, w);
	atomic_store(&st.last_seq, mon_reader.last_seq);

	elapsed = (double)(now_ns() - g_t0) / 1e9;
	if (atomic_load(&vtotal) && !atomic_exchange(&g_dumped, true))
		dump_state("violation");
	if (cfg.json)
		print_json(stdout, elapsed);
	else
		print_summary(stdout, elapsed);
	fflush(stdout);

#ifdef RS_STRESS_KVM
	if (cfg.kvm)
		rk_vm_destroy(g_vm);
#endif
	rs_destroy(rs);
	lin_free(&lin);
	free(lrecs);
	free(vcpus);
	free(th);
	free(thr_tab);
	if (cfg.expect)
		return expect_status();
	return atomic_load(&vtotal) ? 1 : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: the pieces its files share.  Everything the run keeps
 * lives in one context, `ctx` (main.c): the configuration, the instance,
 * the thread table, the vCPUs, the counters, the recorded operations, the
 * listener and event-reader bookkeeping.
 *
 *   main.c       setup, the run, teardown and the final checks
 *   options.c    the command line, the replay line, --expect
 *   checker.c    violations, recording operations, the linearizability
 *                rounds, the checks made by the calling threads
 *   faults.c     the library's ops table: fault injection and counting
 *   vcpus.c      simulated vCPU threads, kicks, hot-plug
 *   kvmglue.c    --kvm: the same slots run by stress/kvm's KVM vCPUs
 *   mgmt.c       management, internal lock holder and device threads
 *   exclusive.c  --exclusive: sections from section threads and vCPU
 *                threads, and their checks
 *   listeners.c  listeners and their checks, the churn thread
 *   events.c     the event readers and their checks
 *   monitor.c    liveness, the watchdog, phases, the state dump
 *   output.c     latency histograms, the text and JSON summaries
 *
 * The checks, faults and figures are described in docs/stress.md.
 */
#ifndef RS_STRESS_H
#define RS_STRESS_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "runstate-testing.h"
#include "rsutil.h"
#include "lincheck.h"

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

#define INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)

/* ---------------------------------------------------------------------------
 * Configuration (options.c)
 */

struct config {
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
	bool exclusive;             /* exclusive sections (exclusive.c) */
	int excl_threads;           /* management threads that make sections */
	double excl_vcpu_rate;      /* a section from a vCPU thread, per slice end */
};

/* ---------------------------------------------------------------------------
 * Statistics
 */

/* Log-linear histogram: 8 sub-buckets per power of two (about 6% wide). */
#define HIST_BUCKETS 512
struct hist {
	_Atomic uint64_t b[HIST_BUCKETS];
	_Atomic uint64_t n, max;
};

enum tclass { TC_ASYNC, TC_TIMED, TC_SYNC, TC_COUNT };

/* The harness's own counters; output.c lists each once for both summaries. */
struct stats {
	_Atomic uint64_t ops[LIN_KIND_COUNT][TC_COUNT];
	_Atomic uint64_t ops_total, waits, vcpu_panic_async, vcpu_panic_sync;
	_Atomic uint64_t r_timedout, r_busy, r_needforce, r_needreset;
	_Atomic uint64_t slices, halts, work, plugs, unplugs;
	_Atomic uint64_t kicks, rekicks, kicks_dropped, slow_kicks;
	_Atomic uint64_t parks, futex_waits, futex_wakes;
	_Atomic uint64_t inj_spurious, inj_eintr, inj_late_wake, delays;
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
	/* exclusive sections */
	_Atomic uint64_t x_mgmt, x_vcpu, x_tries, x_try_fail, x_timeouts, x_calm;
	_Atomic uint64_t x_owner_slices, x_owner_ran, x_owner_none, x_cmds_in, x_nested;
	_Atomic uint64_t x_l_tries, x_scans, x_same, x_owner_samples, x_owner_admitted;
	_Atomic uint64_t x_vcpu_begins, x_owner_exit, x_vcpu_calm, x_owner_stops;
	_Atomic uint64_t x_owner_woken;
	struct hist stop_lat, start_lat, lock_lat, listener_lat, excl_lat;
};

/* ---------------------------------------------------------------------------
 * Threads: a table the watchdog reads (what each thread does, since when)
 */

struct thr {
	char name[24];
	bool vcpu;
	_Atomic bool used;
	_Atomic(const char *) op;
	_Atomic uint64_t since;
	struct rsu_rng rng;
};

/* Fixed indices; vCPU slot i uses ctx.thr_vcpu0 + i.  THR_LISTENER names
 * the operations listeners make, on whatever thread settles the edge. */
enum { THR_MAIN, THR_MONITOR, THR_CHECKER, THR_HOTPLUG, THR_CHURN, THR_EVWAIT, THR_EVFD,
       THR_LISTENER, THR_ROLES };

/* ---------------------------------------------------------------------------
 * Violations
 */

enum vkind { V_EXCLUSION, V_STOP, V_LIVENESS, V_HANG, V_LIN, V_EVENTS, V_RESULT, V_KICK,
	     V_WORD, V_FINAL, V_LISTENER, V_SECTION, V_COUNT };

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
	/* A section owner's rs_vcpu_enter() in progress: its number (the
	 * slot's count of them, never 0), or 0 when none (exclusive.c). */
	_Atomic uint64_t xs_enter;
	uint64_t xs_calls;             /* written by the slot's vCPU thread */
	/* liveness bookkeeping, monitor thread only */
	uint64_t lv_since, lv_slices, lv_halts;
	uint64_t xs_seen, xs_since;    /* the owner's enter call, and since when */
	uint32_t xs_edge;              /* the edge all along since xs_since */
};

/*
 * The checks see a vCPU through vc_in_guest() and vc_count(), whichever
 * kind runs it.  A simulated vCPU stamps each guest slice with the edge it
 * read at entry; a KVM vCPU has no stamp, and its progress is the guest's
 * own counter in guest memory.
 */
#define IN_GUEST_NOSTAMP 0xffffffffu

/* ---------------------------------------------------------------------------
 * Recording operations for the linearizability check (checker.c)
 */

struct gate {
	pthread_mutex_t m;
	pthread_cond_t open_cv, drained_cv;
	bool closed;
	int begun, inflight;
	uint64_t opened;
	struct lin_op ops[LIN_MAX_GATED];
	struct lin_op ung[LIN_UNGATED];
	int ung_this_round;
};

struct opctx {
	int idx;                /* gate slot, or ungated slot */
	bool ungated;
	struct lin_op op;
	uint64_t w_before;      /* the word just before the call */
	struct thr *t;
};

/* ---------------------------------------------------------------------------
 * Listeners (listeners.c)
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

struct lstate {
	struct lrec *recs;
	_Atomic int hi;                   /* records used so far */
	pthread_mutex_t pool_m;           /* allocation, add order */
	uint64_t order;
	_Atomic int dyn_live;
	/* The runs as the listeners see them.  Calls never overlap (checked),
	 * so only one writer at a time; atomics keep a race well defined when
	 * they do overlap (a violation). */
	_Atomic int inflight;
	_Atomic uint64_t enter_ns;        /* a call runs since (the watchdog) */
	_Atomic uint64_t edge;            /* the last edge whose run began */
	_Atomic uint64_t prev, prev2;     /* the runs before it (0: none) */
	_Atomic uint64_t runs, first;     /* runs so far; the first run's edge */
	_Atomic uint64_t skipped;         /* edges between runs (coalesced) */
	_Atomic int prev_prio;
	_Atomic uint64_t prev_order;
	_Atomic uint64_t ring[LRING];     /* (edge << 32) | enc_state() */
	_Atomic uint64_t snap_edge;       /* the stop edge whose run took snap[] */
	_Atomic uint64_t snap[MAX_VCPU_SLOTS];
	_Atomic uint64_t norun;           /* a start run during which a stop edge came */
};

/* ---------------------------------------------------------------------------
 * Event readers (events.c)
 */

struct evr {
	const char *name;
	uint64_t cursor, expect, last_time, last_seq;
	uint64_t last_edge;        /* the edge counter of the last record, unwrapped */
	_Atomic uint64_t *n_events, *n_lost;
};

/* ---------------------------------------------------------------------------
 * The context
 */

struct stress {
	struct config cfg;
	const char *argv0;
	rs_runstate *rs;
	uint64_t t0;                      /* when the run began */

	_Atomic bool stop;                /* the run is over: threads finish up */
	_Atomic bool calm;                /* calm phase: only keep the VM running */
	_Atomic bool monitor_exit, checker_exit;
	_Atomic bool cons_exit;           /* the event consumers drain once more and end */
	_Atomic bool dumped;

	struct thr *thr;                  /* the thread table */
	int nthr, thr_vcpu0;
	_Atomic uint64_t claims;          /* thr_claim() calls: one stream each */
	_Atomic uint64_t hook_streams;    /* threads the library's hooks ran on */

	struct vcpu *vcpus;
	int nslots;
	_Atomic int nplugged;
	_Atomic int sync_inflight;        /* vCPU-thread synchronous calls in flight */
	struct rk_vm *vm;                 /* --kvm: slot i is the VM's vCPU i */

	struct stats stats;
	struct rs_stats lstats;           /* the library's counters, at the end */

	_Atomic long vcount[V_COUNT];
	_Atomic long vtotal;
	_Atomic int vfirst;               /* the kind of the first violation */
	pthread_mutex_t report_lock;

	struct gate gate;
	struct lin_checker lin;
	_Atomic uint64_t nreads;          /* recorded queries (--lin-corrupt) */

	struct lstate l;

	struct evr mon_reader, ew_reader, ef_reader;

	/*
	 * Sections (exclusive.c).  cmds: every command that can change the
	 * word, in one counter: (started << CMD_SHIFT) + in flight, bumped
	 * by op_begin() and op_end().  excl_holder: the thread (index in
	 * thr[]) the harness believes holds the section, -1 for none.
	 * excl_busy, excl_gen: threads in a section or waiting for one, and
	 * a count of section calls, for liveness (sections keep vCPUs out).
	 */
	_Atomic uint64_t cmds;
	_Atomic int excl_holder;
	_Atomic int excl_busy;
	_Atomic uint64_t excl_gen;
	_Atomic bool excl_calm_vcpu;      /* a calm phase's vCPU section is still to come */

	/* liveness, monitor thread only */
	bool live_valid;
	uint32_t live_edge;
	uint64_t live_excl_gen;
};

#define CMD_SHIFT 20

extern struct stress ctx;

/* ---------------------------------------------------------------------------
 * Edges
 */

/* a < b for edges less than half the counter apart */
static inline bool edge_lt(uint32_t a, uint32_t b)
{
	return a != b && b - a < EDGE_HALF;
}

/* An edge (mod 2^32) as the full count, near ref. */
static inline uint64_t unwrap_edge(uint32_t e, uint64_t ref)
{
	uint32_t d = e - (uint32_t)ref;

	if (d < EDGE_HALF)
		return ref + d;
	d = -d;
	return ref > d ? ref - d : 0;
}

/* ---------------------------------------------------------------------------
 * Declarations
 */

/* main.c */
struct rsu_rng rng_for(uint64_t stream);
void set_op(struct thr *t, const char *op);
struct thr *thr_claim(int i);
void thr_release(struct thr *t);

/* options.c */
void parse_args(int argc, char **argv);
void print_replay(FILE *f);
int expect_status(void);
extern const char *const vname[V_COUNT];

/* checker.c */
void violation(enum vkind k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool skipped(enum vkind k);
void bad_result(const char *what, int r);
void check_word(uint64_t w, const char *where);
void stop_check(const char *what, uint64_t w_before);
bool op_begin(struct thr *t, struct opctx *c, int kind, int arg, int arg2, int64_t timeout,
	      bool try);
bool op_begin_ungated(struct thr *t, struct opctx *c, int kind, int arg, int64_t timeout);
void op_end(struct opctx *c, int result);
int checker_init(void);
void *checker_main(void *arg);

/* faults.c */
struct rsu_rng *hook_rng(void);
extern const struct rs_ops stress_ops;

/* vcpus.c */
uint32_t vc_in_guest(int i);
uint64_t vc_count(int i);
uint64_t vc_halts(int i);
rs_vcpu *vc_rs(int i);
const char *in_guest_str(uint32_t g, char *buf, size_t n);
bool is_park_addr(const void *addr);
void slow_vcpu(struct thr *t);
void on_kick_signal(int sig);
enum { VD_ANY, VD_ASYNC, VD_SYNC };
bool vcpu_device(struct thr *t, int mode);
int plug(struct thr *t, struct rsu_rng *r);
void unplug(struct thr *t, struct vcpu *v);
void *hotplug_main(void *arg);

/* kvmglue.c: --kvm (stubs in a build without stress/kvm) */
int kvm_probe(void);
unsigned kvm_max_vcpus(void);
int kvm_setup(void);
void kvm_teardown(void);
uint32_t kvm_in_guest(int i);
uint64_t kvm_count(int i);
uint64_t kvm_halts(int i);
rs_vcpu *kvm_vcpu_rs(int i);
void *kvm_vcpu_main(void *arg);
bool kvm_registered(int i);
uint64_t kvm_final_kicks(void);
void kvm_print_vcpu(const struct rs_vcpu_info *info);

/* vcpus.c, for exclusive.c */
bool run_slice(struct vcpu *v, struct thr *t, const sigset_t *run_mask, bool busy);

/* mgmt.c */
int64_t pick_timeout(struct rsu_rng *r);
void between_ops(struct rsu_rng *r);
void do_read(struct thr *t, bool try);
int do_releasing(struct thr *t, int kind, int arg);
void do_stopping(struct thr *t, int kind, int arg, int64_t timeout, const char *what);
int64_t hold_plan(struct thr *t, int *checks);
void hold_wait(struct thr *t, int64_t ns);
void *mgmt_main(void *arg);
void *holder_main(void *arg);
void *device_main(void *arg);

/* exclusive.c */
int vcpu_section(struct vcpu *v, struct thr *t, const sigset_t *run_mask, bool calm);
void *excl_main(void *arg);
void listener_section_try(void);
void excl_liveness(uint64_t now, uint64_t w);
void excl_final(uint64_t w);

/* listeners.c */
int listener_add(bool inside, uint64_t u, int prio, bool persistent);
uint32_t enc_state(const struct rs_state *s);
void listeners_final(uint64_t w);
void *churn_main(void *arg);

/* events.c */
int events_read(uint64_t *cursor, struct rs_event *buf, size_t n, uint64_t *lost);
void evr_init(struct evr *r, const char *name, uint64_t cursor, _Atomic uint64_t *n_events,
	      _Atomic uint64_t *n_lost);
void read_events(void);
void final_reader(const struct evr *r, uint64_t w);
void *evwait_main(void *arg);
void *evfd_main(void *arg);

/* monitor.c */
void dump_state(const char *why);
void *monitor_main(void *arg);

/* output.c */
void hist_add(struct hist *h, uint64_t v);
void print_summary(FILE *f, double elapsed);
void print_json(FILE *f, double elapsed);

#endif

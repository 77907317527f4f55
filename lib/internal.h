/* SPDX-License-Identifier: MIT */
/* Private to the library: the instance, the vCPU record and their helpers. */
#ifndef RS_INTERNAL_H
#define RS_INTERNAL_H

#define RS_BUILDING_LIB 1
#include "runstate.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "word.h"

#define RS_HIDDEN __attribute__((visibility("hidden")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/*
 * Named delay points in the racy windows.  They compile to nothing unless the
 * build enables them (-Ddelay_points=true); the stress harness and the
 * sanitizer runs then inject random delays through ops.delay.
 */
#ifdef RS_DELAY_POINTS
#define RS_DELAY(rs, name) \
	do { if ((rs)->ops.delay) (rs)->ops.delay((rs)->ops.ctx, name); } while (0)
#else
#define RS_DELAY(rs, name) do { (void)(rs); } while (0)
#endif

static inline void rs_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/*
 * Per-vCPU state word, also the futex the vCPU parks on.
 *
 *  31            8   7..5    4      3      2      1       0
 * +----------------+------+------+------+------+-------+--------+
 * |  generation    | rsvd | EXIT | WORK | PARK | WANTED| ACTIVE |
 * +----------------+------+------+------+------+-------+--------+
 *
 * ACTIVE  executing guest code or handling an exit (else: out)
 * WANTED  a stopper counted this vCPU in rs->pending and kicked it; the
 *         vCPU's next active->out transition decrements rs->pending
 * PARK    the vCPU sleeps (or is about to) on this word
 * WORK, EXIT  requests posted by rs_vcpu_request()
 * generation  +1 on every active->out transition: a scanner that saw
 *         ACTIVE with generation g knows the vCPU has been out since once
 *         the generation differs from g
 */
#define VS_ACTIVE   0x01u
#define VS_WANTED   0x02u
#define VS_PARK     0x04u
#define VS_WORK     0x08u
#define VS_EXIT     0x10u
#define VS_TREE     0x20u  /* woken by a tree wake: wake your subtree */
#define VS_GEN_ONE  0x100u

/*
 * rs_vcpu_request() may run on any thread while the owner unregisters and
 * registers the same storage again: every field it reads before it has
 * validated the vCPU through a pinned slot (registered, rs, slot) is an
 * atomic, and registration never memsets them (rs_vcpu_register()).
 */
struct rs_vcpu_impl {
	_Atomic uint32_t state;
	_Atomic uint32_t slot;
	_Atomic(struct rs_runstate *) rs;
	rs_kick_fn *kick;
	void *opaque;
	_Atomic uint64_t kick_ns;     /* last kick (re-kick pacing) */
	_Atomic uint64_t wanted_ns;   /* first kick of this active period */
	_Atomic uint64_t out_since_ns; /* 0 while active */
	_Atomic uint64_t last_ack_ns;  /* the last active->out transition */
	_Atomic uint32_t registered;
};
_Static_assert(sizeof(struct rs_vcpu_impl) <= sizeof(rs_vcpu), "rs_vcpu storage too small");
_Static_assert(_Alignof(struct rs_vcpu_impl) <= _Alignof(rs_vcpu), "rs_vcpu alignment");

/*
 * A registry slot.  pins counts scanners that may be touching the vCPU in
 * the slot; unregistration empties the slot and then waits for pins to drop
 * to zero, so no scanner touches a vCPU after its unregistration returned.
 */
struct rs_slot {
	_Atomic(struct rs_vcpu_impl *) vcpu;
	_Atomic uint32_t pins;
};

struct rs_ev_slot {
	_Atomic uint64_t seq;   /* seq of the event held, 0 while written */
	_Atomic uint64_t time_ns;
	_Atomic uint64_t word;
	_Atomic uint64_t count; /* RS_EVENT_LOST: the edges it covers; else 1 */
	_Atomic uint32_t kind;
};

/* The words made by the edges in the backlog, for listeners and events: the
 * edge maker stores its new word in edge_word[edge % RS_EDGE_WORDS].  The
 * backlog never holds more than RS_W_BACKLOG_MAX edges, so no slot is
 * reused before its edge has settled. */
#define RS_EDGE_WORDS 128
_Static_assert(RS_EDGE_WORDS > RS_W_BACKLOG_MAX && !(RS_EDGE_WORDS & (RS_EDGE_WORDS - 1)),
	       "a slot per backlog entry, indexable modulo 2^32");

struct rs_listener {
	rs_listener_fn *fn;
	void *opaque;
	int priority;
	uint64_t id;
	struct rs_runstate *rs;
	struct rcu_head_opaque { void *a, *b; } rcu; /* struct rcu_head */
};

/* The listener set, published under RCU: sorted by (priority, id). */
struct rs_listener_set {
	struct rcu_head_opaque rcu;
	struct rs_runstate *rs;
	unsigned n;
	struct rs_listener *l[];
};

/* Grouped by who bumps them, one cache line per group: a stop or start
 * must not pull in a line that the vCPUs or event readers just wrote. */
struct rs_counters {
	/* management threads and the settler */
	_Atomic uint64_t stop_edges, start_edges, kicks, rekicks, timeouts, listener_runs;
	/* vCPUs (parks; wakes as they pass a tree wake on) */
	_Alignas(64) _Atomic uint64_t parks, wakes;
	/* event readers */
	_Alignas(64) _Atomic uint64_t events_lost;
};

#define RS_STAT_INC(rs, field) \
	atomic_fetch_add_explicit(&(rs)->stats.field, 1, memory_order_relaxed)

/*
 * Laid out by who writes what, and when: a stop's critical path is a few
 * cache-line transfers between the stopper and the vCPUs, and any field
 * that shares a line with one of those adds a transfer of its own.  With
 * pending, the settle mutex and the ops table on one line, the last
 * acknowledgement's fetch_sub and failed trylock stole the line the stopper
 * was about to unlock and read its clock through: about 80 ns of a 400 ns
 * stop (docs/performance.md).
 */
#define RS_LINE 64

struct rs_runstate {
	/* The word; first member, alone on its cache line (rs_may_run()
	 * reads it through struct rs_runstate_head). */
	_Atomic uint64_t word;
	char pad0[RS_LINE - sizeof(uint64_t)];

	/* Read-mostly: written at creation (hiwater also on registration
	 * into a new slot), read on every path. */
	_Alignas(RS_LINE) struct rs_ops ops;
	int64_t rekick_ns;
	struct rs_slot *slots;
	uint32_t nslots;
	_Atomic uint32_t hiwater;      /* slots [0, hiwater) may be in use */
	struct rs_ev_slot *ring;
	uint32_t ring_mask;
	uint32_t ncpus;                /* usable at creation (wake_early()) */
	unsigned backlog;              /* max_backlog */

	/* Settling: the settle mutex serializes the processing of the
	 * backlog; it is held by the thread that waits for the vCPUs of a
	 * stop edge.  settled is the edge counter of the last entry settled
	 * (written under the mutex, read anywhere).  The rest is the
	 * settler's own, under the mutex: settled_seq, the event number of
	 * that entry's last edge; coalesced[g], the coalesced edges of
	 * generation g accounted for so far (absorb()); synth_*, the run of
	 * coalesced edges that is
	 * the backlog's first entry after an absorb: its edge counter, its
	 * number of edges, the word at the absorb. */
	_Alignas(RS_LINE) _Atomic uint32_t settle_mutex;
	_Atomic uint32_t settled;
	uint64_t settled_seq;
	uint64_t coalesced[2];
	bool synth;
	uint32_t synth_edge;
	uint64_t synth_n, synth_word;

	/* edge_word is written by edge makers and read by the settler,
	 * usually the same thread. */
	_Alignas(RS_LINE) _Atomic uint64_t edge_word[RS_EDGE_WORDS];
	/* Coalesced edges, by generation (RS_W_COAL_GEN): their makers count
	 * themselves in flight before their CAS, and made after it
	 * (word_cas()); only while the backlog overflows. */
	_Alignas(RS_LINE) _Atomic uint64_t coalesced_made[2];
	_Atomic uint32_t coalesce_inflight[2];

	/* Number of active vCPUs with VS_WANTED set, plus PENDING_SLEEPER
	 * while the settler sleeps on it: written by the stopper (counting)
	 * and by every acknowledging vCPU, so alone on its line. */
	_Alignas(RS_LINE) _Atomic uint32_t pending;

	/* Lock-bit waiters: serialized by lockq_mutex; grants[r] counts
	 * hand-overs not yet taken and is the futex waiters of bit r sleep
	 * on. */
	_Alignas(RS_LINE) _Atomic uint32_t lockq_mutex;
	uint32_t lock_waiters[RS_LOCK_COUNT];
	_Atomic uint32_t lock_grants[RS_LOCK_COUNT];
	uint32_t lock_issued[RS_LOCK_COUNT], lock_taken[RS_LOCK_COUNT];

	/* Events, produced in edge order by the settle mutex holder, read
	 * by consumers. */
	_Alignas(RS_LINE) _Atomic uint64_t ev_head; /* seq of the newest record */
	_Atomic uint32_t ev_seq32;     /* low bits of ev_head: the futex */
	_Atomic uint32_t ev_waiters;   /* threads in rs_events_wait() */
	_Atomic int ev_fd;             /* eventfd, -1 until asked for */

	/* Listeners: readers (the settler) under RCU; writers serialized by
	 * listener_mutex. */
	struct rs_listener_set *listeners;
	_Atomic uint32_t listener_mutex;
	uint64_t listener_ids;
	_Atomic uint32_t rcu_pending;  /* call_rcu callbacks not yet run */
	_Atomic uint32_t nlisteners;   /* lets an edge skip RCU when zero */

	/* Counters, bumped from every thread: kept off the lines above. */
	_Alignas(RS_LINE) struct rs_counters stats;

	_Alignas(RS_LINE) _Atomic uint32_t nregistered;
};

/* rs_may_run() reads the word through struct rs_runstate_head, at offset
 * 0; the line groups above need the instance line-aligned (rs_create()). */
_Static_assert(offsetof(struct rs_runstate, word) == 0, "the word must come first");
_Static_assert(_Alignof(struct rs_runstate) >= RS_LINE, "line-aligned groups");

#define PENDING_SLEEPER 0x80000000u
#define PENDING_COUNT   0x7fffffffu

/* os.c */
RS_HIDDEN void rs_ops_fill(struct rs_ops *dst, const struct rs_ops *src);
RS_HIDDEN int rs_futex_wait(struct rs_runstate *rs, _Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns);
RS_HIDDEN void rs_futex_wake(struct rs_runstate *rs, _Atomic uint32_t *addr, int n);
RS_HIDDEN uint64_t rs_now(struct rs_runstate *rs);
RS_HIDDEN uint64_t rs_deadline(struct rs_runstate *rs, int64_t timeout_ns);
RS_HIDDEN int64_t rs_remaining(struct rs_runstate *rs, uint64_t deadline);
RS_HIDDEN void rs_fatal(const char *what, int err) __attribute__((noreturn));

/* A small futex mutex (0 free, 1 held, 2 held with sleepers). */
RS_HIDDEN bool rs_mutex_trylock(_Atomic uint32_t *m);
RS_HIDDEN int rs_mutex_lock(struct rs_runstate *rs, _Atomic uint32_t *m, uint64_t deadline);
RS_HIDDEN void rs_mutex_unlock(struct rs_runstate *rs, _Atomic uint32_t *m);

/* vcpu.c */
RS_HIDDEN void rs_kick_active(struct rs_runstate *rs);
/* Scan the vCPUs: check (count and kick the newly active), re-kick
 * laggards after the delay, or kick every active vCPU for a new stop edge. */
enum rs_scan_mode { RS_SCAN_CHECK, RS_SCAN_REKICK, RS_SCAN_EDGE };
RS_HIDDEN bool rs_scan_out(struct rs_runstate *rs, enum rs_scan_mode mode);
RS_HIDDEN void rs_prefetch_wake(struct rs_runstate *rs);
RS_HIDDEN void rs_wake_parked(struct rs_runstate *rs);
RS_HIDDEN void rs_vcpu_thread_out(struct rs_runstate *rs);
RS_HIDDEN void rs_vcpu_check_active(const struct rs_runstate *rs);

/* runstate.c */
RS_HIDDEN void rs_settle_help(struct rs_runstate *rs);

/* listener.c */
RS_HIDDEN extern _Thread_local unsigned rs_tls_in_listener;
RS_HIDDEN void rs_run_listeners(struct rs_runstate *rs, bool running, uint64_t word);
RS_HIDDEN void rs_listeners_destroy(struct rs_runstate *rs);
RS_HIDDEN int rs_no_wait_in_listener(const char *what);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * runstate: one atomic word that says whether a VM's vCPUs may run.
 *
 * The run state is the tuple of Bonzini's 2011 proposal: internal lock bits
 * taken and released by the emulator (debug, savevm, pre-migrate, restore),
 * an io-error flag that only management clears, and one pause reason that
 * start/cont clear.  The VM runs only when all of them are clear.  Everything
 * lives in one 64-bit word changed only by compare-and-swap; a vCPU asks
 * "may I run?" with one load and one compare (rs_may_run()).
 *
 * This header is the contract: every call lists the values it returns, the
 * threads it may be called on, and the memory ordering it guarantees.
 * docs/semantics.md says what the commands do, docs/protocol.md proves the
 * orderings, and runstate-testing.h holds what only tests and models use
 * (the word's layout, the pure transition function, the OS seam).
 *
 * Conventions.  Functions return 0 or a negative errno (RS_E* below; each
 * call lists every value it can return); a call that fails changes nothing,
 * except RS_ETIMEDOUT, whose change stays made.  Timeouts are relative, in
 * nanoseconds: RS_FOREVER (or any negative value) waits without limit,
 * RS_ASYNC does not wait at all.
 *
 * Thread context, for every call: any thread may make it, unless its entry
 * says otherwise.  A call "may wait" when it is given a timeout other than
 * RS_ASYNC (and rs_listener_remove() outside a listener, which waits for a
 * grace period).  Such a call, made on a registered vCPU's thread, takes
 * that vCPU out first (its acknowledgement, so it never waits for itself)
 * and leaves it out: that thread goes back through rs_vcpu_enter() before
 * any guest code (rs_vcpu_enter() returns at once when the VM may run).
 * Every timeout is honoured; no call parks the calling vCPU inside itself.
 * A call with RS_ASYNC never waits and leaves the calling vCPU as it was.
 * From inside a listener, a call that may wait returns RS_EDEADLK and
 * changes nothing.
 *
 * Ordering, in the words used below: "full barrier" means the call's change
 * is a sequentially consistent read-modify-write of the word (what the
 * caller wrote before the call is visible to every thread that sees the
 * change, and the caller sees what every earlier change published);
 * "acquires" means the caller sees what was written before the state it
 * read was made; "releases" the converse.
 *
 * Structures that cross the library boundary carry their size (the `size`
 * member, set by whoever allocates the structure, or a size argument), so
 * that a field can be added at the end without breaking old binaries:
 * the library reads and writes only the bytes both sides know, and gives
 * a field the caller's size does not reach its default.
 *
 * This header compiles alone as C11 and as C++11 or later; its inline code
 * uses the compiler's __atomic builtins, never <stdatomic.h>.  Every
 * constant is a plain integer expression that binding generators evaluate.
 */
#ifndef RUNSTATE_H
#define RUNSTATE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RS_BUILDING_LIB)
#define RS_API __attribute__((visibility("default")))
#else
#define RS_API
#endif

/* The version of this header.  0.x: the API may still change between minor
 * versions (NEWS says how); 1.0 comes once the QEMU port has proven it. */
#define RS_VERSION_MAJOR 0
#define RS_VERSION_MINOR 10
#define RS_VERSION_PATCH 0
/* The version of the library linked at run time, as
 * (major << 16) | (minor << 8) | patch.  Any thread; never waits. */
RS_API unsigned rs_version(void);

/* ---------------------------------------------------------------------------
 * Reasons
 */

/* Internal locks: taken and released by the emulator itself. */
enum rs_lock {
	RS_LOCK_DEBUG = 0,
	RS_LOCK_SAVEVM = 1,
	RS_LOCK_PRE_MIGRATE = 2,
	RS_LOCK_RESTORE = 3,
};
#define RS_LOCK_COUNT 4

/* Pause reasons, in rank order within each class (see docs/semantics.md). */
enum rs_pause {
	RS_PAUSE_NONE = 0,
	RS_PAUSE_PRELAUNCH = 1,   /* rank 1 */
	RS_PAUSE_PAUSED = 2,      /* rank 1 */
	RS_PAUSE_WATCHDOG = 3,    /* rank 2 */
	RS_PAUSE_PANICKED = 4,    /* rank 2 */
	RS_PAUSE_POSTMIGRATE = 5, /* rank 3 */
	RS_PAUSE_SHUTDOWN = 6,    /* rank 4 */
	RS_PAUSE_INTERNAL_ERROR = 7, /* rank 4 */
};
#define RS_PAUSE_COUNT 8

/* ---------------------------------------------------------------------------
 * Errors (negative errno values) and timeouts.
 */
#define RS_EINVAL     (-EINVAL)           /* bad argument; nothing changed */
#define RS_EBUSY      (-EBUSY)            /* lock bit held; nothing changed */
#define RS_ENOTHELD   (-EPERM)            /* unlock of a bit, or end of a
					   * section, not held */
#define RS_ENEEDFORCE (-EACCES)           /* start on rank 2 or 3 */
#define RS_ENEEDRESET (-ENOTRECOVERABLE)  /* start/cont on rank 4 */
#define RS_ETIMEDOUT  (-ETIMEDOUT)        /* change made; a vCPU not out yet */
#define RS_ENOMEM     (-ENOMEM)
#define RS_ENOSPC     (-ENOSPC)           /* vCPU table full */
#define RS_EDEADLK    (-EDEADLK)          /* a wait from inside a listener,
					   * or a nested section */

/* Short name of an error: "invalid", "busy", "not-held", "needs-force",
 * "needs-reset", "timeout", "no-memory", "no-space", "deadlock", "ok" for 0,
 * or "unknown".  Any thread; never waits. */
RS_API const char *rs_strerror(int err);

#define RS_FOREVER (-1)
#define RS_ASYNC   0

/* ---------------------------------------------------------------------------
 * The instance and the vCPU fast path
 */

/*
 * An instance.  Only rs_create() makes one.  Its one visible member is the
 * word, there so that the inline fast path below can load it; callers never
 * read, write, copy or declare one: the rest of the instance lies behind it
 * and is the library's.
 */
typedef struct rs_runstate {
	uint64_t word_private;
} rs_runstate;

/*
 * The bits of the word that keep vCPUs out of guest code: every stop
 * reason, edges not yet settled, and bits reserved for reasons that keep
 * vCPUs out without stopping the VM (exclusive sections use one).  It is
 * compiled into every caller, so it covers every such bit this ABI will
 * ever have.
 */
#define RS_NORUN_MASK 0xfffffu

/*
 * The vCPU fast path: may the calling vCPU keep executing guest code?
 * One load and one compare; no store, no fence, no read-modify-write.
 * On a registered vCPU's thread, only while that vCPU is active (after
 * rs_vcpu_enter() returned 0, and before any call that may wait).
 *
 * Ordering: relaxed.  rs_vcpu_enter() announced the vCPU with a seq_cst
 * read-modify-write and re-loaded the word with a seq_cst (so acquire)
 * load, pairing with the stopper's compare-and-swap (docs/protocol.md,
 * P1).  While the vCPU stays active it needs no new data from other
 * threads; as soon as this check fails it calls rs_vcpu_enter() again,
 * which acquires.
 */
static inline bool rs_may_run(const rs_runstate *rs)
{
	return (__atomic_load_n(&rs->word_private, __ATOMIC_RELAXED) & RS_NORUN_MASK) == 0;
}
/* Out-of-line twin of rs_may_run() for FFI users, with the same contract;
 * checking builds (assertions enabled) abort when it is asked on the thread
 * of a vCPU that is out. */
RS_API bool rs_may_run_func(const rs_runstate *rs);

/* ---------------------------------------------------------------------------
 * Creating an instance
 */
struct rs_config {
	/* sizeof(struct rs_config) as the caller compiled it.  Fields beyond
	 * it take their defaults; a newer caller's extra bytes must be zero
	 * (else RS_EINVAL: it asks for something this library lacks). */
	uint32_t size;
	/* Maximum number of vCPUs registered at once (0: 1024). */
	unsigned max_vcpus;
	/* A vCPU that has not acknowledged a stop is kicked again after this
	 * long while some thread waits (0: 1 ms).  A waiter that sleeps naps
	 * at most this long, and a nap that ends before the CPU's next
	 * timer event (mostly the scheduler tick) makes the kernel program
	 * the CPU's timer as the waiter sleeps and again as it is woken: in
	 * a virtual machine an exit each, about 3 us on the way to sleep and
	 * 3 us on the way back on the 2-core VM, on the critical path of a
	 * stop whose vCPU shares the waiter's CPU (docs/performance.md, "A
	 * stop on the vCPU's own CPU").  An emulator whose kicks are never lost can set
	 * it past the tick (QEMU's port: 20 ms). */
	int64_t rekick_ns;
	/* Capacity of the event ring, a power of two (0: 256). */
	unsigned event_capacity;
	/* Edges settled one by one, each with its own event and listener
	 * run, when several are made before the first of them has settled
	 * (1 to 127; 0: 64).  Edges made beyond it are coalesced until the
	 * backlog drains: their events are reported as RS_EVENT_LOST, and
	 * the listeners run once for their net effect (docs/semantics.md,
	 * "Coalesced edges"). */
	unsigned max_backlog;
};
/* The size of the first published struct rs_config (0.9.0): the smallest
 * size rs_create() accepts. */
#define RS_CONFIG_SIZE_0_9 24

/*
 * Create an instance, stopped in `prelaunch`, with no event.  cfg may be NULL
 * (every default).  Any thread; never waits.
 * Returns 0, RS_EINVAL (NULL out; cfg->size below RS_CONFIG_SIZE_0_9 or
 * nonzero bytes past the library's struct; event_capacity not a power of
 * two or over 2^20; max_vcpus over 2^20; rekick_ns negative; max_backlog
 * over 127) or RS_ENOMEM.
 */
RS_API int rs_create(const struct rs_config *cfg, rs_runstate **out);
/* Destroy an instance.  No vCPU may be registered and no call in flight. */
RS_API void rs_destroy(rs_runstate *rs);

/* ---------------------------------------------------------------------------
 * Management commands.  Each is one compare-and-swap on the word: a full
 * barrier.  What the caller wrote before it is visible to every thread that
 * sees the new state, and to every vCPU that runs after it.
 *
 * Stopping calls (rs_stop, rs_lock, rs_trylock, rs_io_error, rs_pause,
 * rs_unlock_pause) take timeout_ns: with RS_ASYNC they return once the change
 * is made; otherwise they also wait until every registered vCPU has been out
 * of guest code since the change (RS_ETIMEDOUT: the change stays made, and
 * the vCPUs are kept out until it settles).  When one returns 0 after
 * waiting, it has acquired every vCPU's going out: the caller sees
 * everything the vCPUs wrote in guest code and exit handling before.
 */

/* Apply `paused` under the rank rule (replaces only `none`).
 * Returns 0, RS_ETIMEDOUT (stop made, vCPUs not all out), RS_EDEADLK (from a
 * listener, with a timeout), RS_EINVAL (NULL). */
RS_API int rs_stop(rs_runstate *rs, int64_t timeout_ns);

#define RS_START_FORCE 1u
/* Clear the pause reason: rank 1 always; rank 2-3 only with RS_START_FORCE
 * (else RS_ENEEDFORCE); rank 4 never (RS_ENEEDRESET).  Lock bits and
 * io-error are untouched: the VM runs when they clear.  Never waits (a
 * start's settling may be left to another thread: rs_wait()).
 * Returns 0, RS_ENEEDFORCE, RS_ENEEDRESET, RS_EINVAL (NULL, unknown flag). */
RS_API int rs_start(rs_runstate *rs, unsigned flags);
/* Clear io-error; never touches the pause reason.  Never waits.
 * Returns 0, RS_EINVAL (NULL). */
RS_API int rs_retry(rs_runstate *rs);
/* rs_retry plus forced rs_start in one compare-and-swap.  Never waits.
 * Returns 0, RS_ENEEDRESET (rank 4: nothing changes, io-error stays too),
 * RS_EINVAL (NULL). */
RS_API int rs_cont(rs_runstate *rs);
/* Replace any pause reason other than `none` with `prelaunch`.  Never waits.
 * Returns 0, RS_EINVAL (NULL). */
RS_API int rs_reset(rs_runstate *rs);

/* Set io-error (idempotent).  A stopping call.
 * Returns 0, RS_ETIMEDOUT, RS_EDEADLK, RS_EINVAL (NULL). */
RS_API int rs_io_error(rs_runstate *rs, int64_t timeout_ns);
/* Apply pause reason p (not RS_PAUSE_NONE) under the rank rule: it replaces
 * the current reason only if it ranks strictly higher.  A stopping call.
 * Returns 0, RS_ETIMEDOUT, RS_EDEADLK, RS_EINVAL (NULL, p out of range or
 * none). */
RS_API int rs_pause(rs_runstate *rs, enum rs_pause p, int64_t timeout_ns);

/*
 * Internal locks.  A bit has no owning thread: any thread may release it.
 *
 * rs_lock waits for the bit to be free and then for the vCPUs, both within
 * timeout_ns: RS_EBUSY if the bit stayed held (nothing changed),
 * RS_ETIMEDOUT if the bit was taken but a vCPU is not out yet (the bit stays
 * held: unlock it or call rs_wait()).  rs_trylock fails with RS_EBUSY at once
 * if the bit is held, else takes it and waits for the vCPUs within timeout_ns.
 * With RS_ASYNC both are try forms.  A full barrier; a holder that a
 * waiter's unlock handed the bit to acquires that unlock.
 * Returns 0, RS_EBUSY, RS_ETIMEDOUT, RS_EDEADLK, RS_EINVAL (NULL, r not one
 * of the four locks).
 */
RS_API int rs_lock(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns);
RS_API int rs_trylock(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns);
/* Release a bit.  If another thread waits for the same bit, the bit passes
 * to it directly: the VM does not run in between and no event is produced.
 * Never waits (beyond a short critical section shared with lock waiters).
 * A full barrier (a hand-over releases to the new holder).
 * Returns 0, RS_ENOTHELD (not held), RS_EINVAL (NULL, r unknown). */
RS_API int rs_unlock(rs_runstate *rs, enum rs_lock r);
/* Release a bit and apply pause reason p in the same compare-and-swap, so the
 * VM cannot run in between.  A stopping call (p keeps the VM stopped).  A
 * waiter for the bit, if any, gets the bit and p is applied all the same.
 * Returns 0, RS_ENOTHELD (p not applied either), RS_ETIMEDOUT, RS_EDEADLK,
 * RS_EINVAL (NULL, r unknown, p none or out of range). */
RS_API int rs_unlock_pause(rs_runstate *rs, enum rs_lock r, enum rs_pause p,
			   int64_t timeout_ns);

/* Wait until every edge made before the call has settled and, if the VM was
 * stopped, every vCPU is out.  With RS_ASYNC: help settle without waiting,
 * then answer.  Changes no state (but a vCPU's own, as any call that may
 * wait).  Returning 0, it acquires what rs_stop() returning 0 would.
 * Returns 0, RS_ETIMEDOUT (still settling), RS_EDEADLK, RS_EINVAL. */
RS_API int rs_wait(rs_runstate *rs, int64_t timeout_ns);

/* ---------------------------------------------------------------------------
 * Exclusive sections: keep every vCPU but the caller's own out of guest
 * code, without changing the run state.  For what QEMU does with
 * start_exclusive() (an atomic instruction or a translation-cache flush
 * run alone by one vCPU) and with pause_all_vcpus() outside vm_stop()
 * (kvmvapic patching guest code, system reset, wake-up from suspend).
 * docs/semantics.md has the rules, docs/protocol.md the pairings (P18-P21).
 *
 * A section is owned by the thread that began it, vCPU thread or not, until
 * that thread ends it (a thread must end its section before it exits).
 * During a section no registered vCPU executes guest code except the
 * owner's own, if the owner is a vCPU thread: that vCPU runs guest code
 * through rs_vcpu_enter(), which on the owner's thread returns 0 while the
 * run state lets the VM run (the section's bit makes the owner's own
 * rs_may_run() fail, so every slice goes through rs_vcpu_enter(); QEMU's
 * sections run one instruction or none).  The run state is not changed by a
 * section: no edge, no event, no listener run, rs_decode() reports the same
 * tuple.  It may change during one (a stop, an io-error, a lock, a start):
 * a stop that waits returns only when every vCPU, the owner's included, is
 * out; after the section the vCPUs run only if the VM may run then.
 * Requests (rs_vcpu_request()) reach vCPUs kept out by a section.
 */

/*
 * Begin a section: wait, within timeout_ns, until no other section is held
 * and then until every registered vCPU is out.  Sections are served first
 * come, first served (no starvation).  On a vCPU thread the caller's vCPU
 * is taken out first (as by every call that may wait), so it counts as out
 * while it waits: two vCPU threads beginning sections at once do not
 * deadlock.  The owner's vCPU goes back through rs_vcpu_enter() before its
 * guest code.  RS_ASYNC makes it a try: 0 only if no section is held and
 * every other vCPU is out already; a try that finds a vCPU in guest code
 * fails without kicking it.  A timed begin kicks the vCPUs in guest code
 * as a stop does, also when it then times out.
 *
 * Returns 0 (the section is held: a full barrier, and the caller has
 * acquired every vCPU's going out and the previous section's end),
 * RS_ETIMEDOUT (nothing changed: no section held; vCPUs kept out meanwhile
 * run again if the VM may run), RS_EDEADLK (the thread already holds a
 * section, or the call is made inside a listener: nothing changed),
 * RS_EINVAL (NULL).
 */
RS_API int rs_exclusive_begin(rs_runstate *rs, int64_t timeout_ns);
/*
 * End the section this thread holds: the next waiting section, if any, takes
 * over without letting the vCPUs run in between; else the vCPUs run again
 * if the VM may run.  Never waits (beyond a short critical section shared
 * with section waiters).  Releases: the next owner, and every vCPU that
 * runs after it, sees what the section wrote.  Returns 0, RS_ENOTHELD (this
 * thread holds no section of rs: nothing changed), RS_EINVAL (NULL).
 */
RS_API int rs_exclusive_end(rs_runstate *rs);

/* ---------------------------------------------------------------------------
 * Queries
 */
struct rs_state {
	uint32_t size;       /* set by whoever allocates it (rs_decode()'s
			      * caller; the library for the ones it passes) */
	bool running;        /* no lock, no io-error, pause reason none */
	bool may_run;        /* running and not settling */
	bool settling;       /* edges not yet settled */
	bool io_error;
	unsigned locks;      /* bit (1u << enum rs_lock) per held lock */
	enum rs_pause pause;
	uint32_t edge;       /* the edge counter: odd exactly while running */
};
#define RS_STATE_SIZE_0_9 20

/* Load the word: an opaque snapshot for rs_decode() and rs_legacy_status()
 * (0 for NULL).  Acquires. */
RS_API uint64_t rs_word(const rs_runstate *rs);
/* Decode a word; works on any 64-bit value.  Fills st->size bytes: the
 * fields this library knows, zeros beyond (st->size is left as it was).
 * Returns 0, RS_EINVAL (NULL st, st->size below RS_STATE_SIZE_0_9). */
RS_API int rs_decode(uint64_t word, struct rs_state *st);
/* QEMU query-status string for a word: finish-migrate, restore-vm, save-vm,
 * debug, the pause reason (guest-panicked for panicked), io-error, running.
 * A constant of the library (static storage), the same pointer for the same
 * string every time: a caller may compare or cache by pointer. */
RS_API const char *rs_legacy_status(uint64_t word);

/* Names used by rsctl and the docs: "debug", "savevm", "pre-migrate",
 * "restore"; "none", "prelaunch", "paused", "watchdog", "panicked",
 * "postmigrate", "shutdown", "internal-error".  NULL when out of range. */
RS_API const char *rs_lock_name(int r);
RS_API const char *rs_pause_name(int p);
/* Inverse of the above; RS_EINVAL for an unknown name or NULL. */
RS_API int rs_lock_parse(const char *name);
RS_API int rs_pause_parse(const char *name);
/* Rank of a pause reason (0..4), RS_EINVAL when out of range. */
RS_API int rs_pause_rank(int p);

/* ---------------------------------------------------------------------------
 * Events: one per running<->stopped edge, in edge order.
 */
enum rs_event_kind {
	RS_EVENT_STOP = 1,
	RS_EVENT_RESUME = 2,
	RS_EVENT_LOST = 3,   /* a record of events the reader lost, or of
			      * coalesced edges that never had one */
};

struct rs_event {
	uint64_t seq;        /* 1 for the first edge, then consecutive: edge
			      * n is event n, coalesced edges included; for
			      * RS_EVENT_LOST the first seq lost */
	uint64_t time_ns;    /* CLOCK_MONOTONIC when the event was produced */
	enum rs_event_kind kind;
	uint64_t lost;       /* RS_EVENT_LOST: how many; else 0 */
	uint64_t word;       /* the word just after the edge's CAS; for
			      * RS_EVENT_LOST: the word that ended a run of
			      * coalesced edges, or 0 for a reader's loss */
	struct rs_state state; /* that word, decoded */
};
#define RS_EVENT_SIZE_0_9 64

/* Sequence number of the next event to be produced: a cursor that skips
 * every event so far (0 for NULL).  Acquires. */
RS_API uint64_t rs_events_cursor(const rs_runstate *rs);
/*
 * Copy up to n event records starting at *cursor into buf, oldest first,
 * and advance *cursor.  event_size is sizeof(struct rs_event) as the caller
 * compiled it: the records are event_size bytes apart, each filled with
 * the fields both sides know and zeros beyond.  If the ring overwrote events the reader had not
 * read, reading resumes at the oldest kept one and the loss is reported,
 * never a silent gap: through *lost when lost is not NULL (else *lost is
 * 0), or, when lost is NULL, as an RS_EVENT_LOST record in buf.  The loss
 * always comes before the first event copied (a loss found after some were
 * copied ends this call and is reported by the next).  Edges that were
 * coalesced (see rs_config.max_backlog) never had events: they come as an
 * RS_EVENT_LOST record too (its word is the one that ended them).
 * Any thread; each reader keeps its own cursor; never waits, and producing
 * an event never waits for readers.  Acquires: a reader sees what the
 * settler wrote before producing the record.
 * Returns the number of records copied, or RS_EINVAL (NULL rs or cursor,
 * NULL buf with n > 0, event_size below RS_EVENT_SIZE_0_9).
 */
RS_API int rs_events_read(const rs_runstate *rs, uint64_t *cursor, struct rs_event *buf,
			  size_t n, size_t event_size, uint64_t *lost);
/* Wait until an event with seq >= cursor exists.  The cursor is not
 * advanced.  Acquires, as rs_events_read().  Returns 0, RS_ETIMEDOUT (none
 * by the deadline; with RS_ASYNC: none now), RS_EDEADLK (from a listener,
 * with a timeout), RS_EINVAL. */
RS_API int rs_events_wait(rs_runstate *rs, uint64_t cursor, int64_t timeout_ns);
/*
 * An eventfd (EFD_NONBLOCK) that becomes readable when an event is
 * produced, for a glib, epoll or tokio main loop.  Created on the first
 * call, owned by the instance (closed by rs_destroy); returns the fd or a
 * negative errno.  Read it to clear the readiness, then drain
 * rs_events_read(): clearing first means no event is missed.  Never waits.
 */
RS_API int rs_events_fd(rs_runstate *rs);

/* ---------------------------------------------------------------------------
 * Listeners: the emulator's device models, quiesced after the vCPUs stop and
 * restarted before they resume (QEMU's vm change state handlers).
 *
 * On a running->stopped edge, listeners run after every vCPU is out and
 * before the call that stopped the VM returns (for an asynchronous stop:
 * on whichever thread settles the edge), in descending priority.  On a
 * stopped->running edge they run before any vCPU executes guest code, in
 * ascending priority.  Runs for successive edges never overlap and never
 * reorder, and each edge's listeners run exactly once.  The STOP event is
 * produced after the stop listeners, the RESUME event before the start
 * listeners (as QEMU does).
 *
 * Edges that were coalesced run no listeners of their own: a run of them
 * runs the listeners once, with the word that ended it, if it changed
 * running (an odd number of edges), and not at all otherwise.
 *
 * A listener may call the query API and the asynchronous commands, and add
 * or remove listeners (effective from the next edge).  It must not wait:
 * a call that may wait returns RS_EDEADLK from a listener, and changes
 * nothing.  Listeners run without any lock of the emulator's and with the
 * settle lock held: a stop's listeners acquire every vCPU's going out, the
 * settling thread sees everything the listeners wrote, and so does every
 * vCPU that runs after a start's listeners.  st->size is the library's.
 */
typedef void rs_listener_fn(void *opaque, bool running, const struct rs_state *st);
typedef struct rs_listener rs_listener;

/* Add a listener; *out gets its handle.  Never waits (beyond a short
 * critical section shared with other adders and removers).
 * Returns 0, RS_EINVAL (NULL rs, fn or out), RS_ENOMEM. */
RS_API int rs_listener_add(rs_runstate *rs, rs_listener_fn *fn, void *opaque, int priority,
			   rs_listener **out);
/* Remove it.  From outside a listener, returns once no run can still call
 * it (it may wait: a grace period); from inside a listener, the current
 * edge may still call it.  Returns 0, RS_EINVAL (NULL, or l is not a
 * current listener of rs: the handle is not dereferenced then; after a
 * successful remove it is freed), RS_ENOMEM. */
RS_API int rs_listener_remove(rs_runstate *rs, rs_listener *l);

/* ---------------------------------------------------------------------------
 * Introspection: the first thing to read when a VM will not stop.
 */
struct rs_stats {
	uint32_t size;           /* sizeof(struct rs_stats) as the caller
				  * compiled it; set before the call */
	uint64_t stop_edges, start_edges;   /* coalesced ones included */
	uint64_t parks;          /* vCPU futex sleeps */
	uint64_t wakes;          /* vCPU futex wakes (start, requests) */
	uint64_t kicks, rekicks;
	uint64_t timeouts;       /* calls that returned RS_ETIMEDOUT */
	uint64_t events_lost;    /* events readers were told they lost */
	uint64_t listener_runs;
	uint64_t coalesced;      /* edges made while the backlog overflowed */
};
#define RS_STATS_SIZE_0_9 88
/* Relaxed counters, each read on its own (no snapshot).  Fills st->size
 * bytes: the counters this library knows, zeros beyond (st->size is left
 * as it was).  Never waits.  Returns 0, RS_EINVAL (NULL, st->size below
 * RS_STATS_SIZE_0_9). */
RS_API int rs_get_stats(const rs_runstate *rs, struct rs_stats *st);
/*
 * Describe the instance in text: the decoded word, the counters, and every
 * vCPU's state with the time since its last acknowledgement.  Writes at
 * most len bytes (NUL-terminated) and returns the length the whole text
 * needs, like snprintf, or RS_EINVAL (NULL rs; NULL buf with len > 0).
 * Never waits.
 */
RS_API int rs_dump(rs_runstate *rs, char *buf, size_t len);

/* ---------------------------------------------------------------------------
 * vCPUs.  See docs/protocol.md for the protocol and docs/integration.md for
 * the loop an emulator writes around it.
 *
 *	rs_vcpu_register(rs, &v, kick, opaque);        // on the vCPU thread
 *	while (rs_vcpu_enter(&v) == 0) {               // parks while stopped
 *		do
 *			run_one_guest_slice();             // handles its exits
 *		while (rs_may_run(rs));                    // the fast path
 *	}
 *	rs_vcpu_unregister(&v);
 *
 * Calls from a vCPU thread (see the thread context at the top): a call that
 * may wait takes the calling vCPU out, so stops raised from vCPU threads
 * never deadlock, and leaves it out.  The rule for the emulator: after any
 * call that may wait, go through rs_vcpu_enter() before guest code; never
 * poll rs_may_run() instead (a start between the call and the poll would
 * let an out vCPU run unseen).
 */

/* Caller-owned storage for a vCPU, embeddable in the emulator's own vCPU
 * structure.  Its contents are private; its size and alignment are part of
 * the ABI. */
typedef struct rs_vcpu {
	uint64_t rs_opaque[16];
} __attribute__((aligned(64))) rs_vcpu;

/* Kick: make the vCPU leave guest code soon (signal + immediate_exit, or an
 * interpreter exit flag).  May run concurrently from several threads, must
 * not call into the library, is never called after rs_vcpu_unregister()
 * returned. */
typedef void rs_kick_fn(rs_vcpu *v, void *opaque);

/* Register v, out, from the thread that will run it.  Never waits.  The
 * storage must be zeroed or previously unregistered.  Returns 0, RS_EINVAL
 * (NULL, v already registered, the thread already runs a vCPU), RS_ENOSPC
 * (max_vcpus registered). */
RS_API int rs_vcpu_register(rs_runstate *rs, rs_vcpu *v, rs_kick_fn *kick, void *opaque);
/* Unregister from its own thread (counts as acknowledgement: releases, as
 * going out does).  Returns once no other thread can touch v (it may wait
 * for a scan or a request in flight on v, a few instructions).  Returns 0,
 * RS_EINVAL (v is not registered, or this is not its thread). */
RS_API int rs_vcpu_unregister(rs_vcpu *v);

#define RS_VCPU_EXIT 1   /* an exit request: unregister */
#define RS_VCPU_WORK 2   /* a work request: do it, call rs_vcpu_enter again */
/*
 * The slow path, on v's own thread only.  Returns 0 once v is active and
 * may run guest code (at once if it already is); parks while the VM may not
 * run (without limit: an exit request ends it).  Returns RS_VCPU_EXIT or
 * RS_VCPU_WORK, with v out, when a request is pending (exit before work).
 * RS_EINVAL if v is not registered to this thread.  Returning 0, it acquires
 * the word: the vCPU sees everything written before the change that let it
 * run (device state restored by start listeners, for example).  Going out,
 * it releases: a stopper that sees it out sees what its guest code wrote.
 */
RS_API int rs_vcpu_enter(rs_vcpu *v);
/* Declare v quiescent (halted, or blocked in a host call that touches no
 * guest or device state): it counts as out until rs_vcpu_enter().  Only when
 * no exit is pending, on v's own thread.  Never waits.  Releases, as going
 * out does.  Returns 0, RS_EINVAL (not registered to this thread). */
RS_API int rs_vcpu_quiesce(rs_vcpu *v);
#define RS_REQ_EXIT 1u
#define RS_REQ_WORK 2u
/* Post a request to v from any thread, waking it if it is parked, else
 * kicking it (an active or quiescent vCPU must reach rs_vcpu_enter(); the
 * kick should also end a halt in the emulator's own wait).  Never waits.
 * It may race with v's unregistration and a new registration of the same
 * storage: it then acts on whichever registration holds the slot it finds
 * (or returns RS_EINVAL), and never kicks after the unregistration
 * returned; v's storage must stay allocated during the call.  Releases: a
 * request seen by rs_vcpu_enter() comes with what the requester wrote
 * before it.  Returns 0, RS_EINVAL (v not registered, req 0 or unknown). */
RS_API int rs_vcpu_request(rs_vcpu *v, unsigned req);

/* What rs_vcpu_foreach() tells of a vCPU.  Filled by the library, whose
 * size it carries: a caller compiled against an older header reads the
 * fields it knows. */
struct rs_vcpu_info {
	uint32_t size;
	const rs_vcpu *vcpu;
	void *opaque;
	unsigned index;           /* its slot in the registry */
	bool active;
	bool parked;
	uint64_t out_for_ns;      /* 0 while active */
	uint64_t unacked_ns;      /* time since the first kick of this active
				   * period, while not acknowledged */
	uint64_t since_ack_ns;    /* time since its last acknowledgement */
};
/* Call fn for every registered vCPU (a diagnosis of a stop that will not
 * complete), on the calling thread.  Never waits.  Returns the number of
 * vCPUs visited, RS_EINVAL (NULL rs). */
RS_API int rs_vcpu_foreach(rs_runstate *rs,
			   void (*fn)(const struct rs_vcpu_info *info, void *arg), void *arg);
/* Number of registered vCPUs and how many of them are out (nothing for NULL
 * rs).  Never waits. */
RS_API void rs_vcpu_count(rs_runstate *rs, unsigned *registered, unsigned *out);

#ifdef __cplusplus
}
#endif

#endif /* RUNSTATE_H */

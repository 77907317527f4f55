/* SPDX-License-Identifier: MIT */
/*
 * runstate-testing.h: what tests, fuzzers, models, benchmarks and debuggers
 * use, and emulators do not: the word's layout, the pure transition
 * function, and the operating-system seam.  Installed beside runstate.h,
 * but outside the stability promise of NEWS: this header changes with the
 * implementation (its symbols are versioned apart, RUNSTATE_TESTING_0.9).
 */
#ifndef RUNSTATE_TESTING_H
#define RUNSTATE_TESTING_H

#include "runstate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * The word.  lib/word.h asserts that these fields tile it.  One 64-bit word,
 * changed only by compare-and-swap:
 *
 *  63          32 31    23  22   21   20  19    13  12   11  10..8   7    6   5..0
 * +--------------+--------+----+----+----+--------+----+----+-------+----+----+-----+
 * | edge (32)    | coal.  | GN | LW | PK | backlog| OV | RV | pause | EX | IO |locks|
 * +--------------+--------+----+----+----+--------+----+----+-------+----+----+-----+
 *
 * locks   internal lock bits (enum rs_lock; 4 and 5 reserved)
 * IO      io-error
 * EX      reserved: keeps vCPUs out without stopping the VM
 * pause   enum rs_pause
 * RV      reserved: keeps vCPUs out
 * OV      the backlog is full: edges made now are coalesced
 * backlog entries not yet settled (0..127): edges that each settle on their
 *         own (a stop waits for every vCPU to be out, then emits STOP; a
 *         start emits RESUME) and at most one run of coalesced edges.
 *         Nonzero keeps vCPUs out even when the VM is running ("settling")
 * PK      some vCPU is parked (or about to park): a start must wake
 * LW      some thread waits for a held lock bit: unlock hands over
 * GN      generation of the coalesced edges: flips when a run of them is
 *         taken up, so that their makers' counts never mix across runs
 * coal.   edges coalesced while OV is set, modulo 2^9
 * edge    the edge counter, modulo 2^32: +1 per edge that settles on its
 *         own; a run of coalesced edges adds 1 if it changed running and 2
 *         if not, so the counter is odd exactly while the VM is running
 *         (events count every edge: see struct rs_event)
 *
 * Bits 0 to 19 are exactly the ones that keep vCPUs out (RS_NORUN_MASK of
 * runstate.h, which is RS_W_NORUN_MASK), reserved ones included.
 */
#define RS_W_LOCK(r)        ((uint64_t)1 << (r))
#define RS_W_LOCKS          UINT64_C(0x000000000000003f)
#define RS_W_IO_ERROR       UINT64_C(0x0000000000000040)
#define RS_W_EXCL           UINT64_C(0x0000000000000080)
#define RS_W_PAUSE_SHIFT    8
#define RS_W_PAUSE_MASK     UINT64_C(0x0000000000000700)
#define RS_W_RSV_NORUN      UINT64_C(0x0000000000000800)
#define RS_W_OVERFLOW       UINT64_C(0x0000000000001000)
#define RS_W_BACKLOG_SHIFT  13
#define RS_W_BACKLOG_MASK   UINT64_C(0x00000000000fe000)
#define RS_W_BACKLOG_ONE    (UINT64_C(1) << RS_W_BACKLOG_SHIFT)
#define RS_W_BACKLOG_MAX    127
#define RS_W_PARKED         UINT64_C(0x0000000000100000)
#define RS_W_LOCKWAIT       UINT64_C(0x0000000000200000)
#define RS_W_COAL_GEN       UINT64_C(0x0000000000400000)
#define RS_W_COAL_SHIFT     23
#define RS_W_COAL_MASK      UINT64_C(0x00000000ff800000)
#define RS_W_COAL_ONE       (UINT64_C(1) << RS_W_COAL_SHIFT)
#define RS_W_EDGE_SHIFT     32
#define RS_W_EDGE_MASK      UINT64_C(0xffffffff00000000)
#define RS_W_EDGE_ONE       (UINT64_C(1) << RS_W_EDGE_SHIFT)

/* The VM is stopped while any of these is set. */
#define RS_W_STOPPED_MASK   (RS_W_LOCKS | RS_W_IO_ERROR | RS_W_PAUSE_MASK)
/* Settling: edges not yet settled, one by one or coalesced. */
#define RS_W_SETTLING_MASK  (RS_W_BACKLOG_MASK | RS_W_OVERFLOW)
/* A vCPU may execute guest code only while none of these is set. */
#define RS_W_NORUN_MASK     ((uint64_t)RS_NORUN_MASK)

/* ---------------------------------------------------------------------------
 * The pure transition function: what a command does to a word, without
 * touching any instance.  Every command of runstate.h is this function
 * inside one compare-and-swap loop.  Exported so that tests, fuzzers and
 * models check the very code the library runs.
 */
enum rs_cmd {
	RS_CMD_STOP = 0,
	RS_CMD_START,       /* arg: RS_START_FORCE or 0 */
	RS_CMD_RETRY,
	RS_CMD_CONT,
	RS_CMD_RESET,
	RS_CMD_IO_ERROR,
	RS_CMD_PAUSE,       /* arg: enum rs_pause */
	RS_CMD_LOCK,        /* arg: enum rs_lock */
	RS_CMD_UNLOCK,      /* arg: enum rs_lock; arg2: enum rs_pause or NONE */
};
#define RS_CMD_COUNT 9

/*
 * Compute the word after cmd, for an instance whose max_backlog is
 * `backlog` (1..RS_W_BACKLOG_MAX).  Returns 0 and stores the new word (equal
 * to old when nothing changes), or a negative error and leaves *out
 * untouched.  A running<->stopped edge either joins the backlog (edge
 * counter and backlog +1) or, when the backlog is full or edges are already
 * being coalesced, is coalesced: the overflow bit is set, the coalesced
 * count +1, and the edge counter moves between the backlog's last edge and
 * the one after it, so that its parity stays the running flag.  A word that
 * lets vCPUs run never keeps the parked flag (only the settler's last claim
 * makes one, and it wakes the parked).  Pure: any thread.
 */
RS_API int rs_transition(uint64_t old, enum rs_cmd cmd, int arg, int arg2, unsigned backlog,
			 uint64_t *out);

/* ---------------------------------------------------------------------------
 * Operating-system seam.  Tests use it to count system calls, inject
 * spurious wake-ups and EINTR, and drive time.  NULL fields use the default.
 */
struct rs_ops {
	/* FUTEX_WAIT on *addr while it equals val, for at most timeout_ns
	 * (negative: forever).  Returns 0, or -EAGAIN, -EINTR, -ETIMEDOUT. */
	int (*futex_wait)(void *ctx, uint32_t *addr, uint32_t val, int64_t timeout_ns);
	/* FUTEX_WAKE up to n waiters; returns the number woken or -errno. */
	int (*futex_wake)(void *ctx, uint32_t *addr, int n);
	/* Monotonic clock in nanoseconds. */
	uint64_t (*now_ns)(void *ctx);
	/* Called at named delay points (builds with -Ddelay_points=true). */
	void (*delay)(void *ctx, const char *point);
	void *ctx;
};

/* rs_create() with an OS seam (ops may be NULL: the defaults).  The
 * instance keeps a copy of *ops. */
RS_API int rs_create_ops(const struct rs_config *cfg, const struct rs_ops *ops,
			 rs_runstate **out);

#ifdef __cplusplus
}
#endif

#endif /* RUNSTATE_TESTING_H */

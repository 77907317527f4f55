/* SPDX-License-Identifier: MIT */
/*
 * Linearizability check for runstate-stress: does some order of a round's
 * operations, consistent with real time, explain every result under the
 * sequential contract (rs_transition())?  See docs/stress.md.
 */
#ifndef RS_STRESS_LINCHECK_H
#define RS_STRESS_LINCHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum lin_kind {
	LIN_STOP,
	LIN_START,        /* arg: flags */
	LIN_RETRY,
	LIN_CONT,
	LIN_RESET,
	LIN_IO_ERROR,
	LIN_PAUSE,        /* arg: enum rs_pause */
	LIN_LOCK,         /* arg: enum rs_lock; waits for the bit */
	LIN_TRYLOCK,      /* arg: enum rs_lock */
	LIN_UNLOCK,       /* arg: enum rs_lock */
	LIN_UNLOCK_PAUSE, /* arg: enum rs_lock, arg2: enum rs_pause */
	LIN_READ,         /* rs_word(); result: lin_abstract() of the word */
	LIN_KIND_COUNT,
	LIN_NONE = 0xff,  /* an empty ungated slot */
};

struct lin_op {
	uint64_t inv;      /* monotonic ns, taken before the call */
	uint64_t resp;     /* monotonic ns, taken after it returned */
	int32_t result;    /* the return value; LIN_READ: the abstract state */
	uint8_t kind;      /* enum lin_kind */
	int8_t arg, arg2;
	bool async;        /* timeout RS_ASYNC: RS_ETIMEDOUT is not a legal result */
	bool pending;      /* has not returned (ungated ops only) */
	uint16_t thread;
};

/* A round holds at most this many gated operations (the cut read included)
 * plus LIN_UNGATED slots for operations that may straddle a cut. */
#define LIN_MAX_GATED 56
#define LIN_UNGATED   8

struct lin_entry {
	uint8_t state;     /* lin_abstract() form */
	uint8_t applied;   /* bit i: the op in ungated slot i has taken effect */
};

struct lin_memo;

struct lin_checker {
	struct lin_entry *set, *next;
	int nset, nnext;
	uint8_t *seen;           /* bitmap over (state, applied) */
	struct lin_memo *memo;
	size_t memo_cap, memo_used;
	uint32_t memo_gen;
	long node_limit;
	/* statistics */
	uint64_t rounds, ops, nodes, max_nodes, gave_up;
	int max_set;
};

/* The parts of the word a result can depend on: locks 0-3 (bits 0-3, as in
 * the word), io-error (LIN_STATE_IO), the pause reason (from bit 5). */
#define LIN_STATE_IO 0x10
uint8_t lin_abstract(uint64_t word);
/* "locks=debug,savevm io pause=paused" */
void lin_format_state(uint8_t s, char *buf, size_t n);
const char *lin_kind_name(int kind);
/* Does this kind of operation stop the VM (and may wait for the vCPUs)? */
bool lin_is_stopping(int kind);

int lin_init(struct lin_checker *c, uint8_t initial, long node_limit);
void lin_free(struct lin_checker *c);

/*
 * Check one round.  gated[0..ng) have all returned, and gated[ng-1] is the
 * cut read: a LIN_READ made after every other gated op returned.  ung[]
 * has LIN_UNGATED slots (kind LIN_NONE when empty); an op there that has
 * returned must take effect in this round unless it already did, a pending
 * one may.  The caller frees the slots of returned ungated ops afterwards.
 * Returns 0, -1 when no order explains the results (reported to `report`,
 * then re-synchronized from the cut read), 1 when the search limit was
 * hit (re-synchronized from the cut read, nothing concluded).
 */
int lin_round(struct lin_checker *c, const struct lin_op *gated, int ng,
	      const struct lin_op *ung, FILE *report);

/* Names threads in reports (optional). */
extern const char *(*lin_thread_name)(unsigned thread);

/* Canned histories with a known verdict; returns the number that failed. */
int lin_selftest(FILE *f);

#endif

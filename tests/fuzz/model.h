/* SPDX-License-Identifier: MIT */
/*
 * The oracle: one reference model of the runstate semantics, used by both
 * checkers of rs_transition() and the pure helpers: the exhaustive test
 * (tests/test_transition.c: enumeration, reachability, random walks) and
 * the differential fuzzer (fuzz_semantics.c: the whole API, sequentially).
 *
 * It was written from docs/semantics.md (sections 2, 5, 6, 8 and 9) and,
 * for the 64-bit word and its edge bookkeeping (edge counter, backlog,
 * overflow, coalesced count), from the word diagram and the rs_transition()
 * contract in <runstate-testing.h>, never from lib/transition.c.  It shares
 * no code with the library: it takes only the constants of the contract
 * from the headers (error values, enum values, the word layout), and
 * model.c checks its own bit positions (M_* below) against the header's at
 * compile time, so a change of layout on either side breaks the build
 * rather than a checker.
 *
 * Where the contract leaves room, the model decides as follows (the
 * checkers cite these by number):
 *  A1  argument errors come before state errors: an invalid argument is
 *      RS_EINVAL even where the state would give RS_ENOTHELD, RS_EBUSY,
 *      RS_ENEEDFORCE or RS_ENEEDRESET;
 *  A2  START takes 0 or RS_START_FORCE, nothing else;
 *  A3  an argument a command does not use must be 0 (semantics.md 6.3:
 *      "anything else is RS_EINVAL");
 *  A4  lock numbers 4 and 5 (the reserved bits) are invalid arguments;
 *  A5  UNLOCK's arg2 is RS_PAUSE_NONE (plain unlock) or a reason applied
 *      under the rank rule in the same step; anything else is RS_EINVAL;
 *  A6  LW changes nothing in the pure function: UNLOCK clears the bit and
 *      keeps LW, LOCK of a held bit is RS_EBUSY;
 *  A7  PK is cleared exactly when the new word may run (none of bits
 *      0..19), also on a command that changes nothing else; kept otherwise
 *      (an edge never makes a runnable word: the backlog or OV is set);
 *  A8  a NULL output is RS_EINVAL;
 *  A9  START, RETRY, CONT and RESET fail only as the contract says, also
 *      on a running VM (a no-op that returns 0);
 *  A10 rs_pause_parse("none") is RS_PAUSE_NONE; rs_lock_parse("none") is
 *      RS_EINVAL;
 *  A11 a max_backlog outside 1..127 is RS_EINVAL for every command, before
 *      anything else; *out stays untouched on every error;
 *  A12 an edge joins the backlog only while OV is clear and the backlog is
 *      below max_backlog (even when the backlog exceeds it: a word no
 *      instance reaches); with OV set it is coalesced, also when the
 *      backlog has room or is empty;
 *  A13 the reserved bits are kept: lock bits 4 and 5 stop the VM like the
 *      named ones, EX and RV only keep vCPUs out; rs_legacy_status()
 *      ignores them all, and rs_decode()'s `locks` is the whole 6-bit
 *      field;
 *  A14 COAL with OV clear is kept by an appended edge and by a command
 *      that makes no edge, and a coalesced edge from such a word starts at
 *      1 from tail = E; OV with COAL 0 is an even run (tail = E); COAL + 1
 *      wraps from 511 to 0 without a carry into E, and the tail and E wrap
 *      modulo 2^32 without a borrow or carry into COAL;
 *  A15 rs_decode() reports E as it is, settling as backlog != 0 or OV, and
 *      ignores COAL; rs_may_run() and rs_legacy_status() ignore COAL, GN,
 *      PK and LW;
 *  A16 GN is kept by every command and every kind of edge (only the
 *      settler flips it).
 *
 * MODEL_PLANT (a compile-time number, model.c only) makes the model differ
 * from the contract in one rule, so that each checker can be shown to
 * catch a difference (tests/fuzz/README.md):
 *   1  cont on a rank-4 reason clears io-error although it fails (the
 *      contract: nothing changes).  Only the fuzzer's sequential model sees
 *      it: rs_transition() writes nothing on an error.
 *   2  a coalesced edge advances the edge counter by one, like an edge that
 *      joins the backlog (the contract: tail + the run's parity)
 *   3  the rank rule lets an equal rank replace the current reason
 *   4  the coalesced count is not wrapped modulo 2^9: 511 + 1 carries into
 *      the edge counter
 */
#ifndef FUZZ_MODEL_H
#define FUZZ_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "runstate.h"

/* ---------------------------------------------------------------------------
 * The word, bit positions as drawn in the header's diagram (least
 * significant first).  model.c asserts each against runstate-testing.h.
 */
#define M_LOCKS_NAMED   UINT64_C(0x000000000000000f)  /* 0..3: enum rs_lock */
#define M_LOCKS_RSV     UINT64_C(0x0000000000000030)  /* 4, 5: reserved */
#define M_LOCK_BITS     (M_LOCKS_NAMED | M_LOCKS_RSV)
#define M_LOCK(r)       (UINT64_C(1) << (r))
#define M_IO            UINT64_C(0x0000000000000040)  /* 6 */
#define M_EX            UINT64_C(0x0000000000000080)  /* 7 */
#define M_PAUSE_SHIFT   8                             /* 8..10 */
#define M_PAUSE_MASK    UINT64_C(0x0000000000000700)
#define M_RV            UINT64_C(0x0000000000000800)  /* 11 */
#define M_OV            UINT64_C(0x0000000000001000)  /* 12 */
#define M_BACKLOG_SHIFT 13                            /* 13..19 */
#define M_BACKLOG_MASK  UINT64_C(0x00000000000fe000)
#define M_BACKLOG_MAX   127u                          /* max_backlog's top */
#define M_PK            UINT64_C(0x0000000000100000)  /* 20 */
#define M_LW            UINT64_C(0x0000000000200000)  /* 21 */
#define M_GN            UINT64_C(0x0000000000400000)  /* 22 */
#define M_COAL_SHIFT    23                            /* 23..31 */
#define M_COAL_BITS     9
#define M_COAL_MAX      511u                          /* counted modulo 2^9 */
#define M_COAL_MASK     UINT64_C(0x00000000ff800000)
#define M_EDGE_SHIFT    32                            /* 32..63 */
#define M_EDGE_MASK     UINT64_C(0xffffffff00000000)
/* The VM is stopped while a lock bit (reserved ones too: A13), io-error or
 * a pause reason is set; vCPUs stay out while any of bits 0..19 is. */
#define M_STOP_MASK     (M_LOCK_BITS | M_IO | M_PAUSE_MASK)
#define M_NORUN_MASK    UINT64_C(0x00000000000fffff)
/* Bits no instance ever sets. */
#define M_RESERVED      (M_LOCKS_RSV | M_EX | M_RV)

/* Field values, for building words. */
#define M_PAUSE(p)      ((uint64_t)(p) << M_PAUSE_SHIFT)
#define M_BACKLOG(n)    ((uint64_t)(n) << M_BACKLOG_SHIFT)
#define M_COAL(c)       ((uint64_t)((c) & M_COAL_MAX) << M_COAL_SHIFT)
#define M_EDGE(e)       ((uint64_t)(uint32_t)(e) << M_EDGE_SHIFT)

/* The tuple of section 1.1, with the six lock bits of the word (4 and 5 are
 * reserved: the API cannot set them, but a word may carry them, and they
 * stop the VM like the others). */
struct m_tuple {
	unsigned locks;   /* bits 0..5 */
	bool io;
	int pause;        /* 0..7 */
};

/* The fields of a word, decoded by the model's own code. */
struct m_word {
	struct m_tuple t;
	bool ex;          /* reserved: keeps vCPUs out */
	bool rv;          /* reserved: keeps vCPUs out */
	bool overflow;    /* OV: edges are being coalesced */
	unsigned backlog; /* 0..127: entries not yet settled */
	bool parked, lockwait;
	bool gen;         /* GN, bit 22: the coalesced edges' generation */
	unsigned coal;    /* bits 23..31: edges coalesced, modulo 2^9 */
	uint32_t edge;    /* the top 32 bits */
};

/* The commands of section 6.3 (same numbering as enum rs_cmd, which is part
 * of the testing contract). */
enum m_cmd {
	M_STOP, M_START, M_RETRY, M_CONT, M_RESET, M_IO_ERROR, M_PAUSE, M_LOCK,
	M_UNLOCK, M_CMD_COUNT
};

int m_rank(int p);
bool m_running(const struct m_tuple *t);
/* Settling: edges not yet settled, one by one (backlog) or coalesced (OV). */
bool m_settling(const struct m_word *d);
/* vCPUs may run: running, not settling, neither reserved no-run bit. */
bool m_may_run(const struct m_word *d);
/* The backlog's last edge: with OV set, E less the run's parity so far
 * (modulo 2^32); else E itself. */
uint32_t m_tail(const struct m_word *d);
void m_decode(uint64_t w, struct m_word *d);
uint64_t m_encode(const struct m_word *d);

/* What rs_decode() must give for w (section 5; A13, A15), its size set to
 * the whole struct; and whether two decodings agree in every field (the
 * size aside). */
void m_state(uint64_t w, struct rs_state *st);
bool m_state_eq(const struct rs_state *a, const struct rs_state *b);

/* Apply a command to a tuple (section 6.1).  Returns 0 or a negative error,
 * in which case *t is left alone.  Arguments are those of rs_transition(). */
int m_apply(struct m_tuple *t, int cmd, int arg, int arg2);

/* rs_transition() as the contract describes it (section 6.3), for an
 * instance whose max_backlog is `backlog`. */
int m_transition(uint64_t old, int cmd, int arg, int arg2, unsigned backlog, uint64_t *out);

/* rs_legacy_status() (section 9). */
const char *m_legacy(uint64_t w);

/* rs_lock_name(), rs_pause_name() (NULL out of range) and rs_strerror()
 * (sections 2, 3 and the header). */
const char *m_lock_name(int r);
const char *m_pause_name(int p);
const char *m_strerror(int err);

#endif

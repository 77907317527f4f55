/* SPDX-License-Identifier: MIT */
/*
 * An independent reference model of the runstate semantics, written from
 * docs/semantics.md (sections 2, 5, 6 and 9) and, for the 64-bit word and
 * its edge bookkeeping (edge counter, backlog, overflow, coalesced count),
 * from the word diagram and the rs_transition() contract in <runstate.h>,
 * not from lib/transition.c.  It shares no code with the library: the only
 * things it takes from <runstate.h> are the constants of the public
 * contract (error values, enum values, the word layout).
 *
 * FUZZ_PLANT (a compile-time number) makes the model deliberately differ from
 * the contract in one rule, so that the fuzzer can be shown to catch a
 * difference (see tests/fuzz/README.md):
 *   1  cont on a rank-4 reason clears io-error (the contract: nothing changes)
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

#ifndef FUZZ_PLANT
#define FUZZ_PLANT 0
#endif

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
 * of the public contract). */
enum m_cmd {
	M_STOP, M_START, M_RETRY, M_CONT, M_RESET, M_IO_ERROR, M_PAUSE, M_LOCK,
	M_UNLOCK, M_CMD_COUNT
};

/* The largest max_backlog (the backlog field's width). */
#define M_BACKLOG_MAX 127u

int m_rank(int p);
bool m_running(const struct m_tuple *t);
/* Settling: edges not yet settled, one by one (backlog) or coalesced (OV). */
bool m_settling(const struct m_word *d);
/* vCPUs may run: running, not settling, neither reserved no-run bit. */
bool m_may_run(const struct m_word *d);
void m_decode(uint64_t w, struct m_word *d);
uint64_t m_encode(const struct m_word *d);

/* Apply a command to a tuple (section 6.1).  Returns 0 or a negative error,
 * in which case *t is left alone.  Arguments are those of rs_transition(). */
int m_apply(struct m_tuple *t, int cmd, int arg, int arg2);

/* rs_transition() as the contract describes it, for an instance whose
 * max_backlog is `backlog`. */
int m_transition(uint64_t old, int cmd, int arg, int arg2, unsigned backlog, uint64_t *out);

/* rs_legacy_status() (section 9). */
const char *m_legacy(uint64_t w);

/* rs_lock_name(), rs_pause_name() (NULL out of range) and rs_strerror()
 * (sections 2, 3 and the header). */
const char *m_lock_name(int r);
const char *m_pause_name(int p);
const char *m_strerror(int err);

#endif

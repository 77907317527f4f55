/* SPDX-License-Identifier: MIT */
/*
 * An independent reference model of the runstate semantics, written from
 * docs/semantics.md (sections 2, 5, 6 and 9) without looking at
 * lib/transition.c.  It shares no code with the library: the only things it
 * takes from <runstate.h> are the constants of the public contract (error
 * values, enum values, the word layout).
 *
 * FUZZ_PLANT (a compile-time number) makes the model deliberately differ from
 * the contract in one rule, so that the fuzzer can be shown to catch a
 * difference (see tests/fuzz/README.md):
 *   1  cont on a rank-4 reason clears io-error (the contract: nothing changes)
 *   2  the edge counter saturates instead of wrapping modulo 2^19
 *   3  the rank rule lets an equal rank replace the current reason
 */
#ifndef FUZZ_MODEL_H
#define FUZZ_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#ifndef FUZZ_PLANT
#define FUZZ_PLANT 0
#endif

/* The tuple of section 1.1, with the six lock bits of the word (4 and 5 are
 * reserved: the API cannot set them, but a word may carry them). */
struct m_tuple {
	unsigned locks;   /* bits 0..5 */
	bool io;
	int pause;        /* 0..7 */
};

/* The fields of a word, decoded by the model's own code. */
struct m_word {
	struct m_tuple t;
	bool settling, parked, lockwait;
	uint32_t edge;    /* 19 bits */
};

/* The commands of section 6.3 (same numbering as enum rs_cmd, which is part
 * of the public contract). */
enum m_cmd {
	M_STOP, M_START, M_RETRY, M_CONT, M_RESET, M_IO_ERROR, M_PAUSE, M_LOCK,
	M_UNLOCK, M_CMD_COUNT
};

int m_rank(int p);
bool m_running(const struct m_tuple *t);
void m_decode(uint32_t w, struct m_word *d);
uint32_t m_encode(const struct m_word *d);

/* Apply a command to a tuple (section 6.1).  Returns 0 or a negative error,
 * in which case *t is left alone.  Arguments are those of rs_transition(). */
int m_apply(struct m_tuple *t, int cmd, int arg, int arg2);

/* rs_transition() as the contract (section 6.3) describes it. */
int m_transition(uint32_t old, int cmd, int arg, int arg2, uint32_t *out);

/* rs_legacy_status() (section 9). */
const char *m_legacy(uint32_t w);

/* rs_lock_name(), rs_pause_name() (NULL out of range) and rs_strerror()
 * (sections 2, 3 and the header). */
const char *m_lock_name(int r);
const char *m_pause_name(int p);
const char *m_strerror(int err);

#endif

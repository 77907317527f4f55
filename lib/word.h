/* SPDX-License-Identifier: MIT */
/*
 * The word layout, asserted once.  The macros live in the public header
 * (rs_may_run() needs RS_W_NORUN_MASK); this file proves they tile the word
 * and gives the library its helpers.
 */
#ifndef RS_WORD_H
#define RS_WORD_H

#include "runstate.h"

#define RS_W_ALL_FLAGS (RS_W_LOCKS | RS_W_IO_ERROR | RS_W_SETTLING | \
			RS_W_PAUSE_MASK | RS_W_PARKED | RS_W_LOCKWAIT)

_Static_assert((RS_W_ALL_FLAGS & RS_W_EDGE_MASK) == 0, "edge overlaps flags");
_Static_assert((RS_W_ALL_FLAGS | RS_W_EDGE_MASK) == 0xffffffffu, "word not fully used");
_Static_assert(RS_W_EDGE_MASK == (((1u << RS_W_EDGE_BITS) - 1) << RS_W_EDGE_SHIFT), "edge field");
_Static_assert(RS_W_EDGE_SHIFT + RS_W_EDGE_BITS == 32, "edge is the top field");
_Static_assert((RS_W_LOCKS & RS_W_IO_ERROR) == 0 && (RS_W_LOCKS & RS_W_SETTLING) == 0, "flags");
_Static_assert((RS_W_PAUSE_MASK >> RS_W_PAUSE_SHIFT) == RS_PAUSE_COUNT - 1, "pause field holds every reason");
_Static_assert(RS_W_LOCK(RS_LOCK_RESTORE) < RS_W_IO_ERROR && RS_LOCK_COUNT <= 6, "locks fit, two spare");
_Static_assert((RS_W_NORUN_MASK & (RS_W_PARKED | RS_W_LOCKWAIT | RS_W_EDGE_MASK)) == 0,
	       "bookkeeping bits must not stop vCPUs");
/* Edge parity is the running flag; wrap-around must preserve it. */
_Static_assert(RS_W_EDGE_BITS >= 2, "edge counter wraps at an even value");

/* Edges live in [0, RS_EDGE_LIMIT); arithmetic is modulo RS_EDGE_LIMIT. */
#define RS_EDGE_LIMIT (1u << RS_W_EDGE_BITS)
#define RS_EDGE_HALF  (RS_EDGE_LIMIT / 2)

static inline uint32_t rs_w_edge(uint32_t w) { return w >> RS_W_EDGE_SHIFT; }
static inline bool rs_w_running(uint32_t w) { return (w & RS_W_STOPPED_MASK) == 0; }
static inline bool rs_w_may_run(uint32_t w) { return (w & RS_W_NORUN_MASK) == 0; }
static inline unsigned rs_w_pause(uint32_t w) { return (w & RS_W_PAUSE_MASK) >> RS_W_PAUSE_SHIFT; }
static inline uint32_t rs_edge_next(uint32_t e) { return (e + 1) & (RS_EDGE_LIMIT - 1); }
/* a is at or before b, for edges less than half the counter apart. */
static inline bool rs_edge_le(uint32_t a, uint32_t b)
{
	return ((b - a) & (RS_EDGE_LIMIT - 1)) < RS_EDGE_HALF;
}
/* Stop edges leave the VM stopped: their number is even. */
static inline bool rs_edge_is_stop(uint32_t e) { return (e & 1) == 0; }

#endif

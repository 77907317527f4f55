/* SPDX-License-Identifier: MIT */
/*
 * The word layout, asserted once.  The macros live in runstate-testing.h
 * (tests and models decode words too); the public header has only the fast
 * path's RS_NORUN_MASK.  This file proves the fields tile the word and gives
 * the library its pure helpers.  Loads and CASes of an instance's word are
 * in instance.h.
 */
#ifndef RS_WORD_H
#define RS_WORD_H

#include <stdbool.h>

#include "runstate-testing.h"

#define RS_W_ALL_FLAGS (RS_W_LOCKS | RS_W_IO_ERROR | RS_W_EXCL | RS_W_PAUSE_MASK | \
			RS_W_RSV_NORUN | RS_W_OVERFLOW | RS_W_BACKLOG_MASK | RS_W_PARKED | \
			RS_W_LOCKWAIT | RS_W_COAL_GEN | RS_W_COAL_MASK)

_Static_assert((RS_W_ALL_FLAGS & RS_W_EDGE_MASK) == 0, "edge overlaps flags");
_Static_assert((RS_W_ALL_FLAGS | RS_W_EDGE_MASK) == UINT64_MAX, "word not fully used");
_Static_assert(RS_W_EDGE_MASK == UINT64_C(0xffffffff) << RS_W_EDGE_SHIFT, "edge: the top 32 bits");
_Static_assert((RS_W_PAUSE_MASK >> RS_W_PAUSE_SHIFT) == RS_PAUSE_COUNT - 1,
	       "pause field holds every reason");
_Static_assert(RS_W_LOCK(RS_LOCK_RESTORE) < RS_W_IO_ERROR && RS_LOCK_COUNT <= 6,
	       "locks fit, two spare");
_Static_assert((RS_W_BACKLOG_MASK >> RS_W_BACKLOG_SHIFT) == RS_W_BACKLOG_MAX, "backlog field");
/* The fast path's mask is exactly the low 20 bits, and exactly the bits that
 * keep vCPUs out: the stop bits (reserved locks included), the reserved
 * no-run bits, and settling. */
_Static_assert(RS_NORUN_MASK == 0xfffff &&
	       RS_W_NORUN_MASK == (RS_W_STOPPED_MASK | RS_W_EXCL | RS_W_RSV_NORUN |
				   RS_W_SETTLING_MASK), "no-run bits");
_Static_assert((RS_W_NORUN_MASK & (RS_W_PARKED | RS_W_LOCKWAIT | RS_W_COAL_GEN |
				   RS_W_COAL_MASK | RS_W_EDGE_MASK)) == 0,
	       "bookkeeping bits must not stop vCPUs");
#define RS_W_COAL_BITS 9
_Static_assert(RS_W_COAL_MASK >> RS_W_COAL_SHIFT == (1u << RS_W_COAL_BITS) - 1, "coalesced count");

/* Edge numbers are 32-bit and wrap; 2^32 is even, so parity survives. */
static inline uint32_t rs_w_edge(uint64_t w) { return (uint32_t)(w >> RS_W_EDGE_SHIFT); }
static inline bool rs_w_running(uint64_t w) { return (w & RS_W_STOPPED_MASK) == 0; }
static inline bool rs_w_may_run(uint64_t w) { return (w & RS_W_NORUN_MASK) == 0; }
static inline bool rs_w_settling(uint64_t w) { return (w & RS_W_SETTLING_MASK) != 0; }
static inline unsigned rs_w_pause(uint64_t w)
{
	return (unsigned)((w & RS_W_PAUSE_MASK) >> RS_W_PAUSE_SHIFT);
}
static inline unsigned rs_w_backlog(uint64_t w)
{
	return (unsigned)((w & RS_W_BACKLOG_MASK) >> RS_W_BACKLOG_SHIFT);
}
static inline unsigned rs_w_coal(uint64_t w)
{
	return (unsigned)((w & RS_W_COAL_MASK) >> RS_W_COAL_SHIFT);
}
static inline unsigned rs_w_coal_gen(uint64_t w)
{
	return (w & RS_W_COAL_GEN) != 0;
}
/* While edges are coalesced, the edge counter moves between the backlog's
 * last edge (an even coalesced count) and the one after it (odd): the
 * backlog's last edge, for a word with the overflow bit. */
static inline uint32_t rs_w_edge_tail(uint64_t w)
{
	return rs_w_edge(w) - (rs_w_coal(w) & 1);
}
/* Stop edges leave the VM stopped: their number is even. */
static inline bool rs_edge_is_stop(uint64_t e) { return (e & 1) == 0; }

#endif

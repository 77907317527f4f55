/* SPDX-License-Identifier: MIT */
/*
 * Parking and waking.  A vCPU that may not run sleeps on its own state
 * word; the word's RS_W_PARKED bit tells whoever lets vCPUs run again that
 * someone must be woken.  Requests (rs_vcpu_request()) wake a vCPU too:
 * posting one and taking it are here as well.
 *
 * The pairing, both sides here: a parker sets VS_PARK in its state, then
 * RS_W_PARKED in the word with a CAS (or finds it set), then sleeps while
 * its state is unchanged (rs_park()).  The CASes that clear RS_W_PARKED are
 * the settler's last claim (settle.c) and a start that wakes early
 * (commands.c); rs_transition() clears it from every word that lets vCPUs
 * run.  All of them are seq_cst, and whoever made one that cleared it calls
 * rs_park_release(), which wakes every vCPU whose state shows VS_PARK.
 * Whichever of a parker's CAS and the clearing CAS comes first in the
 * word's order, the parker either sees a word that lets it run or is seen
 * parked by the wave (docs/protocol.md, P4, P5; the tree wake P13).
 */
#include <sched.h>

#include "instance.h"

#define PARK_SPIN  200

/*
 * Waking parked vCPUs, in a tree over ranges of slots.  A start must not
 * pay N futex wakes in a row on one thread, nor walk N slots: the thread
 * that cleared RS_W_PARKED wakes one vCPU, the first parked one, and hands
 * it every slot after its own; every vCPU woken this way (VS_TREE) splits
 * the range it was handed in two halves and wakes the first parked vCPU of
 * each, handing each the rest of its half, before it does anything else.
 * A slot whose vCPU is not parked (busy, quiescent, empty) cannot take a
 * range, so whoever scans past it keeps looking in the same half.  So:
 *
 *  - every slot below hiwater is visited exactly once per wave (the ranges
 *    partition [0, hiwater));
 *  - the starting thread makes one futex wake, and visits only the slots
 *    before the first parked vCPU, whatever N is: a start's caller returns
 *    after a constant number of wakes while the tree wakes the rest;
 *  - a woken vCPU makes at most two wakes, and the ranges at least halve
 *    at each level, so the wave is at most ceil(log2(N)) + 1 deep.
 *
 * (Until issue 16 the tree was the heap over slot indices, slot i's
 * children 2i+1 and 2i+2: a slot that could not pass the wave on made its
 * waker wake its children itself, so k busy vCPUs in slots 0..k-1 left the
 * starting thread with about k+1 wakes to make; runstate-bench --cost.)
 *
 * seq_cst on the state: pairs with the parker's fetch_or of VS_PARK before
 * its CAS that sets RS_W_PARKED (rs_park()).  The wave starts after the CAS
 * that cleared RS_W_PARKED, so every vCPU that set it shows VS_PARK here.
 */

/* Wake slot i's vCPU if parked, handing it the slots (i, hi): it wakes
 * those itself.  False if it was not parked: the caller goes on scanning.
 * depth, in instrumented builds only (cost.h): the wake's depth in the
 * wave, 1 for the thread that cleared RS_W_PARKED. */
static bool tree_wake_slot(struct rs_instance *ri, uint32_t i, uint32_t hi
			   RS_COST_ONLY(, uint32_t depth))
{
	struct rs_vcpu_impl *v = rs_registry_pin(&ri->reg, i);
	bool woke = false;

	if (!v)
		return false;
	{
		uint32_t s = atomic_load_explicit(&v->state, memory_order_seq_cst);

		while (s & VS_PARK) {
			if (atomic_compare_exchange_weak_explicit(&v->state, &s,
								  (s & ~VS_PARK) | VS_TREE,
								  memory_order_seq_cst,
								  memory_order_seq_cst)) {
				/* The range, by the CAS's winner only (two waves
				 * may race for one parked vCPU), before the wake.
				 * Release: pairs with the acquire load in
				 * take_range(); +1, so that 0 means "not yet". */
				RS_COST_ONLY(atomic_store_explicit(&v->tree_depth, depth,
								   memory_order_relaxed);)
				atomic_store_explicit(&v->tree_hi, hi + 1, memory_order_release);
				rs_futex_wake(ri, &v->state, 1);
				RS_STAT_INC(ri, wakes);
				RS_COST_MAX(RS_COST_PART(ri), RS_COST_TREE_DEPTH, depth);
				woke = true;
				break;
			}
		}
	}
	rs_registry_unpin(&ri->reg, i);
	return woke;
}

/* Wake the first parked vCPU of the slots [lo, hi), handing it the rest. */
static void tree_wake_first(struct rs_instance *ri, uint32_t lo, uint32_t hi
			    RS_COST_ONLY(, uint32_t depth))
{
	for (uint32_t i = lo; i < hi; i++)
		if (tree_wake_slot(ri, i, hi RS_COST_ONLY(, depth)))
			return;
}

/*
 * The range a tree wake handed v, on v's own thread once it saw VS_TREE:
 * its waker stores it right after the CAS that set VS_TREE and before the
 * FUTEX_WAKE, so a vCPU that slept finds it at once, and one that saw
 * VS_TREE without sleeping waits a few instructions (or, if its waker was
 * preempted in between, yields to it).  Taken back to 0 for the next wave:
 * that store comes before v sets VS_PARK again, which the next waker's CAS
 * must read before it stores.
 */
static uint32_t take_range(struct rs_vcpu_impl *v)
{
	uint32_t h;

	/* Acquire: pairs with the release store in tree_wake_slot(). */
	for (int spin = 0; !(h = atomic_load_explicit(&v->tree_hi, memory_order_acquire)); spin++) {
		if (spin < 100)
			rs_cpu_relax();
		else
			sched_yield();
	}
	atomic_store_explicit(&v->tree_hi, 0, memory_order_relaxed);
	return h - 1;
}

/* A woken vCPU's share of the wave, the slots [lo, hi): both halves. */
static void tree_pass_on(struct rs_instance *ri, uint32_t lo, uint32_t hi
			 RS_COST_ONLY(, uint32_t depth))
{
	uint32_t mid = lo + (hi - lo) / 2;

	tree_wake_first(ri, lo, mid RS_COST_ONLY(, depth));
	tree_wake_first(ri, mid, hi RS_COST_ONLY(, depth));
}

void rs_park_wake_all(struct rs_instance *ri)
{
	/* Pairs with the seq_cst hiwater update in rs_registry_insert() and
	 * the parker's seq_cst VS_PARK store: after the CAS that cleared
	 * RS_W_PARKED, the wave sees every slot a parker could be in. */
	atomic_thread_fence(memory_order_seq_cst);
	tree_wake_first(ri, 0, rs_registry_hiwater(&ri->reg) RS_COST_ONLY(, 1));
}

/*
 * A request: set its bits in v's state, and wake v if it sleeps there, else
 * kick it (active, quiescent in the emulator's own wait, or about to enter:
 * the kick gets it to rs_vcpu_enter()).  v is pinned by the caller.
 * seq_cst: the parker's futex wait compares the whole state word, so
 * either it sees the request or we see VS_PARK and wake it.
 */
void rs_park_request(struct rs_instance *ri, struct rs_vcpu_impl *v, uint32_t bits)
{
	uint32_t old = atomic_fetch_or_explicit(&v->state, bits, memory_order_seq_cst);

	if (old & VS_PARK) {
		RS_STAT_INC(ri, wakes);
		rs_futex_wake(ri, &v->state, 1);
	} else {
		(void)rs_ack_kick(ri, v);
	}
}

/*
 * Take a request posted to v (on v's own thread): RS_VCPU_EXIT before
 * RS_VCPU_WORK, clearing its bit, or 0.  Acquire: pairs with the seq_cst
 * fetch_or in rs_park_request(), so the vCPU sees what the requester
 * wrote before posting.
 */
int rs_park_take_request(struct rs_vcpu_impl *v)
{
	uint32_t s = atomic_load_explicit(&v->state, memory_order_acquire);

	if (s & VS_EXIT) {
		atomic_fetch_and_explicit(&v->state, ~VS_EXIT, memory_order_relaxed);
		return RS_VCPU_EXIT;
	}
	if (s & VS_WORK) {
		atomic_fetch_and_explicit(&v->state, ~VS_WORK, memory_order_relaxed);
		return RS_VCPU_WORK;
	}
	return 0;
}

/*
 * Before a command that may start the VM: if vCPUs are parked, start
 * fetching the tree root's state (for writing) while the command's CAS
 * waits for the word.  Both lines were last written by parking vCPUs, and
 * the two misses otherwise come one after the other before the first
 * FUTEX_WAKE.  A hint only: the slot is read without a pin, and prefetching
 * a vCPU that is going away touches nothing.
 */
void rs_park_prefetch(struct rs_instance *ri)
{
	struct rs_vcpu_impl *v;

	if (!(rs_word_load(ri, memory_order_relaxed) & RS_W_PARKED))
		return;
	v = rs_registry_peek(&ri->reg, 0);
	if (v)
		__builtin_prefetch((const void *)&v->state, 1);
}

void rs_park(struct rs_vcpu_impl *v, uint32_t reqmask)
{
	struct rs_instance *ri = rs_vcpu_inst(v);
	uint32_t s;
	uint64_t w;

	/* Spin briefly first: a short pause must not pay a futex sleep. */
	for (int i = 0; i < PARK_SPIN; i++) {
		rs_cpu_relax();
		if (rs_excl_lets_run(&ri->excl, rs_word_load(ri, memory_order_relaxed)) ||
		    atomic_load_explicit(&v->state, memory_order_relaxed) & reqmask)
			return;
	}

	/* VS_PARK first, then RS_W_PARKED in the word: the CAS that lets
	 * vCPUs run (or an early-waking start's CAS) clears RS_W_PARKED, and
	 * if it saw it set, scans for VS_PARK (rs_park_release()). */
	s = atomic_fetch_or_explicit(&v->state, VS_PARK, memory_order_seq_cst) | VS_PARK;
	if (s & reqmask)
		goto out;
	w = rs_word_load(ri, memory_order_seq_cst);
	for (;;) {
		if (rs_excl_lets_run(&ri->excl, w))
			goto out;
		if (w & RS_W_PARKED)
			break;
		if (rs_word_cas_weak(ri, &w, w | RS_W_PARKED, memory_order_seq_cst,
				     memory_order_seq_cst))
			break;
	}
	RS_DELAY(ri, "park");
	RS_STAT_INC(ri, parks);
	/* Sleeps only while the state is exactly s: a waker that clears
	 * VS_PARK or posts a request changes it first. */
	rs_futex_wait(ri, &v->state, s, -1);
	/* The waker wrote both the word and our state: start fetching the
	 * word now so that its miss overlaps the state's (a locked RMW waits
	 * for earlier loads, not for a prefetch). */
	rs_word_prefetch(ri);
out:
	/* Woken by a tree wake: pass it on before anything else. */
	if (atomic_fetch_and_explicit(&v->state, ~(VS_PARK | VS_TREE), memory_order_seq_cst) &
	    VS_TREE) {
		uint32_t hi = take_range(v);

		tree_pass_on(ri, rs_vcpu_slot(v) + 1, hi
			     RS_COST_ONLY(, atomic_load_explicit(&v->tree_depth,
								 memory_order_relaxed) + 1));
	}
}

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
 * Waking parked vCPUs, in a tree over the slot indices.  A start must not
 * pay N futex wakes in a row on one thread: the waker wakes the roots,
 * and every vCPU woken this way (VS_TREE) wakes its own children before it
 * does anything else, so the wake-ups fan out in parallel, log2(N) deep.
 * A slot whose vCPU is not parked cannot pass the wave on, so whoever
 * reaches it walks its children directly: every slot below hiwater is
 * visited exactly once per wave.
 *
 * seq_cst on the state: pairs with the parker's fetch_or of VS_PARK before
 * its CAS that sets RS_W_PARKED (rs_park()).  The wave starts after the CAS
 * that cleared RS_W_PARKED, so every vCPU that set it shows VS_PARK here.
 */
#define TREE_FANOUT 2

/* Wake slot i's vCPU if parked (it then wakes its children itself);
 * returns false if it was not parked, so the caller walks the children.
 * depth, in instrumented builds only (cost.h): the wake's depth in the
 * wave, 1 for the thread that cleared RS_W_PARKED. */
static bool tree_wake_slot(struct rs_instance *ri, uint32_t i RS_COST_ONLY(, uint32_t depth))
{
	struct rs_vcpu_impl *v = rs_registry_pin(&ri->reg, i);
	bool woke = false;

	if (!v)
		return false;
	{
		uint32_t s = atomic_load_explicit(&v->state, memory_order_seq_cst);

		while (s & VS_PARK) {
			/* Read by the woken vCPU after its seq_cst fetch_and
			 * that sees VS_TREE (rs_park()): the CAS below
			 * publishes it. */
			RS_COST_ONLY(atomic_store_explicit(&v->tree_depth, depth,
							   memory_order_relaxed);)
			if (atomic_compare_exchange_weak_explicit(&v->state, &s,
								  (s & ~VS_PARK) | VS_TREE,
								  memory_order_seq_cst,
								  memory_order_seq_cst)) {
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

static void tree_wake_children(struct rs_instance *ri, uint32_t i RS_COST_ONLY(, uint32_t depth))
{
	uint32_t n = rs_registry_hiwater(&ri->reg);

	for (uint32_t c = i * TREE_FANOUT + 1; c <= i * TREE_FANOUT + TREE_FANOUT && c < n; c++)
		if (!tree_wake_slot(ri, c RS_COST_ONLY(, depth)))
			tree_wake_children(ri, c RS_COST_ONLY(, depth));
}

void rs_park_wake_all(struct rs_instance *ri)
{
	/* Pairs with the seq_cst hiwater update in rs_registry_insert() and
	 * the parker's seq_cst VS_PARK store: after the CAS that cleared
	 * RS_W_PARKED, the wave sees every slot a parker could be in. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!rs_registry_hiwater(&ri->reg))
		return;
	if (!tree_wake_slot(ri, 0 RS_COST_ONLY(, 1)))
		tree_wake_children(ri, 0 RS_COST_ONLY(, 1));
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
		rs_ack_kick(ri, v, rs_now(ri));
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
	    VS_TREE)
		tree_wake_children(ri, rs_vcpu_slot(v)
				   RS_COST_ONLY(, atomic_load_explicit(&v->tree_depth,
								       memory_order_relaxed) + 1));
}

/* SPDX-License-Identifier: MIT */
/*
 * vCPUs: registration, the out->active announcement, parking, kicks and
 * acknowledgements.  docs/protocol.md has the case analysis; the comments
 * here name the pairings.
 *
 * The two halves of the store-buffering pairing (KVM's vcpu->mode against
 * its request bits):
 *
 *   vCPU (out->active)                 stopper (stop edge)
 *   state |= ACTIVE        (seq_cst)   CAS word: stopped     (seq_cst)
 *                                      fence(seq_cst)        [rs_scan_out]
 *   load word              (seq_cst)   load state of each vCPU
 *
 * At least one side sees the other's store: either the vCPU sees the stop
 * and retreats without running guest code, or the stopper sees ACTIVE and
 * waits for (and kicks) the vCPU.
 */

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define VCPU_MAGIC 0x72737663u  /* "rsvc" */
#define PARK_SPIN  200

static _Thread_local struct rs_vcpu_impl *tls_self;

static struct rs_vcpu_impl *impl_of(rs_vcpu *v)
{
	return (struct rs_vcpu_impl *)(void *)v;
}

static bool is_registered(struct rs_vcpu_impl *v)
{
	return atomic_load_explicit(&v->registered, memory_order_acquire) == VCPU_MAGIC;
}

/* The instance of a vCPU known to be registered (its own thread, or a
 * scanner holding its slot's pin): set before the vCPU was published. */
static struct rs_runstate *vrs(const struct rs_vcpu_impl *v)
{
	return atomic_load_explicit(&((struct rs_vcpu_impl *)v)->rs, memory_order_relaxed);
}

static uint32_t vslot(const struct rs_vcpu_impl *v)
{
	return atomic_load_explicit(&((struct rs_vcpu_impl *)v)->slot, memory_order_relaxed);
}

/* The vCPU, if pv is registered and this is its thread; else NULL. */
static struct rs_vcpu_impl *own_vcpu(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v = pv ? impl_of(pv) : NULL;

	return v && is_registered(v) && tls_self == v ? v : NULL;
}

/* ---------------------------------------------------------------------------
 * Acknowledgements
 */

static void pending_dec(struct rs_runstate *rs)
{
	/* seq_cst: the settle mutex holder's "unlock, then re-check" in
	 * rs_settle_help() relies on this being in the total order. */
	uint32_t old = atomic_fetch_sub_explicit(&rs->pending, 1, memory_order_seq_cst);

	if ((old & PENDING_COUNT) != 1)
		return;
	/* The last wanted acknowledgement: wake the settler if it sleeps,
	 * else help settle ourselves (an asynchronous stop has nobody
	 * waiting for it). */
	if (old & PENDING_SLEEPER) {
		atomic_fetch_and_explicit(&rs->pending, ~PENDING_SLEEPER, memory_order_relaxed);
		rs_futex_wake(rs, &rs->pending, INT_MAX);
	}
	rs_settle_help(rs);
}

/* active -> out.  Called by the vCPU's own thread only. */
static void vcpu_go_out(struct rs_vcpu_impl *v)
{
	uint32_t s = atomic_load_explicit(&v->state, memory_order_relaxed), ns;

	RS_DELAY(vrs(v), "vcpu-ack");
	do
		ns = (s & ~(VS_ACTIVE | VS_WANTED)) + VS_GEN_ONE;
	while (!atomic_compare_exchange_weak_explicit(&v->state, &s, ns,
						      /* Release: pairs with the
						       * acquire load of state in
						       * want_ack(): a stopper that
						       * sees this vCPU out sees
						       * everything its guest code
						       * and exit handling wrote. */
						      memory_order_seq_cst, memory_order_relaxed));
	{
		uint64_t now = rs_now(vrs(v)) | 1;

		atomic_store_explicit(&v->out_since_ns, now, memory_order_relaxed);
		atomic_store_explicit(&v->last_ack_ns, now, memory_order_relaxed);
	}
	if (s & VS_WANTED)
		pending_dec(vrs(v));
}

/* ---------------------------------------------------------------------------
 * Scanning the registry
 */

static void kick(struct rs_runstate *rs, struct rs_vcpu_impl *v, uint64_t now)
{
	RS_STAT_INC(rs, kicks);
	atomic_store_explicit(&v->kick_ns, now, memory_order_relaxed);
	RS_DELAY(rs, "kick");
	if (v->kick)
		v->kick((rs_vcpu *)(void *)v, v->opaque);
}

/*
 * Is v active?  If so make sure it is counted in rs->pending and kicked
 * (once per active period; again when rekick and the delay has passed).
 */
static bool want_ack(struct rs_runstate *rs, struct rs_vcpu_impl *v, enum rs_scan_mode mode)
{
	/* Acquire: pairs with the release CAS in vcpu_go_out(). */
	uint32_t s = atomic_load_explicit(&v->state, memory_order_acquire);
	bool rekick = mode == RS_SCAN_REKICK;

	for (;;) {
		if (!(s & VS_ACTIVE))
			return false;
		if (s & VS_WANTED) {
			uint64_t now, last;

			/* A new stop edge kicks every active vCPU, counted or
			 * not: WANTED may be left from an earlier edge whose
			 * kick was lost while nobody waited to re-kick (the
			 * model found this: tests/model, design spec-kick). */
			if (mode == RS_SCAN_EDGE) {
				kick(rs, v, rs_now(rs));
				return true;
			}

#ifdef RS_PLANT_ACK_EARLY
			/* Planted bug: a kicked vCPU counts as acknowledged. */
			return false;
#endif
			if (!rekick)
				return true;
			now = rs_now(rs);
			last = atomic_load_explicit(&v->kick_ns, memory_order_relaxed);
			/* One re-kick per delay however many threads scan. */
			if (now - last >= (uint64_t)rs->rekick_ns &&
			    atomic_compare_exchange_strong_explicit(&v->kick_ns, &last, now,
								    memory_order_relaxed,
								    memory_order_relaxed)) {
				RS_STAT_INC(rs, rekicks);
				kick(rs, v, now);
			}
			return true;
		}
		/* Count first, so the vCPU's decrement never precedes it. */
		atomic_fetch_add_explicit(&rs->pending, 1, memory_order_seq_cst);
		if (atomic_compare_exchange_strong_explicit(&v->state, &s, s | VS_WANTED,
							    memory_order_seq_cst,
							    memory_order_acquire)) {
			uint64_t now = rs_now(rs);

			atomic_store_explicit(&v->wanted_ns, now, memory_order_relaxed);
			kick(rs, v, now);
			return true;
		}
		pending_dec(rs);
	}
}

typedef bool (*slot_fn)(struct rs_runstate *rs, struct rs_vcpu_impl *v, void *arg);

/*
 * Visit every registered vCPU with its slot pinned: fn may touch it, and
 * rs_vcpu_unregister() waits for the pin to go.  Stops early when fn
 * returns false.  Returns false if it stopped early.
 */
static bool for_each_vcpu(struct rs_runstate *rs, slot_fn fn, void *arg)
{
	uint32_t n = atomic_load_explicit(&rs->hiwater, memory_order_acquire);

	for (uint32_t i = 0; i < n; i++) {
		struct rs_slot *sl = &rs->slots[i];
		struct rs_vcpu_impl *v;
		bool go_on = true;

		if (!atomic_load_explicit(&sl->vcpu, memory_order_relaxed))
			continue;
		/* seq_cst pin, then seq_cst load of the slot: against the
		 * unregistering thread's seq_cst store of NULL, then load of
		 * pins (rs_vcpu_unregister()), one of the two sees the
		 * other. */
		atomic_fetch_add_explicit(&sl->pins, 1, memory_order_seq_cst);
		v = atomic_load_explicit(&sl->vcpu, memory_order_seq_cst);
		if (v)
			go_on = fn(rs, v, arg);
		atomic_fetch_sub_explicit(&sl->pins, 1, memory_order_release);
		if (!go_on)
			return false;
	}
	return true;
}

struct scan_arg {
	enum rs_scan_mode mode;
	bool all_out;
};

static bool scan_one(struct rs_runstate *rs, struct rs_vcpu_impl *v, void *arg)
{
	struct scan_arg *a = arg;

	if (want_ack(rs, v, a->mode))
		a->all_out = false;
	return true;
}

/*
 * Kick every active vCPU not kicked yet (and re-kick laggards if rekick);
 * true if every registered vCPU is out.  Called after a stop edge's CAS
 * and by the settler.
 */
bool rs_scan_out(struct rs_runstate *rs, enum rs_scan_mode mode)
{
	struct scan_arg a = { .mode = mode, .all_out = true };

	/* The stopper's fence: pairs with the vCPU's seq_cst OR of ACTIVE
	 * and seq_cst load of the word (vcpu_enter()). */
	atomic_thread_fence(memory_order_seq_cst);
	for_each_vcpu(rs, scan_one, &a);
	return a.all_out;
}

/* After a stop edge's CAS, by its maker only: one kick per vCPU per edge. */
void rs_kick_active(struct rs_runstate *rs)
{
	(void)rs_scan_out(rs, RS_SCAN_EDGE);
}

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
 * its CAS that sets RS_W_PARKED (park()).  The wave starts after the CAS
 * that cleared RS_W_PARKED, so every vCPU that set it shows VS_PARK here.
 */
#define TREE_FANOUT 2

/* Wake slot i's vCPU if parked (it then wakes its children itself);
 * returns false if it was not parked, so the caller walks the children. */
static bool tree_wake_slot(struct rs_runstate *rs, uint32_t i)
{
	struct rs_slot *sl = &rs->slots[i];
	struct rs_vcpu_impl *v;
	bool woke = false;

	if (!atomic_load_explicit(&sl->vcpu, memory_order_relaxed))
		return false;
	atomic_fetch_add_explicit(&sl->pins, 1, memory_order_seq_cst);
	v = atomic_load_explicit(&sl->vcpu, memory_order_seq_cst);
	if (v) {
		uint32_t s = atomic_load_explicit(&v->state, memory_order_seq_cst);

		while (s & VS_PARK) {
			if (atomic_compare_exchange_weak_explicit(&v->state, &s,
								  (s & ~VS_PARK) | VS_TREE,
								  memory_order_seq_cst,
								  memory_order_seq_cst)) {
				rs_futex_wake(rs, &v->state, 1);
				RS_STAT_INC(rs, wakes);
				woke = true;
				break;
			}
		}
	}
	atomic_fetch_sub_explicit(&sl->pins, 1, memory_order_release);
	return woke;
}

static void tree_wake_children(struct rs_runstate *rs, uint32_t i)
{
	uint32_t n = atomic_load_explicit(&rs->hiwater, memory_order_acquire);

	for (uint32_t c = i * TREE_FANOUT + 1; c <= i * TREE_FANOUT + TREE_FANOUT && c < n; c++)
		if (!tree_wake_slot(rs, c))
			tree_wake_children(rs, c);
}

/*
 * Before a command that may start the VM: if vCPUs are parked, start
 * fetching the tree root's state (for writing) while the command's CAS
 * waits for the word.  Both lines were last written by parking vCPUs, and
 * the two misses otherwise come one after the other before the first
 * FUTEX_WAKE.  A hint only: the slot is read without a pin, and prefetching
 * a vCPU that is going away touches nothing.
 */
void rs_prefetch_wake(struct rs_runstate *rs)
{
	struct rs_vcpu_impl *v;

	if (!(atomic_load_explicit(&rs->word, memory_order_relaxed) & RS_W_PARKED))
		return;
	v = atomic_load_explicit(&rs->slots[0].vcpu, memory_order_relaxed);
	if (v)
		__builtin_prefetch((const void *)&v->state, 1);
}

void rs_wake_parked(struct rs_runstate *rs)
{
	/* Pairs with the seq_cst hiwater update in rs_vcpu_register() and
	 * the parker's seq_cst VS_PARK store: after the CAS that cleared
	 * RS_W_PARKED, the wave sees every slot a parker could be in. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&rs->hiwater, memory_order_acquire))
		return;
	if (!tree_wake_slot(rs, 0))
		tree_wake_children(rs, 0);
}

/* ---------------------------------------------------------------------------
 * The vCPU side
 */

/* Park until the word changes in a way that may let us run, or a request
 * arrives.  The caller loops and re-checks. */
static void park(struct rs_vcpu_impl *v, uint32_t reqmask)
{
	struct rs_runstate *rs = vrs(v);
	uint32_t s;
	uint64_t w;

	/* Spin briefly first: a short pause must not pay a futex sleep. */
	for (int i = 0; i < PARK_SPIN; i++) {
		rs_cpu_relax();
		if (rs_w_may_run(atomic_load_explicit(&rs->word, memory_order_relaxed)) ||
		    atomic_load_explicit(&v->state, memory_order_relaxed) & reqmask)
			return;
	}

	/* VS_PARK first, then RS_W_PARKED in the word: the CAS that lets
	 * vCPUs run (or an early-waking start's CAS) clears RS_W_PARKED, and
	 * if it saw it set, scans for VS_PARK (rs_wake_parked()). */
	s = atomic_fetch_or_explicit(&v->state, VS_PARK, memory_order_seq_cst) | VS_PARK;
	if (s & reqmask)
		goto out;
	w = atomic_load_explicit(&rs->word, memory_order_seq_cst);
	for (;;) {
		if (rs_w_may_run(w))
			goto out;
		if (w & RS_W_PARKED)
			break;
		if (atomic_compare_exchange_weak_explicit(&rs->word, &w, w | RS_W_PARKED,
							  memory_order_seq_cst,
							  memory_order_seq_cst))
			break;
	}
	RS_DELAY(rs, "park");
	RS_STAT_INC(rs, parks);
	/* Sleeps only while the state is exactly s: a waker that clears
	 * VS_PARK or posts a request changes it first. */
	rs_futex_wait(rs, &v->state, s, -1);
	/* The waker wrote both the word and our state: start fetching the
	 * word now so that its miss overlaps the state's (a locked RMW waits
	 * for earlier loads, not for a prefetch). */
	__builtin_prefetch((const void *)&rs->word);
out:
	/* Woken by a tree wake: pass it on before anything else. */
	if (atomic_fetch_and_explicit(&v->state, ~(VS_PARK | VS_TREE), memory_order_seq_cst) &
	    VS_TREE)
		tree_wake_children(rs, vslot(v));
}

/* The slow path (rs_vcpu_enter()), on v's own thread. */
static int vcpu_enter(struct rs_vcpu_impl *v)
{
	struct rs_runstate *rs = vrs(v);
	const uint32_t reqmask = VS_EXIT | VS_WORK;
	uint32_t s = atomic_load_explicit(&v->state, memory_order_relaxed);

	if (s & VS_ACTIVE) {
		/* Acquire: the fast path's relaxed load gets its ordering
		 * here (see rs_may_run()). */
		if (!(s & reqmask) &&
		    rs_w_may_run(atomic_load_explicit(&rs->word, memory_order_acquire)))
			return 0;
		vcpu_go_out(v);
	}
	for (;;) {
		uint64_t w;

		s = atomic_load_explicit(&v->state, memory_order_acquire);
		if (s & VS_EXIT) {
			atomic_fetch_and_explicit(&v->state, ~VS_EXIT, memory_order_relaxed);
			return RS_VCPU_EXIT;
		}
		if (s & VS_WORK) {
			atomic_fetch_and_explicit(&v->state, ~VS_WORK, memory_order_relaxed);
			return RS_VCPU_WORK;
		}
		w = atomic_load_explicit(&rs->word, memory_order_acquire);
		if (rs_w_may_run(w)) {
			/* out -> active: announce, re-load.  Pairs with the
			 * stopper's CAS and the fence in rs_scan_out(). */
#ifdef RS_PLANT_NO_FENCE
			/* Planted bug: load the word before announcing. */
			w = atomic_load_explicit(&rs->word, memory_order_acquire);
			RS_DELAY(rs, "announce");
			atomic_fetch_or_explicit(&v->state, VS_ACTIVE, memory_order_relaxed);
#else
			/* Both seq_cst, with no fence between: against the
			 * stopper's seq_cst CAS, fence, load of the state,
			 * the store-buffering outcome is a cycle in the single
			 * total order (weak-memory.md).  On x86 the locked
			 * RMW is the barrier; an mfence would add ~15 ns to
			 * every start. */
			atomic_fetch_or_explicit(&v->state, VS_ACTIVE, memory_order_seq_cst);
			RS_DELAY(rs, "announce");
			w = atomic_load_explicit(&rs->word, memory_order_seq_cst);
#endif
			if (rs_w_may_run(w)) {
				atomic_store_explicit(&v->out_since_ns, 0, memory_order_relaxed);
				return 0;
			}
			/* Retreat: we ran no guest code. */
			vcpu_go_out(v);
		}
		park(v, reqmask);
	}
}

/* ---------------------------------------------------------------------------
 * Library calls made from a vCPU thread
 *
 * A call that may wait, made on a registered vCPU's thread, takes that vCPU
 * out first (its acknowledgement, if a stop wants one), so the call never
 * waits for its own vCPU, and a stop raised from a vCPU thread never
 * deadlocks.  The vCPU stays out when the call returns: no call parks
 * inside itself, so every timeout is honoured, and the emulator goes back
 * through rs_vcpu_enter() before guest code (which returns at once when the
 * VM may run).  A call with RS_ASYNC never waits and leaves the vCPU as it
 * was.
 */
void rs_vcpu_thread_out(struct rs_runstate *rs)
{
	struct rs_vcpu_impl *self = tls_self;

	if (self && vrs(self) == rs &&
	    (atomic_load_explicit(&self->state, memory_order_relaxed) & VS_ACTIVE))
		vcpu_go_out(self);
}

/*
 * Checking builds: rs_may_run_func() is the fast path's check, and on a
 * vCPU's thread it may only be asked while the vCPU is active.  Asked while
 * the library counts the vCPU out (after a call that took it out, or after
 * rs_vcpu_quiesce()), a true answer would let it run guest code unseen by
 * stoppers; that is the emulator's bug, caught here.
 */
void rs_vcpu_check_active(const struct rs_runstate *rs)
{
#ifndef NDEBUG
	struct rs_vcpu_impl *self = tls_self;

	if (self && vrs(self) == rs &&
	    !(atomic_load_explicit(&self->state, memory_order_relaxed) & VS_ACTIVE)) {
		fprintf(stderr, "runstate: rs_may_run_func() on the thread of vCPU %u while it "
				"is out: go through rs_vcpu_enter() before guest code\n",
			vslot(self));
		abort();
	}
#else
	(void)rs;
#endif
}

/* ---------------------------------------------------------------------------
 * Public vCPU API
 */

int rs_vcpu_register(rs_runstate *rs, rs_vcpu *pv, rs_kick_fn *kickfn, void *opaque)
{
	struct rs_vcpu_impl *v;
	uint32_t i, hw;

	if (!rs || !pv)
		return RS_EINVAL;
	v = impl_of(pv);
	if (tls_self || is_registered(v))
		return RS_EINVAL;
	/* No memset: a rs_vcpu_request() racing with an unregistration and
	 * this registration of the same storage may read registered, rs and
	 * slot at any time (atomics, stored one by one); it acts only after
	 * finding v in the slot it read, pinned (see there). */
	atomic_store_explicit(&v->rs, rs, memory_order_relaxed);
	atomic_store_explicit(&v->slot, UINT32_MAX, memory_order_relaxed);
	v->kick = kickfn;
	v->opaque = opaque;
	atomic_store_explicit(&v->state, 0, memory_order_relaxed);
	atomic_store_explicit(&v->kick_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&v->wanted_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&v->out_since_ns, rs_now(rs) | 1, memory_order_relaxed);
	atomic_store_explicit(&v->last_ack_ns, atomic_load_explicit(&v->out_since_ns,
								   memory_order_relaxed),
			      memory_order_relaxed);
	RS_DELAY(rs, "register");
	for (i = 0; i < rs->nslots; i++) {
		struct rs_vcpu_impl *expect = NULL;

		if (atomic_load_explicit(&rs->slots[i].vcpu, memory_order_relaxed))
			continue;
		/* Fill in the slot number before publishing: the CAS's
		 * release half pairs with the scanners' seq_cst load of the
		 * slot (for_each_vcpu()), so whoever finds v sees all of it. */
		atomic_store_explicit(&v->slot, i, memory_order_relaxed);
		if (atomic_compare_exchange_strong_explicit(&rs->slots[i].vcpu, &expect, v,
							    memory_order_seq_cst,
							    memory_order_relaxed))
			break;
	}
	if (i == rs->nslots)
		return RS_ENOSPC;
	/* seq_cst: a vCPU that registers and parks at once (finding
	 * RS_W_PARKED already set, so making no CAS of its own on the word)
	 * must be found by the next wake wave, which starts with a seq_cst
	 * fence (rs_wake_parked()); and a stopper's scan, after its fence,
	 * must find a vCPU that registers and announces (P1).  The load and
	 * the failed CAS too: when another registration already raised
	 * hiwater past our slot we write nothing, and only an SC read of its
	 * write puts that write before our announcement in the total order
	 * (the vCPU side of P1 has no fence; weak-memory.md). */
	hw = atomic_load_explicit(&rs->hiwater, memory_order_seq_cst);
	while (hw < i + 1 &&
	       !atomic_compare_exchange_weak_explicit(&rs->hiwater, &hw, i + 1,
						      memory_order_seq_cst, memory_order_seq_cst))
		;
	atomic_fetch_add_explicit(&rs->nregistered, 1, memory_order_relaxed);
	atomic_store_explicit(&v->registered, VCPU_MAGIC, memory_order_release);
	tls_self = v;
	return 0;
}

int rs_vcpu_unregister(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v;
	struct rs_runstate *rs;
	struct rs_slot *sl;

	if (!(v = own_vcpu(pv)))
		return RS_EINVAL;
	rs = vrs(v);
	/* Unregistering counts as acknowledgement. */
	if (atomic_load_explicit(&v->state, memory_order_relaxed) & VS_ACTIVE)
		vcpu_go_out(v);
	sl = &rs->slots[vslot(v)];
	/* seq_cst store, then seq_cst load of pins: see for_each_vcpu(). */
	atomic_store_explicit(&sl->vcpu, NULL, memory_order_seq_cst);
	while (atomic_load_explicit(&sl->pins, memory_order_seq_cst))
		sched_yield();
	atomic_store_explicit(&v->registered, 0, memory_order_relaxed);
	atomic_fetch_sub_explicit(&rs->nregistered, 1, memory_order_relaxed);
	tls_self = NULL;
	return 0;
}

int rs_vcpu_enter(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v = own_vcpu(pv);

	return v ? vcpu_enter(v) : RS_EINVAL;
}

int rs_vcpu_quiesce(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v = own_vcpu(pv);

	if (!v)
		return RS_EINVAL;
	if (atomic_load_explicit(&v->state, memory_order_relaxed) & VS_ACTIVE)
		vcpu_go_out(v);
	return 0;
}

int rs_vcpu_request(rs_vcpu *pv, unsigned req)
{
	struct rs_vcpu_impl *v;
	struct rs_runstate *rs;
	struct rs_slot *sl;
	uint32_t bits = 0, old, i;

	if (!pv || !req || (req & ~(RS_REQ_EXIT | RS_REQ_WORK)))
		return RS_EINVAL;
	v = impl_of(pv);
	/* Acquire: pairs with the release store in rs_vcpu_register(), so
	 * rs and slot below are at least those of that registration. */
	if (!is_registered(v))
		return RS_EINVAL;
	if (req & RS_REQ_EXIT)
		bits |= VS_EXIT;
	if (req & RS_REQ_WORK)
		bits |= VS_WORK;
	/*
	 * The owner may be unregistering v and registering the same storage
	 * again meanwhile, so rs and slot may belong to the old registration
	 * or the new one, or be a mix of both.  Pin the slot they name, as a
	 * scanner does (for_each_vcpu()), and act only if it holds v: then v
	 * is registered there (unregistration waits for the pin), and it is
	 * the current registration, whichever rs and slot came from.
	 */
	rs = atomic_load_explicit(&v->rs, memory_order_relaxed);
	i = atomic_load_explicit(&v->slot, memory_order_relaxed);
	if (!rs || i >= rs->nslots)
		return RS_EINVAL;
	sl = &rs->slots[i];
	atomic_fetch_add_explicit(&sl->pins, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&sl->vcpu, memory_order_seq_cst) != v) {
		atomic_fetch_sub_explicit(&sl->pins, 1, memory_order_release);
		return RS_EINVAL;
	}
	/* seq_cst: the parker's futex wait compares the whole state word,
	 * so either it sees the request or we see VS_PARK and wake it. */
	old = atomic_fetch_or_explicit(&v->state, bits, memory_order_seq_cst);
	if (old & VS_PARK) {
		RS_STAT_INC(rs, wakes);
		rs_futex_wake(rs, &v->state, 1);
	} else {
		/* Active, quiescent (halted in the emulator's own wait) or
		 * about to enter: the kick gets it to rs_vcpu_enter(). */
		kick(rs, v, rs_now(rs));
	}
	atomic_fetch_sub_explicit(&sl->pins, 1, memory_order_release);
	return 0;
}

struct info_arg {
	void (*fn)(const struct rs_vcpu_info *, void *);
	void *arg;
	uint64_t now;
	int n;
	unsigned out;
};

static bool info_one(struct rs_runstate *rs, struct rs_vcpu_impl *v, void *arg)
{
	struct info_arg *a = arg;
	uint32_t s = atomic_load_explicit(&v->state, memory_order_acquire);
	uint64_t since = atomic_load_explicit(&v->out_since_ns, memory_order_relaxed);
	uint64_t kicked = atomic_load_explicit(&v->wanted_ns, memory_order_relaxed);
	uint64_t acked = atomic_load_explicit(&v->last_ack_ns, memory_order_relaxed);
	struct rs_vcpu_info info = {
		.vcpu = (const rs_vcpu *)(void *)v,
		.index = vslot(v),
		.opaque = v->opaque,
		.active = s & VS_ACTIVE,
		.parked = s & VS_PARK,
		.out_for_ns = !(s & VS_ACTIVE) && since && a->now > since ? a->now - since : 0,
		.unacked_ns = (s & VS_ACTIVE) && (s & VS_WANTED) && kicked && a->now > kicked ?
				      a->now - kicked : 0,
		.since_ack_ns = acked && a->now > acked ? a->now - acked : 0,
	};

	(void)rs;
	a->n++;
	if (!(s & VS_ACTIVE))
		a->out++;
	if (a->fn)
		a->fn(&info, a->arg);
	return true;
}

int rs_vcpu_foreach(rs_runstate *rs, void (*fn)(const struct rs_vcpu_info *, void *), void *arg)
{
	struct info_arg a = { .fn = fn, .arg = arg };

	if (!rs)
		return RS_EINVAL;
	a.now = rs_now(rs);
	for_each_vcpu(rs, info_one, &a);
	return a.n;
}

void rs_vcpu_count(rs_runstate *rs, unsigned *registered, unsigned *out)
{
	struct info_arg a = { 0 };

	if (!rs)
		return;
	a.now = rs_now(rs);
	for_each_vcpu(rs, info_one, &a);
	if (registered)
		*registered = (unsigned)a.n;
	if (out)
		*out = a.out;
}

/* SPDX-License-Identifier: MIT */
/*
 * Acknowledgements: how a stopper learns that every vCPU is out of guest
 * code.  docs/protocol.md has the case analysis (P1, P2, P8); the comments
 * here name the pairings, and both sides of each are in this file.
 *
 * The store-buffering pairing (KVM's vcpu->mode against its request bits):
 *
 *   vCPU (rs_ack_enter)                stopper (stop edge)
 *   state |= ACTIVE        (seq_cst)   CAS word: stopped     (seq_cst)
 *                                      fence(seq_cst)        [rs_ack_scan]
 *   load word              (seq_cst)   load state of each vCPU
 *
 * At least one side sees the other's store: either the vCPU sees the stop
 * and retreats without running guest code, or the stopper sees ACTIVE and
 * waits for (and kicks) the vCPU.
 *
 * The pending hand-over: a stopper that finds a vCPU active counts it in
 * `pending` and marks it WANTED (want_ack()); the vCPU's next active->out
 * transition sees WANTED and decrements (pending_dec()).  A waiting
 * stopper sleeps on `pending` with PENDING_SLEEPER set (rs_ack_wait()); the
 * decrement that brings the count to zero wakes it, or, when nobody waits
 * (an asynchronous stop), settles the edge itself.
 *
 * The active hint (P22): a scan visits only the slots whose hint bit is
 * set.  A vCPU sets its bit (if clear) between its announcement and its
 * load of the word; a stop edge's scan clears the bit of a vCPU it finds
 * out, then re-checks its state, and sets the bit back if it is active:
 *
 *   vCPU (rs_ack_enter)                clearer (hint_clear)
 *   state |= ACTIVE        (seq_cst)   clr_start++           (seq_cst)
 *   load hint; if clear,   (seq_cst)   hint &= ~bit          (seq_cst)
 *     hint |= bit          (seq_cst)   load state            (seq_cst)
 *   load word              (seq_cst)   if ACTIVE: hint |= bit, count it
 *                                      clr_done++            (seq_cst)
 *
 * Store-buffering again: either the vCPU sees the clear (and sets the bit
 * again) or the clearer's re-check sees ACTIVE.  A scanner that loads the
 * hint word between a clear and its re-check's set would skip an active
 * vCPU; it loads clr_done before and clr_start after the hint word, and
 * when they differ a clearer may be in that window, so it visits every
 * slot of the word (the argument is docs/protocol.md's P22).
 */
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "instance.h"

size_t rs_ack_hint_bytes(unsigned max_vcpus)
{
	size_t n = ((size_t)max_vcpus + 63) / 64;

	/* Whole lines: the slots that follow in the block do not share the
	 * hint's line. */
	return (n * sizeof(uint64_t) + RS_LINE - 1) & ~(size_t)(RS_LINE - 1);
}

void rs_ack_init(struct rs_instance *ri, int64_t rekick_ns, unsigned max_vcpus,
		 _Atomic uint64_t *hint)
{
	/* All clear (the block is zeroed): a vCPU sets its bit when it
	 * first announces. */
	ri->ack.hint = hint;
	ri->ack.nhint = (max_vcpus + 63) / 64;
	ri->ack.rekick_ns = rekick_ns;
	atomic_init(&ri->ack.spin_ns, RS_ACK_SPIN_MAX_NS);
}

/* ---------------------------------------------------------------------------
 * The vCPU side
 */

static void pending_dec(struct rs_instance *ri)
{
	/* seq_cst: the settle mutex holder's "unlock, then re-check" in
	 * rs_settle_help() relies on this being in the total order. */
	uint32_t old = atomic_fetch_sub_explicit(&ri->ack.pending, 1, memory_order_seq_cst);

	if ((old & PENDING_COUNT) != 1)
		return;
	/* The last wanted acknowledgement: wake the stopper if it sleeps
	 * (rs_ack_wait()), else help settle ourselves (an asynchronous stop
	 * has nobody waiting for it). */
	if (old & PENDING_SLEEPER) {
		atomic_fetch_and_explicit(&ri->ack.pending, ~PENDING_SLEEPER, memory_order_relaxed);
		rs_futex_wake(ri, &ri->ack.pending, INT_MAX);
	}
	rs_settle_help(ri);
}

/* active -> out.  Called by the vCPU's own thread only. */
void rs_ack_go_out(struct rs_vcpu_impl *v)
{
	struct rs_instance *ri = rs_vcpu_inst(v);
	uint32_t s = atomic_load_explicit(&v->state, memory_order_relaxed), ns;
	uint64_t now;

	RS_DELAY(ri, "vcpu-ack");
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
	now = rs_now(ri) | 1;
	atomic_store_explicit(&v->out_since_ns, now, memory_order_relaxed);
	atomic_store_explicit(&v->last_ack_ns, now, memory_order_relaxed);
	if (s & VS_WANTED)
		pending_dec(ri);
}

/*
 * Set slot i's hint bit if it is clear; usually one load of a line that
 * nobody writes, so halts and wake-ups do not bounce it.  Between the
 * announcement and the load of the word: both seq_cst loads and the OR
 * are in the single total order after ACTIVE and before the word's load.
 * The load pairs with hint_clear()'s clear, then load of the state (the
 * store-buffering pairing of P22); the OR with a scanner's seq_cst load of
 * the hint word after its fence (rs_ack_scan()), which therefore sees the
 * bit whenever this vCPU does not see the stop (P1).
 */
static void hint_announce(struct rs_instance *ri, uint32_t i)
{
	_Atomic uint64_t *h = &ri->ack.hint[i / 64];
	uint64_t bit = (uint64_t)1 << (i % 64);

	if (!(atomic_load_explicit(h, memory_order_seq_cst) & bit))
		atomic_fetch_or_explicit(h, bit, memory_order_seq_cst);
}

bool rs_ack_enter(struct rs_vcpu_impl *v)
{
	struct rs_instance *ri = rs_vcpu_inst(v);
	uint64_t w;

	/* For a stopper deciding whether to spin (rs_ack_wait()). */
	atomic_store_explicit(&v->cpu, rs_this_cpu(), memory_order_relaxed);
	/* out -> active: announce, re-load.  Both seq_cst, with no fence
	 * between: against the stopper's seq_cst CAS, fence, load of the
	 * state (rs_ack_scan()), the store-buffering outcome is a cycle in
	 * the single total order (weak-memory.md).  On x86 the locked RMW is
	 * the barrier; an mfence would add ~15 ns to every start. */
	atomic_fetch_or_explicit(&v->state, VS_ACTIVE, memory_order_seq_cst);
	RS_DELAY(ri, "announce");
	hint_announce(ri, rs_vcpu_slot(v));
	w = rs_word_load(ri, memory_order_seq_cst);
	/* A section's owner runs with RS_W_EXCL set (exclusive.c, P18). */
	if (rs_excl_lets_run(&ri->excl, w)) {
		atomic_store_explicit(&v->out_since_ns, 0, memory_order_relaxed);
		return true;
	}
	/* Retreat: we ran no guest code. */
	rs_ack_go_out(v);
	return false;
}

/* ---------------------------------------------------------------------------
 * The stopper side
 */

/*
 * The kick first, then its bookkeeping: the clock read (the vDSO's code and
 * data, two pages that a stopper woken from idle has to walk to) and the
 * counter's line come after the callback, not between the stop's CAS and
 * the vCPU's exit.  kick_ns is therefore the time just after the kick; a
 * re-kicker that reads the previous value meanwhile kicks once more, which
 * a kick allows.  Returns that time.
 */
RS_HOT uint64_t rs_ack_kick(struct rs_instance *ri, struct rs_vcpu_impl *v)
{
	uint64_t now;

	RS_DELAY(ri, "kick");
	if (v->kick)
		v->kick(rs_vcpu_handle(v), v->opaque);
	now = rs_now(ri);
	atomic_store_explicit(&v->kick_ns, now, memory_order_relaxed);
	RS_STAT_INC(ri, kicks);
	return now;
}

/*
 * Is v active?  If so make sure it is counted in pending and kicked (once
 * per active period; again when rekick and the delay has passed).
 */
RS_HOT static bool want_ack(struct rs_instance *ri, struct rs_vcpu_impl *v, enum rs_scan_mode mode)
{
	/* Acquire: pairs with the release CAS in rs_ack_go_out(). */
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
				(void)rs_ack_kick(ri, v);
				return true;
			}
			if (!rekick)
				return true;
			now = rs_now(ri);
			last = atomic_load_explicit(&v->kick_ns, memory_order_relaxed);
			/* One re-kick per delay however many threads re-kick:
			 * the CAS on kick_ns.  An edge's kick in flight
			 * stamps kick_ns only after its callback
			 * (rs_ack_kick()), so a re-kicker may kick once more
			 * meanwhile, which a kick allows. */
			if (now - last >= (uint64_t)ri->ack.rekick_ns &&
			    atomic_compare_exchange_strong_explicit(&v->kick_ns, &last, now,
								    memory_order_relaxed,
								    memory_order_relaxed)) {
				RS_STAT_INC(ri, rekicks);
				(void)rs_ack_kick(ri, v);
			}
			return true;
		}
		/* Count first, so the vCPU's decrement never precedes it. */
		atomic_fetch_add_explicit(&ri->ack.pending, 1, memory_order_seq_cst);
		if (atomic_compare_exchange_strong_explicit(&v->state, &s, s | VS_WANTED,
							    memory_order_seq_cst,
							    memory_order_acquire)) {
			atomic_store_explicit(&v->wanted_ns, rs_ack_kick(ri, v),
					      memory_order_relaxed);
			return true;
		}
		pending_dec(ri);
	}
}

/* One scan: what it is for, and what it found. */
struct scan_arg {
	struct rs_instance *ri;
	enum rs_scan_mode mode;
	bool all_out;
	int mycpu;      /* the scanning stopper's CPU, -1: do not look */
	bool on_mycpu;  /* a vCPU still in guest code last entered it there */
};

/* want_ack() found v active: the scan is not all out, and rs_ack_wait()
 * does not spin if v last entered guest code on the scanner's CPU. */
static void note_active(struct scan_arg *a, struct rs_vcpu_impl *v)
{
	a->all_out = false;
	if (a->mycpu >= 0 && atomic_load_explicit(&v->cpu, memory_order_relaxed) == a->mycpu)
		a->on_mycpu = true;
}

/*
 * Clear slot i's hint bit after a scan found its vCPU out (v, pinned) or
 * the slot empty (v NULL), then re-check; an active vCPU found by the
 * re-check is counted and kicked as the scan would have (note_active()).
 * The clear, then the seq_cst load of the state: against the vCPU's
 * announcement, then load of the hint (hint_announce(), P22), one of the
 * two sees the other.  An empty slot is pinned again after the clear: a
 * vCPU published before the clear is found (the slot's seq_cst CAS in
 * rs_registry_insert() precedes its announcement, which precedes its load
 * of the hint); one published after it sees the clear.
 */
static void hint_clear(struct scan_arg *a, _Atomic uint64_t *h, uint32_t i,
		       struct rs_vcpu_impl *v)
{
	struct rs_instance *ri = a->ri;
	uint64_t bit = (uint64_t)1 << (i % 64);
	bool repinned = false;

	atomic_fetch_and_explicit(h, ~bit, memory_order_seq_cst);
	if (!v) {
		v = rs_registry_pin(&ri->reg, i);
		repinned = v != NULL;
	}
	if (v && (atomic_load_explicit(&v->state, memory_order_seq_cst) & VS_ACTIVE)) {
		/* It announced before our clear: set the bit back, so that
		 * the scans after ours find it, and handle it. */
		atomic_fetch_or_explicit(h, bit, memory_order_seq_cst);
		if (want_ack(ri, v, a->mode))
			note_active(a, v);
	}
	if (repinned)
		rs_registry_unpin(&ri->reg, i);
}

/*
 * Visit the slots of hint word k whose bits are set (every slot of it when
 * a clearer may be between its clear and its re-check); a stop edge's scan
 * clears the bits of the vCPUs it finds out.
 */
RS_HOT static void scan_word(struct scan_arg *a, uint32_t k, uint32_t n)
{
	struct rs_instance *ri = a->ri;
	_Atomic uint64_t *h = &ri->ack.hint[k];
	uint64_t done, bits, start;
	bool clearing = false;

	/* seq_cst, in this order: clr_done, the hint word, clr_start.  If
	 * the word misses the bit of an active vCPU, the last clear of that
	 * bit before our load is a clearer's whose re-check sets it back
	 * after our load, so that clearer's clr_start++ precedes the hint
	 * load and its clr_done++ follows it: clr_start read after the
	 * hint load exceeds clr_done read before it (P22). */
	RS_COST_ADD(RS_COST_PART(ri), RS_COST_HINT_WORDS, 1);
	done = atomic_load_explicit(&ri->ack.clr_done, memory_order_seq_cst);
	bits = atomic_load_explicit(h, memory_order_seq_cst);
	start = atomic_load_explicit(&ri->ack.clr_start, memory_order_seq_cst);
	if (start != done)
		bits = ~(uint64_t)0;
	if (n - k * 64 < 64)
		bits &= ((uint64_t)1 << (n - k * 64)) - 1;
	while (bits) {
		uint32_t i = k * 64 + (uint32_t)__builtin_ctzll(bits);
		struct rs_vcpu_impl *v = rs_registry_pin(&ri->reg, i);

		bits &= bits - 1;
		if (v && want_ack(ri, v, a->mode)) {
			note_active(a, v);
		} else if (a->mode == RS_SCAN_EDGE &&
			   (atomic_load_explicit(h, memory_order_relaxed) >> (i % 64) & 1)) {
			/* Out (or empty) at a stop edge: clear its bit, so
			 * that the scans after this one skip it until it
			 * announces again.  Only edges clear: the settler's
			 * scans then leave alone the bits of the vCPUs that
			 * acknowledged, which go back in after the start
			 * without writing the hint. */
			if (!clearing) {
				atomic_fetch_add_explicit(&ri->ack.clr_start, 1, memory_order_seq_cst);
				clearing = true;
			}
			hint_clear(a, h, i, v);
		}
		if (v)
			rs_registry_unpin(&ri->reg, i);
	}
	/* After every re-check of this word: see clr_start above. */
	if (clearing)
		atomic_fetch_add_explicit(&ri->ack.clr_done, 1, memory_order_seq_cst);
}

/*
 * Kick every active vCPU not kicked yet (and re-kick laggards if rekick);
 * true if every registered vCPU is out.  Called after a stop edge's CAS
 * (RS_SCAN_EDGE, by its maker only: one kick per vCPU per edge) and by the
 * settler.  Only the slots whose hint bit is set are visited (P22).
 * mycpu, on_mycpu: see ack.h.
 */
RS_HOT bool rs_ack_scan(struct rs_instance *ri, enum rs_scan_mode mode, int mycpu, bool *on_mycpu)
{
	struct scan_arg a = { .ri = ri, .mode = mode, .all_out = true, .mycpu = mycpu };
	uint32_t n;

	/* The stopper's fence: pairs with the vCPU's seq_cst OR of ACTIVE,
	 * its hint (hint_announce()) and its seq_cst load of the word
	 * (rs_ack_enter(), P1). */
	atomic_thread_fence(memory_order_seq_cst);
	RS_COST_ADD(RS_COST_PART(ri), RS_COST_SCANS, 1);
	n = rs_registry_hiwater(&ri->reg);
	for (uint32_t k = 0; k * 64 < n; k++)
		scan_word(&a, k, n);
	if (on_mycpu)
		*on_mycpu = a.on_mycpu;
	return a.all_out;
}

static bool active_one(struct rs_vcpu_impl *v, void *arg)
{
	bool *any = arg;

	if (atomic_load_explicit(&v->state, memory_order_relaxed) & VS_ACTIVE) {
		*any = true;
		return false;
	}
	return true;
}

/*
 * Is some registered vCPU active?  A hint, with no kick and no count: a
 * try (an exclusive section's RS_ASYNC begin) that would fail anyway must
 * not force every running vCPU out of guest code first.
 */
bool rs_ack_any_active(struct rs_instance *ri)
{
	bool any = false;

	rs_registry_for_each(&ri->reg, active_one, &any);
	return any;
}

/*
 * Wait until every registered vCPU is out.  The stopper spins first, then
 * sleeps on `pending`.  On a real vCPU the kick takes tens of microseconds
 * (a signal, the guest's exit, KVM_RUN's -EINTR), and a stopper that went
 * to sleep after a few microseconds of spinning paid a cross-CPU futex
 * wake-up on top (16 us p50 on the 2-core VM, 1.8x the kick floor;
 * docs/performance.md, "The kick floor").  So it spins for about twice the
 * last wait that had to wait, between 4 and 100 us, and then sleeps: at
 * most 100 us of CPU per stop where a vCPU waits for the stopper's CPU.
 *
 * It does not spin while a vCPU it waits for last entered guest code on
 * the stopper's own CPU: that vCPU is then most likely waiting for this
 * very CPU (the stopper's wake-up took it, or the vCPU's thread is
 * preempted there) and the spin would only delay it.  On the 2-core VM
 * with another job on the other CPU, spinning there made a TCG vCPU's
 * exit 125 us instead of 11.
 *
 * It never calls sched_yield().  Under EEVDF (Linux 6.6 and later) a yield
 * pushes the caller's virtual deadline a whole slice later, and the
 * stopper is usually the emulator's main thread: with a busy vCPU thread
 * of another VM on its CPU it then waited a tick to run again, and QEMU's
 * QMP cont took 4.5 to 5 ms instead of 0.5 (docs/qemu.md, "Figures").
 *
 * It rescans only when it has to: first; when the wanted acknowledgements
 * have all come (the count in `pending` is zero: then either every vCPU is
 * out or one announced since the last scan and has to be counted); after
 * a nap; when rekick_ns has passed since its last scan; and once more when
 * the deadline has come.  The first scan re-kicks as well: a waiter that
 * arrives after a kick was lost (an asynchronous stop's, with nobody
 * waiting) re-kicks a vCPU whose last kick is older than rekick_ns at once
 * (want_ack() compares with the vCPU's last kick, whoever made it), not a
 * nap later.  A scan visits every slot whose hint bit is set (these scans
 * clear none: P22).  Every return of 0 still comes from a scan that found
 * every vCPU out, so skipping scans changes when, not whether.
 *
 * What skipping costs: the count can stay above zero while every vCPU is
 * already out, for as long as the thread that will decrement it is
 * between its two steps (a vCPU between its going-out CAS and
 * pending_dec(), another scanner between its increment and its CAS) and
 * descheduled.  The waiter then returns when that thread decrements
 * (which wakes it), or at its next timed scan, instead of within 64 spin
 * rounds.  Until this rule it rescanned every 64 rounds, about 2.5 us: 37
 * to 40 scans in a 100 us spin on the loaded 2-core VM, where now a stop
 * whose vCPUs acknowledge makes 3 in all (the edge's, the first here, and
 * the one after the count reaches zero).
 */
int rs_ack_wait(struct rs_instance *ri, uint64_t deadline)
{
	uint64_t t0 = rs_now(ri);
	uint64_t spin_ns = atomic_load_explicit(&ri->ack.spin_ns, memory_order_relaxed);
	int mycpu = rs_this_cpu();
	uint64_t scanned = t0;
	bool slept = false, napped = false, on_mycpu = false;

	for (bool first = true;; first = false) {
		uint32_t p;
		int64_t left, nap;
		uint64_t now;
		bool rekick, did_scan;

		/* Read pending before the scan: an acknowledgement after
		 * the scan changes it and the futex wait returns at once. */
		p = atomic_load_explicit(&ri->ack.pending, memory_order_seq_cst);
		now = rs_now(ri);
		rekick = napped || now - scanned >= (uint64_t)ri->ack.rekick_ns;
		did_scan = first || !(p & PENDING_COUNT) || rekick;
		if (did_scan) {
			napped = false;
			scanned = now;
			if (rs_ack_scan(ri, first || rekick ? RS_SCAN_REKICK : RS_SCAN_CHECK,
					mycpu, &on_mycpu)) {
				if (!first) {
					uint64_t w = 2 * (rs_now(ri) - t0);

					w = w < RS_ACK_SPIN_MIN_NS ? RS_ACK_SPIN_MIN_NS :
					    w > RS_ACK_SPIN_MAX_NS ? RS_ACK_SPIN_MAX_NS : w;
					atomic_store_explicit(&ri->ack.spin_ns, w,
							      memory_order_relaxed);
				}
				return 0;
			}
		}
		left = rs_remaining(ri, deadline);
		if (left == 0) {
			/* A last look, so that a count held up by a
			 * descheduled decrementer does not time out a wait
			 * whose vCPUs are all out. */
			if (!did_scan && rs_ack_scan(ri, RS_SCAN_CHECK, mycpu, &on_mycpu))
				return 0;
			return RS_ETIMEDOUT;
		}
		if (!slept && !on_mycpu && now - t0 < spin_ns) {
			rs_cpu_relax();
			continue;
		}
		if (!(p & PENDING_COUNT))
			continue;
		/* Announce the sleeper; the acknowledgement that brings the
		 * count to zero wakes us (pending_dec()). */
		if (!(p & PENDING_SLEEPER) &&
		    !atomic_compare_exchange_strong_explicit(&ri->ack.pending, &p,
							     p | PENDING_SLEEPER,
							     memory_order_seq_cst,
							     memory_order_relaxed))
			continue;
		nap = ri->ack.rekick_ns;
		if (left > 0 && left < nap)
			nap = left;
		RS_DELAY(ri, "stopper-sleep");
		rs_futex_wait(ri, &ri->ack.pending, p | PENDING_SLEEPER, nap);
		/* After a nap the next scan re-kicks the laggards. */
		slept = napped = true;
	}
}

bool rs_ack_outstanding(struct rs_instance *ri)
{
	return (atomic_load_explicit(&ri->ack.pending, memory_order_seq_cst) & PENDING_COUNT) != 0;
}

unsigned rs_ack_pending_count(struct rs_instance *ri)
{
	return atomic_load_explicit(&ri->ack.pending, memory_order_relaxed) & PENDING_COUNT;
}

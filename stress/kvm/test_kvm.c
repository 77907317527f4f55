/* SPDX-License-Identifier: MIT */
/*
 * Tests of the library against real vCPUs in KVM_RUN (stress/kvm/kvm.h).
 *
 *	test_kvm race        [options]  stops hammered around guest entry
 *	test_kvm io-complete [options]  savevm right after I/O exits; guest panic
 *	test_kvm exclusion   [options]  internal locks freeze the guest counters
 *	test_kvm stuck       [options]  a vCPU stuck in an MMIO exit, diagnosed
 *	test_kvm figures     [options]  stop/start latency (not a test)
 *	test_kvm speed       [options]  guest loop and exit rates (not a test)
 *
 * Options: --vcpus N, --seconds S, --iters N, --window-ns NS, --io-shift S,
 * --hlt-every N, --handshake on|no-ie|clear-late, --no-complete,
 * --expect-race, --until-kick, --kind in|out|mmio-read|mmio-write, --seed N,
 * --rekick-us N, --hlt-us N (figures, speed).
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no usable /dev/kvm; ThreadSanitizer).
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvm.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RK_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define RK_TSAN 1
#endif

#define SKIP 77

struct opts {
	const char *mode;
	unsigned vcpus;
	double seconds;
	unsigned long iters;
	uint64_t window_ns;
	unsigned io_shift;
	unsigned hlt_every;
	enum rk_handshake handshake;
	bool no_complete;
	bool expect_race;
	bool until_kick;
	int kind;                 /* io-complete: only this exit kind */
	uint64_t seed;
	int64_t rekick_ns;
	uint64_t hlt_ns;
	bool quiet;
};

static int failures;

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	failures++;
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static void spin_ns(uint64_t ns)
{
	uint64_t end = rk_now_ns() + ns;

	while (rk_now_ns() < end)
		__builtin_ia32_pause();
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
	size_t i;

	if (!n)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

static void dump_state(rs_runstate *rs, struct rk_vm *vm)
{
	char buf[4096], line[200];

	rs_dump(rs, buf, sizeof(buf));
	fprintf(stderr, "%s", buf);
	for (unsigned i = 0; i < rk_vm_nvcpus(vm); i++) {
		rk_vcpu_describe(vm, i, line, sizeof(line));
		fprintf(stderr, "  %s\n", line);
	}
}

/* Common setup: instance, VM, threads (VM still in prelaunch). */
static int setup(const struct opts *o, struct rk_config *kc, rs_runstate **rs, struct rk_vm **vm)
{
	struct rs_config rc = { .rekick_ns = o->rekick_ns };
	char why[256] = "";
	int r;

	r = rs_create(&rc, rs);
	if (r) {
		fail("rs_create: %s", rs_strerror(r));
		return r;
	}
	r = rk_vm_create(*rs, kc, vm, why, sizeof(why));
	if (r) {
		fail("rk_vm_create: %s", why);
		rs_destroy(*rs);
		return r;
	}
	r = rk_vm_start_threads(*vm);
	if (r) {
		fail("rk_vm_start_threads: %d (%s)", r, rk_vm_error(*vm) ? rk_vm_error(*vm) : "");
		rk_vm_destroy(*vm);
		rs_destroy(*rs);
		return r;
	}
	return 0;
}

static void teardown(rs_runstate *rs, struct rk_vm *vm)
{
	int r;

	/* Stop first: with a broken handshake an exit request's kick can be
	 * lost too, while a stop is re-kicked. */
	rs_stop(rs, 2000000000);
	r = rk_vm_join_threads(vm);
	if (r)
		fail("vcpu error: %s", rk_vm_error(vm));
	rk_vm_destroy(vm);
	rs_destroy(rs);
}

/* Wait until every counter differs from snap (the guest runs). */
static bool wait_all_moved(struct rk_vm *vm, const uint32_t *snap, uint64_t timeout_ns)
{
	uint64_t deadline = rk_now_ns() + timeout_ns;
	unsigned n = rk_vm_nvcpus(vm);

	for (;;) {
		unsigned moved = 0;

		for (unsigned i = 0; i < n; i++)
			moved += rk_guest_counter(vm, i) != snap[i];
		if (moved == n)
			return true;
		if (rk_now_ns() > deadline)
			return false;
		sched_yield();
	}
}

/*
 * With the VM stopped or locked: every vCPU out, none in KVM_RUN, and the
 * guest counters not moving.
 */
static bool check_frozen(rs_runstate *rs, struct rk_vm *vm, const char *what, unsigned long it)
{
	unsigned n = rk_vm_nvcpus(vm), reg = 0, out = 0;
	uint32_t c0[RK_MAX_VCPUS], c1[RK_MAX_VCPUS];

	rs_vcpu_count(rs, &reg, &out);
	if (reg != n || out != n) {
		fail("%s #%lu: %u of %u vCPUs out (registered %u)", what, it, out, n, reg);
		return false;
	}
	for (unsigned i = 0; i < n; i++)
		if (rk_vcpu_in_run(vm, i)) {
			fail("%s #%lu: vcpu %u in KVM_RUN while acknowledged", what, it, i);
			return false;
		}
	rk_guest_counters(vm, c0);
	/* Long enough for a running guest to advance its counter several
	 * times even where KVM emulates the real-mode loop (about 0.3 M
	 * iterations/s under kvm_pvm); short enough for thousands of rounds. */
	spin_ns(20000);
	rk_guest_counters(vm, c1);
	for (unsigned i = 0; i < n; i++)
		if (c0[i] != c1[i]) {
			fail("%s #%lu: vcpu %u's guest counter moved while stopped (%u -> %u)",
			     what, it, i, c0[i], c1[i]);
			return false;
		}
	return true;
}

static const char *hs_name(enum rk_handshake h)
{
	return h == RK_HANDSHAKE_ON ? "on" : h == RK_HANDSHAKE_NO_IE ? "no-ie" : "clear-late";
}

static void print_stats(const char *tag, rs_runstate *rs, struct rk_vm *vm)
{
	struct rs_stats st;
	struct rk_vcpu_stats ks;

	rs_get_stats(rs, &st);
	rk_vm_stats(vm, &ks);
	printf("%s: library: stop_edges %" PRIu64 " kicks %" PRIu64 " rekicks %" PRIu64
	       " parks %" PRIu64 " timeouts %" PRIu64 "\n",
	       tag, st.stop_edges, st.kicks, st.rekicks, st.parks, st.timeouts);
	printf("%s: vcpus: KVM_RUN %" PRIu64 " eintr %" PRIu64 " out %" PRIu64 " in %" PRIu64
	       " mmio w/r %" PRIu64 "/%" PRIu64 " hlt %" PRIu64 " completions %" PRIu64
	       " signals %" PRIu64 " (mean delivery %.1f us) window-kicks %" PRIu64
	       " lost-kicks %" PRIu64 "\n",
	       tag, ks.runs, ks.eintr, ks.exits_out, ks.exits_in, ks.exits_mmio_w,
	       ks.exits_mmio_r, ks.exits_hlt, ks.completions, ks.signals,
	       ks.signals ? (double)ks.kick_latency_sum_ns / (double)ks.signals / 1e3 : 0.0,
	       ks.window_kicks, ks.lost_kicks);
}

/* ---------------------------------------------------------------------------
 * race: stops hammered around guest entry
 */

static int test_race(const struct opts *o)
{
	struct rk_config kc = {
		.nvcpus = o->vcpus, .io_shift = o->io_shift, .hlt_every = o->hlt_every,
		.hlt_ns = 20000, .window_ns = o->window_ns, .handshake = o->handshake,
		.window_until_kick = o->until_kick,
	};
	rs_runstate *rs;
	struct rk_vm *vm;
	uint32_t snap[RK_MAX_VCPUS];
	uint64_t *lat, deadline, slow = 0, entry_seen = 0, entry_missed = 0;
	unsigned long it, max_it = o->iters ? o->iters : 1000000;
	struct rs_stats st;
	struct rk_vcpu_stats ks;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	lat = calloc(max_it, sizeof(*lat));
	if (!lat) {
		fail("out of memory");
		teardown(rs, vm);
		return 1;
	}
	rk_guest_counters(vm, snap);
	rs_start(rs, 0);
	if (!wait_all_moved(vm, snap, 2000000000))
		fail("the guest does not run");

	deadline = rk_now_ns() + (uint64_t)(o->seconds * 1e9);
	for (it = 0; it < max_it && !failures && rk_now_ns() < deadline; it++) {
		unsigned j = (unsigned)(rnd() % o->vcpus);
		uint64_t t0, dt, e0, until;
		int r;

		/* Time the stop, hence the kick, at random around an entry;
		 * with a window to aim at, mostly just after the check. */
		switch (o->window_ns && rnd() % 8 ? 1 : rnd() % 4) {
		case 0:
			/* Right after the start: vCPUs waking and entering. */
			break;
		case 1:
		case 2:
			/* Just after vCPU j's next check passed: the kick lands
			 * in the window, in KVM_RUN's entry, or in the guest. */
			e0 = rk_vcpu_entries(vm, j);
			until = rk_now_ns() + (o->window_ns ? 20000000 : 2000000);
			while (rk_vcpu_entries(vm, j) == e0 && rk_now_ns() < until)
				__builtin_ia32_pause();
			if (rk_vcpu_entries(vm, j) == e0)
				entry_missed++;
			else
				entry_seen++;
			spin_ns(rnd() % ((o->until_kick ? 0 : o->window_ns / 2) + 50000));
			break;
		default:
			/* Anywhere: deep in the guest, or in an exit. */
			spin_ns(rnd() % 100000);
			break;
		}
		t0 = rk_now_ns();
		r = rs_stop(rs, 2000000000);
		dt = rk_now_ns() - t0;
		lat[it] = dt;
		if (dt > 1000000)
			slow++;
		if (r) {
			fail("stop #%lu: %s after %.1f ms", it, rs_strerror(r), (double)dt / 1e6);
			dump_state(rs, vm);
			break;
		}
		if (!check_frozen(rs, vm, "stop", it))
			break;
		r = rs_start(rs, 0);
		if (r) {
			fail("start #%lu: %s", it, rs_strerror(r));
			break;
		}
		/* Broken on purpose and already shown: save the time. */
		if (o->expect_race && it % 8 == 0) {
			rk_vm_stats(vm, &ks);
			rs_get_stats(rs, &st);
			if (ks.lost_kicks >= 20 && st.rekicks >= 20) {
				it++;
				break;
			}
		}
	}

	/* The guest still runs after all that. */
	rk_guest_counters(vm, snap);
	if (!failures && !wait_all_moved(vm, snap, 2000000000))
		fail("the guest does not run at the end");

	rs_get_stats(rs, &st);
	rk_vm_stats(vm, &ks);
	qsort(lat, it, sizeof(*lat), cmp_u64);
	printf("race: handshake %s, %u vCPU(s), window %" PRIu64 " ns, io every 2^%u, hlt every %u"
	       " IN: %lu stops completed, %" PRIu64 " over 1 ms\n",
	       hs_name(o->handshake), o->vcpus, o->window_ns, o->io_shift, o->hlt_every, it,
	       slow);
	printf("race: stop latency p50 %.1f us p90 %.1f us p99 %.1f us max %.1f us\n",
	       (double)pct(lat, it, 0.5) / 1e3, (double)pct(lat, it, 0.9) / 1e3,
	       (double)pct(lat, it, 0.99) / 1e3, it ? (double)lat[it - 1] / 1e3 : 0.0);
	print_stats("race", rs, vm);
	printf("race: aimed at %" PRIu64 " entries, %" PRIu64 " not seen in time\n", entry_seen,
	       entry_missed);

	if (ks.exits_out == 0 && o->io_shift < 24)
		fail("no natural exit: the harness is not exercising re-entry");
	if (o->expect_race) {
		/* Broken on purpose: the test must see the race. */
		if (st.rekicks == 0 || ks.lost_kicks == 0)
			fail("handshake %s: no lost kick seen (rekicks %" PRIu64 ", lost %" PRIu64
			     ") in %lu stops: the test cannot see the race",
			     hs_name(o->handshake), st.rekicks, ks.lost_kicks, it);
		else
			printf("race: the broken handshake lost %" PRIu64 " kicks; %" PRIu64
			       " re-kicks were needed\n", ks.lost_kicks, st.rekicks);
	} else if (ks.lost_kicks) {
		fail("handshake %s: %" PRIu64 " kicks landed after the check and the guest "
		     "still ran", hs_name(o->handshake), ks.lost_kicks);
	}
	if (o->until_kick && ks.window_kicks == 0)
		fail("no kick landed in the %" PRIu64 " ns window: the test is not aiming",
		     o->window_ns);
	free(lat);
	teardown(rs, vm);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * io-complete: savevm right after an I/O exit sees it completed
 */

struct io_ctl {
	rs_runstate *rs;
	atomic_int armed;            /* enum rk_exit_kind to catch, or 0 */
	atomic_bool panic;           /* the hook raises a guest panic */
	atomic_bool hit;
	struct rk_exit ex;           /* the exit caught (written before hit) */
	atomic_int hook_errors;
};

static void io_hook(struct rk_vm *vm, unsigned idx, const struct rk_exit *ex, void *arg)
{
	struct io_ctl *c = arg;
	int want = atomic_load_explicit(&c->armed, memory_order_relaxed);
	uint64_t until;

	(void)vm;
	(void)idx;
	if (!want || (int)ex->kind != want)
		return;
	atomic_store_explicit(&c->armed, 0, memory_order_relaxed);
	c->ex = *ex;
	if (atomic_load_explicit(&c->panic, memory_order_relaxed)) {
		/* Device emulation finds the guest panicked: stop the VM from
		 * the vCPU thread, asynchronously, then finish the exit. */
		if (rs_pause(c->rs, RS_PAUSE_PANICKED, RS_ASYNC))
			atomic_fetch_add_explicit(&c->hook_errors, 1, memory_order_relaxed);
		/* After the pause: the tester's rs_wait() must see its edge. */
		atomic_store_explicit(&c->hit, true, memory_order_release);
		return;
	}
	/* Pairs with the tester's acquire: it sees c->ex. */
	atomic_store_explicit(&c->hit, true, memory_order_release);
	/* The stop arrives while this exit is being handled. */
	until = rk_now_ns() + 2000000000u;
	while (rs_may_run(c->rs)) {
		if (rk_now_ns() > until) {
			atomic_fetch_add_explicit(&c->hook_errors, 1, memory_order_relaxed);
			return;
		}
		__builtin_ia32_pause();
	}
}

static const char *kind_name(int k)
{
	switch (k) {
	case RK_EXIT_OUT: return "out";
	case RK_EXIT_IN: return "in";
	case RK_EXIT_MMIO_WRITE: return "mmio-write";
	case RK_EXIT_MMIO_READ: return "mmio-read";
	default: return "?";
	}
}

static bool wait_hit(struct io_ctl *c)
{
	uint64_t until = rk_now_ns() + 2000000000u;

	while (!atomic_load_explicit(&c->hit, memory_order_acquire)) {
		if (rk_now_ns() > until)
			return false;
		sched_yield();
	}
	atomic_store_explicit(&c->hit, false, memory_order_relaxed);
	return true;
}

/* After the exit c->ex and a stop: is the instruction complete? */
static bool check_regs(struct rk_vm *vm, const struct io_ctl *c, const char *what,
		       unsigned long it)
{
	struct rk_regs regs;
	int r = rk_vcpu_get_regs(vm, 0, &regs);

	if (r) {
		fail("KVM_GET_REGS: %s", strerror(-r));
		return false;
	}
	if (regs.rip != c->ex.rip_after) {
		fail("%s #%lu after %s: guest RIP 0x%" PRIx64 ", want 0x%" PRIx64
		     " (the exit at 0x%" PRIx64 " was not completed before the acknowledgement)",
		     what, it, kind_name(c->ex.kind), regs.rip, c->ex.rip_after, c->ex.rip);
		return false;
	}
	if ((c->ex.kind == RK_EXIT_IN || c->ex.kind == RK_EXIT_MMIO_READ) &&
	    (regs.rax & 0xff) != c->ex.value) {
		fail("%s #%lu after %s: guest AL 0x%02x, host supplied 0x%02x", what, it,
		     kind_name(c->ex.kind), (unsigned)(regs.rax & 0xff), c->ex.value);
		return false;
	}
	return true;
}

static int test_io_complete(const struct opts *o)
{
	static struct io_ctl c;
	struct rk_config kc = {
		.nvcpus = 1, .io_shift = o->io_shift, .hlt_every = 0,
		.no_complete = o->no_complete, .exit_hook = io_hook, .arg = &c,
	};
	static const int kinds[] = { RK_EXIT_IN, RK_EXIT_OUT, RK_EXIT_MMIO_READ, RK_EXIT_MMIO_WRITE };
	unsigned long reps = o->iters ? o->iters : 100, it = 0, panics = 0;
	uint32_t snap[1];
	rs_runstate *rs;
	struct rk_vm *vm;
	uint64_t deadline;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	c.rs = rs;
	rk_guest_counters(vm, snap);
	rs_start(rs, 0);
	if (!wait_all_moved(vm, snap, 2000000000))
		fail("the guest does not run");

	deadline = rk_now_ns() + (uint64_t)(o->seconds * 1e9);
	for (it = 0; it < reps * 4 && !failures && rk_now_ns() < deadline; it++) {
		int kind = o->kind ? o->kind : kinds[it % 4];
		int r;

		/* savevm taken while the vCPU handles the exit. */
		atomic_store_explicit(&c.panic, false, memory_order_relaxed);
		atomic_store_explicit(&c.armed, kind, memory_order_relaxed);
		if (!wait_hit(&c)) {
			fail("no %s exit in 2 s", kind_name(kind));
			break;
		}
		r = rs_lock(rs, RS_LOCK_SAVEVM, RS_FOREVER);
		if (r) {
			fail("rs_lock savevm: %s", rs_strerror(r));
			break;
		}
		if (check_frozen(rs, vm, "savevm", it))
			check_regs(vm, &c, "savevm", it);
		r = rs_unlock(rs, RS_LOCK_SAVEVM);
		if (r)
			fail("rs_unlock: %s", rs_strerror(r));

		/* Every eighth time: a guest panic raised by the IN's device
		 * model, from the vCPU thread. */
		if (it % 8 == 7 && !failures) {
			struct rs_state st;

			atomic_store_explicit(&c.panic, true, memory_order_relaxed);
			atomic_store_explicit(&c.armed, RK_EXIT_IN, memory_order_relaxed);
			if (!wait_hit(&c)) {
				fail("no exit for the panic in 2 s");
				break;
			}
			r = rs_wait(rs, 2000000000);
			rs_decode(rs_word(rs), &st);
			if (r || st.pause != RS_PAUSE_PANICKED) {
				fail("panic from the vCPU thread: wait %s, pause %s", rs_strerror(r),
				     rs_pause_name(st.pause));
				break;
			}
			if (check_frozen(rs, vm, "panic", it))
				check_regs(vm, &c, "panic", it);
			if (rs_start(rs, 0) != RS_ENEEDFORCE)
				fail("start after panic without force succeeded");
			r = rs_start(rs, RS_START_FORCE);
			if (r)
				fail("forced start after panic: %s", rs_strerror(r));
			panics++;
		}
	}
	if (atomic_load(&c.hook_errors))
		fail("%d hook errors (a stop never came, or rs_pause failed)",
		     atomic_load(&c.hook_errors));
	printf("io-complete: %s: %lu savevm locks right after an exit (in/out/mmio-read/"
	       "mmio-write), %lu guest panics from the vCPU thread\n",
	       o->no_complete ? "completion disabled" : "completion on", it, panics);
	print_stats("io-complete", rs, vm);
	teardown(rs, vm);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * exclusion: an internal lock freezes the guest
 */

static int test_exclusion(const struct opts *o)
{
	struct rk_config kc = {
		.nvcpus = o->vcpus, .io_shift = o->io_shift, .hlt_every = o->hlt_every,
		.hlt_ns = 20000, .window_ns = o->window_ns, .handshake = o->handshake,
	};
	rs_runstate *rs;
	struct rk_vm *vm;
	uint32_t snap[RK_MAX_VCPUS];
	unsigned long it, max_it = o->iters ? o->iters : 1000000;
	uint64_t deadline;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	rk_guest_counters(vm, snap);
	rs_start(rs, 0);
	if (!wait_all_moved(vm, snap, 2000000000))
		fail("the guest does not run");
	deadline = rk_now_ns() + (uint64_t)(o->seconds * 1e9);
	for (it = 0; it < max_it && !failures && rk_now_ns() < deadline; it++) {
		enum rs_lock l = (enum rs_lock)(rnd() % RS_LOCK_COUNT);
		int r;

		spin_ns(rnd() % 50000);
		r = rs_lock(rs, l, 2000000000);
		if (r) {
			fail("rs_lock %s #%lu: %s", rs_lock_name(l), it, rs_strerror(r));
			dump_state(rs, vm);
			break;
		}
		check_frozen(rs, vm, rs_lock_name(l), it);
		r = rs_unlock(rs, l);
		if (r)
			fail("rs_unlock %s: %s", rs_lock_name(l), rs_strerror(r));
		/* Every tenth time: the guest really runs again. */
		if (it % 10 == 0 && !failures) {
			rk_guest_counters(vm, snap);
			if (!wait_all_moved(vm, snap, 2000000000))
				fail("the guest does not run after unlock #%lu", it);
		}
	}
	printf("exclusion: %lu lock/unlock rounds with %u vCPU(s), counters frozen each time\n",
	       it, o->vcpus);
	print_stats("exclusion", rs, vm);
	teardown(rs, vm);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * stuck: a vCPU stuck in an MMIO exit, found with rs_vcpu_foreach()
 */

struct stuck_ctl {
	atomic_bool armed, inside, release;
};

static void stuck_hook(struct rk_vm *vm, unsigned idx, const struct rk_exit *ex, void *arg)
{
	struct stuck_ctl *c = arg;
	bool yes = true;

	(void)vm;
	if (idx != 1 || ex->kind != RK_EXIT_MMIO_WRITE ||
	    !atomic_compare_exchange_strong(&c->armed, &yes, false))
		return;
	/* A device backend that blocks (a hung NFS server, say). */
	atomic_store(&c->inside, true);
	while (!atomic_load(&c->release))
		sched_yield();
}

struct find_arg {
	struct rk_vm *vm;
	int stuck_idx;
	uint64_t unacked_ns, since_ack_ns;
	int active;
};

static void find_stuck(const struct rs_vcpu_info *info, void *p)
{
	struct find_arg *a = p;

	if (!info->active)
		return;
	a->active++;
	a->stuck_idx = rk_vcpu_index(a->vm, info->opaque);
	a->unacked_ns = info->unacked_ns;
	a->since_ack_ns = info->since_ack_ns;
}

static int test_stuck(const struct opts *o)
{
	static struct stuck_ctl c;
	struct rk_config kc = {
		.nvcpus = 2, .io_shift = o->io_shift, .exit_hook = stuck_hook, .arg = &c,
	};
	struct find_arg fa = { .stuck_idx = -1 };
	char line[200], dump[4096];
	uint32_t snap[RK_MAX_VCPUS];
	rs_runstate *rs;
	struct rk_vm *vm;
	uint64_t until;
	int r;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	fa.vm = vm;
	rk_guest_counters(vm, snap);
	rs_start(rs, 0);
	if (!wait_all_moved(vm, snap, 2000000000))
		fail("the guest does not run");
	atomic_store(&c.armed, true);
	until = rk_now_ns() + 2000000000u;
	while (!atomic_load(&c.inside) && rk_now_ns() < until)
		sched_yield();
	if (!atomic_load(&c.inside)) {
		fail("vcpu 1 never reached its MMIO write");
		goto out;
	}
	r = rs_stop(rs, 50000000);
	if (r != RS_ETIMEDOUT) {
		fail("stop with a vCPU stuck in an exit: %s, want timeout", rs_strerror(r));
		goto out;
	}
	/* vCPU 0 was kicked too; on a loaded machine it may take a while
	 * to acknowledge.  vCPU 1 never will while its device blocks. */
	until = rk_now_ns() + 2000000000u;
	do {
		struct timespec ts = { 0, 1000000 };

		fa.active = 0;
		fa.stuck_idx = -1;
		rs_vcpu_foreach(rs, find_stuck, &fa);
		if (fa.active <= 1)
			break;
		nanosleep(&ts, NULL);
	} while (rk_now_ns() < until);
	rk_vcpu_describe(vm, 1, line, sizeof(line));
	rs_dump(rs, dump, sizeof(dump));
	printf("stuck: rs_stop timed out; rs_vcpu_foreach: %d active, index %d, last "
	       "acknowledgement %.1f ms ago, last kick %.1f ms ago\nstuck: %s\n%s", fa.active,
	       fa.stuck_idx, (double)fa.since_ack_ns / 1e6, (double)fa.unacked_ns / 1e6, line,
	       dump);
	/* unacked_ns counts from the latest re-kick (one per rekick_ns while
	 * the stop waited); since_ack_ns from the vCPU's last acknowledgement,
	 * before the stop: at least the 50 ms the stop waited. */
	if (fa.active != 1 || fa.stuck_idx != 1 || fa.unacked_ns == 0 ||
	    fa.since_ack_ns < 50000000)
		fail("rs_vcpu_foreach did not single out vcpu 1 (active %d, index %d, unacked %"
		     PRIu64 " ns, since ack %" PRIu64 " ns)", fa.active, fa.stuck_idx,
		     fa.unacked_ns, fa.since_ack_ns);
	if (!strstr(line, "MMIO write"))
		fail("rk_vcpu_describe: %s", line);
	/* The device answers: the exit is finished, then acknowledged. */
	atomic_store(&c.release, true);
	r = rs_wait(rs, 2000000000);
	if (r)
		fail("rs_wait after the device answered: %s", rs_strerror(r));
	else
		check_frozen(rs, vm, "stuck", 0);
	rs_start(rs, 0);
out:
	atomic_store(&c.release, true);
	teardown(rs, vm);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * figures: stop and start latency with real guests
 */

/* Time the vCPU threads spent runnable but waiting for a CPU (schedstat's
 * second field), summed. */
static uint64_t vcpu_run_delay(struct rk_vm *vm)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < rk_vm_nvcpus(vm); i++) {
		char path[64];
		unsigned long long run, wait;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", rk_vcpu_tid(vm, i));
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fscanf(f, "%llu %llu", &run, &wait) == 2)
			sum += wait;
		fclose(f);
	}
	return sum;
}

static int figures(const struct opts *o)
{
	struct rk_config kc = {
		.nvcpus = o->vcpus, .io_shift = o->io_shift, .window_ns = o->window_ns,
		.handshake = o->handshake, .hlt_every = o->hlt_every, .hlt_ns = o->hlt_ns,
	};
	unsigned long n = o->iters ? o->iters : 2000, i;
	uint64_t *stop = calloc(n, sizeof(uint64_t)), *start = calloc(n, sizeof(uint64_t));
	uint64_t *first = calloc(n, sizeof(uint64_t));
	uint64_t *rfirst = calloc(n, sizeof(uint64_t)), *rall = calloc(n, sizeof(uint64_t));
	uint32_t snap[RK_MAX_VCPUS];
	rs_runstate *rs;
	struct rk_vm *vm;
	struct rs_stats st;
	uint64_t t0, t1, wait0, wait1, total = 0;

	if (!stop || !start || !first || !rfirst || !rall) {
		fail("out of memory");
		return 1;
	}
	if (setup(o, &kc, &rs, &vm))
		return 1;
	rk_guest_counters(vm, snap);
	rs_start(rs, 0);
	wait_all_moved(vm, snap, 2000000000);
	t0 = rk_now_ns();
	wait0 = vcpu_run_delay(vm);
	for (i = 0; i < n; i++) {
		struct rk_latency lat;
		int r;

		/* Let the guests run a while: the stop finds them in guest
		 * code (or in an exit). */
		spin_ns(20000 + rnd() % 80000);
		r = rk_measure_stop_start(vm, 2000000000, &lat);
		if (r) {
			fail("measure #%lu: %d", i, r);
			break;
		}
		stop[i] = lat.stop_ns;
		start[i] = lat.start_all_ns;
		first[i] = lat.start_first_ns;
		rfirst[i] = lat.resume_first_ns;
		rall[i] = lat.resume_all_ns;
	}
	wait1 = vcpu_run_delay(vm);
	t1 = rk_now_ns();
	rs_get_stats(rs, &st);
	for (unsigned long k = 0; k < i; k++)
		total += stop[k] + start[k];
	qsort(stop, i, sizeof(*stop), cmp_u64);
	qsort(start, i, sizeof(*start), cmp_u64);
	qsort(first, i, sizeof(*first), cmp_u64);
	qsort(rfirst, i, sizeof(*rfirst), cmp_u64);
	qsort(rall, i, sizeof(*rall), cmp_u64);
	printf("figures: %u vCPU(s), io every 2^%u, hlt every %u IN for %" PRIu64 " us, %lu rounds, "
	       "rekicks %" PRIu64 "\n", o->vcpus, o->io_shift, o->hlt_every,
	       (o->hlt_ns ? o->hlt_ns : 20000) / 1000, i, st.rekicks);
	printf("  stop  (rs_stop call -> all out)       p50 %7.1f  p90 %7.1f  p99 %7.1f  max %8.1f us\n",
	       pct(stop, i, .5) / 1e3, pct(stop, i, .9) / 1e3, pct(stop, i, .99) / 1e3,
	       i ? stop[i - 1] / 1e3 : 0.0);
	printf("  start (rs_start -> first guest moved) p50 %7.1f  p90 %7.1f  p99 %7.1f  max %8.1f us\n",
	       pct(first, i, .5) / 1e3, pct(first, i, .9) / 1e3, pct(first, i, .99) / 1e3,
	       i ? first[i - 1] / 1e3 : 0.0);
	printf("  start (rs_start -> all guests moved)  p50 %7.1f  p90 %7.1f  p99 %7.1f  max %8.1f us\n",
	       pct(start, i, .5) / 1e3, pct(start, i, .9) / 1e3, pct(start, i, .99) / 1e3,
	       i ? start[i - 1] / 1e3 : 0.0);
	printf("  start (rs_start -> first KVM_RUN)      p50 %7.1f  p90 %7.1f  p99 %7.1f  max %8.1f us\n",
	       pct(rfirst, i, .5) / 1e3, pct(rfirst, i, .9) / 1e3, pct(rfirst, i, .99) / 1e3,
	       i ? rfirst[i - 1] / 1e3 : 0.0);
	printf("  start (rs_start -> last KVM_RUN)       p50 %7.1f  p90 %7.1f  p99 %7.1f  max %8.1f us\n",
	       pct(rall, i, .5) / 1e3, pct(rall, i, .9) / 1e3, pct(rall, i, .99) / 1e3,
	       i ? rall[i - 1] / 1e3 : 0.0);
	printf("  time in stop+start %.1f ms of %.1f ms; vCPU threads runnable but waiting for "
	       "a CPU %.1f ms (all vCPUs)\n", (double)total / 1e6, (double)(t1 - t0) / 1e6,
	       (double)(wait1 - wait0) / 1e6);
	print_stats("figures", rs, vm);
	free(stop);
	free(start);
	free(first);
	free(rfirst);
	free(rall);
	teardown(rs, vm);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * speed: how fast the guest loop runs, and how often it exits (not a test)
 */

static int speed(const struct opts *o)
{
	struct rk_config kc = {
		.nvcpus = o->vcpus, .io_shift = o->io_shift, .hlt_every = o->hlt_every,
		.hlt_ns = o->hlt_ns, .window_ns = o->window_ns,
	};
	uint32_t c0[RK_MAX_VCPUS], c1[RK_MAX_VCPUS];
	struct rk_vcpu_stats s0, s1;
	struct timespec ts = { 1, 0 };
	rs_runstate *rs;
	struct rk_vm *vm;
	uint64_t t0, t1, sum = 0;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	rs_start(rs, 0);
	rk_guest_counters(vm, c0);
	rk_vm_stats(vm, &s0);
	t0 = rk_now_ns();
	nanosleep(&ts, NULL);
	t1 = rk_now_ns();
	rk_guest_counters(vm, c1);
	rk_vm_stats(vm, &s1);
	for (unsigned i = 0; i < o->vcpus; i++)
		sum += (uint32_t)(c1[i] - c0[i]);
	printf("speed: %u vCPU(s): %.1f M guest iterations/s in all, %.0f KVM_RUN/s, "
	       "%.0f OUT exits/s\n", o->vcpus, (double)sum * 1e3 / (double)(t1 - t0),
	       (double)(s1.runs - s0.runs) * 1e9 / (double)(t1 - t0),
	       (double)(s1.exits_out - s0.exits_out) * 1e9 / (double)(t1 - t0));
	teardown(rs, vm);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 */

static void usage(void)
{
	fprintf(stderr,
		"usage: test_kvm race|io-complete|exclusion|stuck|figures|speed [--vcpus N]\n"
		"       [--seconds S] [--iters N] [--window-ns NS] [--io-shift S] [--hlt-every N]\n"
		"       [--handshake on|no-ie|clear-late] [--no-complete] [--expect-race]\n"
		"       [--until-kick] [--kind in|out|mmio-read|mmio-write]\n"
		"       [--seed N] [--rekick-us N] [--hlt-us N]\n");
	exit(2);
}

/* An option's value, whole: a number up to max, or a usage error (never
 * its leading digits only). */
static uint64_t num(const char *v, uint64_t max)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || end == v || *end || *v == '-' || x > max)
		usage();
	return x;
}

static double seconds(const char *v)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end || !(x > 0 && x <= 86400))
		usage();
	return x;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.vcpus = 1, .seconds = 2.0, .io_shift = 10, .hlt_every = 0,
		.handshake = RK_HANDSHAKE_ON, .seed = 1, .rekick_ns = 1000000,
	};
	char why[256] = "";
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef RK_TSAN
	printf("SKIP: not under ThreadSanitizer (its deferred signal delivery breaks the "
	       "immediate-exit handshake)\n");
	return SKIP;
#endif
	if (argc < 2)
		usage();
	o.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--no-complete"))
			o.no_complete = true;
		else if (!strcmp(a, "--expect-race"))
			o.expect_race = true;
		else if (!strcmp(a, "--until-kick"))
			o.until_kick = true;
		else if (!v)
			usage();
		else if (!strcmp(a, "--vcpus"))
			o.vcpus = (unsigned)num(v, RK_MAX_VCPUS), i++;
		else if (!strcmp(a, "--seconds"))
			o.seconds = seconds(v), i++;
		else if (!strcmp(a, "--iters"))
			o.iters = num(v, UINT32_MAX), i++;
		else if (!strcmp(a, "--window-ns"))
			o.window_ns = num(v, UINT64_MAX / 2), i++;
		else if (!strcmp(a, "--io-shift"))
			o.io_shift = (unsigned)num(v, 32), i++;
		else if (!strcmp(a, "--hlt-every"))
			o.hlt_every = (unsigned)num(v, UINT32_MAX), i++;
		else if (!strcmp(a, "--seed"))
			o.seed = num(v, UINT64_MAX), i++;
		else if (!strcmp(a, "--hlt-us"))
			o.hlt_ns = num(v, UINT64_MAX / 1000) * 1000, i++;
		else if (!strcmp(a, "--rekick-us"))
			o.rekick_ns = (int64_t)num(v, INT64_MAX / 1000) * 1000, i++;
		else if (!strcmp(a, "--kind")) {
			for (int k = RK_EXIT_OUT; k <= RK_EXIT_MMIO_READ; k++)
				if (!strcmp(v, kind_name(k)))
					o.kind = k;
			if (!o.kind)
				usage();
			i++;
		} else if (!strcmp(a, "--handshake")) {
			if (!strcmp(v, "on"))
				o.handshake = RK_HANDSHAKE_ON;
			else if (!strcmp(v, "no-ie"))
				o.handshake = RK_HANDSHAKE_NO_IE;
			else if (!strcmp(v, "clear-late"))
				o.handshake = RK_HANDSHAKE_CLEAR_LATE;
			else
				usage();
			i++;
		} else
			usage();
	}
	if (o.vcpus < 1 || o.vcpus > RK_MAX_VCPUS || o.io_shift > 32)
		usage();
	rng_state = o.seed * 0x9e3779b97f4a7c15ull + 1;

	r = rk_probe(NULL, why, sizeof(why));
	if (r) {
		printf("SKIP: KVM not usable: %s\n", why);
		return SKIP;
	}
	printf("seed %" PRIu64 "\n", o.seed);
	if (!strcmp(o.mode, "race"))
		return test_race(&o);
	if (!strcmp(o.mode, "io-complete"))
		return test_io_complete(&o);
	if (!strcmp(o.mode, "exclusion"))
		return test_exclusion(&o);
	if (!strcmp(o.mode, "stuck"))
		return test_stuck(&o);
	if (!strcmp(o.mode, "figures"))
		return figures(&o);
	if (!strcmp(o.mode, "speed"))
		return speed(&o);
	usage();
	return 2;
}

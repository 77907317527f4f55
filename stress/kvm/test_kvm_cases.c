/* SPDX-License-Identifier: MIT */
/*
 * test_kvm's tests: race, io-complete, exclusion, stuck (test_kvm.c says
 * what each checks).
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_kvm.h"

/* ---------------------------------------------------------------------------
 * race: stops hammered around guest entry
 */

int test_race(const struct opts *o)
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
	struct rs_stats st = { .size = sizeof(st) };
	struct rk_vcpu_stats ks;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	lat = calloc(max_it, sizeof(*lat));
	if (!lat) {
		fail("out of memory");
		teardown(rs, vm);
		return 1;
	}
	start_guests(rs, vm);

	deadline = rsu_now_ns() + (uint64_t)(o->seconds * 1e9);
	for (it = 0; it < max_it && !failures && rsu_now_ns() < deadline; it++) {
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
			until = rsu_now_ns() + (o->window_ns ? 20000000 : 2000000);
			while (rk_vcpu_entries(vm, j) == e0 && rsu_now_ns() < until)
				__builtin_ia32_pause();
			if (rk_vcpu_entries(vm, j) == e0)
				entry_missed++;
			else
				entry_seen++;
			rsu_spin_ns((int64_t)(rnd() % ((o->until_kick ? 0 : o->window_ns / 2) +
						       50000)));
			break;
		default:
			/* Anywhere: deep in the guest, or in an exit. */
			rsu_spin_ns((int64_t)(rnd() % 100000));
			break;
		}
		t0 = rsu_now_ns();
		r = rs_stop(rs, 2000000000);
		dt = rsu_now_ns() - t0;
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
	until = rsu_now_ns() + 2000000000u;
	while (rs_may_run(c->rs)) {
		if (rsu_now_ns() > until) {
			atomic_fetch_add_explicit(&c->hook_errors, 1, memory_order_relaxed);
			return;
		}
		__builtin_ia32_pause();
	}
}

static bool wait_hit(struct io_ctl *c)
{
	uint64_t until = rsu_now_ns() + 2000000000u;

	while (!atomic_load_explicit(&c->hit, memory_order_acquire)) {
		if (rsu_now_ns() > until)
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

int test_io_complete(const struct opts *o)
{
	static struct io_ctl c;
	struct rk_config kc = {
		.nvcpus = 1, .io_shift = o->io_shift, .hlt_every = 0,
		.no_complete = o->no_complete, .exit_hook = io_hook, .arg = &c,
	};
	static const int kinds[] = {
		RK_EXIT_IN, RK_EXIT_OUT, RK_EXIT_MMIO_READ, RK_EXIT_MMIO_WRITE,
	};
	unsigned long reps = o->iters ? o->iters : 100, it = 0, panics = 0;
	rs_runstate *rs;
	struct rk_vm *vm;
	uint64_t deadline;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	c.rs = rs;
	start_guests(rs, vm);

	deadline = rsu_now_ns() + (uint64_t)(o->seconds * 1e9);
	for (it = 0; it < reps * 4 && !failures && rsu_now_ns() < deadline; it++) {
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
			struct rs_state st = { .size = sizeof(st) };

			atomic_store_explicit(&c.panic, true, memory_order_relaxed);
			atomic_store_explicit(&c.armed, RK_EXIT_IN, memory_order_relaxed);
			if (!wait_hit(&c)) {
				fail("no exit for the panic in 2 s");
				break;
			}
			r = rs_wait(rs, 2000000000);
			rs_decode(rs_word(rs), &st);
			if (r || st.pause != RS_PAUSE_PANICKED) {
				fail("panic from the vCPU thread: wait %s, pause %s",
				     rs_strerror(r), rs_pause_name(st.pause));
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

int test_exclusion(const struct opts *o)
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
	start_guests(rs, vm);
	deadline = rsu_now_ns() + (uint64_t)(o->seconds * 1e9);
	for (it = 0; it < max_it && !failures && rsu_now_ns() < deadline; it++) {
		enum rs_lock l = (enum rs_lock)(rnd() % RS_LOCK_COUNT);
		int r;

		rsu_spin_ns((int64_t)(rnd() % 50000));
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

int test_stuck(const struct opts *o)
{
	static struct stuck_ctl c;
	struct rk_config kc = {
		.nvcpus = 2, .io_shift = o->io_shift, .exit_hook = stuck_hook, .arg = &c,
	};
	struct find_arg fa = { .stuck_idx = -1 };
	char line[200], dump[4096];
	rs_runstate *rs;
	struct rk_vm *vm;
	uint64_t until;
	int r;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	fa.vm = vm;
	start_guests(rs, vm);
	atomic_store(&c.armed, true);
	until = rsu_now_ns() + 2000000000u;
	while (!atomic_load(&c.inside) && rsu_now_ns() < until)
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
	until = rsu_now_ns() + 2000000000u;
	do {
		struct timespec ts = { 0, 1000000 };

		fa.active = 0;
		fa.stuck_idx = -1;
		rs_vcpu_foreach(rs, find_stuck, &fa);
		if (fa.active <= 1)
			break;
		nanosleep(&ts, NULL);
	} while (rsu_now_ns() < until);
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

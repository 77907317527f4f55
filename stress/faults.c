/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: the library's ops table, fault injection and counting
 * (docs/stress.md, "Faults").
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "stress.h"

/* Hooks run on whatever thread the library runs on: each such thread gets
 * a stream of its own the first time. */
static _Thread_local struct rsu_rng hook_rng_state;
static _Thread_local bool hook_rng_ready;

struct rsu_rng *hook_rng(void)
{
	if (!hook_rng_ready) {
		hook_rng_state = rng_for(0x100000 + atomic_fetch_add(&ctx.hook_streams, 1));
		hook_rng_ready = true;
	}
	return &hook_rng_state;
}

static int hook_futex_wait(void *opaque, uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	struct rsu_rng *r = hook_rng();
	int err;

	(void)opaque;
	if (rsu_rng_chance(r, ctx.cfg.fault_rate)) {
		INC(ctx.stats.inj_spurious);
		return 0;               /* a spurious wake-up */
	}
	if (rsu_rng_chance(r, ctx.cfg.fault_rate)) {
		INC(ctx.stats.inj_eintr);
		return -EINTR;
	}
	if (is_park_addr(addr))
		INC(ctx.stats.parks);
	else
		INC(ctx.stats.futex_waits);
	err = rsu_futex_wait(addr, val, timeout_ns);
	if (err == 0 && rsu_rng_chance(r, ctx.cfg.fault_rate)) {
		/* Descheduled right after the wake-up: whatever the waker
		 * handed over waits for us meanwhile. */
		INC(ctx.stats.inj_late_wake);
		rsu_sleep_ns(rsu_rng_range(r, 200 * US, 2 * MS));
	}
	return err;
}

static int hook_futex_wake(void *opaque, uint32_t *addr, int n)
{
	(void)opaque;
	INC(ctx.stats.futex_wakes);
	return rsu_futex_wake(addr, n);
}

static void hook_delay(void *opaque, const char *point)
{
	struct rsu_rng *r = hook_rng();
	bool focus = ctx.cfg.delay_point && !strcmp(point, ctx.cfg.delay_point);

	(void)opaque;
	if (!rsu_rng_chance(r, focus ? 0.5 : ctx.cfg.delay_rate))
		return;
	INC(ctx.stats.delays);
	switch (rsu_rng_below(r, 4)) {
	case 0:
		rsu_spin_ns(rsu_rng_range(r, 0, focus ? 200 * US : 20 * US));
		break;
	case 1:
		rsu_sleep_ns(rsu_rng_range(r, 10 * US, focus ? 300 * US : 100 * US));
		break;
	case 2:
		sched_yield();
		break;
	default:
		for (int i = (int)rsu_rng_below(r, 500); i > 0; i--)
			rsu_cpu_relax();
	}
}

const struct rs_ops stress_ops = {
	.futex_wait = hook_futex_wait,
	.futex_wake = hook_futex_wake,
	.delay = hook_delay,
};

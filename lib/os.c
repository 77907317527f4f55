/* SPDX-License-Identifier: MIT */
/*
 * The operating-system seam: futex, clock, and a small futex mutex built on
 * them.  Everything that sleeps or wakes goes through ri->os.ops so tests
 * can count system calls and inject spurious wake-ups and EINTR.
 */

#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "instance.h"

void rs_fatal(const char *what, int err)
{
	fprintf(stderr, "runstate: fatal: %s: %s\n", what, strerror(err < 0 ? -err : err));
	abort();
}

static int sys_futex_wait(void *ctx, uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;

	(void)ctx;
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}
	if (syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0) == 0)
		return 0;
	return -errno;
}

static int sys_futex_wake(void *ctx, uint32_t *addr, int n)
{
	long r;

	(void)ctx;
	r = syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
	return r < 0 ? -errno : (int)r;
}

static uint64_t sys_now_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#ifdef RS_DELAY_POINTS
/*
 * Default for builds with delay points: at one point in eight, yield or
 * spin a random short while, so the racy windows really open up.  A
 * thread-local xorshift keeps it cheap and free of shared state.
 */
static void default_delay(void *ctx, const char *point)
{
	static _Thread_local uint32_t seed;
	uint32_t x;

	(void)ctx;
	(void)point;
	if (!seed)
		seed = (uint32_t)(uintptr_t)&seed | 1;
	x = seed;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	seed = x;
	if (x % 8)
		return;
	if (x & 0x100) {
		sched_yield();
	} else {
		for (uint32_t i = (x >> 12) % 2000; i; i--)
			rs_cpu_relax();
	}
}
#endif

void rs_os_init(struct rs_instance *ri, const struct rs_ops *src)
{
	struct rs_ops *dst = &ri->os.ops;

	memset(dst, 0, sizeof(*dst));
	if (src)
		*dst = *src;
	if (!dst->futex_wait)
		dst->futex_wait = sys_futex_wait;
	if (!dst->futex_wake)
		dst->futex_wake = sys_futex_wake;
	if (!dst->now_ns)
		dst->now_ns = sys_now_ns;
#ifdef RS_DELAY_POINTS
	if (!dst->delay)
		dst->delay = default_delay;
#endif
}

#ifdef RS_DELAY_POINTS
void rs_delay(struct rs_instance *ri, const char *name)
{
	if (ri->os.ops.delay)
		ri->os.ops.delay(ri->os.ops.ctx, name);
}
#endif

/*
 * Futex discipline: 0 may be spurious, -EAGAIN means the value changed,
 * -EINTR means retry, -ETIMEDOUT is the caller's business; callers always
 * re-load and re-check.  Anything else is a bug in the library.
 */
int rs_futex_wait(struct rs_instance *ri, _Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	int r;

	RS_COST_ADD(&ri->cost, RS_COST_FUTEX_WAITS, 1);
	r = ri->os.ops.futex_wait(ri->os.ops.ctx, (uint32_t *)addr, val, timeout_ns);
	if (r == 0 || r == -EAGAIN || r == -EINTR || r == -ETIMEDOUT)
		return r;
	rs_fatal("futex wait", r);
}

void rs_futex_wake(struct rs_instance *ri, _Atomic uint32_t *addr, int n)
{
	int r;

	RS_COST_ADD(&ri->cost, RS_COST_FUTEX_WAKES, 1);
	r = ri->os.ops.futex_wake(ri->os.ops.ctx, (uint32_t *)addr, n);
	if (r < 0)
		rs_fatal("futex wake", r);
}

int rs_this_cpu(void)
{
	return sched_getcpu();
}

RS_HOT uint64_t rs_now(struct rs_instance *ri)
{
	return ri->os.ops.now_ns(ri->os.ops.ctx);
}

uint64_t rs_deadline(struct rs_instance *ri, int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return UINT64_MAX;
	return rs_now(ri) + (uint64_t)timeout_ns;
}

/* Time left before deadline, -1 for none, 0 when it has passed. */
int64_t rs_remaining(struct rs_instance *ri, uint64_t deadline)
{
	uint64_t now;

	if (deadline == UINT64_MAX)
		return -1;
	now = rs_now(ri);
	return now >= deadline ? 0 : (int64_t)(deadline - now);
}

/*
 * The futex mutex of Drepper's "Futexes are tricky" (the third version),
 * written here for the two internal slow-path locks.  Acquire on lock pairs
 * with the release in rs_mutex_unlock(): what one holder wrote, the next
 * holder sees.
 */
bool rs_mutex_trylock(_Atomic uint32_t *m)
{
	uint32_t c = 0;

	/* seq_cst on failure too: the failed CAS is the helper's read of
	 * "held" in the single total order that rs_settle_help()'s "unlock,
	 * then re-check" argument uses (protocol.md P7). */
	return atomic_compare_exchange_strong_explicit(m, &c, 1, memory_order_seq_cst,
						       memory_order_seq_cst);
}

int rs_mutex_lock(struct rs_instance *ri, _Atomic uint32_t *m, uint64_t deadline)
{
	uint32_t c = 0;

	if (atomic_compare_exchange_strong_explicit(m, &c, 1, memory_order_seq_cst,
						    memory_order_relaxed))
		return 0;
	for (int spin = 0; spin < 100; spin++) {
		rs_cpu_relax();
		c = 0;
		if (atomic_compare_exchange_weak_explicit(m, &c, 1, memory_order_seq_cst,
							  memory_order_relaxed))
			return 0;
	}
	if (c != 2)
		c = atomic_exchange_explicit(m, 2, memory_order_seq_cst);
	while (c != 0) {
		int64_t left = rs_remaining(ri, deadline);

		if (left == 0)
			return RS_ETIMEDOUT;
		rs_futex_wait(ri, m, 2, left);
		c = atomic_exchange_explicit(m, 2, memory_order_seq_cst);
	}
	return 0;
}

void rs_mutex_unlock(struct rs_instance *ri, _Atomic uint32_t *m)
{
	/* seq_cst: the settle mutex's "unlock, then re-check" argument in
	 * settle.c needs the unlock in the single total order. */
	if (atomic_exchange_explicit(m, 0, memory_order_seq_cst) == 2)
		rs_futex_wake(ri, m, 1);
}

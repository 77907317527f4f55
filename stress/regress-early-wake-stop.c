/* SPDX-License-Identifier: MIT */
/*
 * Found in review of the early wake (lib/runstate.c, wake_early()).
 *
 * A start with parked vCPUs clears RS_W_PARKED and wakes them before
 * settling.  As first written, a second CAS after the start's cleared
 * RS_W_PARKED in a loop "while the word has RS_W_PARKED": if the starter
 * was descheduled between the two, and a stop came and settled meanwhile,
 * the loop's failed CAS reloaded the stopped word, cleared RS_W_PARKED on it
 * and woke every parked vCPU, all of which went back to sleep.  No wake-up
 * was lost, but a change that leaves the VM stopped must wake nobody
 * (docs/protocol.md).  Now the start's own CAS clears RS_W_PARKED, decided
 * anew for each attempt on the word it replaces, so the same race is a start
 * whose CAS loses to another change, and recomputes.
 *
 * The test holds that window open from the "early-wake" delay point (a copy
 * of the library with delay points): the starter has decided to wake early
 * and waits there, before its CAS, while the main thread takes the savevm
 * lock asynchronously.  The starter's CAS then fails; on the locked word
 * its start makes no start edge, so it must leave RS_W_PARKED set and wake
 * nobody.  The unlock then starts the VM and the vCPU must run.  Exit 0:
 * correct.  1: the vCPU was woken while the VM stayed stopped, or not woken
 * by the unlock.  2: setup failure.  77: the early wake is off here (one
 * CPU), so there is nothing to test.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runstate-testing.h"
#include "rsutil.h"

static rs_runstate *rs;
static sem_t in_window, go_on;
static _Atomic bool armed, quit;
static _Atomic long waits, wakes;
static pthread_t starter_thread;

/* The futex calls, counted. */
static int fwait(void *ctx, uint32_t *addr, uint32_t val, int64_t ns)
{
	(void)ctx;
	atomic_fetch_add(&waits, 1);
	return rsu_futex_wait(addr, val, ns);
}

static int fwake(void *ctx, uint32_t *addr, int n)
{
	(void)ctx;
	atomic_fetch_add(&wakes, 1);
	return rsu_futex_wake(addr, n);
}

static void delay(void *ctx, const char *point)
{
	(void)ctx;
	if (strcmp(point, "early-wake") || !pthread_equal(pthread_self(), starter_thread) ||
	    !atomic_exchange(&armed, false))
		return;
	sem_post(&in_window);
	sem_wait(&go_on);
}

static void *vcpu(void *arg)
{
	rs_vcpu *v = arg;

	if (rs_vcpu_register(rs, v, NULL, NULL))
		return NULL;
	while (rs_vcpu_enter(v) == 0) {
		while (rs_may_run(rs) && !atomic_load(&quit))
			;
		if (atomic_load(&quit))
			break;
	}
	rs_vcpu_unregister(v);
	return NULL;
}

static void *starter(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)rs_start(rs, 0);
}

static void sleep_ms(int ms)
{
	rsu_sleep_ns((int64_t)ms * 1000000);
}

int main(void)
{
	struct rs_ops ops = { .futex_wait = fwait, .futex_wake = fwake, .delay = delay };
	static _Alignas(64) rs_vcpu v;
	pthread_t vt;
	void *ret;
	long w0, k0, w1, k1;
	int bad = 0;

	/* The library counts the CPUs in the affinity mask. */
	if (rsu_ncpus() < 2) {
		printf("SKIP: one usable CPU, the early wake is off\n");
		return 77;
	}
	if (rs_create_ops(NULL, &ops, &rs) || sem_init(&in_window, 0, 0) || sem_init(&go_on, 0, 0))
		return 2;
	pthread_create(&vt, NULL, vcpu, &v);
	/* Prelaunch: the vCPU parks. */
	for (int i = 0; i < 2000 && !(rs_word(rs) & RS_W_PARKED); i++)
		sleep_ms(1);
	if (!(rs_word(rs) & RS_W_PARKED))
		return 2;
	sleep_ms(20);

	atomic_store(&armed, true);
	pthread_create(&starter_thread, NULL, starter, NULL);
	/* The starter decided to wake early and waits before its CAS. */
	{
		struct timespec dl;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 10;
		if (sem_timedwait(&in_window, &dl)) {
			printf("FAIL: the start did not take the early wake within 10 s\n");
			return 1;
		}
	}
	if (rs_lock(rs, RS_LOCK_SAVEVM, RS_ASYNC))
		return 2;
	w0 = atomic_load(&waits);
	k0 = atomic_load(&wakes);
	sem_post(&go_on);
	pthread_join(starter_thread, &ret);
	if ((intptr_t)ret != 0)
		return 2;
	sleep_ms(20);
	w1 = atomic_load(&waits);
	k1 = atomic_load(&wakes);
	if (!(rs_word(rs) & RS_W_STOPPED_MASK)) {
		printf("FAIL: the VM runs with the savevm lock held\n");
		bad = 1;
	}
	if (!(rs_word(rs) & RS_W_PARKED)) {
		printf("FAIL: RS_W_PARKED cleared on a stopped word (word %#llx)\n",
		       (unsigned long long)rs_word(rs));
		bad = 1;
	}
	if (k1 != k0 || w1 != w0) {
		printf("FAIL: a start that made no start edge woke the parked vCPU "
		       "(%ld wakes, %ld re-parks)\n", k1 - k0, w1 - w0);
		bad = 1;
	}
	/* The unlock makes the start edge: the vCPU must run. */
	if (rs_unlock(rs, RS_LOCK_SAVEVM))
		return 2;
	for (int i = 0; i < 2000 && (rs_word(rs) & RS_W_PARKED); i++)
		sleep_ms(1);
	if (rs_word(rs) & (RS_W_PARKED | RS_W_STOPPED_MASK)) {
		printf("FAIL: the vCPU was not woken by the unlock (word %#llx)\n",
		       (unsigned long long)rs_word(rs));
		bad = 1;
	}

	atomic_store(&quit, true);
	rs_start(rs, 0);
	rs_vcpu_request(&v, RS_REQ_EXIT);
	pthread_join(vt, NULL);
	rs_destroy(rs);
	if (!bad)
		printf("ok: a start that lost its CAS to a lock woke nobody\n");
	return bad;
}

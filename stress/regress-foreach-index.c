/* SPDX-License-Identifier: MIT */
/*
 * Found by runstate-stress under ThreadSanitizer: its listeners call
 * rs_vcpu_count() while vCPUs are hot-plugged.
 *
 * rs_vcpu_register() publishes the vCPU in its registry slot with a CAS
 * and only afterwards stores v->slot, with a plain write.  The scanners,
 * rs_vcpu_foreach() and rs_vcpu_count() (info_one() in lib/vcpu.c), find
 * the vCPU through the slot and read v->slot with no happens-before.  That
 * is a data race (undefined behaviour, and what TSan reported), and
 * rs_vcpu_info.index can be 0 (left by the registration's memset) for a
 * vCPU that sits in another slot.  rs_vcpu_request() is not affected: it
 * reads v->slot only after v->registered, which is stored with release
 * after v->slot.
 *
 * The scanners visit the slots below the high-water mark, which a
 * registration raises after storing v->slot: the race is with a
 * registration that reuses a slot, as vCPU hot-plug does.
 *
 * The window is a few instructions wide.  This test holds it open
 * deterministically.  The library copy it links has delay points.  At the
 * "register" point, the last one before the slot search, the test makes
 * the page holding the registering vCPU read-only.  The next store to the
 * vCPU faults.  The SIGSEGV handler, on the registering thread, has a
 * scanner thread run rs_vcpu_foreach() at that moment, then makes the page
 * writable again and returns, and the store is retried.  With the bug,
 * that store is v->slot = 1, made after the CAS.  The scanner finds the
 * vCPU in slot 1 (freed by an earlier vCPU), reporting index 0.  Fixed (the slot stored before the
 * CAS publishes the vCPU), the scanner does not find it yet, or finds it
 * with index 1.
 *
 * Exit 0: every index reported is the vCPU's slot (correct).
 * Exit 1: a wrong index (the bug).  Exit 2: setup failure.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runstate-testing.h"

static rs_runstate *rs;
static rs_vcpu v0;                 /* slot 0, on its own thread */
static rs_vcpu *v1;                /* alone on its page */
static size_t page;
static sem_t v0_up, v0_go, scan_go, scan_done;
static _Atomic bool armed;
static _Atomic int faults, found, bad_index = -1;
static pthread_t reg_thread;

static void delay(void *ctx, const char *point)
{
	(void)ctx;
	if (strcmp(point, "register") || !pthread_equal(pthread_self(), reg_thread) ||
	    !atomic_exchange(&armed, false))
		return;
	/* Every store to v1 from here on faults, once. */
	if (mprotect(v1, page, PROT_READ))
		perror("mprotect");
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr, b = (uintptr_t)v1;

	(void)uc;
	if (a < b || a >= b + page) {
		/* Not ours: die as usual. */
		signal(sig, SIG_DFL);
		return;
	}
	atomic_fetch_add(&faults, 1);
	/* Let the scanner look now, in the middle of the registration. */
	sem_post(&scan_go);
	while (sem_wait(&scan_done))
		;
	mprotect(v1, page, PROT_READ | PROT_WRITE);
}

static void look(const struct rs_vcpu_info *info, void *arg)
{
	(void)arg;
	if (info->vcpu != v1)
		return;
	atomic_fetch_add(&found, 1);
	if (info->index != 1)
		atomic_store(&bad_index, (int)info->index);
}

static void *scanner(void *arg)
{
	(void)arg;
	while (sem_wait(&scan_go))
		;
	rs_vcpu_foreach(rs, look, NULL);
	sem_post(&scan_done);
	return NULL;
}

static void kick(rs_vcpu *v, void *opaque)
{
	(void)v;
	(void)opaque;
}

/* A vCPU that comes and goes in slot 1: the high-water mark covers it. */
static void *vcpu_gone(void *arg)
{
	rs_vcpu tmp;

	(void)arg;
	if (rs_vcpu_register(rs, &tmp, kick, NULL))
		return (void *)1;
	rs_vcpu_unregister(&tmp);
	return NULL;
}

static void *vcpu0(void *arg)
{
	(void)arg;
	if (rs_vcpu_register(rs, &v0, kick, NULL))
		return (void *)1;
	sem_post(&v0_up);
	while (sem_wait(&v0_go))
		;
	rs_vcpu_unregister(&v0);
	return NULL;
}

int main(void)
{
	static const struct rs_ops ops = { .delay = delay };
	struct sigaction sa;
	pthread_t t0, t1, ts;
	void *ret = NULL;
	int r, seen;

	page = (size_t)sysconf(_SC_PAGESIZE);
	v1 = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v1 == MAP_FAILED || rs_create_ops(NULL, &ops, &rs))
		return 2;
	sem_init(&v0_up, 0, 0);
	sem_init(&v0_go, 0, 0);
	sem_init(&scan_go, 0, 0);
	sem_init(&scan_done, 0, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);

	/* Slot 0 taken and slot 1 used before, so v1 goes to slot 1, below
	 * the high-water mark (and index 0 is wrong for it). */
	pthread_create(&t0, NULL, vcpu0, NULL);
	while (sem_wait(&v0_up))
		;
	pthread_create(&t1, NULL, vcpu_gone, NULL);
	pthread_join(t1, &ret);
	if (ret)
		return 2;
	pthread_create(&ts, NULL, scanner, NULL);

	reg_thread = pthread_self();
	atomic_store(&armed, true);
	r = rs_vcpu_register(rs, v1, kick, NULL);
	if (r) {
		fprintf(stderr, "rs_vcpu_register: %s\n", rs_strerror(r));
		return 2;
	}
	if (!atomic_load(&faults)) {
		/* No store to the vCPU after the delay point: nothing to
		 * look at in the middle (the scanner still runs once). */
		sem_post(&scan_go);
		while (sem_wait(&scan_done))
			;
	}
	pthread_join(ts, NULL);
	seen = atomic_load(&found);
	printf("the scanner ran inside the registration: %s; it %s the vCPU%s\n",
	       atomic_load(&faults) ? "yes" : "no (nothing stored after the delay point)",
	       seen ? "found" : "did not find", seen ? "" : " (not published yet)");
	/* And once registered, of course. */
	rs_vcpu_foreach(rs, look, NULL);

	rs_vcpu_unregister(v1);
	sem_post(&v0_go);
	pthread_join(t0, NULL);
	rs_destroy(rs);
	if (atomic_load(&bad_index) >= 0) {
		printf("BUG: rs_vcpu_foreach() reported index %d for the vCPU in slot 1\n",
		       atomic_load(&bad_index));
		return 1;
	}
	printf("ok: every index reported was the vCPU's slot\n");
	return 0;
}

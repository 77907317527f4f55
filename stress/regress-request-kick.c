/* SPDX-License-Identifier: MIT */
/*
 * Found by runstate-stress (the "kick" check): rs_vcpu_request() can run the
 * kick callback after rs_vcpu_unregister() returned.
 *
 * runstate.h says a kick callback "is never called after
 * rs_vcpu_unregister() returned", and docs/protocol.md section 7 says no
 * kick callback runs then.  Scanners pin the registry slot around the
 * callback, so unregistration waits for them; rs_vcpu_request() does not.
 * The request's own EXIT lets the vCPU unregister while the requester is
 * still inside the callback.
 *
 * The callback sleeps 20 ms (a slow pthread_kill, a preempted kicker), then
 * looks at whether the vCPU's unregistration has already returned.
 * Exit 0: it had not (correct).  Exit 1: it had (the bug).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "runstate.h"
#include "rsutil.h"

#define MS ((int64_t)1000000)

static rs_runstate *rs;
static rs_vcpu vcpu;
static _Atomic int entered, unregistered, late, calls;

static void kick(rs_vcpu *v, void *opaque)
{
	(void)v;
	(void)opaque;
	atomic_fetch_add(&calls, 1);
	rsu_sleep_ns(20 * MS);
	if (atomic_load(&unregistered))
		atomic_store(&late, 1);
}

static void *vcpu_main(void *arg)
{
	(void)arg;
	if (rs_vcpu_register(rs, &vcpu, kick, NULL))
		return NULL;
	/* A TCG-like loop: back to rs_vcpu_enter() after every short slice;
	 * RS_VCPU_EXIT ends it. */
	while (rs_vcpu_enter(&vcpu) == 0)
		atomic_store(&entered, 1);
	rs_vcpu_unregister(&vcpu);
	atomic_store(&unregistered, 1);
	return NULL;
}

int main(void)
{
	pthread_t t;

	if (rs_create(NULL, &rs) || rs_start(rs, 0) || rs_wait(rs, RS_FOREVER))
		return 2;
	pthread_create(&t, NULL, vcpu_main, NULL);
	while (!atomic_load(&entered))
		rsu_sleep_ns(1 * MS);
	/* The vCPU is active: the request kicks it. */
	rs_vcpu_request(&vcpu, RS_REQ_EXIT);
	pthread_join(t, NULL);
	rs_destroy(rs);
	printf("regress-request-kick: %d kick call(s); callback still running after "
	       "rs_vcpu_unregister() returned: %s\n",
	       atomic_load(&calls), atomic_load(&late) ? "YES (bug)" : "no");
	return atomic_load(&late) ? 1 : 0;
}

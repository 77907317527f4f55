/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: races stop/start/cont/retry, internal lock holders,
 * device errors, vCPU-raised panics and vCPU hot-plug against each other
 * for --duration seconds, with vCPU threads running guest slices through
 * the real fast path, and checks all along:
 *
 *   exclusion        no guest slice while a lock returned by rs_lock is held
 *   stop             a stopping call that returned 0 left no vCPU in guest
 *   liveness         while the VM is runnable, every vCPU makes progress;
 *                    no thread stays in one operation for --hang-ms
 *   linearizability  every result is explained by some real-time-consistent
 *                    order under rs_transition() (lincheck.c)
 *   events           STOP/RESUME alternate and number the edges, for three
 *                    readers: polling, rs_events_wait() and the eventfd
 *   listener         each edge's listeners run once, in edge and priority
 *                    order, never overlapping, with every vCPU out (stop)
 *                    or none in yet (start); removal is final
 *   section          (--exclusive) during an exclusive section no vCPU but
 *                    the owner's runs guest code, the owner's does, one
 *                    holder at a time, and the section changes nothing
 *   kick             no kick callback after rs_vcpu_unregister() returned
 *   result, word, final   results outside the contract, edge parity, and
 *                    the state after the run
 *
 * With --kvm the vCPUs are real KVM vCPUs (stress/kvm): the checks read the
 * guests' counters from guest memory and the module's in-KVM_RUN flags.
 *
 * Faults go through the library's ops table and delay points.  Every
 * violation prints the seed and the configuration to replay it.  The
 * checks, faults and figures are described in docs/stress.md; stress.h
 * says which file holds what.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

struct stress ctx = {
	.argv0 = "runstate-stress",
	.vfirst = -1,
	.excl_holder = -1,
	.report_lock = PTHREAD_MUTEX_INITIALIZER,
	.gate = {
		.m = PTHREAD_MUTEX_INITIALIZER,
		.open_cv = PTHREAD_COND_INITIALIZER,
		.drained_cv = PTHREAD_COND_INITIALIZER,
	},
	.l.pool_m = PTHREAD_MUTEX_INITIALIZER,
};

/* ---------------------------------------------------------------------------
 * Threads
 */

/* Stream `stream` of the run's seed. */
struct rsu_rng rng_for(uint64_t stream)
{
	return rsu_rng_stream(ctx.cfg.seed, stream);
}

static const char *thread_name(unsigned i)
{
	return (int)i < ctx.nthr ? ctx.thr[i].name : "?";
}

void set_op(struct thr *t, const char *op)
{
	atomic_store_explicit(&t->since, rsu_now_ns(), memory_order_relaxed);
	atomic_store_explicit(&t->op, op, memory_order_release);
}

/* Names are set once, before any thread starts (the watchdog reads them). */
static void thr_name(int i, bool vcpu, const char *fmt, int n)
{
	snprintf(ctx.thr[i].name, sizeof(ctx.thr[i].name), fmt, n);
	ctx.thr[i].vcpu = vcpu;
}

struct thr *thr_claim(int i)
{
	struct thr *t = &ctx.thr[i];

	/* A fresh stream per claim: vCPU slots are reused by hot-plug. */
	t->rng = rng_for((uint64_t)i + 1 + (atomic_fetch_add(&ctx.claims, 1) << 20));
	set_op(t, "start");
	atomic_store_explicit(&t->used, true, memory_order_release);
	return t;
}

void thr_release(struct thr *t)
{
	set_op(t, NULL);
	atomic_store_explicit(&t->used, false, memory_order_release);
}

/* The thread table, the vCPU slots and the listener records. */
static int alloc_tables(int nroles)
{
	ctx.nslots = ctx.cfg.vcpus + ctx.cfg.hotplug_extra + 1;
	if (ctx.nslots > MAX_VCPU_SLOTS)
		ctx.nslots = MAX_VCPU_SLOTS;
	if (ctx.cfg.kvm && ctx.nslots > (int)kvm_max_vcpus())
		ctx.nslots = (int)kvm_max_vcpus();
	ctx.thr_vcpu0 = THR_ROLES + nroles;
	ctx.nthr = ctx.thr_vcpu0 + ctx.nslots;
	ctx.thr = calloc((size_t)ctx.nthr, sizeof(*ctx.thr));
	ctx.vcpus = aligned_alloc(64, (size_t)ctx.nslots * sizeof(*ctx.vcpus));
	ctx.l.recs = calloc(LREC_MAX, sizeof(*ctx.l.recs));
	if (!ctx.thr || !ctx.vcpus || !ctx.l.recs)
		return -1;
	memset(ctx.vcpus, 0, (size_t)ctx.nslots * sizeof(*ctx.vcpus));
	for (int i = 0; i < ctx.nslots; i++)
		ctx.vcpus[i].index = i;

	thr_name(THR_MAIN, false, "main", 0);
	thr_name(THR_MONITOR, false, "monitor", 0);
	thr_name(THR_CHECKER, false, "checker", 0);
	thr_name(THR_HOTPLUG, false, "hotplug", 0);
	thr_name(THR_CHURN, false, "churn", 0);
	thr_name(THR_EVWAIT, false, "evwait", 0);
	thr_name(THR_EVFD, false, "evfd", 0);
	thr_name(THR_LISTENER, false, "listener", 0);
	for (int i = 0; i < nroles; i++) {
		if (i < ctx.cfg.mgmt)
			thr_name(THR_ROLES + i, false, "mgmt%d", i);
		else if (i < ctx.cfg.mgmt + ctx.cfg.holders)
			thr_name(THR_ROLES + i, false, "holder%d", i - ctx.cfg.mgmt);
		else if (i < ctx.cfg.mgmt + ctx.cfg.holders + ctx.cfg.devices)
			thr_name(THR_ROLES + i, false, "device%d",
				 i - ctx.cfg.mgmt - ctx.cfg.holders);
		else
			thr_name(THR_ROLES + i, false, "excl%d",
				 i - ctx.cfg.mgmt - ctx.cfg.holders - ctx.cfg.devices);
	}
	for (int i = 0; i < ctx.nslots; i++)
		thr_name(ctx.thr_vcpu0 + i, true, "vcpu%d", i);
	lin_thread_name = thread_name;
	return 0;
}

/* The instance, with the harness's ops table. */
static int create_instance(void)
{
	struct rs_config rcfg = { .size = sizeof(rcfg) };
	int r;

	rcfg.rekick_ns = ctx.cfg.rekick_ns;
	rcfg.event_capacity = ctx.cfg.events;
	rcfg.max_backlog = ctx.cfg.backlog;
	rcfg.max_vcpus = (unsigned)ctx.nslots;
	r = rs_create_ops(&rcfg, &stress_ops, &ctx.rs);
	if (r)
		fprintf(stderr, "%s: rs_create: %s\n", ctx.argv0, rs_strerror(r));
	return r;
}

static void print_banner(void)
{
	const struct config *cfg = &ctx.cfg;

	printf("runstate-stress: seed %" PRIu64 ", %g s, %d %svcpus, kick %s%s\n", cfg->seed,
	       cfg->duration, cfg->vcpus, cfg->kvm ? "KVM " : "",
	       cfg->kvm ? "signal + immediate_exit" : cfg->kick_signal ? "signal" : "futex",
#if defined(STRESS_TSAN)
	       " (ThreadSanitizer)"
#elif defined(STRESS_ASAN)
	       " (AddressSanitizer)"
#else
	       ""
#endif
	);
}

/* ---------------------------------------------------------------------------
 * After the run
 */

/* Let vCPUs parked inside synchronous calls return, then stop with every
 * vCPU still registered and check that stop once more; unplug them all.
 * The section threads are joined once the VM runs: one may wait for a
 * section behind a vCPU owner parked while the VM was stopped. */
static void teardown_vcpus(struct thr *me, pthread_t *excl, int nexcl)
{
	uint64_t w;
	int r;

	set_op(me, "teardown: cont");
	do_read(me, false);
	w = rs_word(ctx.rs);
	if (rs_pause_rank((int)rsu_pause(w)) == 4)
		do_releasing(me, LIN_RESET, 0);
	do_releasing(me, LIN_CONT, 0);
	set_op(me, "teardown: wait");
	r = rs_wait(ctx.rs, RS_FOREVER);
	if (r)
		bad_result("rs_wait(FOREVER) at teardown", r);
	set_op(me, "join section threads");
	for (int i = 0; i < nexcl; i++)
		pthread_join(excl[i], NULL);
	set_op(me, "teardown: stop");
	do_stopping(me, LIN_STOP, 0, RS_FOREVER, "final rs_stop");
	for (int i = 0; i < ctx.nslots; i++)
		if (atomic_load(&ctx.vcpus[i].life) == VL_REGISTERED)
			unplug(me, &ctx.vcpus[i]);
}

/* Final state: nothing registered, settled, no lock, events whole, and
 * the library's counters match the harness's. */
static void final_checks(void)
{
	uint64_t w, kicks;
	unsigned reg = 0, out = 0;

	read_events();
	w = rs_word(ctx.rs);
	check_word(w, "final");
	rs_vcpu_count(ctx.rs, &reg, &out);
	if (reg)
		violation(V_FINAL, "%u vCPUs still registered after every unplug", reg);
	kicks = ctx.cfg.kvm ? kvm_final_kicks() : atomic_load(&ctx.stats.kicks);
	ctx.lstats.size = sizeof(ctx.lstats);
	if (rs_get_stats(ctx.rs, &ctx.lstats) == 0) {
		/* Every kick() the library counts calls our callback once. */
		if (ctx.lstats.kicks != kicks)
			violation(V_FINAL, "library counted %" PRIu64 " kicks, the callback ran %"
					   PRIu64 " times", ctx.lstats.kicks, kicks);
		/* Every listener call the library counts reached us once. */
		if (ctx.lstats.listener_runs != atomic_load(&ctx.stats.l_calls))
			violation(V_LISTENER, "library counted %" PRIu64 " listener runs, the "
					      "listeners ran %" PRIu64 " times",
				  ctx.lstats.listener_runs, atomic_load(&ctx.stats.l_calls));
	} else {
		violation(V_FINAL, "rs_get_stats failed");
	}
	if (w & (RS_W_SETTLING_MASK | RS_W_LOCKWAIT | RS_W_LOCKS))
		violation(V_FINAL, "final word 0x%016" PRIx64 " still has settling, lock-wait or a "
				   "lock bit", w);
	final_reader(&ctx.mon_reader, w);
	final_reader(&ctx.ew_reader, w);
	final_reader(&ctx.ef_reader, w);
	excl_final(w);
	atomic_store(&ctx.stats.last_seq, ctx.mon_reader.last_seq);
}

/* ---------------------------------------------------------------------------
 * main
 */

int main(int argc, char **argv)
{
	pthread_t *th, mon, chk, hp, churn, evw, evf;
	struct thr *me;
	int nroles, ncallers, r;
	uint64_t deadline;
	double elapsed;

	ctx.argv0 = argv[0];
	parse_args(argc, argv);

	if (ctx.cfg.kvm) {
		r = kvm_probe();
		if (r)
			return r;
	} else {
		/* (KVM vCPUs: rk_vm_create() installs the module's handler.) */
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_kick_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(KICK_SIGNAL, &sa, NULL);
	}

	ncallers = ctx.cfg.mgmt + ctx.cfg.holders + ctx.cfg.devices;
	nroles = ncallers + ctx.cfg.excl_threads;
	th = calloc((size_t)nroles, sizeof(*th));
	if (!th || alloc_tables(nroles)) {
		fprintf(stderr, "%s: out of memory\n", ctx.argv0);
		return 2;
	}
	ctx.t0 = rsu_now_ns();
	me = thr_claim(THR_MAIN);
	thr_claim(THR_MONITOR);
	thr_claim(THR_CHECKER);
	thr_claim(THR_HOTPLUG);
	thr_claim(THR_EVWAIT);
	thr_claim(THR_EVFD);
	if (ctx.cfg.listeners)
		thr_claim(THR_CHURN);

	if (create_instance())
		return 2;
	if (ctx.cfg.kvm && kvm_setup())
		return 2;
	if (checker_init()) {
		fprintf(stderr, "%s: out of memory\n", ctx.argv0);
		return 2;
	}
	evr_init(&ctx.mon_reader, "monitor", rs_events_cursor(ctx.rs), &ctx.stats.events,
		 &ctx.stats.events_lost);
	evr_init(&ctx.ew_reader, "rs_events_wait reader", 1, &ctx.stats.ew_events,
		 &ctx.stats.ew_lost);
	evr_init(&ctx.ef_reader, "eventfd reader", 1, &ctx.stats.ef_events, &ctx.stats.ef_lost);

	/* The persistent listeners, before the first edge: priorities -50, 0
	 * and 50 (ties with each other and with the others). */
	for (int i = 0; i < ctx.cfg.listeners; i++)
		if (listener_add(false, 0, (i % 3 - 1) * 50, true) < 0) {
			fprintf(stderr, "%s: cannot add listeners\n", ctx.argv0);
			return 2;
		}

	if (!ctx.cfg.quiet && !ctx.cfg.json)
		print_banner();
	fflush(stdout);

	for (int i = 0; i < ctx.cfg.vcpus; i++)
		if (plug(me, &me->rng) < 0) {
			fprintf(stderr, "%s: cannot start vCPU threads\n", ctx.argv0);
			return 2;
		}
	pthread_create(&chk, NULL, checker_main, NULL);
	pthread_create(&mon, NULL, monitor_main, NULL);
	pthread_create(&evw, NULL, evwait_main, NULL);
	pthread_create(&evf, NULL, evfd_main, NULL);
	do_releasing(me, LIN_START, 0);
	for (int i = 0; i < nroles; i++) {
		struct thr *t;
		void *(*fn)(void *);

		t = thr_claim(THR_ROLES + i);
		if (i < ctx.cfg.mgmt)
			fn = mgmt_main;
		else if (i < ctx.cfg.mgmt + ctx.cfg.holders)
			fn = holder_main;
		else if (i < ncallers)
			fn = device_main;
		else
			fn = excl_main;
		pthread_create(&th[i], NULL, fn, t);
	}
	pthread_create(&hp, NULL, hotplug_main, NULL);
	if (ctx.cfg.listeners)
		pthread_create(&churn, NULL, churn_main, NULL);

	set_op(me, NULL);
	deadline = ctx.t0 + (uint64_t)(ctx.cfg.duration * 1e9);
	while (!atomic_load(&ctx.stop) && rsu_now_ns() < deadline)
		rsu_sleep_ns(5 * MS);
	atomic_store(&ctx.stop, true);

	/* Teardown: the callers finish (holders release their locks). */
	set_op(me, "join callers");
	for (int i = 0; i < ncallers; i++)
		pthread_join(th[i], NULL);
	pthread_join(hp, NULL);
	if (ctx.cfg.listeners)
		pthread_join(churn, NULL);
	atomic_store(&ctx.calm, false);

	teardown_vcpus(me, th + ncallers, nroles - ncallers);
	set_op(me, "teardown: checker");
	atomic_store(&ctx.checker_exit, true);
	pthread_join(chk, NULL);
	set_op(me, "teardown: final wait");
	r = rs_wait(ctx.rs, RS_FOREVER);
	if (r)
		bad_result("final rs_wait", r);
	set_op(me, "teardown: readers");
	atomic_store(&ctx.cons_exit, true);
	pthread_join(evw, NULL);
	pthread_join(evf, NULL);
	atomic_store(&ctx.monitor_exit, true);
	pthread_join(mon, NULL);
	set_op(me, "teardown: listeners");
	if (ctx.cfg.listeners)
		listeners_final(rs_word(ctx.rs));
	set_op(me, NULL);

	final_checks();

	elapsed = (double)(rsu_now_ns() - ctx.t0) / 1e9;
	if (atomic_load(&ctx.vtotal) && !atomic_exchange(&ctx.dumped, true))
		dump_state("violation");
	if (ctx.cfg.json)
		print_json(stdout, elapsed);
	else
		print_summary(stdout, elapsed);
	fflush(stdout);

	if (ctx.cfg.kvm)
		kvm_teardown();
	rs_destroy(ctx.rs);
	lin_free(&ctx.lin);
	free(ctx.l.recs);
	free(ctx.vcpus);
	free(th);
	free(ctx.thr);
	if (ctx.cfg.expect)
		return expect_status();
	return atomic_load(&ctx.vtotal) ? 1 : 0;
}

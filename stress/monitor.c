/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: the monitor thread.  Every 2 ms it switches between storm
 * and calm phases, reads the events, checks liveness (while the VM may run,
 * every vCPU makes progress) and runs the watchdog (no thread stays in one
 * operation for --hang-ms); it dumps the state at the first violation and
 * keeps the progress line.
 */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "stress.h"

static void liveness(uint64_t now)
{
	uint64_t w = rs_word(ctx.rs);
	uint32_t e = rsu_edge(w);

	check_word(w, "monitor");
	excl_liveness(now, w);
	if (!rsu_may_run(w)) {
		ctx.live_valid = false;
		return;
	}
	if (!ctx.live_valid || e != ctx.live_edge) {
		/* A new run period: start every vCPU's clock now. */
		ctx.live_valid = true;
		ctx.live_edge = e;
		INC(ctx.stats.liveness_windows);
		for (int i = 0; i < ctx.nslots; i++)
			ctx.vcpus[i].lv_since = 0;
		return;
	}
	if (ctx.cfg.exclusive) {
		/* A section, or a wait for one, since the last sample: the
		 * vCPUs were kept out legitimately; their clocks restart. */
		uint64_t g = atomic_load(&ctx.excl_gen);

		if (atomic_load(&ctx.excl_busy) || g != ctx.live_excl_gen) {
			ctx.live_excl_gen = g;
			for (int i = 0; i < ctx.nslots; i++)
				ctx.vcpus[i].lv_since = 0;
			return;
		}
	}
	for (int i = 0; i < ctx.nslots; i++) {
		struct vcpu *v = &ctx.vcpus[i];
		uint64_t s, h;
		uint32_t g;

		if (atomic_load(&v->life) != VL_REGISTERED || atomic_load(&v->exit_flag)) {
			v->lv_since = 0;
			continue;
		}
		s = vc_count(i);
		h = vc_halts(i);
		g = vc_in_guest(i);
		/* Progress: a slice entered or the guest counter moved, a halt,
		 * or (simulated) in a slice of this very run. */
		if (!v->lv_since || atomic_load(&v->halted) || h != v->lv_halts ||
		    s != v->lv_slices || (g && g != IN_GUEST_NOSTAMP && g - 1 == e)) {
			v->lv_since = now;
			v->lv_slices = s;
			v->lv_halts = h;
			continue;
		}
		if (now - v->lv_since > (uint64_t)ctx.cfg.live_ns) {
			violation(V_LIVENESS, "vCPU slot %d (%s) made no progress for %.0f ms "
					      "while the VM was runnable (edge %u, word 0x%016"
					      PRIx64 ")",
				  i, ctx.cfg.kvm ? "kvm" : v->blocking ? "blocking" : "busy",
				  (double)(now - v->lv_since) / 1e6, e, w);
			v->lv_since = now;
		}
	}
}

static void print_vcpu_info(const struct rs_vcpu_info *info, void *arg)
{
	const struct vcpu *v = info->opaque;

	(void)arg;
	if (ctx.cfg.kvm) {
		kvm_print_vcpu(info);
		return;
	}
	fprintf(stderr, "    vcpu slot %d: %s%s, out for %.3f ms, unacked for %.3f ms; "
			"harness: %s, in_guest=%u, slices=%" PRIu64 ", halted=%d, exit=%d\n",
		v->index, info->active ? "active" : "out", info->parked ? " parked" : "",
		(double)info->out_for_ns / 1e6, (double)info->unacked_ns / 1e6,
		v->blocking ? "blocking" : "busy", atomic_load(&v->in_guest),
		atomic_load(&v->slices), atomic_load(&v->halted), atomic_load(&v->exit_flag));
}

void dump_state(const char *why)
{
	uint64_t w = rs_word(ctx.rs);
	struct rs_state s = { .size = sizeof(s) };
	uint64_t now = rsu_now_ns();
	char locks[64] = "";

	rs_decode(w, &s);
	for (int r = 0; r < RS_LOCK_COUNT; r++)
		if (s.locks & (1u << r))
			snprintf(locks + strlen(locks), sizeof(locks) - strlen(locks), "%s%s",
				 locks[0] ? "," : "", rs_lock_name(r));
	pthread_mutex_lock(&ctx.report_lock);
	fprintf(stderr, "runstate-stress: state dump (%s) at %.3f s\n", why,
		(double)(now - ctx.t0) / 1e9);
	fprintf(stderr, "  word 0x%016" PRIx64 ": %s%s%s io-error=%d locks=%s pause=%s edge=%u%s%s "
			"(%s)\n", w,
		s.running ? "running" : "stopped", s.may_run ? " may-run" : "",
		s.settling ? " settling" : "", s.io_error, locks[0] ? locks : "-",
		rs_pause_name(s.pause), s.edge, w & RS_W_PARKED ? " PK" : "",
		w & RS_W_LOCKWAIT ? " LW" : "", rs_legacy_status(w));
	if (ctx.cfg.exclusive) {
		int h = atomic_load(&ctx.excl_holder);

		fprintf(stderr, "  section: bit %s, held by %s (as the harness believes), %d "
				"threads in or waiting for one\n", w & RS_W_EXCL ? "set" : "clear",
			h >= 0 ? ctx.thr[h].name : "nobody", atomic_load(&ctx.excl_busy));
	}
	fprintf(stderr, "  threads (operation, for how long):\n");
	for (int i = 0; i < ctx.nthr; i++) {
		struct thr *t = &ctx.thr[i];
		const char *op;

		if (!atomic_load(&t->used))
			continue;
		op = atomic_load(&t->op);
		fprintf(stderr, "    %-10s %-24s %.3f ms\n", t->name, op ? op : "(between ops)",
			(double)(now - atomic_load(&t->since)) / 1e6);
	}
	fprintf(stderr, "  vCPUs (rs_vcpu_foreach):\n");
	pthread_mutex_unlock(&ctx.report_lock);
	rs_vcpu_foreach(ctx.rs, print_vcpu_info, NULL);
	print_replay(stderr);
}

static void hang_exit(uint64_t now)
{
	dump_state("hang");
	print_summary(stdout, (double)(now - ctx.t0) / 1e9);
	fflush(stdout);
	_exit(ctx.cfg.expect ? expect_status() : 1);
}

static void watchdog(uint64_t now)
{
	for (int i = 0; i < ctx.nthr; i++) {
		struct thr *t = &ctx.thr[i];
		const char *op;
		uint64_t since;

		if (!atomic_load_explicit(&t->used, memory_order_acquire))
			continue;
		op = atomic_load_explicit(&t->op, memory_order_acquire);
		since = atomic_load_explicit(&t->since, memory_order_relaxed);
		if (!op || now < since || now - since <= (uint64_t)ctx.cfg.hang_ns)
			continue;
		/* vCPUs may legitimately wait while the VM is stopped; the
		 * liveness check covers them when it is runnable. */
		if (t->vcpu && strcmp(op, "register") && strcmp(op, "unregister"))
			continue;
		violation(V_HANG, "thread %s has been in '%s' for %.0f ms", t->name, op,
			  (double)(now - since) / 1e6);
		hang_exit(now);
	}
	/* A listener call, on whatever thread (a vCPU's too). */
	{
		uint64_t since = atomic_load(&ctx.l.enter_ns);

		if (since && now > since && now - since > (uint64_t)ctx.cfg.hang_ns) {
			violation(V_HANG, "a listener call has been running for %.0f ms",
				  (double)(now - since) / 1e6);
			hang_exit(now);
		}
	}
}

/* The progress line, on a terminal. */
static void progress(uint64_t now)
{
	printf("\r%7.1f s  ops %-10" PRIu64 " transitions %-9" PRIu64 " violations %-3ld "
	       "vcpus %-3d listeners %-3d %s ",
	       (double)(now - ctx.t0) / 1e9, atomic_load(&ctx.stats.ops_total),
	       atomic_load(&ctx.stats.last_seq), atomic_load(&ctx.vtotal),
	       atomic_load(&ctx.nplugged), ctx.cfg.listeners + atomic_load(&ctx.l.dyn_live),
	       atomic_load(&ctx.calm) ? "calm " : "storm");
	fflush(stdout);
}

void *monitor_main(void *arg)
{
	struct thr *t = &ctx.thr[THR_MONITOR];
	bool tty = isatty(1) && !ctx.cfg.quiet && !ctx.cfg.json;
	uint64_t next_progress = 0, phase_end = ctx.t0 + (uint64_t)ctx.cfg.storm_ns;

	(void)arg;
	while (!atomic_load(&ctx.monitor_exit)) {
		uint64_t now;

		set_op(t, NULL);
		rsu_sleep_ns(2 * MS);
		now = rsu_now_ns();
		if (now >= phase_end && !atomic_load(&ctx.stop)) {
			bool calm = !atomic_load(&ctx.calm);

			atomic_store(&ctx.calm, calm);
			if (calm)
				atomic_store(&ctx.excl_calm_vcpu, true);
			phase_end = now + (uint64_t)(calm ? ctx.cfg.calm_ns : ctx.cfg.storm_ns);
		}
		set_op(t, "events");
		read_events();
		set_op(t, "liveness");
		liveness(now);
		set_op(t, NULL);
		watchdog(now);
		if (atomic_load(&ctx.vtotal) && !atomic_exchange(&ctx.dumped, true))
			dump_state("first violation");
		if (tty && now >= next_progress) {
			next_progress = now + 250 * MS;
			progress(now);
		}
	}
	if (tty)
		printf("\n");
	return NULL;
}

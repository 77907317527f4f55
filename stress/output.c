/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: latency histograms and the summaries, as text or as one
 * JSON object (docs/stress.md, "Output").  Every figure is listed once, in
 * FIGURES below, with its place in both.
 */
#include <inttypes.h>
#include <string.h>

#include "stress.h"
#ifdef RS_STRESS_KVM
#include "kvm.h"
#endif

/* ---------------------------------------------------------------------------
 * Latency histograms
 */

static unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < 16)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	return 16 + (e - 4) * 8 + (unsigned)((v >> (e - 3)) & 7);
}

static uint64_t hist_value(unsigned i)
{
	unsigned e;

	if (i < 16)
		return i;
	e = (i - 16) / 8 + 4;
	/* the middle of the bucket */
	return ((uint64_t)(8 + (i - 16) % 8) << (e - 3)) + ((uint64_t)1 << (e - 3)) / 2;
}

void hist_add(struct hist *h, uint64_t v)
{
	uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);

	atomic_fetch_add_explicit(&h->b[hist_index(v)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
	while (v > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, v, memory_order_relaxed,
							       memory_order_relaxed))
		;
}

static uint64_t hist_pct(struct hist *h, double p)
{
	uint64_t n = atomic_load(&h->n), want, acc = 0;

	if (!n)
		return 0;
	want = (uint64_t)((double)n * p);
	if (want >= n)
		want = n - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		acc += atomic_load(&h->b[i]);
		if (acc > want) {
			uint64_t v = hist_value(i), m = atomic_load(&h->max);

			return v > m ? m : v;
		}
	}
	return atomic_load(&h->max);
}

/* The histograms, with their names in the text and in the JSON summary. */
static const struct {
	const char *text, *json;
	struct hist *h;
} lats[] = {
	{ "stop latency (edge):", "stop", &ctx.stats.stop_lat },
	{ "start latency (settled):", "start", &ctx.stats.start_lat },
	{ "lock latency (waited):", "lock", &ctx.stats.lock_lat },
	{ "listener call:", "listener_call", &ctx.stats.listener_lat },
	{ "section begin (waited):", "section_begin", &ctx.stats.excl_lat },
};
#define NLATS (sizeof(lats) / sizeof(lats[0]))

/* ---------------------------------------------------------------------------
 * Figures
 *
 * F(value, lead, fmt, group, key, flags), in the order of the text summary:
 *
 *   value  the figure
 *   lead   what begins a line of the text summary (NULL: the line goes on)
 *   fmt    the figure in that line, "%s" standing for the number; the first
 *          figure printed on a line drops its leading separator (", ")
 *   group  its object in the JSON summary ("": a member of the top level,
 *          named key)
 *   key    its name there (NULL: text only)
 *   flags  F_SIM: in the text only without --kvm (those counters are the
 *          simulated vCPUs'); F_KVM: only with --kvm; F_NOTEXT: JSON only;
 *          F_KINDS: the operations by kind and timeout class follow;
 *          F_EXCL: only with --exclusive
 */
enum { F_SIM = 1, F_KVM = 2, F_NOTEXT = 4, F_KINDS = 8, F_EXCL = 16 };

#define ST(x) atomic_load(&ctx.stats.x)
#define LIB(x) ctx.lstats.x

#define FIGURES_OPS(F)								\
	F(ST(ops_total), "operations: ", "%s", "operations", "total", F_KINDS)	\
	F(ST(waits), "  wait           ", "%10s", "operations", "wait", 0)	\
	F(ST(vcpu_panic_async), "  from vCPUs:    ", "panics async %s", "operations", \
	  "vcpu-panic-async", 0)						\
	F(ST(vcpu_panic_sync), NULL, ", sync %s", "operations", "vcpu-panic-sync", 0) \
	F(ST(r_timedout), "results: ", "timeout %s", "results", "timeout", 0)	\
	F(ST(r_busy), NULL, ", busy %s", "results", "busy", 0)			\
	F(ST(r_needforce), NULL, ", needs-force %s", "results", "needs-force", 0) \
	F(ST(r_needreset), NULL, ", needs-reset %s", "results", "needs-reset", 0) \
	F(ST(last_seq), "transitions: ", "%s", "", "transitions", 0)		\
	F(ST(events), NULL, " (events read %s", "events", "read", 0)		\
	F(ST(events_lost), NULL, ", lost by the reader %s)", "events", "lost", 0)

#define FIGURES_VCPUS(F)							\
	F(ST(slices), "vcpus: ", "slices %s", "vcpus", "slices", F_SIM)		\
	F(ST(halts), NULL, ", halts %s", "vcpus", "halts", F_SIM)		\
	F(ST(work), NULL, ", work requests %s", "vcpus", "work", 0)		\
	F(ST(plugs), NULL, ", plugged %s", "vcpus", "plugged", 0)		\
	F(ST(unplugs), NULL, ", unplugged %s", "vcpus", "unplugged", 0)		\
	F(ST(parks), "", "parks: %s", "", "parks", F_SIM)			\
	F(ST(kicks), NULL, "  kicks: %s", "", "kicks", F_SIM)			\
	F(ST(rekicks), NULL, "  re-kicks (same active period): %s", "", "rekicks", F_SIM) \
	F(ST(kicks_dropped), NULL, "  dropped kicks: %s", "", "kicks_dropped", F_SIM) \
	F(ST(slow_kicks), NULL, "  slow kicks: %s", "", "kicks_slow", F_SIM)

#define FIGURES_LIBRARY(F)							\
	F(LIB(parks), "library counters: ", "parks %s", "library", "parks", 0)	\
	F(LIB(wakes), NULL, ", wakes %s", "library", "wakes", 0)		\
	F(LIB(kicks), NULL, ", kicks %s", "library", "kicks", 0)		\
	F(LIB(rekicks), NULL, ", timed re-kicks %s", "library", "rekicks", 0)	\
	F(LIB(stop_edges), NULL, ", stop edges %s", "library", "stop_edges", 0)	\
	F(LIB(start_edges), NULL, ", start edges %s", "library", "start_edges", 0) \
	F(LIB(timeouts), NULL, ", timeouts %s", "library", "timeouts", 0)	\
	F(LIB(listener_runs), NULL, ", listener runs %s", "library", "listener_runs", 0) \
	F(LIB(events_lost), NULL, ", events lost %s", "library", "events_lost", 0) \
	F(LIB(coalesced), NULL, ", edges coalesced %s", "library", "coalesced", 0)

#define FIGURES_LISTENERS(F)							\
	F((uint64_t)ctx.cfg.listeners, "listeners: ", "%s persistent", "listeners",	\
	  "persistent", 0)							\
	F(ST(l_calls), NULL, "; calls %s", "listeners", "calls", 0)		\
	F(ST(l_edges), NULL, " over %s edges", "listeners", "edges", 0)		\
	F(ST(l_add_out), NULL, "; added %s outside", "listeners", "added_outside", 0) \
	F(ST(l_add_in), NULL, ", %s inside", "listeners", "added_inside", 0)	\
	F(ST(l_rm_out), NULL, "; removed %s outside", "listeners", "removed_outside", 0) \
	F(ST(l_rm_in), NULL, ", %s inside", "listeners", "removed_inside", 0)	\
	F(ST(l_rm_self), NULL, " (%s themselves)", "listeners", "removed_self", 0) \
	F(ST(l_max_live), NULL, "; at most %s others at once", "listeners", "max_others", 0) \
	F(ST(l_stop_in), NULL, "; from listeners: %s stops", "listeners", "stops", 0) \
	F(ST(l_start_in), NULL, ", %s starts", "listeners", "starts", 0)	\
	F(ST(l_queries), NULL, ", %s vCPU counts", "listeners", "vcpu_counts", 0) \
	F(ST(l_norun), NULL, "; stop runs checked against the stop before (stop edge during " \
	  "the start's run): %s", "listeners", NULL, 0)				\
	F(ST(l_coalesced_runs), NULL, "; runs after coalesced edges: %s", "listeners", \
	  "after_coalesced", 0)

#define FIGURES_READERS(F)							\
	F(ST(ew_calls), "event readers: ", "rs_events_wait %s calls", "event_readers", \
	  "wait_calls", 0)							\
	F(ST(ew_woken), NULL, " (%s woken", "event_readers", "wait_woken", 0)	\
	F(ST(ew_timeouts), NULL, ", %s timed out)", "event_readers", "wait_timeouts", 0) \
	F(ST(ew_events), NULL, ", read %s", "event_readers", "wait_read", 0)	\
	F(ST(ew_lost), NULL, ", lost %s", "event_readers", "wait_lost", 0)	\
	F(ST(ef_polls), NULL, "; eventfd %s polls", "event_readers", "fd_polls", 0) \
	F(ST(ef_ready), NULL, " (%s readable)", "event_readers", "fd_readable", 0) \
	F(ST(ef_events), NULL, ", read %s", "event_readers", "fd_read", 0)	\
	F(ST(ef_lost), NULL, ", lost %s", "event_readers", "fd_lost", 0)	\
	F(ST(ef_lost_recs), NULL, " in %s loss records", "event_readers", "fd_loss_records", 0) \
	F(ST(ef_naps), NULL, "; naps %s", "event_readers", "naps", 0)

/* k: the KVM module's counters, summed over the vCPUs (rk_vm_stats()). */
#ifdef RS_STRESS_KVM
#define FIGURES_KVM(F)								\
	F(k.runs, "kvm: ", "KVM_RUN %s", "kvm_stats", "runs", F_KVM)		\
	F(k.eintr, NULL, ", kicked out (EINTR) %s", "kvm_stats", "eintr", F_KVM)	\
	F(k.exits_out, NULL, ", exits: out %s", "kvm_stats", NULL, F_KVM)	\
	F(k.exits_in, NULL, ", in %s", "kvm_stats", NULL, F_KVM)		\
	F(k.exits_out + k.exits_in, NULL, NULL, "kvm_stats", "exits_io", F_KVM | F_NOTEXT) \
	F(k.exits_mmio_w, NULL, ", mmio %s", "kvm_stats", NULL, F_KVM)		\
	F(k.exits_mmio_r, NULL, "/%s", "kvm_stats", NULL, F_KVM)		\
	F(k.exits_mmio_w + k.exits_mmio_r, NULL, NULL, "kvm_stats", "exits_mmio",	\
	  F_KVM | F_NOTEXT)							\
	F(k.exits_hlt, NULL, ", hlt %s", "kvm_stats", "exits_hlt", F_KVM)	\
	F(k.completions, NULL, ", completed before acknowledging %s", "kvm_stats",	\
	  "completions", F_KVM)							\
	F(ST(kvm_hooks), NULL, "; device hooks %s", "kvm_stats", "hooks", F_KVM)	\
	F(ST(kvm_slow_exits), NULL, " (slow %s)", "kvm_stats", NULL, F_KVM)	\
	F(k.signals, NULL, "; kick signals %s", "kvm_stats", "signals", F_KVM)	\
	F(k.window_kicks, NULL, " (%s in the check-to-KVM_RUN window)", "kvm_stats", \
	  "window_kicks", F_KVM)						\
	F(k.lost_kicks, NULL, ", lost kicks %s", "kvm_stats", "lost_kicks", F_KVM)
#else
#define FIGURES_KVM(F)
#endif

#define FIGURES_SECTIONS(F)							\
	F(ST(x_mgmt), "sections: ", "by section threads %s", "sections", "mgmt", F_EXCL) \
	F(ST(x_calm), NULL, " (%s at a calm phase's start)", "sections", "calm", F_EXCL) \
	F(ST(x_vcpu), NULL, ", by vCPU threads %s", "sections", "vcpu", F_EXCL)	\
	F(ST(x_vcpu_begins), NULL, " (of %s begins", "sections", "vcpu_begins", F_EXCL) \
	F(ST(x_vcpu_calm), NULL, "; %s at a calm phase's start", "sections", "vcpu_calm", F_EXCL) \
	F(ST(x_owner_stops), NULL, ", which stopped the VM %s times)", "sections", "owner_stops", \
	  F_EXCL)								\
	F(ST(x_tries), NULL, "; tries %s", "sections", "tries", F_EXCL)		\
	F(ST(x_try_fail), NULL, " (%s refused)", "sections", "tries_refused", F_EXCL) \
	F(ST(x_timeouts), NULL, ", timed out %s", "sections", "timeouts", F_EXCL) \
	F(ST(x_owner_slices), NULL, "; owner slices %s", "sections", "owner_slices", F_EXCL) \
	F(ST(x_owner_ran), NULL, " in %s sections", "sections", "owner_ran", F_EXCL) \
	F(ST(x_owner_none), NULL, " (%s with none)", "sections", "owner_none", F_EXCL) \
	F(ST(x_owner_woken), NULL, ", owners admitted after a stop in their section %s",	\
	  "sections", "owner_woken", F_EXCL)					\
	F(ST(x_owner_exit), NULL, ", owners unplugged in their section %s", "sections",	\
	  "owner_exit", F_EXCL)							\
	F(ST(x_cmds_in), NULL, "; commands inside %s", "sections", "commands_inside", F_EXCL) \
	F(ST(x_nested), NULL, ", nested begins %s", "sections", "nested", F_EXCL)	\
	F(ST(x_l_tries), NULL, ", begins from listeners %s", "sections", "from_listeners", \
	  F_EXCL)

#define FIGURES_CHECKS(F)							\
	F(ST(futex_waits), "futex: ", "other waits %s", "futex", "other_waits", 0) \
	F(ST(futex_wakes), NULL, ", wakes %s", "futex", "wakes", 0)		\
	F(ST(inj_spurious), NULL, ", injected spurious %s", "faults", "futex_spurious", 0) \
	F(ST(inj_eintr), NULL, ", injected EINTR %s", "faults", "futex_eintr", 0) \
	F(ST(inj_late_wake), NULL, ", late wake-ups %s", "faults", "late_wakeups", 0) \
	F(ST(delays), NULL, "; delays %s", "faults", "delays", 0)		\
	F(ST(slow_acks), NULL, ", slow acks %s", "faults", "slow_acks", 0)	\
	F(ST(holder_desched), NULL, ", holders descheduled %s", "faults",	\
	  "holders_descheduled", 0)						\
	F(ST(stop_checks), "checks: ", "stop %s", "checks", "stop", 0)		\
	F(ST(exclusion_checks), NULL, ", exclusion %s", "checks", "exclusion", 0) \
	F(ST(x_scans), NULL, ", section scans %s", "checks", "section_scans", F_EXCL) \
	F(ST(x_same), NULL, ", sections that changed nothing %s", "checks", "section_unchanged", \
	  F_EXCL)								\
	F(ST(x_owner_admitted), NULL, ", owners admitted %s", "checks",		\
	  "section_owner_admitted", F_EXCL)					\
	F(ST(x_owner_samples), NULL, " (monitor samples of an owner not admitted yet %s)",	\
	  "checks", "section_owner_samples", F_EXCL)				\
	F(ST(liveness_windows), NULL, ", run windows %s", "checks", "run_windows", 0) \
	F(ctx.lin.rounds, NULL, ", linearizability rounds %s", "checks", "lin_rounds", 0) \
	F(ctx.lin.ops, NULL, " (ops %s", "checks", "lin_ops", 0)		\
	F((uint64_t)ctx.lin.max_set, NULL, ", max states %s", "checks", "lin_max_states", 0) \
	F(ctx.lin.max_nodes, NULL, ", max nodes %s", "checks", "lin_max_nodes", 0) \
	F(ctx.lin.gave_up, NULL, ", gave up %s)", "checks", "lin_gave_up", 0)

#define FIGURES(F)								\
	FIGURES_OPS(F) FIGURES_VCPUS(F) FIGURES_LIBRARY(F) FIGURES_LISTENERS(F)	\
	FIGURES_READERS(F) FIGURES_SECTIONS(F) FIGURES_KVM(F) FIGURES_CHECKS(F)

struct figure {
	const char *lead, *fmt, *group, *key;
	unsigned flags;
};

#define AS_FIGURE(value, lead, fmt, group, key, flags) { lead, fmt, group, key, flags },
static const struct figure figures[] = { FIGURES(AS_FIGURE) };
#define NFIGURES (sizeof(figures) / sizeof(figures[0]))

/* The JSON summary's members, in its order. */
static const char *const json_order[] = {
	"operations", "results", "transitions", "events", "vcpus", "parks", "kicks", "rekicks",
	"kicks_dropped", "kicks_slow", "faults", "library", "listeners", "event_readers",
	"sections", "kvm_stats", "futex", "checks",
};

/* Every figure's value now, in the order of figures[]. */
static void figure_values(uint64_t *v)
{
	size_t i = 0;
#ifdef RS_STRESS_KVM
	struct rk_vcpu_stats k = { 0 };

	if (ctx.cfg.kvm && ctx.vm)
		rk_vm_stats(ctx.vm, &k);
#endif
#define AS_VALUE(value, lead, fmt, group, key, flags) v[i++] = (uint64_t)(value);
	FIGURES(AS_VALUE)
#undef AS_VALUE
}

/* Is figure i in this run's text (text) or JSON summary? */
static bool figure_shown(size_t i, bool text)
{
	unsigned fl = figures[i].flags;

	if ((fl & F_KVM) && !(ctx.cfg.kvm && ctx.vm))
		return false;
	if ((fl & F_EXCL) && !ctx.cfg.exclusive)
		return false;
	if (text)
		return !(fl & F_NOTEXT) && !((fl & F_SIM) && ctx.cfg.kvm);
	return figures[i].key != NULL;
}

/* ---------------------------------------------------------------------------
 * Operations by kind and timeout class
 */

static const char *const tclass_name[TC_COUNT] = { "async", "timed", "sync" };

static void kinds_text(FILE *f)
{
	for (int k = 0; k < LIN_KIND_COUNT; k++) {
		uint64_t tot = 0;

		for (int c = 0; c < TC_COUNT; c++)
			tot += atomic_load(&ctx.stats.ops[k][c]);
		if (!tot)
			continue;
		fprintf(f, "  %-14s %10" PRIu64, lin_kind_name(k), tot);
		if (lin_is_stopping(k))
			for (int c = 0; c < TC_COUNT; c++)
				fprintf(f, "  %s %" PRIu64, tclass_name[c],
					atomic_load(&ctx.stats.ops[k][c]));
		fputc('\n', f);
	}
}

static void kinds_json(FILE *f)
{
	for (int k = 0; k < LIN_KIND_COUNT; k++) {
		for (int c = 0; c < TC_COUNT; c++) {
			uint64_t n = atomic_load(&ctx.stats.ops[k][c]);

			if (!n)
				continue;
			if (lin_is_stopping(k))
				fprintf(f, ", \"%s-%s\": %" PRIu64, lin_kind_name(k),
					tclass_name[c], n);
			else
				fprintf(f, ", \"%s\": %" PRIu64, lin_kind_name(k), n);
		}
	}
}

/* ---------------------------------------------------------------------------
 * Text
 */

static void figures_text(FILE *f, const uint64_t *v)
{
	const char *lead = "";          /* the line's lead, until it is printed */
	bool open = false;              /* a line is being printed */

	for (size_t i = 0; i < NFIGURES; i++) {
		const char *fmt = figures[i].fmt;
		char num[24];

		if (figures[i].lead) {
			if (open)
				fputc('\n', f);
			open = false;
			lead = figures[i].lead;
		}
		if (!figure_shown(i, true))
			continue;
		if (!open) {
			fputs(lead, f);
			fmt += strspn(fmt, ",; ");
			open = true;
		}
		snprintf(num, sizeof(num), "%" PRIu64, v[i]);
		fprintf(f, fmt, num);
		if (figures[i].flags & F_KINDS) {
			fputc('\n', f);
			kinds_text(f);
			open = false;
		}
	}
	if (open)
		fputc('\n', f);
}

void print_summary(FILE *f, double elapsed)
{
	const struct config *cfg = &ctx.cfg;
	uint64_t v[NFIGURES];

	fprintf(f, "runstate-stress: seed %" PRIu64 ", %.2f s, %d %svcpus (+%d hot-plug), %d mgmt, "
		   "%d holders, %d devices, %d listeners, slice %" PRId64 " ns, fault rate %g, "
		   "delay rate %g%s%s, kick %s\n",
		cfg->seed, elapsed, cfg->vcpus, cfg->kvm ? "KVM " : "", cfg->hotplug_extra,
		cfg->mgmt, cfg->holders, cfg->devices, cfg->listeners, cfg->slice_ns,
		cfg->fault_rate, cfg->delay_rate, cfg->delay_point ? ", focus " : "",
		cfg->delay_point ? cfg->delay_point : "",
		cfg->kvm ? "signal + immediate_exit" : cfg->kick_signal ? "signal" : "futex");
	figure_values(v);
	figures_text(f, v);
	for (size_t i = 0; i < NLATS; i++) {
		struct hist *h = lats[i].h;

		fprintf(f, "%-22s p50 %9.1f us  p99 %9.1f us  max %9.1f us  (n=%" PRIu64 ")\n",
			lats[i].text, (double)hist_pct(h, 0.5) / 1e3,
			(double)hist_pct(h, 0.99) / 1e3, (double)atomic_load(&h->max) / 1e3,
			atomic_load(&h->n));
	}
	if (atomic_load(&ctx.vtotal)) {
		fprintf(f, "violations: %ld (", atomic_load(&ctx.vtotal));
		for (int k = 0, first = 1; k < V_COUNT; k++) {
			if (!atomic_load(&ctx.vcount[k]))
				continue;
			fprintf(f, "%s%s %ld", first ? "" : ", ", vname[k],
				atomic_load(&ctx.vcount[k]));
			first = 0;
		}
		fprintf(f, ")\n");
		print_replay(f);
	} else {
		fprintf(f, "violations: 0\n");
	}
}

/* ---------------------------------------------------------------------------
 * JSON
 */

/* The member `name`: an object of the figures of that group, or a figure
 * of the top level. */
static void figures_json(FILE *f, const uint64_t *v, const char *name)
{
	bool object = false;

	for (size_t i = 0; i < NFIGURES; i++) {
		const struct figure *g = &figures[i];

		if (!figure_shown(i, false))
			continue;
		if (!*g->group && !strcmp(g->key, name)) {
			fprintf(f, "  \"%s\": %" PRIu64 ",\n", name, v[i]);
			continue;
		}
		if (strcmp(g->group, name))
			continue;
		if (object)
			fputs(", ", f);
		else
			fprintf(f, "  \"%s\": {", name);
		fprintf(f, "\"%s\": %" PRIu64, g->key, v[i]);
		object = true;
		if (g->flags & F_KINDS)
			kinds_json(f);
	}
	if (object)
		fputs("},\n", f);
}

void print_json(FILE *f, double elapsed)
{
	const struct config *cfg = &ctx.cfg;
	uint64_t v[NFIGURES];

	fprintf(f, "{\n  \"seed\": %" PRIu64 ",\n  \"elapsed_s\": %.3f,\n  \"kvm\": %s,\n",
		cfg->seed, elapsed, cfg->kvm ? "true" : "false");
	fprintf(f, "  \"config\": {\"duration\": %g, \"vcpus\": %d, \"hotplug_extra\": %d, "
		   "\"mgmt\": %d, \"holders\": %d, \"devices\": %d, \"slice_ns\": %" PRId64
		   ", \"fault_rate\": %g, \"delay_rate\": %g, \"delay_point\": \"%s\", "
		   "\"kick\": \"%s\", \"round_ops\": %d, \"events\": %u, \"live_ms\": %" PRId64
		   "},\n",
		cfg->duration, cfg->vcpus, cfg->hotplug_extra, cfg->mgmt, cfg->holders,
		cfg->devices, cfg->slice_ns, cfg->fault_rate, cfg->delay_rate,
		cfg->delay_point ? cfg->delay_point : "", cfg->kick_signal ? "signal" : "futex",
		cfg->round_ops, cfg->events, cfg->live_ns / MS);
	figure_values(v);
	for (size_t i = 0; i < sizeof(json_order) / sizeof(json_order[0]); i++)
		figures_json(f, v, json_order[i]);
	fprintf(f, "  \"latency\": {\n");
	for (size_t i = 0; i < NLATS; i++) {
		struct hist *h = lats[i].h;

		fprintf(f, "    \"%s\": {\"n\": %" PRIu64 ", \"p50_ns\": %" PRIu64 ", \"p99_ns\": %"
			   PRIu64 ", \"max_ns\": %" PRIu64 "}%s\n",
			lats[i].json, atomic_load(&h->n), hist_pct(h, 0.5), hist_pct(h, 0.99),
			atomic_load(&h->max), i + 1 < NLATS ? "," : "");
	}
	fprintf(f, "  },\n  \"violations\": %ld,\n  \"violations_by_kind\": {",
		atomic_load(&ctx.vtotal));
	for (int k = 0; k < V_COUNT; k++)
		fprintf(f, "%s\"%s\": %ld", k ? ", " : "", vname[k], atomic_load(&ctx.vcount[k]));
	fprintf(f, "}\n}\n");
}

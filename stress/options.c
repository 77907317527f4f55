/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: configuration and the command line, the replay line that
 * every violation prints, and --expect's verdict.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stress.h"

const char *const vname[V_COUNT] = {
	"exclusion", "stop", "liveness", "hang", "linearizability", "events", "result", "kick",
	"word", "final", "listener", "section",
};

/* --skip-checks, for the replay line. */
static void print_skip(FILE *f)
{
	const char *sep = " --skip-checks ";

	for (int k = 0; k < V_COUNT; k++) {
		if (!skipped((enum vkind)k))
			continue;
		fprintf(f, "%s%s", sep, vname[k]);
		sep = ",";
	}
}

void print_replay(FILE *f)
{
	const struct config *cfg = &ctx.cfg;

	fprintf(f, "  replay: %s%s --seed %" PRIu64 " --duration %g --vcpus %d --mgmt %d "
		   "--holders %d --devices %d --slice-ns %" PRId64 " --fault-rate %g "
		   "--delay-rate %g%s%s --kick %s --round-ops %d --events %u --live-ms %" PRId64
		   " --calm-ms %" PRId64 " --storm-ms %" PRId64 " --listeners %d --backlog %u",
		ctx.argv0, cfg->kvm ? " --kvm" : "", cfg->seed, cfg->duration, cfg->vcpus,
		cfg->mgmt, cfg->holders, cfg->devices, cfg->slice_ns, cfg->fault_rate,
		cfg->delay_rate, cfg->delay_point ? " --delay-point " : "",
		cfg->delay_point ? cfg->delay_point : "", cfg->kick_signal ? "signal" : "futex",
		cfg->round_ops, cfg->events, cfg->live_ns / MS, cfg->calm_ns / MS,
		cfg->storm_ns / MS, cfg->listeners, cfg->backlog);
	if (cfg->kvm)
		fprintf(f, " --kvm-io-shift %u", cfg->kvm_io_shift);
	if (cfg->plant)
		fprintf(f, " --plant %s", cfg->plant);
	if (cfg->exclusive)
		fprintf(f, " --exclusive --excl-threads %d --excl-vcpu-rate %g", cfg->excl_threads,
			cfg->excl_vcpu_rate);
	print_skip(f);
	fputc('\n', f);
}

/* ---------------------------------------------------------------------------
 * Options
 */

static void usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
		"usage: %s [options]\n"
		"  --duration SECONDS   how long to run (float; default 4)\n"
		"  --seed N             random seed (default: from the clock, printed)\n"
		"  --vcpus N            vCPU threads (default: number of CPUs); hot-plug keeps\n"
		"                       N-1 .. N+--hotplug-extra registered\n"
		"  --hotplug-extra N    (default 2)\n"
		"  --mgmt N             management threads (default 2)\n"
		"  --holders N          internal lock holder threads (default 2)\n"
		"  --devices N          device threads (default 1)\n"
		"  --slice-ns N         guest slice length (default 20000)\n"
		"  --fault-rate P       futex spurious/EINTR/late wake-up, lost kicks, slow acks,\n"
		"                       holders descheduled: probability per opportunity\n"
		"                       (default 0.02)\n"
		"  --delay-rate P       probability at each delay point (default 0.05; only in\n"
		"                       builds with delay points)\n"
		"  --delay-point NAME   delay this point at rate 0.5 with longer delays\n"
		"  --kick signal|futex  how kicks end a blocking guest entry (default: signal,\n"
		"                       futex under ThreadSanitizer)\n"
		"  --round-ops N        operations per linearizability round (default 32, max 48)\n"
		"  --events N           event ring capacity (default 64)\n"
		"  --backlog N          edges settled one by one before coalescing, 1-127\n"
		"                       (default: the library's, 64)\n"
		"  --live-ms N          liveness bound (default 250; x4 under sanitizers)\n"
		"  --hang-ms N          watchdog bound for one operation (default 10000; x3)\n"
		"  --storm-ms N, --calm-ms N   phase lengths (default 1000 and 2*live+150)\n"
		"  --rekick-ns N        the library's re-kick delay (default 1 ms)\n"
		"  --listeners N        persistent listeners (default 4); others come and go;\n"
		"                       0: no listener at all\n"
		"  --kvm                real KVM vCPUs (stress/kvm); exit 77 if /dev/kvm "
		"is unusable\n"
		"  --kvm-io-shift N     a KVM guest exits every 2^N loop iterations (default 10)\n"
		"  --exclusive          exclusive sections (rs_exclusive_begin/end) from section\n"
		"                       threads and from vCPU threads, checked (kind 'section')\n"
		"  --excl-threads N     management threads that make sections (default 1;\n"
		"                       implies --exclusive)\n"
		"  --excl-vcpu-rate P   a section from a vCPU thread, per slice end (default\n"
		"                       0.02; implies --exclusive; simulated vCPUs only)\n"
		"  --skip-checks K,...  do not make these checks (so another catches a plant)\n"
		"  --plant order|remove a checker test: one listener's priority is not what the\n"
		"                       checker believes / removals are believed early\n"
		"  --plant section-edge a checker test: section threads make a stop and a cont\n"
		"                       inside every storm section, not counted as commands\n"
		"  --json               summary as JSON\n"
		"  --quiet              no progress line\n"
		"  --keep-going         do not stop at the first violation\n"
		"  --lin-selftest       check the linearizability checker on canned histories\n"
		"  --lin-corrupt N      flip io-error in every Nth recorded query result: the\n"
		"                       checker must report it (a test of the checker)\n"
		"  --expect K[,K...]    planted-bug mode: exit 1 when the first violation is of\n"
		"                       one of these kinds, else 0 (for should_fail tests)\n"
		"exit status: 0 no violation, 1 violation, 2 usage, 77 --kvm unavailable\n",
		ctx.argv0);
	exit(status);
}

static const char *need(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		usage(2);
	return argv[++*i];
}

static long long parse_int(const char *s, long long lo, long long hi)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 0);
	if (errno || !*s || *end || v < lo || v > hi) {
		fprintf(stderr, "%s: bad number '%s'\n", ctx.argv0, s);
		usage(2);
	}
	return v;
}

static double parse_double(const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || !*s || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr, "%s: bad number '%s'\n", ctx.argv0, s);
		usage(2);
	}
	return v;
}

void parse_args(int argc, char **argv)
{
	struct config *cfg = &ctx.cfg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int scale_live = 1, scale_hang = 1;
	int64_t live_ms = -1, hang_ms = -1, calm_ms = -1;
	bool seeded = false;

#if defined(STRESS_TSAN) || defined(STRESS_ASAN)
	scale_live = 4;
	scale_hang = 3;
#endif
	cfg->duration = 4;
	cfg->vcpus = ncpu > 0 ? (int)ncpu : 2;
	cfg->hotplug_extra = 2;
	cfg->mgmt = 2;
	cfg->holders = 2;
	cfg->devices = 1;
	cfg->slice_ns = 20000;
	cfg->fault_rate = 0.02;
	cfg->delay_rate = 0.05;
	cfg->round_ops = 32;
	cfg->events = 64;
	cfg->listeners = 4;
	cfg->kvm_io_shift = 10;
	cfg->excl_threads = 1;
	cfg->excl_vcpu_rate = 0.02;
	cfg->storm_ns = 1000 * MS;
	cfg->rekick_ns = 1 * MS;
#if defined(STRESS_TSAN)
	cfg->kick_signal = false;
#else
	cfg->kick_signal = true;
#endif
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--duration"))
			cfg->duration = parse_double(need(argc, argv, &i), 0, 1e7);
		else if (!strcmp(a, "--seed")) {
			const char *s = need(argc, argv, &i);
			char *end;

			errno = 0;
			cfg->seed = strtoull(s, &end, 0);
			if (errno || !*s || *end)
				usage(2);
			seeded = true;
		} else if (!strcmp(a, "--vcpus"))
			cfg->vcpus = (int)parse_int(need(argc, argv, &i), 1, MAX_VCPU_SLOTS / 2);
		else if (!strcmp(a, "--hotplug-extra"))
			cfg->hotplug_extra = (int)parse_int(need(argc, argv, &i), 0,
							    MAX_VCPU_SLOTS / 2);
		else if (!strcmp(a, "--mgmt"))
			cfg->mgmt = (int)parse_int(need(argc, argv, &i), 1, 64);
		else if (!strcmp(a, "--holders"))
			cfg->holders = (int)parse_int(need(argc, argv, &i), 0, 64);
		else if (!strcmp(a, "--devices"))
			cfg->devices = (int)parse_int(need(argc, argv, &i), 0, 64);
		else if (!strcmp(a, "--slice-ns"))
			cfg->slice_ns = parse_int(need(argc, argv, &i), 100, 1000000000);
		else if (!strcmp(a, "--fault-rate"))
			cfg->fault_rate = parse_double(need(argc, argv, &i), 0, 0.5);
		else if (!strcmp(a, "--delay-rate"))
			cfg->delay_rate = parse_double(need(argc, argv, &i), 0, 1);
		else if (!strcmp(a, "--delay-point"))
			cfg->delay_point = need(argc, argv, &i);
		else if (!strcmp(a, "--kick")) {
			const char *k = need(argc, argv, &i);

			if (!strcmp(k, "signal"))
				cfg->kick_signal = true;
			else if (!strcmp(k, "futex"))
				cfg->kick_signal = false;
			else
				usage(2);
		} else if (!strcmp(a, "--round-ops"))
			cfg->round_ops = (int)parse_int(need(argc, argv, &i), 1, 48);
		else if (!strcmp(a, "--events"))
			cfg->events = (unsigned)parse_int(need(argc, argv, &i), 1, 1 << 20);
		else if (!strcmp(a, "--backlog"))
			cfg->backlog = (unsigned)parse_int(need(argc, argv, &i), 1,
							   RS_W_BACKLOG_MAX);
		else if (!strcmp(a, "--live-ms"))
			live_ms = parse_int(need(argc, argv, &i), 1, 3600000);
		else if (!strcmp(a, "--hang-ms"))
			hang_ms = parse_int(need(argc, argv, &i), 1, 3600000);
		else if (!strcmp(a, "--storm-ms"))
			cfg->storm_ns = parse_int(need(argc, argv, &i), 1, 3600000) * MS;
		else if (!strcmp(a, "--calm-ms"))
			calm_ms = parse_int(need(argc, argv, &i), 1, 3600000);
		else if (!strcmp(a, "--rekick-ns"))
			cfg->rekick_ns = parse_int(need(argc, argv, &i), 1, 1000000000);
		else if (!strcmp(a, "--json"))
			cfg->json = true;
		else if (!strcmp(a, "--quiet"))
			cfg->quiet = true;
		else if (!strcmp(a, "--keep-going"))
			cfg->keep_going = true;
		else if (!strcmp(a, "--expect"))
			cfg->expect = need(argc, argv, &i);
		else if (!strcmp(a, "--lin-corrupt"))
			cfg->lin_corrupt = (int)parse_int(need(argc, argv, &i), 1, 1000000000);
		else if (!strcmp(a, "--listeners"))
			cfg->listeners = (int)parse_int(need(argc, argv, &i), 0, 64);
		else if (!strcmp(a, "--kvm"))
			cfg->kvm = true;
		else if (!strcmp(a, "--exclusive"))
			cfg->exclusive = true;
		else if (!strcmp(a, "--excl-threads")) {
			cfg->excl_threads = (int)parse_int(need(argc, argv, &i), 0, 16);
			cfg->exclusive = true;
		} else if (!strcmp(a, "--excl-vcpu-rate")) {
			cfg->excl_vcpu_rate = parse_double(need(argc, argv, &i), 0, 0.5);
			cfg->exclusive = true;
		} else if (!strcmp(a, "--kvm-io-shift"))
			cfg->kvm_io_shift = (unsigned)parse_int(need(argc, argv, &i), 0, 32);
		else if (!strcmp(a, "--plant")) {
			cfg->plant = need(argc, argv, &i);
			if (strcmp(cfg->plant, "order") && strcmp(cfg->plant, "remove") &&
			    strcmp(cfg->plant, "section-edge"))
				usage(2);
		} else if (!strcmp(a, "--skip-checks")) {
			char buf[256], *save = NULL;

			snprintf(buf, sizeof(buf), "%s", need(argc, argv, &i));
			for (char *k = strtok_r(buf, ",", &save); k;
			     k = strtok_r(NULL, ",", &save)) {
				int j;

				for (j = 0; j < V_COUNT && strcmp(k, vname[j]); j++)
					;
				if (j == V_COUNT) {
					fprintf(stderr, "%s: unknown check '%s'\n", ctx.argv0, k);
					usage(2);
				}
				cfg->skip |= 1u << j;
			}
		} else if (!strcmp(a, "--lin-selftest"))
			exit(lin_selftest(stdout) ? 1 : 0);
		else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			usage(0);
		else {
			fprintf(stderr, "%s: unknown option '%s'\n", ctx.argv0, a);
			usage(2);
		}
	}
	if (cfg->events & (cfg->events - 1)) {
		fprintf(stderr, "%s: --events must be a power of two\n", ctx.argv0);
		usage(2);
	}
	if (cfg->plant && !strcmp(cfg->plant, "section-edge")) {
		if (!cfg->exclusive || !cfg->excl_threads) {
			fprintf(stderr, "%s: --plant section-edge needs section threads\n",
				ctx.argv0);
			usage(2);
		}
	} else if (cfg->plant && !cfg->listeners) {
		fprintf(stderr, "%s: --plant needs listeners\n", ctx.argv0);
		usage(2);
	}
	if (cfg->kvm && cfg->vcpus > (int)kvm_max_vcpus()) {
		fprintf(stderr, "%s: --kvm takes at most %u vCPUs\n", ctx.argv0, kvm_max_vcpus());
		usage(2);
	}
	if (!cfg->exclusive)
		cfg->excl_threads = 0;
	/* A KVM vCPU runs the module's loop: no sections from vCPU threads. */
	if (!cfg->exclusive || cfg->kvm)
		cfg->excl_vcpu_rate = 0;
	if (!seeded)
		cfg->seed = rsu_now_ns() ^ ((uint64_t)getpid() << 32);
	cfg->live_ns = (live_ms > 0 ? live_ms : 250 * scale_live) * MS;
	cfg->hang_ns = (hang_ms > 0 ? hang_ms : 10000 * scale_hang) * MS;
	cfg->calm_ns = calm_ms > 0 ? calm_ms * MS : 2 * cfg->live_ns + 150 * MS;
}

/* --expect: was the first violation one of the expected kinds?  (Later
 * ones may be consequences of the first: the run stops at the first.) */
int expect_status(void)
{
	int k = atomic_load(&ctx.vfirst);
	char buf[256], key[40];

	if (k < 0) {
		fprintf(stderr, "runstate-stress: NOT caught (%s expected): no violation\n",
			ctx.cfg.expect);
		return 0;
	}
	snprintf(buf, sizeof(buf), ",%s,", ctx.cfg.expect);
	snprintf(key, sizeof(key), ",%s,", vname[k]);
	if (strstr(buf, key)) {
		fprintf(stderr, "runstate-stress: caught: the first violation is '%s' "
				"(expected %s)\n", vname[k], ctx.cfg.expect);
		return 1;
	}
	fprintf(stderr, "runstate-stress: NOT caught as expected: the first violation is '%s', "
			"not one of %s\n", vname[k], ctx.cfg.expect);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Tests of the library against real vCPUs in KVM_RUN (stress/kvm/kvm.h).
 *
 *	test_kvm race        [options]  stops hammered around guest entry
 *	test_kvm io-complete [options]  savevm right after I/O exits; guest panic
 *	test_kvm exclusion   [options]  internal locks freeze the guest counters
 *	test_kvm stuck       [options]  a vCPU stuck in an MMIO exit, diagnosed
 *	test_kvm figures     [options]  stop/start latency (not a test)
 *	test_kvm speed       [options]  guest loop and exit rates (not a test)
 *
 * Options: --vcpus N, --seconds S, --iters N, --window-ns NS, --io-shift S,
 * --hlt-every N, --handshake on|no-ie|clear-late, --no-complete,
 * --expect-race, --until-kick, --kind in|out|mmio-read|mmio-write, --seed N,
 * --rekick-us N, --hlt-us N (figures, speed).
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no usable /dev/kvm; ThreadSanitizer).
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_kvm.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RK_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define RK_TSAN 1
#endif

int failures;

void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	failures++;
}

/* Random delays, from --seed. */
struct rsu_rng rng;

uint64_t rnd(void)
{
	return rsu_rng_next(&rng);
}

int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t pct(uint64_t *v, size_t n, double p)
{
	size_t i;

	if (!n)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

void dump_state(rs_runstate *rs, struct rk_vm *vm)
{
	char buf[4096], line[200];

	rs_dump(rs, buf, sizeof(buf));
	fprintf(stderr, "%s", buf);
	for (unsigned i = 0; i < rk_vm_nvcpus(vm); i++) {
		rk_vcpu_describe(vm, i, line, sizeof(line));
		fprintf(stderr, "  %s\n", line);
	}
}

/* Common setup: instance, VM, threads (VM still in prelaunch). */
int setup(const struct opts *o, struct rk_config *kc, rs_runstate **rs, struct rk_vm **vm)
{
	struct rs_config rc = { .size = sizeof(rc), .rekick_ns = o->rekick_ns };
	char why[256] = "";
	int r;

	r = rs_create(&rc, rs);
	if (r) {
		fail("rs_create: %s", rs_strerror(r));
		return r;
	}
	r = rk_vm_create(*rs, kc, vm, why, sizeof(why));
	if (r) {
		fail("rk_vm_create: %s", why);
		rs_destroy(*rs);
		return r;
	}
	r = rk_vm_start_threads(*vm);
	if (r) {
		fail("rk_vm_start_threads: %d (%s)", r, rk_vm_error(*vm) ? rk_vm_error(*vm) : "");
		rk_vm_destroy(*vm);
		rs_destroy(*rs);
		return r;
	}
	return 0;
}

void teardown(rs_runstate *rs, struct rk_vm *vm)
{
	int r;

	/* Stop first: with a broken handshake an exit request's kick can be
	 * lost too, while a stop is re-kicked. */
	rs_stop(rs, 2000000000);
	r = rk_vm_join_threads(vm);
	if (r)
		fail("vcpu error: %s", rk_vm_error(vm));
	rk_vm_destroy(vm);
	rs_destroy(rs);
}

/* Wait until every counter differs from snap (the guest runs). */
bool wait_all_moved(struct rk_vm *vm, const uint32_t *snap, uint64_t timeout_ns)
{
	uint64_t deadline = rsu_now_ns() + timeout_ns;
	unsigned n = rk_vm_nvcpus(vm);

	for (;;) {
		unsigned moved = 0;

		for (unsigned i = 0; i < n; i++)
			moved += rk_guest_counter(vm, i) != snap[i];
		if (moved == n)
			return true;
		if (rsu_now_ns() > deadline)
			return false;
		sched_yield();
	}
}

/* Start the VM and wait until every guest runs. */
void start_guests(rs_runstate *rs, struct rk_vm *vm)
{
	uint32_t snap[RK_MAX_VCPUS];

	rk_guest_counters(vm, snap);
	rs_start(rs, 0);
	if (!wait_all_moved(vm, snap, 2000000000))
		fail("the guest does not run");
}

/*
 * With the VM stopped or locked: every vCPU out, none in KVM_RUN, and the
 * guest counters not moving.
 *
 * A vCPU may be active for a moment after the stop returned without
 * running guest code: rs_vcpu_enter() loads the word, and if the VM may
 * run, announces (ACTIVE) and loads it again; a stop whose CAS, scan and
 * wait all fall between the two loads does not see it, and its second load
 * sees the stop, so it retreats (docs/protocol.md, "out to active").  So
 * a vCPU seen active here must be out within 100 ms, never in KVM_RUN
 * meanwhile, and with its guest counter where it was.
 */
#define RETREAT_NS 100000000

bool check_frozen(rs_runstate *rs, struct rk_vm *vm, const char *what, unsigned long it)
{
	unsigned n = rk_vm_nvcpus(vm), reg = 0, out = 0;
	uint32_t c0[RK_MAX_VCPUS], c1[RK_MAX_VCPUS];
	uint64_t t0 = 0, t;

	rk_guest_counters(vm, c0);
	for (;;) {
		for (unsigned i = 0; i < n; i++)
			if (rk_vcpu_in_run(vm, i)) {
				fail("%s #%lu: vcpu %u in KVM_RUN while acknowledged", what, it, i);
				return false;
			}
		rs_vcpu_count(rs, &reg, &out);
		if (reg != n) {
			fail("%s #%lu: %u vCPUs registered, not %u", what, it, reg, n);
			return false;
		}
		if (out == n)
			break;
		t = rsu_now_ns();
		if (!t0)
			t0 = t;
		else if (t - t0 > RETREAT_NS) {
			fail("%s #%lu: %u of %u vCPUs out, still after %.1f ms", what, it, out, n,
			     (double)(t - t0) / 1e6);
			return false;
		}
		sched_yield();
	}
	if (t0)
		printf("%s #%lu: a vCPU announced after the stop returned and retreated in "
		       "%.1f us\n", what, it, (double)(rsu_now_ns() - t0) / 1e3);
	/* Long enough for a running guest to advance its counter several
	 * times even where KVM emulates the real-mode loop (about 0.3 M
	 * iterations/s under kvm_pvm); short enough for thousands of rounds. */
	rsu_spin_ns(20000);
	rk_guest_counters(vm, c1);
	for (unsigned i = 0; i < n; i++)
		if (c0[i] != c1[i]) {
			fail("%s #%lu: vcpu %u's guest counter moved while stopped (%u -> %u)",
			     what, it, i, c0[i], c1[i]);
			return false;
		}
	return true;
}

const char *hs_name(enum rk_handshake h)
{
	return h == RK_HANDSHAKE_ON ? "on" : h == RK_HANDSHAKE_NO_IE ? "no-ie" : "clear-late";
}

void print_stats(const char *tag, rs_runstate *rs, struct rk_vm *vm)
{
	struct rs_stats st = { .size = sizeof(st) };
	struct rk_vcpu_stats ks;

	rs_get_stats(rs, &st);
	rk_vm_stats(vm, &ks);
	printf("%s: library: stop_edges %" PRIu64 " kicks %" PRIu64 " rekicks %" PRIu64
	       " parks %" PRIu64 " timeouts %" PRIu64 "\n",
	       tag, st.stop_edges, st.kicks, st.rekicks, st.parks, st.timeouts);
	printf("%s: vcpus: KVM_RUN %" PRIu64 " eintr %" PRIu64 " out %" PRIu64 " in %" PRIu64
	       " mmio w/r %" PRIu64 "/%" PRIu64 " hlt %" PRIu64 " completions %" PRIu64
	       " signals %" PRIu64 " (mean delivery %.1f us) window-kicks %" PRIu64
	       " lost-kicks %" PRIu64 "\n",
	       tag, ks.runs, ks.eintr, ks.exits_out, ks.exits_in, ks.exits_mmio_w,
	       ks.exits_mmio_r, ks.exits_hlt, ks.completions, ks.signals,
	       ks.signals ? (double)ks.kick_latency_sum_ns / (double)ks.signals / 1e3 : 0.0,
	       ks.window_kicks, ks.lost_kicks);
}

const char *kind_name(int k)
{
	switch (k) {
	case RK_EXIT_OUT: return "out";
	case RK_EXIT_IN: return "in";
	case RK_EXIT_MMIO_WRITE: return "mmio-write";
	case RK_EXIT_MMIO_READ: return "mmio-read";
	default: return "?";
	}
}

/* ---------------------------------------------------------------------------
 * Options and main
 */

static void usage(void)
{
	fprintf(stderr,
		"usage: test_kvm race|io-complete|exclusion|stuck|figures|speed [--vcpus N]\n"
		"       [--seconds S] [--iters N] [--window-ns NS] [--io-shift S] [--hlt-every N]\n"
		"       [--handshake on|no-ie|clear-late] [--no-complete] [--expect-race]\n"
		"       [--until-kick] [--kind in|out|mmio-read|mmio-write]\n"
		"       [--seed N] [--rekick-us N] [--hlt-us N]\n");
	exit(2);
}

/* An option's value, whole: a number up to max, or a usage error (never
 * its leading digits only). */
static uint64_t num(const char *v, uint64_t max)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || end == v || *end || *v == '-' || x > max)
		usage();
	return x;
}

static double seconds(const char *v)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end || !(x > 0 && x <= 86400))
		usage();
	return x;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.vcpus = 1, .seconds = 2.0, .io_shift = 10, .hlt_every = 0,
		.handshake = RK_HANDSHAKE_ON, .seed = 1, .rekick_ns = 1000000,
	};
	char why[256] = "";
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef RK_TSAN
	printf("SKIP: not under ThreadSanitizer (its deferred signal delivery breaks the "
	       "immediate-exit handshake)\n");
	return SKIP;
#endif
	if (argc < 2)
		usage();
	o.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--no-complete"))
			o.no_complete = true;
		else if (!strcmp(a, "--expect-race"))
			o.expect_race = true;
		else if (!strcmp(a, "--until-kick"))
			o.until_kick = true;
		else if (!v)
			usage();
		else if (!strcmp(a, "--vcpus"))
			o.vcpus = (unsigned)num(v, RK_MAX_VCPUS), i++;
		else if (!strcmp(a, "--seconds"))
			o.seconds = seconds(v), i++;
		else if (!strcmp(a, "--iters"))
			o.iters = num(v, UINT32_MAX), i++;
		else if (!strcmp(a, "--window-ns"))
			o.window_ns = num(v, UINT64_MAX / 2), i++;
		else if (!strcmp(a, "--io-shift"))
			o.io_shift = (unsigned)num(v, 32), i++;
		else if (!strcmp(a, "--hlt-every"))
			o.hlt_every = (unsigned)num(v, UINT32_MAX), i++;
		else if (!strcmp(a, "--seed"))
			o.seed = num(v, UINT64_MAX), i++;
		else if (!strcmp(a, "--hlt-us"))
			o.hlt_ns = num(v, UINT64_MAX / 1000) * 1000, i++;
		else if (!strcmp(a, "--rekick-us"))
			o.rekick_ns = (int64_t)num(v, INT64_MAX / 1000) * 1000, i++;
		else if (!strcmp(a, "--kind")) {
			for (int k = RK_EXIT_OUT; k <= RK_EXIT_MMIO_READ; k++)
				if (!strcmp(v, kind_name(k)))
					o.kind = k;
			if (!o.kind)
				usage();
			i++;
		} else if (!strcmp(a, "--handshake")) {
			if (!strcmp(v, "on"))
				o.handshake = RK_HANDSHAKE_ON;
			else if (!strcmp(v, "no-ie"))
				o.handshake = RK_HANDSHAKE_NO_IE;
			else if (!strcmp(v, "clear-late"))
				o.handshake = RK_HANDSHAKE_CLEAR_LATE;
			else
				usage();
			i++;
		} else
			usage();
	}
	if (o.vcpus < 1 || o.vcpus > RK_MAX_VCPUS || o.io_shift > 32)
		usage();
	rng = rsu_rng_stream(o.seed, 0);

	r = rk_probe(NULL, why, sizeof(why));
	if (r) {
		printf("SKIP: KVM not usable: %s\n", why);
		return SKIP;
	}
	printf("seed %" PRIu64 "\n", o.seed);
	if (!strcmp(o.mode, "race"))
		return test_race(&o);
	if (!strcmp(o.mode, "io-complete"))
		return test_io_complete(&o);
	if (!strcmp(o.mode, "exclusion"))
		return test_exclusion(&o);
	if (!strcmp(o.mode, "stuck"))
		return test_stuck(&o);
	if (!strcmp(o.mode, "figures"))
		return figures(&o);
	if (!strcmp(o.mode, "speed"))
		return speed(&o);
	usage();
	return 2;
}


/* SPDX-License-Identifier: MIT */
/*
 * runstate-bench --cost: the work of a stop and of a start against the vCPU
 * count (issue 16), from an instrumented build (meson -Dinstrument=true).
 * For each N and k: a world of N registered vCPUs, k busy, the rest
 * quiescent (cost.h), and REPS stop/start cycles for each placement of the
 * vCPUs at the start.  Prints a table (medians over the cycles) and, with
 * --cost-out=FILE, writes every figure as JSON (medians and maxima).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cost.h"

#define MAXV 16

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The fields of struct rs_cost that are counts, by name. */
static const struct {
	const char *name;
	size_t off;
} fields[] = {
	{ "slots", offsetof(struct rs_cost, slots) },
	{ "pins", offsetof(struct rs_cost, pins) },
	{ "futex_waits", offsetof(struct rs_cost, futex_waits) },
	{ "futex_wakes", offsetof(struct rs_cost, futex_wakes) },
	{ "word_rmws", offsetof(struct rs_cost, word_rmws) },
	{ "tree_depth", offsetof(struct rs_cost, tree_depth) },
	{ "scans", offsetof(struct rs_cost, scans) },
	{ "hint_words", offsetof(struct rs_cost, hint_words) },
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static uint64_t field(const struct rs_cost *c, size_t f)
{
	return *(const uint64_t *)(const void *)((const char *)c + fields[f].off);
}

/* Median and maximum of one figure over n samples. */
struct stat2 {
	uint64_t med, max;
};

static struct stat2 stat_of(uint64_t *v, size_t n)
{
	struct stat2 s;

	qsort(v, n, sizeof(*v), cmp_u64);
	s.med = v[n / 2];
	s.max = v[n - 1];
	return s;
}

struct summary {
	struct stat2 caller[NFIELDS], total[NFIELDS], ns;
	unsigned woken;
};

static void summarize(const struct rsb_cost_sample *s, size_t n, struct summary *out)
{
	uint64_t *v = malloc(n * sizeof(*v));

	if (!v)
		abort();
	for (size_t f = 0; f < NFIELDS; f++) {
		for (size_t i = 0; i < n; i++)
			v[i] = field(&s[i].caller, f);
		out->caller[f] = stat_of(v, n);
		for (size_t i = 0; i < n; i++)
			v[i] = field(&s[i].total, f);
		out->total[f] = stat_of(v, n);
	}
	for (size_t i = 0; i < n; i++)
		v[i] = s[i].ns;
	out->ns = stat_of(v, n);
	out->woken = n ? s[0].woken : 0;
	free(v);
}

static void print_row(unsigned n, unsigned k, const char *op, const struct summary *s)
{
	printf("%5u %3u  %-18s %6llu %6llu %4llu %4llu %4llu | %7llu %7llu %5llu %5llu %5llu %3llu | %9.1f\n",
	       n, k, op,
	       (unsigned long long)s->caller[0].med, (unsigned long long)s->caller[1].med,
	       (unsigned long long)s->caller[2].med, (unsigned long long)s->caller[3].med,
	       (unsigned long long)s->caller[4].med,
	       (unsigned long long)s->total[0].med, (unsigned long long)s->total[1].med,
	       (unsigned long long)s->total[2].med, (unsigned long long)s->total[3].med,
	       (unsigned long long)s->total[4].med, (unsigned long long)s->total[5].med,
	       (double)s->ns.med / 1000.0);
	fflush(stdout);
}

static void json_row(FILE *f, bool *first, unsigned n, unsigned k, const char *op,
		     const char *start, const struct summary *s, size_t reps)
{
	fprintf(f, "%s\n    {\"vcpus\": %u, \"busy\": %u, \"op\": \"%s\", \"start\": \"%s\", "
		   "\"cycles\": %zu, \"woken\": %u, \"caller_ns\": {\"median\": %llu, \"max\": %llu}",
		*first ? "" : ",", n, k, op, start, reps, s->woken,
		(unsigned long long)s->ns.med, (unsigned long long)s->ns.max);
	for (int who = 0; who < 2; who++) {
		const struct stat2 *st = who ? s->total : s->caller;

		fprintf(f, ", \"%s\": {", who ? "total" : "caller");
		for (size_t i = 0; i < NFIELDS; i++)
			fprintf(f, "%s\"%s\": {\"median\": %llu, \"max\": %llu}", i ? ", " : "",
				fields[i].name, (unsigned long long)st[i].med,
				(unsigned long long)st[i].max);
		fprintf(f, "}");
	}
	fprintf(f, "}");
	*first = false;
}

static size_t parse_list(const char *s, unsigned *v, unsigned max_value)
{
	size_t n = 0;

	while (*s && n < MAXV) {
		char *end;
		unsigned long x = strtoul(s, &end, 10);

		if (end == s || x == 0 || x > max_value || (*end != ',' && *end != '\0'))
			return 0;
		v[n++] = (unsigned)x;
		s = *end ? end + 1 : end;
	}
	return *s ? 0 : n;
}

int rsb_cost_main(int argc, char **argv)
{
	unsigned vcpus[MAXV] = { 1, 16, 64, 256, 1024 }, busy[MAXV] = { 1, 4 };
	size_t nv = 5, nb = 2, reps = 21;
	const char *out = NULL;
	FILE *jf = NULL;
	bool first = true;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--cost"))
			continue;
		if (!strncmp(argv[i], "--cost-vcpus=", 13)) {
			nv = parse_list(argv[i] + 13, vcpus, 1024);
		} else if (!strncmp(argv[i], "--cost-busy=", 12)) {
			nb = parse_list(argv[i] + 12, busy, 1024);
		} else if (!strncmp(argv[i], "--cost-cycles=", 14)) {
			reps = strtoul(argv[i] + 14, NULL, 10);
		} else if (!strncmp(argv[i], "--cost-out=", 11)) {
			out = argv[i] + 11;
		} else {
			fprintf(stderr, "runstate-bench --cost: unknown argument %s\n"
					"  --cost-vcpus=1,16,64,256,1024 --cost-busy=1,4 "
					"--cost-cycles=21 --cost-out=FILE.json\n", argv[i]);
			return 2;
		}
		if (!nv || !nb || !reps) {
			fprintf(stderr, "runstate-bench --cost: bad value: %s\n", argv[i]);
			return 2;
		}
	}
	if (out && !(jf = fopen(out, "w"))) {
		perror(out);
		return 1;
	}
	if (jf)
		fprintf(jf, "{\"cycles\": %zu, \"rows\": [", reps);
	printf("Work per operation (medians over %zu cycles; instrumented build).\n"
	       "caller: the stopping/starting thread; total: every thread, the woken "
	       "vCPUs' wave included.\n"
	       "slots: registry slots visited; pins: slots pinned (2 RMWs each); fw/fk: "
	       "futex wait/wake calls;\nrmw: CASes on the word; d: wake-tree depth; "
	       "us: the caller's own latency (median).\n\n", reps);
	printf("%5s %3s  %-18s %6s %6s %4s %4s %4s | %7s %7s %5s %5s %5s %3s | %9s\n",
	       "N", "k", "op (start: where)", "slots", "pins", "fw", "fk", "rmw",
	       "slots", "pins", "fw", "fk", "rmw", "d", "us");
	printf("%5s %3s  %-18s %30s | %42s |\n", "", "", "", "caller", "total");
	for (size_t a = 0; a < nv; a++) {
		for (size_t b = 0; b < nb; b++) {
			unsigned n = vcpus[a], k = busy[b];
			struct rsb_cost_sample *stops, *starts[RSB_START_KINDS];
			struct rsb_cost_world *w;
			struct summary s;

			if (k > n)
				continue;
			w = rsb_cost_world_new(n, k);
			stops = calloc(reps * RSB_START_KINDS, sizeof(*stops));
			for (int h = 0; h < RSB_START_KINDS; h++)
				starts[h] = calloc(reps, sizeof(*starts[h]));
			if (!w || !stops || !starts[0] || !starts[1] || !starts[2]) {
				rc = 1;
				goto next;
			}
			/* The placements alternate cycle by cycle, so that a
			 * slow moment of the machine spreads over all three. */
			for (size_t i = 0; i < reps; i++)
				for (int h = 0; h < RSB_START_KINDS; h++)
					if (rsb_cost_cycle(w, h, &stops[i * RSB_START_KINDS + h],
							   &starts[h][i])) {
						rc = 1;
						goto next;
					}
			/* Stops in two rows: "rest quiet" when no quiescent
			 * vCPU has run since the last stop edge (the first
			 * stop, and those after a busy-parked start), whose
			 * scans skip them (the active hint, ack.c); "rest ran"
			 * after a start that made them enter, whose edge scan
			 * visits them once more and clears their hint bits. */
			{
				size_t nq = 0, nr = 0, all = reps * RSB_START_KINDS;
				struct rsb_cost_sample *q = calloc(all, sizeof(*q));
				struct rsb_cost_sample *r = calloc(all, sizeof(*r));

				if (!q || !r) {
					free(q);
					free(r);
					rc = 1;
					goto next;
				}
				for (size_t j = 0; j < all; j++) {
					if (j == 0 || j % RSB_START_KINDS == RSB_START_BUSY_PARKED + 1)
						q[nq++] = stops[j];
					else
						r[nr++] = stops[j];
				}
				summarize(q, nq, &s);
				print_row(n, k, "stop rest quiet", &s);
				if (jf)
					json_row(jf, &first, n, k, "stop", "rest quiet", &s, nq);
				if (nr) {
					summarize(r, nr, &s);
					print_row(n, k, "stop rest ran", &s);
					if (jf)
						json_row(jf, &first, n, k, "stop", "rest ran", &s, nr);
				}
				free(q);
				free(r);
			}
			for (int h = 0; h < RSB_START_KINDS; h++) {
				char op[32];

				/* With k = N nobody is left to be "the rest". */
				if (k == n && h == RSB_START_ALL_PARKED)
					continue;
				summarize(starts[h], reps, &s);
				snprintf(op, sizeof(op), "start %s", rsb_cost_start_name(h));
				print_row(n, k, op, &s);
				if (jf)
					json_row(jf, &first, n, k, "start", rsb_cost_start_name(h), &s,
						 reps);
			}
next:
			rsb_cost_world_free(w);
			free(stops);
			for (int h = 0; h < RSB_START_KINDS; h++)
				free(starts[h]);
			if (rc)
				break;
		}
		if (rc)
			break;
	}
	if (jf) {
		fprintf(jf, "\n]}\n");
		fclose(jf);
	}
	return rc;
}

/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "rsutil.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t rsu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rsu_sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };

	if (ns > 0)
		nanosleep(&ts, NULL);
}

void rsu_spin_ns(int64_t ns)
{
	uint64_t end = rsu_now_ns() + (uint64_t)(ns > 0 ? ns : 0);

	while (rsu_now_ns() < end)
		for (int i = 0; i < 16; i++)
			rsu_cpu_relax();
}

uint64_t rsu_rng_next(struct rsu_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct rsu_rng rsu_rng_stream(uint64_t seed, uint64_t stream)
{
	struct rsu_rng r = { seed ^ (stream * 0xd1b54a32d192ed03ull) };

	rsu_rng_next(&r);
	return r;
}

uint64_t rsu_rng_below(struct rsu_rng *r, uint64_t n)
{
	return n ? rsu_rng_next(r) % n : 0;
}

int64_t rsu_rng_range(struct rsu_rng *r, int64_t lo, int64_t hi)
{
	return lo + (int64_t)rsu_rng_below(r, (uint64_t)(hi - lo + 1));
}

bool rsu_rng_chance(struct rsu_rng *r, double p)
{
	return p > 0 && (double)(rsu_rng_next(r) >> 11) * 0x1p-53 < p;
}

int rsu_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;

	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}
	return syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0) == 0 ? 0 : -errno;
}

int rsu_futex_wake(uint32_t *addr, int n)
{
	long r = syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);

	return r < 0 ? -errno : (int)r;
}

/*
 * The process's CPUs, read once before main(): a thread's own mask changes
 * when it pins itself, and a thread it creates inherits that, so a mask read
 * later on some thread would no longer say which CPUs the process may use.
 */
static cpu_set_t proc_cpus;
static unsigned proc_ncpus;

__attribute__((constructor)) static void read_proc_cpus(void)
{
	long n;

	if (sched_getaffinity(0, sizeof(proc_cpus), &proc_cpus) == 0 && CPU_COUNT(&proc_cpus) > 0) {
		proc_ncpus = (unsigned)CPU_COUNT(&proc_cpus);
		return;
	}
	/* No mask to read: every online CPU. */
	n = sysconf(_SC_NPROCESSORS_ONLN);
	proc_ncpus = n > 0 ? (unsigned)n : 1;
	CPU_ZERO(&proc_cpus);
	for (unsigned c = 0; c < proc_ncpus && c < CPU_SETSIZE; c++)
		CPU_SET(c, &proc_cpus);
}

unsigned rsu_ncpus(void)
{
	return proc_ncpus;
}

int rsu_cpu_id(unsigned n)
{
	unsigned k = 0, want = n % proc_ncpus;

	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &proc_cpus) && k++ == want)
			return c;
	return -EINVAL;
}

int rsu_pin_self(unsigned n)
{
	cpu_set_t one;
	int c = rsu_cpu_id(n);

	if (c < 0)
		return c;
	CPU_ZERO(&one);
	CPU_SET(c, &one);
	return -pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
}

int rsu_unpin_self(void)
{
	return -pthread_setaffinity_np(pthread_self(), sizeof(proc_cpus), &proc_cpus);
}

const char *rsu_word_str(uint64_t w, char *buf, size_t len)
{
	static const char *const locks[6] = { "debug", "savevm", "pre-migrate", "restore",
					      "lock4", "lock5" };
	size_t n = 0;
	int r;

#define PUT(...) do { \
	r = snprintf(buf + n, n < len ? len - n : 0, __VA_ARGS__); \
	if (r > 0) n += (size_t)r; \
} while (0)
	if (!len)
		return buf;
	buf[0] = 0;
	PUT("edge %u", rsu_edge(w));
	if (w & RS_W_LOCKS) {
		const char *sep = " locks=";

		for (int i = 0; i < 6; i++)
			if (w & RS_W_LOCK(i)) {
				PUT("%s%s", sep, locks[i]);
				sep = ",";
			}
	}
	if (w & RS_W_IO_ERROR)
		PUT(" io");
	if (rsu_pause(w))
		PUT(" pause=%s", rs_pause_name((int)rsu_pause(w)));
	if (w & RS_W_EXCL)
		PUT(" EX");
	if (w & RS_W_RSV_NORUN)
		PUT(" RV");
	if (rsu_backlog(w))
		PUT(" backlog %u", rsu_backlog(w));
	if (w & RS_W_OVERFLOW)
		PUT(" OV");
	if (rsu_coal(w))
		PUT(" coal %u", rsu_coal(w));
	if (w & RS_W_COAL_GEN)
		PUT(" GN");
	if (w & RS_W_PARKED)
		PUT(" PK");
	if (w & RS_W_LOCKWAIT)
		PUT(" LW");
#undef PUT
	return buf;
}

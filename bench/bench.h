/* SPDX-License-Identifier: MIT */
/*
 * runstate-bench: the pieces shared by the benchmarks (bench.c, bench_kvm.c),
 * the world harness (world.c) and the implementations compared (impl_*.c),
 * the plug-in seam: a struct impl each.
 *
 * A world is one benchmark's set of simulated vCPU threads running one
 * implementation.  A vCPU runs short busy "guest slices" (an interpreter
 * loop) and asks the implementation between slices whether it may go on:
 *
 *	while (impl->enter(v))              // slow path: blocks while stopped
 *		while (impl->may_run(v))    // fast path, between slices
 *			slice(v);
 *
 * A `sig` implementation's vCPUs never poll: their guest loop ends only when
 * a kick signal arrives (KVM_RUN with immediate_exit), so those rows measure
 * signal kicks rather than flag kicks.
 *
 * An exclusive world (the exclusive/<impl> rows) runs the same loop with
 * the implementation's optional bracket around every slice, and its vCPU 0
 * takes exclusive sections between two slices when the benchmark thread
 * asks for them (rsb_exclusive()), each once every other vCPU is busy:
 *
 *	while (impl->enter(v))
 *		while (impl->may_run(v)) {
 *			if (v is vCPU 0, sections are asked for, and the
 *			    others have run a few slices since)
 *				excl_begin(v), one slice, excl_end(v);
 *			else
 *				exec_start(v), slice(v), exec_end(v);
 *		}
 */
#ifndef RSB_BENCH_H
#define RSB_BENCH_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rsutil.h"

#define RSB_KICK_SIGNAL SIGUSR1

struct world;

/* One simulated vCPU.  The first line is written by the vCPU thread only. */
struct vcpu {
	_Atomic uint32_t in_slice;      /* executing a guest slice now */
	_Atomic uint32_t seen_gen;      /* last world arm_gen it stamped */
	_Atomic uint64_t slices;        /* slices completed */
	_Atomic uint64_t entry_ns;      /* start of the first slice after arming */
	_Atomic uint32_t ready;         /* registered with the implementation */
	_Atomic uint32_t probe_ack;     /* the last world probe_req seen */
	pid_t tid;
	unsigned idx;
	int cpu;                        /* pinned to this CPU, or -1 */
	pthread_t thread;
	struct world *w;
	void *impl;                     /* the implementation's per-vCPU state */
} __attribute__((aligned(128)));

struct world {
	const struct impl *impl;
	unsigned n;
	bool oversub;                   /* more runnable threads than CPUs */
	struct vcpu *v;
	void *impl_data;                /* the implementation's shared state */
	_Atomic uint32_t go;
	_Atomic uint32_t quit;
	/* Set while the world waits, stopped, beside another being measured:
	 * vCPUs that spin while stopped sleep on it instead (rsb_idle_wait()). */
	_Atomic uint32_t idle;
	/* Bumped by the benchmark thread when it wants the next slice of
	 * every vCPU time-stamped; read by every slice (read-mostly line). */
	_Atomic uint32_t arm_gen __attribute__((aligned(64)));
	/* Exclusive worlds: bumped by the benchmark thread to ask vCPU 0 for
	 * a section; read by vCPU 0 between slices. */
	_Atomic uint32_t excl_req;
	/* Bumped by the benchmark thread to time a round trip to vCPU 0
	 * (rsb_probe()); echoed by vCPU 0 between slices. */
	_Atomic uint32_t probe_req;
	char pad[52];
	/* Exclusive worlds: vCPU 0's answer, for the benchmark thread, which
	 * sleeps on excl_done (a futex: the request number answered); the
	 * rest is written before it (release) and read after (acquire). */
	_Atomic uint32_t excl_done __attribute__((aligned(64)));
	_Atomic uint32_t excl_taken;    /* the answer the benchmark thread took */
	bool excl;                      /* an exclusive world */
	uint64_t excl_first_ns, excl_ns;
	const char *excl_err;
	uint64_t *excl_base;            /* vCPU 0's: slice counts (world.c) */
};

struct impl {
	const char *name;               /* as in the benchmark names */
	bool sig;                       /* vCPUs stop only on a signal kick */
	bool parks;                     /* stopped vCPUs sleep (else they spin) */
	bool created_stopped;           /* init() leaves the vCPUs stopped */

	/* Shared state; called on the benchmark thread.  0 or -errno. */
	int (*init)(struct world *w);
	void (*fini)(struct world *w);
	/* On the vCPU's own thread, before and after its loop. */
	int (*vcpu_init)(struct vcpu *v);
	void (*vcpu_fini)(struct vcpu *v);
	/* The slow path: returns true once v may execute guest slices,
	 * false when the world quits. */
	bool (*enter)(struct vcpu *v);
	/* The check between slices (not called for sig implementations). */
	bool (*may_run)(struct vcpu *v);
	/* Management, on the benchmark thread.  stop returns once every vCPU
	 * has left guest execution; start releases them. */
	void (*stop)(struct world *w);
	void (*start)(struct world *w);
	/* An internal lock (savevm-like) and its release; the lock waits for
	 * the vCPUs like a stop. */
	void (*lock)(struct world *w);
	void (*unlock)(struct world *w);
	/* Make every enter() return false, whatever the state. */
	void (*quit)(struct world *w);
	/* Optional: futex sleeps of vCPUs and wakes of them so far. */
	void (*stats)(struct world *w, uint64_t *parks, uint64_t *wakes);

	/* Exclusive worlds only (exclusive/<name>).  Optional: around every
	 * guest slice of every vCPU (QEMU's cpu_exec_start / cpu_exec_end). */
	void (*exec_start)(struct vcpu *v);
	void (*exec_end)(struct vcpu *v);
	/* On vCPU 0's thread, between two slices: begin a section (every
	 * other vCPU out, v ready to run its exclusive slice), end it.
	 * 0 or -errno. */
	int (*excl_begin)(struct vcpu *v);
	int (*excl_end)(struct vcpu *v);

	/* fastpath/<name>: set up the calling thread as a running vCPU and
	 * return a context; run n checks, returning how many said "run". */
	void *(*fast_setup)(void);
	unsigned (*fast_run)(void *ctx, unsigned n);
	void (*fast_teardown)(void *ctx);
};

extern const struct impl impl_runstate, impl_runstate_sig;
extern const struct impl impl_qemu_condvar, impl_qemu_condvar_sig;
extern const struct impl impl_qemu_exclusive;
extern const struct impl impl_ck_brlock;
extern const struct impl impl_urcu_qsbr;
extern const struct impl impl_spin_floor;
extern const struct impl impl_futex_wake_all;
extern const struct impl impl_plain_load;

/* world.c: the simulated vCPUs' harness. */
void rsb_world_init(void);
/* Start n vCPU threads under impl; returns once every one has executed a
 * guest slice (0), or -errno with nothing left running.  excl: an
 * exclusive world (impl has excl_begin). */
int rsb_world_up(struct world *w, const struct impl *impl, unsigned n, bool excl);
void rsb_world_down(struct world *w);
/* Have every vCPU stamp the start of its next slice; only when none may
 * begin one (stopped).  Returns the generation for rsb_wait_entered(). */
uint32_t rsb_arm(struct world *w);
/* The latest of those stamps once every vCPU has one, or 0 after 10 s. */
uint64_t rsb_wait_entered(struct world *w, uint32_t gen);
/* After a stop: every vCPU asleep, for a fixed while (implementations
 * whose stopped vCPUs park; true at once for the others); false after
 * 10 s. */
bool rsb_wait_parked(struct world *w);
uint64_t rsb_slices_sum(const struct world *w);
/* No vCPU inside a guest slice. */
bool rsb_all_out(const struct world *w);
/* Exclusive worlds: have vCPU 0 take two sections, each once every other
 * vCPU is busy, and wait (asleep) for them.  *first_ns, *ns: how long each
 * one's begin and end took, vCPU 0's re-entry included, its exclusive slice
 * and the checks not.  Returns an error message or NULL. */
const char *rsb_exclusive(struct world *w, uint64_t *first_ns, uint64_t *ns);
/* The machine's mode now: the shortest of RSB_PROBE_ROUNDS round trips of
 * a cache line between the calling thread and vCPU 0, which must be
 * running guest slices on a CPU of its own; 0 if it did not answer within
 * a millisecond.  See world.c. */
#define RSB_PROBE_ROUNDS 8
uint64_t rsb_probe(struct world *w);
/* Paired runs: keep a world stopped and its vCPUs asleep, and wake it up
 * again (error message or NULL). */
void rsb_go_idle(struct world *w);
const char *rsb_wake_up(struct world *w);

/* For the implementations (world.c).  Send the kick signal to v's thread. */
void rsb_kick_signal(struct vcpu *v);
/* Wait politely in a spin loop: a pause, and a yield every so often when
 * the world is oversubscribed (a spinner would otherwise hold the CPU the
 * thread it waits for needs). */
void rsb_spin(const struct world *w, unsigned *i);
/* For vCPUs that spin while stopped: if the world is idle, sleep until it is
 * not (returns true: re-check everything). */
bool rsb_idle_wait(struct world *w);
/* Is thread tid of this process asleep ('S' in /proc)? */
bool rsb_thread_sleeping(pid_t tid);

/* bench.c: latency samples, every one kept (up to a cap) for percentiles. */
struct rsb_samples {
	uint64_t *v;
	size_t n, cap, max;
	bool sorted;
};
/* Room for `cap` samples now, and never more than `max` (0: no limit). */
int rsb_samples_init(struct rsb_samples *s, size_t cap, size_t max);
/* 0, or -ENOMEM (the sample is lost). */
int rsb_samples_add(struct rsb_samples *s, uint64_t ns);
/* Nearest-rank percentile p (sorts the samples). */
double rsb_samples_pct(struct rsb_samples *s, unsigned p);
void rsb_samples_free(struct rsb_samples *s);

/* bench_kvm.c: register the KVM benchmarks for these vCPU counts, if
 * /dev/kvm is usable (else a line on stderr). */
void rsb_kvm_register(const unsigned *ns, size_t nn);

#endif

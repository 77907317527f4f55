/* SPDX-License-Identifier: MIT */
/*
 * Private to the library: the instance, made of one part per module.
 *
 * Each module (one .c file, one protocol or subsystem) owns a sub-struct of
 * the instance and is the only file that touches it; the others call its
 * functions, declared in its header.  A pairing of two memory accesses is
 * therefore always inside one file, where its comment names the other side
 * (docs/architecture.md has the map, tests/abi/check-ownership.sh the rule).
 * The word itself is shared by design: every module that changes it does so
 * through the accessors below, and those that may make an edge through
 * settle.c's rs_edge_cas().
 */
#ifndef RS_INSTANCE_H
#define RS_INSTANCE_H

#define RS_BUILDING_LIB 1
#include "runstate.h"
#include "runstate-testing.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "word.h"
#include "transition.h"

#define RS_HIDDEN __attribute__((visibility("hidden")))
#define RS_LINE 64
#define RS_PAGE 4096
/*
 * The code a stop runs before its kick, and the reads of the state that an
 * emulator makes just before a command (rs_word(), rs_decode(),
 * rs_events_cursor(): QEMU's main loop does), kept together: GNU ld places
 * every .text.hot.* input section at the start of .text, so these share a
 * page or two of code and its TLB entries, where they were spread over the
 * library's 35 KiB.  A stop made by a thread that slept until then pays for
 * every line and page it touches (docs/performance.md, "The cold stop").
 */
#define RS_HOT __attribute__((section(".text.hot.runstate")))

struct rs_instance;
struct rs_vcpu_impl;

#include "os.h"
#include "cost.h"
#include "registry.h"
#include "vcpu.h"
#include "ack.h"
#include "park.h"
#include "settle.h"
#include "events.h"
#include "lockq.h"
#include "listener.h"
#include "commands.h"
#include "exclusive.h"

/* Grouped by who bumps them, one cache line per group: a stop or start
 * must not pull in a line that the vCPUs or event readers just wrote.
 * Shared by every module (each bumps its own), read by rs_get_stats(). */
struct rs_counters {
	/* management threads and the settler */
	_Atomic uint64_t stop_edges, start_edges, kicks, rekicks, timeouts, listener_runs;
	/* vCPUs (parks; wakes as they pass a tree wake on) */
	_Alignas(RS_LINE) _Atomic uint64_t parks, wakes;
	/* event readers */
	_Alignas(RS_LINE) _Atomic uint64_t events_lost;
};

#define RS_STAT_INC(ri, field) \
	atomic_fetch_add_explicit(&(ri)->stats.field, 1, memory_order_relaxed)

/*
 * Laid out by who writes what, and when: a stop's critical path is a few
 * cache-line transfers between the stopper and the vCPUs, and any field
 * that shares a line with one of those adds a transfer of its own.  With
 * pending, the settle mutex and the ops table on one line, the last
 * acknowledgement's fetch_sub and failed trylock stole the line the stopper
 * was about to unlock and read its clock through: about 80 ns of a 400 ns
 * stop (docs/performance.md).
 */
struct rs_instance {
	/* The word: the public struct (rs_may_run() loads its member),
	 * first, alone on its cache line. */
	rs_runstate pub;
	char pad0[RS_LINE - sizeof(rs_runstate)];

	/* Read-mostly: written at creation (the registry's hiwater and
	 * count also on registration), read on every path. */
	_Alignas(RS_LINE) struct rs_os os;
	struct rs_registry reg;
	/* Configuration, instance.c's: every command's transition reads
	 * max_backlog, the early wake (commands.c) ncpus. */
	unsigned max_backlog;
	uint32_t ncpus;
	/* What calloc() returned: the instance is its first page-aligned
	 * byte (rs_create_ops()). */
	void *block;

	_Alignas(RS_LINE) struct rs_settle settle;
	_Alignas(RS_LINE) struct rs_ack ack;
	_Alignas(RS_LINE) struct rs_lockq lockq;
	/* Sections: their queue's mutex and owner, written by section
	 * threads only, read by vCPU slow paths. */
	_Alignas(RS_LINE) struct rs_excl excl;
	/* Events, produced in edge order by the settle mutex holder, read
	 * by consumers; and the listener set, read by the same settler. */
	_Alignas(RS_LINE) struct rs_events ev;
	struct rs_listeners lis;
	/* Counters, bumped from every thread: kept off the lines above. */
	_Alignas(RS_LINE) struct rs_counters stats;
#ifdef RS_INSTRUMENT
	/* The work counters of an instrumented build (cost.h). */
	_Alignas(RS_LINE) struct rs_cost_part cost;
#endif
};

_Static_assert(offsetof(struct rs_instance, pub) == 0, "the public struct comes first");
_Static_assert(_Alignof(struct rs_instance) >= RS_LINE, "line-aligned groups");

/* The instance behind a handle: the public struct is its first member, so a
 * pointer to one, converted, points to the other (C11 6.7.2.1p15). */
static inline struct rs_instance *rs_inst(const rs_runstate *rs)
{
	return (struct rs_instance *)(void *)(uintptr_t)rs;
}

/*
 * The word is the public struct's plain uint64_t (so that the header's
 * fast path reads it without type punning), accessed only through these,
 * with the __atomic builtins, whose memory orders are <stdatomic.h>'s.
 * Macros, so that the order is always a constant.
 */
_Static_assert(memory_order_relaxed == __ATOMIC_RELAXED && memory_order_acquire == __ATOMIC_ACQUIRE &&
	       memory_order_release == __ATOMIC_RELEASE && memory_order_seq_cst == __ATOMIC_SEQ_CST,
	       "the builtins take <stdatomic.h>'s orders");
#define rs_word_load(ri, mo) __atomic_load_n(&(ri)->pub.word_private, (mo))
#define rs_word_init(ri, w) __atomic_store_n(&(ri)->pub.word_private, (w), __ATOMIC_RELAXED)
/* Weak and strong compare-and-swap: *old is updated on failure.  An
 * instrumented build counts every attempt (cost.h). */
#define rs_word_cost(ri) RS_COST_ADD(&(ri)->cost, RS_COST_WORD_RMWS, 1)
#define rs_word_cas_weak(ri, old, nw, ok, fail) \
	(rs_word_cost(ri), \
	 __atomic_compare_exchange_n(&(ri)->pub.word_private, (old), (nw), true, (ok), (fail)))
#define rs_word_cas_strong(ri, old, nw, ok, fail) \
	(rs_word_cost(ri), \
	 __atomic_compare_exchange_n(&(ri)->pub.word_private, (old), (nw), false, (ok), (fail)))
#define rs_word_prefetch(ri) __builtin_prefetch((const void *)&(ri)->pub.word_private)

/* transition.c: rs_decode() into a struct of the library's own size. */
RS_HIDDEN void rs_decode_into(uint64_t w, struct rs_state *st);

#endif

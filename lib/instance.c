/* SPDX-License-Identifier: MIT */
/*
 * Instances: creation, destruction, and the calls that read the word.
 * Each module sets up and tears down its own part (instance.h).
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "instance.h"

/* The published sizes are part of the ABI: they never change, and fields
 * are only ever added after them (tests/abi). */
_Static_assert(RS_CONFIG_SIZE_0_9 == offsetof(struct rs_config, max_backlog) + sizeof(unsigned),
	       "rs_config 0.9");
_Static_assert(RS_STATE_SIZE_0_9 == offsetof(struct rs_state, edge) + sizeof(uint32_t),
	       "rs_state 0.9");
_Static_assert(RS_STATS_SIZE_0_9 == offsetof(struct rs_stats, coalesced) + sizeof(uint64_t),
	       "rs_stats 0.9");
_Static_assert(RS_EVENT_SIZE_0_9 == offsetof(struct rs_event, state) + 24, "rs_event 0.9");
_Static_assert(RS_EVENT_SIZE_0_9 <= sizeof(struct rs_event) &&
	       offsetof(struct rs_event, state) + RS_STATE_SIZE_0_9 <= RS_EVENT_SIZE_0_9,
	       "rs_event 0.9 holds the 0.9 state");
_Static_assert(sizeof(rs_vcpu) == 128 && _Alignof(rs_vcpu) == 64, "rs_vcpu storage");

unsigned rs_version(void)
{
	return RS_VERSION_MAJOR << 16 | RS_VERSION_MINOR << 8 | RS_VERSION_PATCH;
}

bool rs_may_run_func(const rs_runstate *rs)
{
	rs_vcpu_check_active(rs_inst(rs));
	return rs_may_run(rs);
}

RS_HOT uint64_t rs_word(const rs_runstate *rs)
{
	if (!rs)
		return 0;
	/* Acquire: pairs with the release part of every command's CAS, so a
	 * caller that sees a state also sees what was written before it. */
	return rs_word_load(rs_inst(rs), memory_order_acquire);
}

/* The CPUs this process may run on (its affinity mask, as taskset or a
 * container's cpuset leaves it; else the online count): the early wake's
 * "fewer vCPUs than CPUs" (commands.c). */
static uint32_t usable_cpus(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (uint32_t)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (uint32_t)n : 1;
}

/*
 * The caller's struct rs_config, as far as it goes, into a full one with
 * zeros beyond: the extensible-struct rule of Linux's clone3() and
 * openat2(), so that callers compiled against another version keep
 * working.  A newer caller's bytes beyond ours must be zero.
 */
static int config_in(const struct rs_config *cfg, struct rs_config *c)
{
	memset(c, 0, sizeof(*c));
	if (!cfg)
		return 0;
	if (cfg->size < RS_CONFIG_SIZE_0_9)
		return RS_EINVAL;
	if (cfg->size > sizeof(*c)) {
		const unsigned char *extra = (const unsigned char *)cfg + sizeof(*c);

		for (size_t i = 0; i < cfg->size - sizeof(*c); i++)
			if (extra[i])
				return RS_EINVAL;
	}
	memcpy(c, cfg, cfg->size < sizeof(*c) ? cfg->size : sizeof(*c));
	return 0;
}

int rs_create_ops(const struct rs_config *cfg, const struct rs_ops *ops, rs_runstate **out)
{
	struct rs_config c;
	struct rs_instance *ri;
	size_t ib, hb, bytes;
	void *block;

	if (!out || config_in(cfg, &c))
		return RS_EINVAL;
	if (!c.max_vcpus)
		c.max_vcpus = 1024;
	if (!c.rekick_ns)
		c.rekick_ns = 1000000;
	if (!c.event_capacity)
		c.event_capacity = 256;
	if (!c.max_backlog)
		c.max_backlog = 64;
	if ((c.event_capacity & (c.event_capacity - 1)) || c.event_capacity > (1u << 20) ||
	    c.max_vcpus > (1u << 20) || c.rekick_ns < 0 || c.max_backlog > RS_W_BACKLOG_MAX)
		return RS_EINVAL;

	/*
	 * One page-aligned block: the instance, the active hint, the
	 * registry's slots.  A stop reaches its kick through the word, the
	 * hint, the vCPU's slot and the instance's other lines; in one page
	 * (up to about 100 vCPUs) they cost a stopper woken from idle one
	 * TLB walk instead of three, a walk that under nested paging costs
	 * hundreds of nanoseconds (docs/performance.md, "The cold stop").
	 * calloc(), one page more, aligned by hand: a large block (16 MiB
	 * of slots at 2^20 vCPUs) then comes zeroed from the kernel and is
	 * committed only as slots are used, where aligned_alloc() and a
	 * memset() would commit all of it at creation.
	 */
	ib = (sizeof(*ri) + RS_LINE - 1) & ~(size_t)(RS_LINE - 1);
	hb = rs_ack_hint_bytes(c.max_vcpus);
	bytes = ib + hb + rs_registry_bytes(c.max_vcpus);
	block = calloc(1, bytes + RS_PAGE);
	if (!block)
		return RS_ENOMEM;
	ri = (struct rs_instance *)(void *)(((uintptr_t)block + RS_PAGE - 1) &
					    ~(uintptr_t)(RS_PAGE - 1));
	ri->block = block;
	rs_registry_init(&ri->reg, c.max_vcpus, (struct rs_slot *)(void *)((char *)ri + ib + hb),
			 RS_COST_PART(ri));
	rs_ack_init(ri, c.rekick_ns, c.max_vcpus, (_Atomic uint64_t *)(void *)((char *)ri + ib));
	if (rs_events_init(ri, c.event_capacity)) {
		free(block);
		return RS_ENOMEM;
	}
	rs_os_init(ri, ops);
	rs_settle_init(ri);
	ri->ncpus = usable_cpus();
	ri->max_backlog = c.max_backlog;
	rs_word_init(ri, (uint64_t)RS_PAUSE_PRELAUNCH << RS_W_PAUSE_SHIFT);
	*out = &ri->pub;
	return 0;
}

int rs_create(const struct rs_config *cfg, rs_runstate **out)
{
	return rs_create_ops(cfg, NULL, out);
}

void rs_destroy(rs_runstate *rs)
{
	struct rs_instance *ri = rs_inst(rs);

	if (!rs)
		return;
	rs_listeners_destroy(ri);
	rs_events_destroy(ri);
	free(ri->block);
}

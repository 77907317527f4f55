/* SPDX-License-Identifier: MIT */
/*
 * Introspection: the counters, the per-vCPU view, and rs_dump(), the first
 * thing to read when a VM will not stop.  Everything here only reads, with
 * relaxed loads (a diagnosis, not a synchronization), through the other
 * modules' accessors.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "instance.h"

_Static_assert(offsetof(struct rs_vcpu_info, size) == 0, "rs_vcpu_info carries its size");

int rs_get_stats(const rs_runstate *rs, struct rs_stats *st)
{
	struct rs_instance *ri = rs_inst(rs);
	struct rs_stats all;

	if (!rs || !st || st->size < RS_STATS_SIZE_0_9)
		return RS_EINVAL;
	memset(&all, 0, sizeof(all));
#define GET(f) all.f = atomic_load_explicit(&ri->stats.f, memory_order_relaxed)
	GET(stop_edges);
	GET(start_edges);
	GET(parks);
	GET(wakes);
	GET(kicks);
	GET(rekicks);
	GET(timeouts);
	GET(events_lost);
	GET(listener_runs);
#undef GET
	all.coalesced = rs_settle_coalesced(ri);
	/* As far as the caller's struct goes, and zeros in what only a newer
	 * caller's has; its size stays its own. */
	all.size = st->size;
	if (st->size <= sizeof(all)) {
		memcpy(st, &all, st->size);
	} else {
		memcpy(st, &all, sizeof(all));
		memset((char *)st + sizeof(all), 0, st->size - sizeof(all));
	}
	return 0;
}

struct info_arg {
	void (*fn)(const struct rs_vcpu_info *, void *);
	void *arg;
	uint64_t now;
	int n;
	unsigned out;
};

static bool info_one(struct rs_vcpu_impl *v, void *arg)
{
	struct info_arg *a = arg;
	uint32_t s = atomic_load_explicit(&v->state, memory_order_acquire);
	uint64_t since = atomic_load_explicit(&v->out_since_ns, memory_order_relaxed);
	uint64_t kicked = atomic_load_explicit(&v->wanted_ns, memory_order_relaxed);
	uint64_t acked = atomic_load_explicit(&v->last_ack_ns, memory_order_relaxed);
	struct rs_vcpu_info info = {
		.size = sizeof(info),
		.vcpu = rs_vcpu_handle(v),
		.index = rs_vcpu_slot(v),
		.opaque = v->opaque,
		.active = s & VS_ACTIVE,
		.parked = s & VS_PARK,
		.out_for_ns = !(s & VS_ACTIVE) && since && a->now > since ? a->now - since : 0,
		.unacked_ns = (s & VS_ACTIVE) && (s & VS_WANTED) && kicked && a->now > kicked ?
				      a->now - kicked : 0,
		.since_ack_ns = acked && a->now > acked ? a->now - acked : 0,
	};

	a->n++;
	if (!(s & VS_ACTIVE))
		a->out++;
	if (a->fn)
		a->fn(&info, a->arg);
	return true;
}

int rs_vcpu_foreach(rs_runstate *rs, void (*fn)(const struct rs_vcpu_info *, void *), void *arg)
{
	struct rs_instance *ri = rs_inst(rs);
	struct info_arg a = { .fn = fn, .arg = arg };

	if (!rs)
		return RS_EINVAL;
	a.now = rs_now(ri);
	rs_registry_for_each(&ri->reg, info_one, &a);
	return a.n;
}

void rs_vcpu_count(rs_runstate *rs, unsigned *registered, unsigned *out)
{
	struct rs_instance *ri = rs_inst(rs);
	struct info_arg a = { 0 };

	if (!rs)
		return;
	a.now = rs_now(ri);
	rs_registry_for_each(&ri->reg, info_one, &a);
	if (registered)
		*registered = (unsigned)a.n;
	if (out)
		*out = a.out;
}

struct dump_buf {
	char *p;
	size_t len, need;
};

__attribute__((format(printf, 2, 3)))
static void dprint(struct dump_buf *d, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(d->need < d->len ? d->p + d->need : NULL,
		      d->need < d->len ? d->len - d->need : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		d->need += (size_t)n;
}

static void dump_vcpu(const struct rs_vcpu_info *info, void *arg)
{
	struct dump_buf *d = arg;

	dprint(d, "vcpu %u (%p): %s%s, last ack %.3f ms ago", info->index, (void *)info->vcpu,
	       info->active ? "active" : "out", info->parked ? " (parked)" : "",
	       (double)info->since_ack_ns / 1e6);
	if (info->unacked_ns)
		dprint(d, ", kicked %.3f ms ago and not acknowledged", (double)info->unacked_ns / 1e6);
	dprint(d, "\n");
}

int rs_dump(rs_runstate *rs, char *buf, size_t len)
{
	struct rs_instance *ri = rs_inst(rs);
	struct dump_buf d = { .p = buf, .len = len };
	struct rs_stats st = { .size = sizeof(st) };
	struct rs_state s;
	uint64_t w;
	unsigned reg, out;

	if (!rs || (!buf && len))
		return RS_EINVAL;
	if (len)
		buf[0] = 0;
	w = rs_word(rs);
	rs_decode_into(w, &s);
	dprint(&d, "word 0x%016llx: %s, edge %u, locks=", (unsigned long long)w,
	       s.running ? "running" : "stopped", s.edge);
	for (int i = 0; i < RS_LOCK_COUNT; i++)
		if (s.locks & (1u << i))
			dprint(&d, "%s,", rs_lock_name(i));
	dprint(&d, "%s pause=%s legacy=%s%s%s%s%s\n", s.io_error ? "io-error" : "-",
	       rs_pause_name(s.pause), rs_legacy_status(w), s.settling ? " settling" : "",
	       w & RS_W_EXCL ? (rs_excl_held(ri) ? " exclusive" : " exclusive(ending)") : "",
	       w & RS_W_PARKED ? " parked" : "", w & RS_W_LOCKWAIT ? " lockwait" : "");
	dprint(&d, "backlog %u%s, settled edge %llu, events %llu, pending acks %u%s\n",
	       rs_w_backlog(w), w & RS_W_OVERFLOW ? " (coalescing)" : "",
	       (unsigned long long)rs_settle_settled(ri),
	       (unsigned long long)rs_events_head(ri), rs_ack_pending_count(ri),
	       rs_settle_busy(ri) ? ", settler busy" : "");
	rs_get_stats(rs, &st);
	dprint(&d, "stats: stop-edges %llu start-edges %llu parks %llu wakes %llu kicks %llu "
	       "rekicks %llu timeouts %llu events-lost %llu listener-runs %llu coalesced %llu\n",
	       (unsigned long long)st.stop_edges, (unsigned long long)st.start_edges,
	       (unsigned long long)st.parks, (unsigned long long)st.wakes,
	       (unsigned long long)st.kicks, (unsigned long long)st.rekicks,
	       (unsigned long long)st.timeouts, (unsigned long long)st.events_lost,
	       (unsigned long long)st.listener_runs, (unsigned long long)st.coalesced);
	rs_vcpu_count(rs, &reg, &out);
	dprint(&d, "vcpus: %u registered, %u out\n", reg, out);
	rs_vcpu_foreach(rs, dump_vcpu, &d);
	return d.need > INT_MAX ? INT_MAX : (int)d.need;
}

/* SPDX-License-Identifier: MIT */
/*
 * Listeners, read under RCU.
 *
 * The settler walks the listener set inside an RCU read-side section, so a
 * stop or a start never takes a lock to find its listeners, and adding or
 * removing one never blocks an edge.  Writers serialize on a mutex of their own,
 * publish a new sorted copy of the set, and free the old one with
 * call_rcu().
 *
 * Flavour: urcu-bp ("bulletproof").  The library does not own the threads
 * that call it (management, vCPU and device threads, whatever thread
 * settles an edge), so registration with RCU must be automatic: urcu-bp
 * registers a thread at its first read-side section and copes with threads
 * that exit without unregistering, so an exited thread never leaves a grace
 * period waiting.  Its read side costs a little more than urcu-memb's, but
 * it is taken once per edge, never on the vCPU fast path.  No vCPU parks
 * inside a read-side section: only the settler reads, and only while it
 * runs listeners.
 *
 * ThreadSanitizer cannot see liburcu's inline-assembly ordering: the
 * publish and dereference points below tell it (__tsan_release on publish,
 * __tsan_acquire after dereference), and each reader releases the set it
 * read when it leaves the read-side section, which the reclaiming callback
 * acquires before freeing.  That keeps the TSan run meaningful without
 * suppressions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urcu-bp.h>

#include "instance.h"

#if defined(__SANITIZE_THREAD__)
#define RS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RS_TSAN 1
#endif
#endif

#ifdef RS_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tsan_acquire(p) __tsan_acquire((void *)(p))
#define tsan_release(p) __tsan_release((void *)(p))
#else
#define tsan_acquire(p) do { (void)(p); } while (0)
#define tsan_release(p) do { (void)(p); } while (0)
#endif

/* The listener set and its entries.  An entry keeps its instance, for the
 * reclamation callback (which gets only the entry). */
struct rs_listener {
	rs_listener_fn *fn;
	void *opaque;
	int priority;
	uint64_t id;
	struct rs_instance *ri;
	struct rcu_head rcu;
};

/* Sorted by (priority, id). */
struct rs_listener_set {
	struct rcu_head rcu;
	struct rs_instance *ri;
	unsigned n;
	struct rs_listener *l[];
};

static _Thread_local unsigned tls_in_listener;

/* Publish a new set: rcu_assign_pointer orders the set's contents before
 * the pointer (pairs with rcu_dereference in set_deref()). */
static void set_publish(struct rs_instance *ri, struct rs_listener_set *set)
{
	tsan_release(set);
	rcu_assign_pointer(ri->lis.set, set);
}

static struct rs_listener_set *set_deref(struct rs_instance *ri)
{
	struct rs_listener_set *set = rcu_dereference(ri->lis.set);

	if (set)
		tsan_acquire(set);
	return set;
}

/*
 * Reclamation.  Each call_rcu() is counted in rcu_pending so that
 * rs_destroy() can wait for the callbacks of its own instance without
 * rcu_barrier() (which would also wait for every other user of liburcu in
 * the process).  The callback runs on liburcu's call_rcu thread after the
 * grace period: every reader released the object (rs_run_listeners()) and
 * the writer released it before call_rcu(); tsan_acquire() tells TSan.
 */
static void defer_free(struct rs_instance *ri, struct rcu_head *head, void *obj,
		       void (*cb)(struct rcu_head *))
{
	atomic_fetch_add_explicit(&ri->lis.rcu_pending, 1, memory_order_relaxed);
	tsan_release(obj);
	call_rcu(head, cb);
}

static void reclaimed(struct rs_instance *ri)
{
	/* Release: pairs with the acquire load in rs_listeners_destroy(). */
	atomic_fetch_sub_explicit(&ri->lis.rcu_pending, 1, memory_order_release);
}

static void free_set_cb(struct rcu_head *head)
{
	/* The rcu_head's container (void * first: its alignment is the
	 * struct's, which -Wcast-align cannot see through a char *). */
	struct rs_listener_set *set = (void *)((char *)head - offsetof(struct rs_listener_set, rcu));
	struct rs_instance *ri;

	tsan_acquire(set);
	ri = set->ri;
	free(set);
	reclaimed(ri);
}

static void free_listener_cb(struct rcu_head *head)
{
	struct rs_listener *l = (void *)((char *)head - offsetof(struct rs_listener, rcu));
	struct rs_instance *ri;

	tsan_acquire(l);
	ri = l->ri;
	free(l);
	reclaimed(ri);
}

/* A listener runs while its edge holds every vCPU out and the settle mutex
 * is held: a call that waits from there could wait for itself.  Refused,
 * with RS_EDEADLK, in every build. */
int rs_no_wait_in_listener(void)
{
	return tls_in_listener ? RS_EDEADLK : 0;
}

bool rs_listeners_any(struct rs_instance *ri)
{
	return atomic_load_explicit(&ri->lis.count, memory_order_relaxed) != 0;
}

void rs_run_listeners(struct rs_instance *ri, bool running, uint64_t word)
{
	struct rs_listener_set *set;
	struct rs_state st;

	/* No listener: no read-side section at all.  An add racing with
	 * this edge may or may not see it, as with any listener change. */
	if (!rs_listeners_any(ri))
		return;
	rs_decode_into(word, &st);
	rcu_read_lock();
	set = set_deref(ri);
	if (set && set->n) {
		tls_in_listener++;
		if (running) {
			for (unsigned i = 0; i < set->n; i++)
				set->l[i]->fn(set->l[i]->opaque, true, &st);
		} else {
			for (unsigned i = set->n; i-- > 0;)
				set->l[i]->fn(set->l[i]->opaque, false, &st);
		}
		tls_in_listener--;
		atomic_fetch_add_explicit(&ri->stats.listener_runs, set->n, memory_order_relaxed);
		for (unsigned i = 0; i < set->n; i++)
			tsan_release(set->l[i]);
	}
	if (set)
		tsan_release(set);
	rcu_read_unlock();
}

/* Writers serialize on lis.mutex (a futex mutex; never taken on a stop or
 * start). */
static struct rs_listener_set *set_copy(struct rs_listener_set *old, unsigned extra)
{
	unsigned n = old ? old->n : 0;
	struct rs_listener_set *set = malloc(sizeof(*set) + (n + extra) * sizeof(set->l[0]));

	if (!set)
		return NULL;
	memset(&set->rcu, 0, sizeof(set->rcu));
	set->n = 0;
	set->ri = old ? old->ri : NULL;
	return set;
}

static bool before(const struct rs_listener *a, const struct rs_listener *b)
{
	return a->priority < b->priority || (a->priority == b->priority && a->id < b->id);
}

int rs_listener_add(rs_runstate *rs, rs_listener_fn *fn, void *opaque, int priority,
		    rs_listener **out)
{
	struct rs_instance *ri = rs_inst(rs);
	struct rs_listener_set *old, *set;
	struct rs_listener *l;
	bool placed = false;

	if (!rs || !fn || !out)
		return RS_EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return RS_ENOMEM;
	l->fn = fn;
	l->opaque = opaque;
	l->priority = priority;
	l->ri = ri;
	rs_mutex_lock(ri, &ri->lis.mutex, UINT64_MAX);
	l->id = ++ri->lis.ids;
	old = ri->lis.set;   /* writers hold the mutex: a plain read */
	set = set_copy(old, 1);
	if (set)
		set->ri = ri;
	if (!set) {
		rs_mutex_unlock(ri, &ri->lis.mutex);
		free(l);
		return RS_ENOMEM;
	}
	for (unsigned i = 0; old && i < old->n; i++) {
		if (!placed && before(l, old->l[i])) {
			set->l[set->n++] = l;
			placed = true;
		}
		set->l[set->n++] = old->l[i];
	}
	if (!placed)
		set->l[set->n++] = l;
	set_publish(ri, set);
	atomic_store_explicit(&ri->lis.count, set->n, memory_order_relaxed);
	rs_mutex_unlock(ri, &ri->lis.mutex);
	if (old)
		defer_free(ri, &old->rcu, old, free_set_cb);
	*out = l;
	return 0;
}

int rs_listener_remove(rs_runstate *rs, rs_listener *l)
{
	struct rs_instance *ri = rs_inst(rs);
	struct rs_listener_set *old, *set;
	bool found = false;

	/* l is looked up by address before it is touched: a handle already
	 * removed (perhaps freed) is simply not found. */
	if (!rs || !l)
		return RS_EINVAL;
	rs_mutex_lock(ri, &ri->lis.mutex, UINT64_MAX);
	old = ri->lis.set;
	for (unsigned i = 0; old && i < old->n; i++)
		found |= old->l[i] == l;
	if (!found) {
		rs_mutex_unlock(ri, &ri->lis.mutex);
		return RS_EINVAL;
	}
	set = set_copy(old, 0);
	if (!set) {
		rs_mutex_unlock(ri, &ri->lis.mutex);
		return RS_ENOMEM;
	}
	for (unsigned i = 0; i < old->n; i++)
		if (old->l[i] != l)
			set->l[set->n++] = old->l[i];
	set_publish(ri, set);
	atomic_store_explicit(&ri->lis.count, set->n, memory_order_relaxed);
	rs_mutex_unlock(ri, &ri->lis.mutex);
	/* Outside a listener, wait until no run can still call l: the
	 * documented guarantee.  Inside one we are in a read-side section
	 * ourselves, so only defer. */
	if (!tls_in_listener) {
		/* A vCPU thread that may block here is out first. */
		rs_vcpu_thread_out(ri);
		synchronize_rcu();
	}
	defer_free(ri, &old->rcu, old, free_set_cb);
	defer_free(ri, &l->rcu, l, free_listener_cb);
	return 0;
}

void rs_listeners_destroy(struct rs_instance *ri)
{
	struct rs_listener_set *set = ri->lis.set;

	/* Wait for this instance's pending reclamations (acquire: pairs
	 * with reclaimed()), then free what is left.  A grace period is
	 * usually a few milliseconds. */
	while (atomic_load_explicit(&ri->lis.rcu_pending, memory_order_acquire))
		usleep(200);
	if (set) {
		for (unsigned i = 0; i < set->n; i++)
			free(set->l[i]);
		free(set);
	}
	ri->lis.set = NULL;
}

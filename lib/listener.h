/* SPDX-License-Identifier: MIT */
/*
 * listener.c: the listener set, read by the settler under RCU, written by
 * rs_listener_add() and rs_listener_remove() under their own mutex.
 */
#ifndef RS_LISTENER_H
#define RS_LISTENER_H

struct rs_listener_set;

struct rs_listeners {
	struct rs_listener_set *set;   /* published under RCU */
	_Atomic uint32_t mutex;        /* serializes writers */
	uint64_t ids;
	_Atomic uint32_t rcu_pending;  /* call_rcu callbacks not yet run */
	_Atomic uint32_t count;        /* lets an edge skip RCU when zero */
};

/* Run the listeners for an edge (settle mutex held): descending priority
 * on a stop, ascending on a start. */
RS_HIDDEN void rs_run_listeners(struct rs_instance *ri, bool running, uint64_t word);
RS_HIDDEN void rs_listeners_destroy(struct rs_instance *ri);
/* RS_EDEADLK on a listener's thread inside its run, else 0. */
RS_HIDDEN int rs_no_wait_in_listener(void);
/* Some listener is registered (relaxed: a hint). */
RS_HIDDEN bool rs_listeners_any(struct rs_instance *ri);

#endif

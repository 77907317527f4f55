/* SPDX-License-Identifier: MIT */
/*
 * lockq.c: the internal lock bits' hand-over queue.  A thread that finds a
 * bit held waits here, and an unlock hands the bit to it directly.
 */
#ifndef RS_LOCKQ_H
#define RS_LOCKQ_H

/* Serialized by mutex; grants[r] counts hand-overs not yet taken and is the
 * futex that waiters for bit r sleep on. */
struct rs_lockq {
	_Atomic uint32_t mutex;
	uint32_t waiters[RS_LOCK_COUNT];
	_Atomic uint32_t grants[RS_LOCK_COUNT];
	uint32_t issued[RS_LOCK_COUNT], taken[RS_LOCK_COUNT];
};

#endif

/* SPDX-License-Identifier: MIT */
/*
 * os.c: the operating-system seam (futex, clock) and what is built on it:
 * deadlines, a small futex mutex, the delay points.
 */
#ifndef RS_OS_H
#define RS_OS_H

struct rs_os {
	struct rs_ops ops;
};

RS_HIDDEN void rs_os_init(struct rs_instance *ri, const struct rs_ops *src);
RS_HIDDEN int rs_futex_wait(struct rs_instance *ri, _Atomic uint32_t *addr, uint32_t val,
			    int64_t timeout_ns);
RS_HIDDEN void rs_futex_wake(struct rs_instance *ri, _Atomic uint32_t *addr, int n);
RS_HIDDEN uint64_t rs_now(struct rs_instance *ri);
/* The calling thread's CPU, or -1 (glibc reads it from rseq where the
 * kernel supports it: a load, no system call). */
RS_HIDDEN int rs_this_cpu(void);
/* The absolute deadline of a relative timeout (UINT64_MAX: none), and the
 * time left before one (-1: none; 0: passed). */
RS_HIDDEN uint64_t rs_deadline(struct rs_instance *ri, int64_t timeout_ns);
RS_HIDDEN int64_t rs_remaining(struct rs_instance *ri, uint64_t deadline);
RS_HIDDEN void rs_fatal(const char *what, int err) __attribute__((noreturn));

/* A small futex mutex (0 free, 1 held, 2 held with sleepers). */
RS_HIDDEN bool rs_mutex_trylock(_Atomic uint32_t *m);
RS_HIDDEN int rs_mutex_lock(struct rs_instance *ri, _Atomic uint32_t *m, uint64_t deadline);
RS_HIDDEN void rs_mutex_unlock(struct rs_instance *ri, _Atomic uint32_t *m);

/*
 * Named delay points in the racy windows.  They compile to nothing unless the
 * build enables them (-Ddelay_points=true); the stress harness and the
 * sanitizer runs then inject random delays through ops.delay.
 */
#ifdef RS_DELAY_POINTS
RS_HIDDEN void rs_delay(struct rs_instance *ri, const char *name);
#define RS_DELAY(ri, name) rs_delay((ri), (name))
#else
#define RS_DELAY(ri, name) do { (void)(ri); } while (0)
#endif

static inline void rs_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif

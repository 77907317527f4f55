/* SPDX-License-Identifier: MIT */
/*
 * A minimal KVM host for runstate; see kvm.h for the guest and the loop, and
 * docs/integration.md for why the loop is the way it is.  This file sets up
 * the VM and its threads and reads them; kvm_loop.c is the vCPU side.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "kvm_priv.h"

/*
 * The guest code, at RK_GUEST_CODE.  Real mode, CS = DS = 0; 0x66 makes
 * the operand 32 bits wide.  Offsets are checked by the static asserts.
 */
static const uint8_t guest_code[] = {
	/* 00 */ 0x66, 0xff, 0x07,        /* inc  dword [bx] */
	/* 03 */ 0x66, 0x85, 0x0f,        /* test dword [bx], ecx */
	/* 06 */ 0x75, 0xf8,              /* jnz  00 */
	/* 08 */ 0xe6, RK_PORT_OUT,       /* out  0x10, al */
	/* 0a */ 0xe4, RK_PORT_IN,        /* in   al, 0x11 */
	/* 0c */ 0xa8, 0x80,              /* test al, 0x80 */
	/* 0e */ 0x74, 0x01,              /* jz   11 */
	/* 10 */ 0xf4,                    /* hlt */
	/* 11 */ 0x88, 0x06, 0x00, 0x80,  /* mov  [0x8000], al */
	/* 15 */ 0xa0, 0x00, 0x80,        /* mov  al, [0x8000] */
	/* 18 */ 0xeb, 0xe6,              /* jmp  00 */
};
_Static_assert(sizeof(guest_code) == OFF_END, "guest code layout");
_Static_assert(RK_MMIO_ADDR == GUEST_MEM_SIZE, "MMIO right above memory");
_Static_assert(RK_GUEST_COUNTERS + RK_MAX_VCPUS * RK_COUNTER_STRIDE <= GUEST_MEM_SIZE,
	       "counters fit");

static void set_why(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------------------
 * Setup
 */

static const char *device_path(const char *device)
{
	const char *env = getenv("RS_KVM_DEVICE");

	if (env && *env)
		return env;
	return device ? device : "/dev/kvm";
}

/* Open the device and check what the harness needs. */
static int open_kvm(const char *device, char *why, size_t len)
{
	const char *path = device_path(device);
	int fd, r;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		set_why(why, len, "cannot open %s: %s", path, strerror(errno));
		return r;
	}
	r = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION) {
		if (r < 0)
			set_why(why, len, "%s: KVM_GET_API_VERSION: %s (not a KVM device?)", path,
				strerror(errno));
		else
			set_why(why, len, "%s: KVM API version %d, want %d", path, r,
				KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	if (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0) {
		set_why(why, len, "%s: no KVM_CAP_IMMEDIATE_EXIT", path);
		close(fd);
		return -ENOTSUP;
	}
	if (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0) {
		set_why(why, len, "%s: no KVM_CAP_USER_MEMORY", path);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int rk_probe(const char *device, char *why, size_t len)
{
	int fd = open_kvm(device, why, len), vm;

	if (fd < 0)
		return fd;
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		int r = -errno;

		set_why(why, len, "KVM_CREATE_VM: %s", strerror(errno));
		close(fd);
		return r;
	}
	close(vm);
	close(fd);
	return 0;
}

static int setup_vcpu(struct rk_vm *vm, struct rk_vcpu *vc, char *why, size_t len)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_segment *segs[6];

	vc->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)vc->idx);
	if (vc->fd < 0) {
		set_why(why, len, "KVM_CREATE_VCPU %u: %s", vc->idx, strerror(errno));
		return -errno;
	}
	vc->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vc->fd, 0);
	if (vc->run == MAP_FAILED) {
		vc->run = NULL;
		set_why(why, len, "mmap kvm_run: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vc->fd, KVM_GET_SREGS, &sregs) < 0) {
		set_why(why, len, "KVM_GET_SREGS: %s", strerror(errno));
		return -errno;
	}
	/* Real mode with every segment at 0 (reset has CS at 0xf000). */
	segs[0] = &sregs.cs;
	segs[1] = &sregs.ds;
	segs[2] = &sregs.es;
	segs[3] = &sregs.ss;
	segs[4] = &sregs.fs;
	segs[5] = &sregs.gs;
	for (int i = 0; i < 6; i++) {
		segs[i]->base = 0;
		segs[i]->selector = 0;
	}
	if (ioctl(vc->fd, KVM_SET_SREGS, &sregs) < 0) {
		set_why(why, len, "KVM_SET_SREGS: %s", strerror(errno));
		return -errno;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = RK_GUEST_CODE;
	regs.rflags = 2;      /* bit 1 is always set */
	regs.rbx = RK_GUEST_COUNTERS + vc->idx * RK_COUNTER_STRIDE;
	regs.rcx = vm->cfg.io_shift >= 32 ? 0xffffffffu : (1u << vm->cfg.io_shift) - 1;
	if (ioctl(vc->fd, KVM_SET_REGS, &regs) < 0) {
		set_why(why, len, "KVM_SET_REGS: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int rk_vm_create(rs_runstate *rs, const struct rk_config *cfg, struct rk_vm **out,
		 char *why, size_t len)
{
	struct kvm_userspace_memory_region region;
	struct rk_vm *vm;
	void *vp = NULL;
	int r, sz;

	if (!rs || !cfg || !out || cfg->nvcpus < 1 || cfg->nvcpus > RK_MAX_VCPUS ||
	    cfg->io_shift > 32) {
		set_why(why, len, "invalid configuration");
		return -EINVAL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	if (posix_memalign(&vp, 64, cfg->nvcpus * sizeof(struct rk_vcpu))) {
		free(vm);
		return -ENOMEM;
	}
	memset(vp, 0, cfg->nvcpus * sizeof(struct rk_vcpu));
	vm->vcpus = vp;
	vm->rs = rs;
	vm->cfg = *cfg;
	vm->n = cfg->nvcpus;
	vm->sig = cfg->kick_signal ? cfg->kick_signal : SIGUSR1;
	vm->vm_fd = -1;
	for (unsigned i = 0; i < vm->n; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].idx = i;
		vm->vcpus[i].fd = -1;
	}

	vm->kvm_fd = open_kvm(cfg->device, why, len);
	if (vm->kvm_fd < 0) {
		r = vm->kvm_fd;
		goto fail;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = -errno;
		set_why(why, len, "KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
	/* Needed by Intel hosts without unrestricted guest for real mode;
	 * harmless elsewhere. */
	(void)ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)TSS_ADDR);

	vm->mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		r = -errno;
		set_why(why, len, "mmap guest memory: %s", strerror(errno));
		goto fail;
	}
	memcpy(vm->mem + RK_GUEST_CODE, guest_code, sizeof(guest_code));
	memset(&region, 0, sizeof(region));
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = GUEST_MEM_SIZE;
	region.userspace_addr = (uintptr_t)vm->mem;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		r = -errno;
		set_why(why, len, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
		goto fail;
	}
	sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < (int)sizeof(struct kvm_run)) {
		r = sz < 0 ? -errno : -EPROTO;
		set_why(why, len, "KVM_GET_VCPU_MMAP_SIZE: %d", sz);
		goto fail;
	}
	vm->run_size = (size_t)sz;
	for (unsigned i = 0; i < vm->n; i++) {
		r = setup_vcpu(vm, &vm->vcpus[i], why, len);
		if (r)
			goto fail;
	}
	r = rk_kick_install(vm->sig);
	if (r) {
		set_why(why, len, "sigaction: %s", strerror(-r));
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	rk_vm_destroy(vm);
	return r;
}

void rk_vm_destroy(struct rk_vm *vm)
{
	if (!vm)
		return;
	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];

		if (vc->run)
			munmap(vc->run, vm->run_size);
		if (vc->fd >= 0)
			close(vc->fd);
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->mem)
		munmap(vm->mem, GUEST_MEM_SIZE);
	free(vm->vcpus);
	free(vm);
}

/* ---------------------------------------------------------------------------
 * Threads
 */

static void *vcpu_thread(void *p)
{
	struct rk_vcpu *vc = p;

	rk_vcpu_run(vc->vm, vc->idx);
	return NULL;
}

int rk_vm_start_threads(struct rk_vm *vm)
{
	uint64_t deadline;

	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];
		int r = pthread_create(&vc->joinable, NULL, vcpu_thread, vc);

		if (r) {
			rk_vm_join_threads(vm);
			return -r;
		}
		vc->thread_started = true;
	}
	deadline = rsu_now_ns() + 5000000000u;
	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];

		while (!atomic_load_explicit(&vc->registered, memory_order_acquire)) {
			int r = 0;

			if (atomic_load_explicit(&vc->exited, memory_order_acquire))
				r = vc->error ? vc->error : -EIO;
			else if (rsu_now_ns() > deadline)
				r = -ETIMEDOUT;
			if (r) {
				rk_vm_join_threads(vm);
				return r;
			}
			sched_yield();
		}
	}
	return 0;
}

int rk_vm_join_threads(struct rk_vm *vm)
{
	int err = 0;

	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];
		uint64_t deadline = rsu_now_ns() + 10000000000u;

		if (!vc->thread_started)
			continue;
		/* Re-post every millisecond: a request kick can be lost with
		 * a broken handshake, and the library re-kicks only for
		 * stops.  pthread_t stays valid until the join. */
		while (!atomic_load_explicit(&vc->exited, memory_order_acquire)) {
			struct timespec ts = { 0, 1000000 };

			if (atomic_load_explicit(&vc->registered, memory_order_acquire))
				rs_vcpu_request(&vc->rsv, RS_REQ_EXIT);
			if (rsu_now_ns() > deadline) {
				fprintf(stderr, "rk: vcpu %u does not exit\n", i);
				abort();
			}
			nanosleep(&ts, NULL);
		}
		pthread_join(vc->joinable, NULL);
		vc->thread_started = false;
		if (vc->error && !err)
			err = vc->error;
	}
	return err;
}

const char *rk_vm_error(const struct rk_vm *vm)
{
	int i = atomic_load_explicit(&((struct rk_vm *)(uintptr_t)vm)->first_error,
				     memory_order_acquire);

	return i ? vm->vcpus[i - 1].errmsg : NULL;
}

/* ---------------------------------------------------------------------------
 * Readers
 */

rs_runstate *rk_vm_runstate(const struct rk_vm *vm)
{
	return vm->rs;
}

unsigned rk_vm_nvcpus(const struct rk_vm *vm)
{
	return vm->n;
}

rs_vcpu *rk_vcpu_rs(struct rk_vm *vm, unsigned idx)
{
	return idx < vm->n ? &vm->vcpus[idx].rsv : NULL;
}

int rk_vcpu_index(const struct rk_vm *vm, const void *opaque)
{
	for (unsigned i = 0; i < vm->n; i++)
		if (opaque == &vm->vcpus[i])
			return (int)i;
	return -1;
}

bool rk_vcpu_in_run(const struct rk_vm *vm, unsigned idx)
{
	return atomic_load_explicit(&vm->vcpus[idx].in_run, memory_order_relaxed) != 0;
}

int rk_vcpu_tid(const struct rk_vm *vm, unsigned idx)
{
	return atomic_load_explicit(&vm->vcpus[idx].tid, memory_order_relaxed);
}

uint64_t rk_vcpu_entries(const struct rk_vm *vm, unsigned idx)
{
	return atomic_load_explicit(&vm->vcpus[idx].entries, memory_order_relaxed);
}

int rk_vcpu_fd(const struct rk_vm *vm, unsigned idx)
{
	return idx < vm->n ? vm->vcpus[idx].fd : -1;
}

void *rk_vcpu_kvm_run(const struct rk_vm *vm, unsigned idx)
{
	return idx < vm->n ? vm->vcpus[idx].run : NULL;
}

#define LD(f) atomic_load_explicit(&vc->f, memory_order_relaxed)

void rk_vcpu_stats(const struct rk_vm *vm, unsigned idx, struct rk_vcpu_stats *st)
{
	const struct rk_vcpu *vc = &vm->vcpus[idx];

	st->runs = LD(runs);
	st->entries = LD(entries);
	st->eintr = LD(eintr);
	st->exits_out = LD(exits_out);
	st->exits_in = LD(exits_in);
	st->exits_mmio_w = LD(exits_mmio_w);
	st->exits_mmio_r = LD(exits_mmio_r);
	st->exits_hlt = LD(exits_hlt);
	st->completions = LD(completions);
	st->kicks_sent = LD(kicks_sent);
	st->signals = LD(signals);
	st->window_kicks = LD(window_kicks);
	st->lost_kicks = LD(lost_kicks);
	st->kick_latency_sum_ns = LD(kick_lat_sum_ns);
}

void rk_vm_stats(const struct rk_vm *vm, struct rk_vcpu_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu_stats s;

		rk_vcpu_stats(vm, i, &s);
		sum->runs += s.runs;
		sum->entries += s.entries;
		sum->eintr += s.eintr;
		sum->exits_out += s.exits_out;
		sum->exits_in += s.exits_in;
		sum->exits_mmio_w += s.exits_mmio_w;
		sum->exits_mmio_r += s.exits_mmio_r;
		sum->exits_hlt += s.exits_hlt;
		sum->completions += s.completions;
		sum->kicks_sent += s.kicks_sent;
		sum->signals += s.signals;
		sum->window_kicks += s.window_kicks;
		sum->lost_kicks += s.lost_kicks;
		sum->kick_latency_sum_ns += s.kick_latency_sum_ns;
	}
}

int rk_vcpu_get_regs(struct rk_vm *vm, unsigned idx, struct rk_regs *out)
{
	struct kvm_regs regs;

	if (!vm || idx >= vm->n || !out)
		return -EINVAL;
	if (ioctl(vm->vcpus[idx].fd, KVM_GET_REGS, &regs) < 0)
		return -errno;
	out->rip = regs.rip;
	out->rax = regs.rax;
	out->rbx = regs.rbx;
	out->rcx = regs.rcx;
	out->rflags = regs.rflags;
	return 0;
}

static const char *exit_name(int k)
{
	switch (k) {
	case RK_EXIT_OUT: return "port I/O out";
	case RK_EXIT_IN: return "port I/O in";
	case RK_EXIT_MMIO_WRITE: return "MMIO write";
	case RK_EXIT_MMIO_READ: return "MMIO read";
	case RK_EXIT_HLT: return "HLT";
	default: return "none";
	}
}

int rk_vcpu_describe(const struct rk_vm *vm, unsigned idx, char *buf, size_t len)
{
	const struct rk_vcpu *vc;
	int k;

	if (!vm || idx >= vm->n)
		return -EINVAL;
	vc = &vm->vcpus[idx];
	k = atomic_load_explicit(&vc->cur_exit, memory_order_relaxed);
	if (k == RK_EXIT_NONE)
		return snprintf(buf, len, "vcpu %u: no exit being handled, %s KVM_RUN", idx,
				rk_vcpu_in_run(vm, idx) ? "in" : "not in");
	{
		uint64_t since = atomic_load_explicit(&vc->cur_exit_ns, memory_order_relaxed);
		uint64_t now = rsu_now_ns();

		return snprintf(buf, len, "vcpu %u: handling %s at 0x%llx for %.3f ms", idx,
				exit_name(k),
				(unsigned long long)atomic_load_explicit(&vc->cur_exit_addr,
									 memory_order_relaxed),
				now > since ? (double)(now - since) / 1e6 : 0.0);
	}
}

/* ---------------------------------------------------------------------------
 * Benchmark helper
 */

int rk_measure_stop_start(struct rk_vm *vm, int64_t timeout_ns, struct rk_latency *lat)
{
	uint32_t snap[RK_MAX_VCPUS];
	bool moved[RK_MAX_VCPUS] = { false };
	unsigned left = vm->n;
	uint64_t t0, t1, deadline;
	int r;

	t0 = rsu_now_ns();
	r = rs_stop(vm->rs, timeout_ns);
	t1 = rsu_now_ns();
	lat->stop_ns = t1 - t0;
	if (r)
		return r;
	/* Every vCPU is out: the counters are final until the start. */
	rk_guest_counters(vm, snap);
	t0 = rsu_now_ns();
	rk_vm_mark_resume(vm, t0);
	r = rs_start(vm->rs, 0);
	t1 = rsu_now_ns();
	lat->start_call_ns = t1 - t0;
	lat->start_first_ns = lat->start_all_ns = 0;
	if (r)
		return r;
	deadline = t0 + (timeout_ns < 0 ? 10000000000u : (uint64_t)timeout_ns);
	for (unsigned spins = 0; left; spins++) {
		uint64_t now = rsu_now_ns();

		for (unsigned i = 0; i < vm->n; i++) {
			if (moved[i] || rk_guest_counter(vm, i) == snap[i])
				continue;
			moved[i] = true;
			left--;
			if (!lat->start_first_ns)
				lat->start_first_ns = now - t0;
			if (!left)
				lat->start_all_ns = now - t0;
		}
		if (!left)
			break;
		if (now > deadline)
			return -ETIMEDOUT;
		/* (The vCPU-side stamps below do not depend on how fast this
		 * loop notices.) */
		/* With more vCPUs than cores the watcher must not hold a
		 * core the vCPUs need. */
		if (vm->n > 1 && spins > 64)
			sched_yield();
		else
			rsu_cpu_relax();
	}
	lat->resume_first_ns = UINT64_MAX;
	lat->resume_all_ns = 0;
	for (unsigned i = 0; i < vm->n; i++) {
		uint64_t e = rk_vcpu_resume_ns(vm, i);
		uint64_t d = e > t0 ? e - t0 : 0;

		if (d < lat->resume_first_ns)
			lat->resume_first_ns = d;
		if (d > lat->resume_all_ns)
			lat->resume_all_ns = d;
	}
	return 0;
}

void rk_vm_mark_resume(struct rk_vm *vm, uint64_t t)
{
	for (unsigned i = 0; i < vm->n; i++)
		atomic_store_explicit(&vm->vcpus[i].mark_ns, t, memory_order_relaxed);
}

uint64_t rk_vcpu_resume_ns(const struct rk_vm *vm, unsigned idx)
{
	const struct rk_vcpu *vc = &vm->vcpus[idx];
	uint64_t e = atomic_load_explicit(&vc->resume_ns, memory_order_relaxed);

	return e >= atomic_load_explicit(&vc->mark_ns, memory_order_relaxed) ? e : 0;
}


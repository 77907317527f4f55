/*
 * Each installed header compiles alone, first and only, as strict C11:
 * runstate.h, or, with -DRS_TESTING_HEADER, runstate-testing.h (which
 * includes runstate.h itself).
 */
#ifdef RS_TESTING_HEADER
#include "runstate-testing.h"
#else
#include "runstate.h"
#endif

/* runstate.h's constants are plain integer expressions: the preprocessor,
 * like a binding generator, can evaluate them. */
#if RS_FOREVER != -1 || RS_ASYNC != 0 || RS_NORUN_MASK != 0xfffff || \
	RS_START_FORCE != 1 || RS_EINVAL >= 0 || RS_LOCK_COUNT != 4 || RS_PAUSE_COUNT != 8 || \
	RS_CONFIG_SIZE_0_9 != 24 || RS_STATE_SIZE_0_9 != 20 || RS_STATS_SIZE_0_9 != 88 || \
	RS_EVENT_SIZE_0_9 != 64 || RS_VERSION_MAJOR != 0 || RS_VERSION_MINOR < 9
#error "a constant of runstate.h is not the plain integer it should be"
#endif

int header_c_probe(const rs_runstate *rs);
int header_c_probe(const rs_runstate *rs)
{
	struct rs_config cfg = { .size = sizeof(cfg) };

	return rs_may_run(rs) + (int)cfg.size;
}

#ifdef RS_TESTING_HEADER
_Static_assert(RS_W_NORUN_MASK == RS_NORUN_MASK, "one no-run mask");
_Static_assert(RS_CMD_COUNT == RS_CMD_UNLOCK + 1, "the commands");

int header_c_testing_probe(uint64_t w, uint64_t *out);
int header_c_testing_probe(uint64_t w, uint64_t *out)
{
	struct rs_ops ops = { .ctx = out };
	rs_runstate *rs;

	if (rs_create_ops(NULL, &ops, &rs) == 0)
		rs_destroy(rs);
	return rs_transition(w, RS_CMD_STOP, 0, 0, RS_W_BACKLOG_MAX, out);
}
#endif

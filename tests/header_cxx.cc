// Each installed header compiles alone as C++17 (no _Atomic in what C++
// sees): runstate.h, or, with -DRS_TESTING_HEADER, runstate-testing.h.
#ifdef RS_TESTING_HEADER
#include "runstate-testing.h"
#else
#include "runstate.h"
#endif

int header_cxx_probe(const rs_runstate *rs);
int header_cxx_probe(const rs_runstate *rs)
{
	rs_vcpu v{};
	rs_config cfg{};

	cfg.size = sizeof(cfg);
	static_assert(sizeof(v) % 64 == 0, "rs_vcpu is cache-line sized");
	static_assert(RS_FOREVER == -1 && RS_ASYNC == 0, "plain timeouts");
	return (rs_may_run(rs) ? 1 : 0) + static_cast<int>(cfg.size);
}

#ifdef RS_TESTING_HEADER
static_assert(RS_W_NORUN_MASK == RS_NORUN_MASK, "one no-run mask");

int header_cxx_testing_probe(uint64_t w, uint64_t *out);
int header_cxx_testing_probe(uint64_t w, uint64_t *out)
{
	rs_ops ops{};

	ops.ctx = out;
	(void)ops;
	return rs_transition(w, RS_CMD_STOP, 0, 0, RS_W_BACKLOG_MAX, out);
}
#endif

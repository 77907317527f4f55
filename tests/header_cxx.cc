// The public header compiles alone as C++17 (no _Atomic in what C++ sees).
#include "runstate.h"

int header_cxx_probe(const rs_runstate *rs);
int header_cxx_probe(const rs_runstate *rs)
{
	rs_vcpu v{};
	static_assert(sizeof(v) % 64 == 0, "rs_vcpu is cache-line sized");
	return rs_may_run(rs) ? 1 : 0;
}

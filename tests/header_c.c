/* The public header compiles alone, first and only, as strict C11. */
#include "runstate.h"

int header_c_probe(const rs_runstate *rs);
int header_c_probe(const rs_runstate *rs)
{
	return rs_may_run(rs);
}

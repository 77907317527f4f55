/* A tiny emulator-shaped consumer, built against the installed library
 * (pkg-config) and as a meson subproject.  It uses runstate.h alone, as an
 * emulator does: never the testing header. */
#include <stdio.h>

#include <runstate.h>

int main(void)
{
	rs_runstate *rs;
	struct rs_state st = { .size = sizeof(st) };

	if (rs_create(NULL, &rs))
		return 1;
	if (rs_start(rs, 0) || !rs_may_run(rs))
		return 2;
	if (rs_lock(rs, RS_LOCK_SAVEVM, RS_FOREVER) || rs_may_run(rs))
		return 3;
	if (rs_stop(rs, RS_FOREVER) || rs_unlock(rs, RS_LOCK_SAVEVM))
		return 4;
	if (rs_decode(rs_word(rs), &st) || st.running || st.pause != RS_PAUSE_PAUSED)
		return 5;
	printf("consumer: %s\n", rs_legacy_status(rs_word(rs)));
	rs_destroy(rs);
	return 0;
}

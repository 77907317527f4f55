/* SPDX-License-Identifier: MIT */
/*
 * commands.c: the management commands, each one CAS of rs_transition()'s
 * result, and the steps that lockq.c's lock calls share with them.
 */
#ifndef RS_COMMANDS_H
#define RS_COMMANDS_H

/* Apply cmd in one CAS (rs_edge_cas()); *oldp and *newp get the CAS (equal
 * when nothing changed).  early: NULL, or where to say that the CAS cleared
 * RS_W_PARKED for an early wake. */
RS_HIDDEN int rs_cmd_apply(struct rs_instance *ri, enum rs_cmd cmd, int arg, int arg2,
			   uint64_t *oldp, uint64_t *newp, bool *early);
/* After a stopping CAS: kick for a stop edge, then settle (waiting until
 * deadline, or helping with RS_ASYNC). */
RS_HIDDEN int rs_cmd_finish(struct rs_instance *ri, uint64_t old, uint64_t nw, int64_t timeout_ns,
			    uint64_t deadline);
/* Before a call that may wait: refuse it inside a listener, fix its
 * deadline, and take the calling vCPU (if any) out. */
RS_HIDDEN int rs_cmd_may_wait(struct rs_instance *ri, int64_t timeout_ns, uint64_t *deadline);

#endif

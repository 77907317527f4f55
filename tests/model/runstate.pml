/* SPDX-License-Identifier: MIT */
/*
 * runstate.pml: a Promela model of runstate's vCPU stop/start protocol.
 *
 * What is modelled (see README.md for the mapping and the results):
 *   - the shared word W: pause bit, one lock bit, SETTLING, PARKED and the
 *     edge counter modulo 4 (odd while running), changed only by atomic
 *     read-modify-write steps (a compare-and-swap loop whose last, successful
 *     CAS is the step);
 *   - per vCPU word S[i]: ACTIVE, WANTED, PARKED and a generation bit;
 *   - the acknowledgement counter `pending` and its futex;
 *   - the settler role (a mutex: blocking acquire for synchronous stopping
 *     calls, try-acquire for asynchronous commands and for the last acking
 *     vCPU), edge-by-edge settling, the re-kick timer, lost kicks, spurious
 *     futex wake-ups (bounded budgets, so that a lost wake-up is a real hang);
 *   - management threads: a synchronous stop, an asynchronous start, a lock
 *     holder (synchronous lock, then unlock or unlock-with-pause), and a
 *     finisher that waits for quiescence, checks it, then does a final cont
 *     and asks every vCPU to exit.
 *
 * Build-time knobs (spin -DNAME=VALUE): NV (vCPUs, 2), SPURIOUS (spurious
 * futex wake-ups in total, 1), LOSTKICKS (stop kicks that may be lost, 1),
 * STOPS (synchronous stops, 1), STARTS (asynchronous starts, 1),
 * ASYNC_STOP (the starter also does an asynchronous stop first, 0),
 * GENMOD4 (generation modulo 4 instead of 2), LIVENESS (add the LTL progress
 * property and drop the quiescence assertions so that a hang shows as an
 * acceptance cycle), RECHECK_SPEC (the recheck rule as first written:
 * retry only if the next edge needs no vCPU or no vCPU is ACTIVE; see README).
 *
 * Seeded bugs (each must make spin report an error): MUTANT_A .. MUTANT_E.
 */

#ifndef NV
#define NV 2
#endif
#ifndef SPURIOUS
#define SPURIOUS 1
#endif
#ifndef LOSTKICKS
#define LOSTKICKS 1
#endif
#ifndef STOPS
#define STOPS 1
#endif
#ifndef STARTS
#define STARTS 1
#endif
#ifndef ASYNC_STOP
#define ASYNC_STOP 0
#endif

#define NMGMT 3		/* stopper, starter, lock holder */

/* ---- The word W ------------------------------------------------------ */
#define W_PAUSE	1	/* a pause reason is set (rank rules abstracted) */
#define W_LOCK	2	/* the one internal lock bit */
#define W_ST	4	/* SETTLING */
#define W_PK	8	/* PARKED: some vCPU is parked or about to park */
#define W_E1	16	/* edge counter, bits 4..5: modulo 4 */
#define W_EMASK	48

#define STOPPED(w)	(((w) & (W_PAUSE | W_LOCK)) != 0)
#define MAYRUN(w)	(((w) & (W_PAUSE | W_LOCK | W_ST)) == 0)
#define EDGE(w)		(((w) & W_EMASK) >> 4)
#define NEXTE(e)	(((e) + 1) & 3)
#define ISSTOP(e)	(((e) & 1) == 0)	/* even edge: the VM stopped */

/* ---- Per-vCPU word S[i] ---------------------------------------------- */
#define S_ACT	1
#define S_WANT	2
#define S_PK	4
#ifdef GENMOD4
#define GENINC(s)	((((s) + 8) & 24) | ((s) & 7))
#else
#define GENINC(s)	((s) ^ 8)
#endif

/* ---- Commands ---------------------------------------------------------- */
#define C_STOP		0
#define C_START		1	/* start and cont: clear the pause reason */
#define C_LOCK		2
#define C_UNLOCK	3
#define C_UNLOCK_PAUSE	4

/* ---- Shared state ------------------------------------------------------ */
byte W = W_E1;			/* running, edge 1, settled */
byte S[NV];
byte pending;			/* outstanding acknowledgements */
bit role;			/* the settler role (a mutex) */
byte settled = 1;		/* last settled edge, mod 4 (under role) */

bit slp[NV];			/* vCPU i sleeps in futex_wait(&S[i]) */
bit slp_p;			/* the settler sleeps in futex_wait(&pending) */
bit kick[NV];			/* the kick flag: ends the current guest slice */
bit exitreq[NV];

byte spur = SPURIOUS;		/* spurious wake-up budget */
byte lost = LOSTKICKS;		/* lost-kick budget */

/* ---- Ghosts (observation only; the protocol never reads them) ---------- */
bit inguest[NV];		/* vCPU i is executing a guest slice */
bit lostk[NV];			/* a kick to vCPU i was lost, slice not ended */
bit exited[NV];
bit holding;			/* the lock holder is inside its critical region */
byte nedge = 1;			/* edges so far, not wrapped */
byte nsettled = 1;		/* edges settled so far, not wrapped */
byte ndone;			/* management threads finished */

#if NV == 2
#define NONE_INGUEST	(!inguest[0] && !inguest[1])
#define ALL_INGUEST	(inguest[0] && inguest[1])
#define ANY_LOST	(lostk[0] || lostk[1])
#define NWANTED		(((S[0] & S_WANT) != 0) + ((S[1] & S_WANT) != 0))
#elif NV == 3
#define NONE_INGUEST	(!inguest[0] && !inguest[1] && !inguest[2])
#define ALL_INGUEST	(inguest[0] && inguest[1] && inguest[2])
#define ANY_LOST	(lostk[0] || lostk[1] || lostk[2])
#define NWANTED		(((S[0] & S_WANT) != 0) + ((S[1] & S_WANT) != 0) + \
			 ((S[2] & S_WANT) != 0))
#else
#error "NV must be 2 or 3"
#endif

/* Locals every thread that may settle needs (inlines use them by name). */
#define SETTLE_LOCALS \
	byte w, nw, s, p, e, i; \
	bit ok, allout, rekick, got, gaveup

/* ======================================================================= */
/* The pure transition function (rs_transition): what a command does to a
 * word.  An edge advances the counter and sets SETTLING; a word that lets
 * vCPUs run has PARKED cleared (the caller wakes). */
inline transition(c, w, nw)
{
	nw = w;
	if
	:: c == C_STOP -> nw = nw | W_PAUSE
	:: c == C_START -> nw = nw & ~W_PAUSE
	:: c == C_LOCK -> nw = nw | W_LOCK
	:: c == C_UNLOCK -> nw = nw & ~W_LOCK
	:: c == C_UNLOCK_PAUSE -> nw = (nw & ~W_LOCK) | W_PAUSE
	fi;
	if
	:: STOPPED(w) != STOPPED(nw) ->
		nw = (nw & ~W_EMASK) | ((nw + W_E1) & W_EMASK) | W_ST
	:: else
	fi;
	if
	:: MAYRUN(nw) -> nw = nw & ~W_PK
	:: else
	fi
}

/* Ghost bookkeeping of an edge made by the step w -> nw. */
inline note_edge(w, nw)
{
	if
	:: EDGE(w) != EDGE(nw) ->
		nedge++;
		/* the mod-4 counter must never lap the settled counter */
		assert(nedge - nsettled < 3)
	:: else
	fi;
	/* Every change of running-ness sets SETTLING, so a command never
	 * makes the word runnable by itself: only the settler's clearing of
	 * SETTLING does (and that is where parked vCPUs are woken). */
	assert(MAYRUN(w) || !MAYRUN(nw))
}

/* A management command: one compare-and-swap on W (the CAS loop collapsed
 * into its successful step).  Leaves the old word in w, the new one in nw. */
inline do_cmd(c)
{
	d_step {
		w = W;
		transition(c, w, nw);
		W = nw;
		note_edge(w, nw)
	}
}

#ifdef MUTANT_C
/* Seeded bug C: a stale plain store.  The word is loaded, the new value is
 * computed from that load, and written back later with a plain store: any
 * bit set in between (PARKED, a lock bit, an edge) is clobbered. */
inline do_cmd_stale(c)
{
	w = W;
	transition(c, w, nw);
	d_step { W = nw; note_edge(w, nw) }
}
#endif

/* ---- Futexes and kicks -------------------------------------------------- */

/* FUTEX_WAKE(&S[j]) */
#define FUTEX_WAKE_S(j)	slp[j] = 0
/* FUTEX_WAKE(&pending) */
#define FUTEX_WAKE_P	slp_p = 0

/* Kick vCPU j: set its kick flag.  A stop kick may be lost. */
inline do_kick(j)
{
	if
	:: kick[j] = 1
	:: lost > 0 -> lost--; lostk[j] = 1
	fi
}

/* Wake parked vCPUs: done by whoever made W runnable while the old word
 * had PARKED.  For each vCPU with PARKED: clear it (RMW), FUTEX_WAKE. */
inline wake_all()
{
	i = 0;
	do
	:: i < NV ->
		d_step {
			if
			:: S[i] & S_PK -> S[i] = S[i] & ~S_PK; ok = 1
			:: else -> ok = 0
			fi
		};
		if
		:: ok -> FUTEX_WAKE_S(i); ok = 0
		:: else
		fi;
		i++
	:: else -> i = 0; break
	od
}

/* Ensure vCPU j, if ACTIVE, owes an acknowledgement: pending++, then CAS
 * S[j] from the loaded value to value|WANTED (same generation, still
 * ACTIVE); kick if the CAS succeeded, else pending-- (wake at 0).  With
 * rekick set (the re-kick timer fired), re-kick a vCPU already WANTED. */
inline want_one(j)
{
	s = S[j];
	if
	:: s & S_ACT ->
		allout = 0;
		if
		:: !(s & S_WANT) ->
			pending++;
			d_step {
				if
				:: S[j] == s -> S[j] = s | S_WANT; ok = 1
				:: else -> ok = 0
				fi
			};
			if
			:: ok -> do_kick(j); ok = 0
			:: else ->
				d_step { pending--; p = pending };
				if
				:: p == 0 -> FUTEX_WAKE_P
				:: else
				fi;
				p = 0
			fi
		:: else ->
			if
			:: rekick -> do_kick(j)
			:: else
			fi
		fi
	:: else
	fi;
	s = 0
}

/* Scan every vCPU (want_one); allout says whether all were seen out. */
inline scan()
{
	allout = 1;
	i = 0;
	do
	:: i < NV -> want_one(i); i++
	:: else -> i = 0; break
	od;
	rekick = 0
}

/* Wait until no vCPU is ACTIVE.  Non-blocking form: give up (gaveup = 1)
 * when a vCPU is still ACTIVE.  Blocking form: futex_wait(&pending, p) for
 * p != 0; the re-kick timer (spin's timeout: time passes when nothing else
 * can happen) and spurious wake-ups end the wait early. */
inline wait_out(blocking)
{
	do
	:: scan();
		if
		:: allout -> break
		:: else ->
			if
			:: !blocking -> gaveup = 1; break
			:: else ->
				p = pending;
				if
				:: p != 0 ->
					d_step {
						if
						:: pending == p -> slp_p = 1
						:: else
						fi
					};
					if
					:: slp_p == 0
					:: timeout -> slp_p = 0; rekick = 1
					:: atomic { slp_p == 1 && spur > 0 -> spur--; slp_p = 0 }
					fi
				:: else
				fi;
				p = 0
			fi
		fi
	od;
	allout = 0
}

/* Process pending edges in order while holding the role, then clear
 * SETTLING with a CAS that fails if the word changed (a new edge); the CAS
 * that makes W runnable clears PARKED and, if it was set, wakes. */
inline process(blocking)
{
	gaveup = 0;
	do
	:: w = W;
		assert((w & W_ST) || settled == EDGE(w));
		if
		:: settled != EDGE(w) ->
			e = NEXTE(settled);
			if
			:: ISSTOP(e) -> wait_out(blocking)
			:: else
			fi;
			if
			:: gaveup -> w = 0; e = 0; break
			:: else ->
				d_step {
					/* settled through a stop edge: every vCPU
					 * has been out of guest code since it */
					assert(!ISSTOP(e) || NONE_INGUEST);
					settled = e;
					nsettled++;
					e = 0
				}
			fi
		:: else ->
			if
			:: w & W_ST ->
				d_step {
					if
					:: W == w ->
						nw = w & ~W_ST;
						if
						:: MAYRUN(nw) -> nw = nw & ~W_PK
						:: else
						fi;
						W = nw;
						ok = 1
					:: else -> ok = 0
					fi
				};
				if
				:: ok ->
					ok = 0;
#ifndef MUTANT_A
					if
					:: MAYRUN(nw) && (w & W_PK) -> wake_all()
					:: else
					fi;
#else
					/* Seeded bug A: the start's settle makes W
					 * runnable but forgets to wake parked vCPUs. */
#endif
					w = 0; nw = 0;
					break
				:: else -> nw = 0
				fi
			:: else -> w = 0; break
			fi
		fi
	od
}

/* After releasing the role: is there settle work that nobody else is bound
 * to pick up?  Sets ok. */
inline recheck()
{
#ifdef RECHECK_SPEC
	/* As first written: "settle work whose vCPUs are now all out": the
	 * next edge is a start edge (or only the SETTLING clear is left), or
	 * no vCPU is ACTIVE. */
	w = W;
	ok = 0;
	if
	:: w & W_ST ->
		if
		:: settled == EDGE(w) || !ISSTOP(NEXTE(settled)) -> ok = 1
		:: else ->
			ok = 1;
			i = 0;
			do
			:: i < NV ->
				if
				:: S[i] & S_ACT -> ok = 0
				:: else
				fi;
				i++
			:: else -> i = 0; break
			od
		fi
	:: else
	fi;
	w = 0
#else
	/* Fixed rule: SETTLING is set and no acknowledgement is outstanding.
	 * If one is outstanding, the vCPU that brings pending to 0 does so
	 * after this load, hence after our release, and tries the role. */
	w = W;
	if
	:: (w & W_ST) && pending == 0 -> ok = 1
	:: else -> ok = 0
	fi;
	w = 0
#endif
}

/* Asynchronous settling: try-acquire the role; if acquired process edges
 * without waiting, release, recheck, and go again if needed. */
inline settle_async()
{
	do
	:: d_step {
			if
			:: role == 0 -> role = 1; got = 1
			:: else -> got = 0
			fi
		};
		if
		:: got ->
			got = 0;
			process(0);
			gaveup = 0;
			role = 0;
			recheck();
			if
			:: ok -> ok = 0
			:: else -> break
			fi
		:: else -> break
		fi
	od
}

/* Synchronous settling: acquire the role (blocking), process edges waiting
 * for vCPUs, release, recheck. */
inline settle_sync()
{
	atomic { role == 0 -> role = 1 };
	process(1);
	role = 0;
	recheck();
	if
	:: ok -> ok = 0; settle_async()
	:: else
	fi
}

/* The stop-edge kick by the edge's maker: ensure WANTED on every ACTIVE
 * vCPU and kick it, before waiting for anything. */
inline kick_all_if_stop_edge()
{
	if
	:: EDGE(w) != EDGE(nw) && ISSTOP(EDGE(nw)) ->
#ifndef SPEC_KICK
		/* kick every ACTIVE vCPU, WANTED or not: a WANTED bit may be
		 * left over from a late scan of an earlier stop edge (README,
		 * finding 1), and nobody would kick that vCPU for this edge */
		rekick = 1;
#endif
		scan(); allout = 0
	:: else
	fi
}

/* Property 2: a synchronous stopping call returns with its edge settled;
 * if no edge came after it, no vCPU executes guest code now. */
inline sync_return(mine)
{
	d_step {
		assert(nsettled >= mine);
		assert(nedge != mine || !STOPPED(W) || NONE_INGUEST)
	}
}

/* ======================================================================= */
/* vCPU i.  The emulator's loop: rs_vcpu_enter() until it returns non-zero,
 * guest slices in between while rs_may_run(). */
proctype vcpu(byte me)
{
	SETTLE_LOCALS;

enter:
	if
	:: exitreq[me] -> goto finished
	:: else
	fi;
#ifndef MUTANT_E
	/* rs_vcpu_enter(): announce (set ACTIVE), full fence, load W.
	 * Pairs with the stopper's CAS on W then load of S[i]. */
	d_step { S[me] = S[me] | S_ACT };
	w = W;
#else
	/* Seeded bug E: no fence, the load of W is satisfied before the store
	 * of ACTIVE is visible. */
	w = W;
	d_step { S[me] = S[me] | S_ACT };
#endif
	if
	:: MAYRUN(w) -> w = 0; goto guest
	:: else -> w = 0; goto leave
	fi;

guest:
	/* One guest slice: it ends when the vCPU is kicked (or asked to exit,
	 * which kicks). */
	atomic {
		assert(!holding);	/* property 1 */
		inguest[me] = 1
	};
	d_step { kick[me] == 1 -> kick[me] = 0; inguest[me] = 0; lostk[me] = 0 };
	if
	:: exitreq[me] -> goto leave
	:: else
	fi;
	/* the fast path: rs_may_run() */
	w = W;
	if
	:: MAYRUN(w) -> w = 0; goto guest
	:: else -> w = 0
	fi;

leave:
	/* Go out: exchange S[i] clearing ACTIVE and WANTED, generation + 1. */
	atomic { s = S[me]; S[me] = GENINC(s) & ~(S_ACT | S_WANT) };
#ifdef MUTANT_D
	/* Seeded bug D: the acknowledgement is made before leaving guest code:
	 * the vCPU runs one more slice after clearing ACTIVE. */
	if
	:: !exitreq[me] ->
		d_step { assert(!holding); inguest[me] = 1 };
		inguest[me] = 0
	:: else
	fi;
#endif
	if
	:: s & S_WANT ->
		s = 0;
		d_step { pending--; p = pending };
		if
		:: p == 0 ->
			p = 0;
			FUTEX_WAKE_P;
			/* the last acknowledgement helps settle */
			settle_async()
		:: else -> p = 0
		fi
	:: else -> s = 0
	fi;
	if
	:: exitreq[me] -> goto finished
	:: else
	fi;

	/* Park: PARKED in S[i], then PARKED in W only if W is still not
	 * runnable (else go announce), then futex_wait(&S[i], gen|PARKED). */
	d_step { S[me] = S[me] | S_PK; s = S[me] };
	d_step {
		if
		:: MAYRUN(W) -> ok = 0
		:: else -> W = W | W_PK; ok = 1
		fi
	};
	if
	:: !ok ->
		d_step { S[me] = S[me] & ~S_PK; s = 0 };
		goto enter
	:: else -> ok = 0
	fi;
#ifndef MUTANT_B
	/* FUTEX_WAIT: compare and sleep in one step */
	d_step {
		if
		:: S[me] == s -> slp[me] = 1
		:: else
		fi
	};
#else
	/* Seeded bug B: compare, then sleep in a separate step: a wake-up in
	 * between is lost. */
	if
	:: S[me] == s -> slp[me] = 1
	:: else
	fi;
#endif
	s = 0;
	if
	:: slp[me] == 0
	:: atomic { slp[me] == 1 && spur > 0 -> spur--; slp[me] = 0 }
	fi;
	d_step { S[me] = S[me] & ~S_PK };
	goto enter;

finished:
	assert(!(S[me] & S_ACT));
	exited[me] = 1
}

/* A synchronous stop (rs_stop with a timeout): CAS, kick on a stop edge,
 * settle through the edge, return. */
proctype stopper()
{
	SETTLE_LOCALS;
	byte mine, n;

	do
	:: n < STOPS ->
		d_step { do_cmd(C_STOP); mine = nedge };
		kick_all_if_stop_edge();
		w = 0; nw = 0;
		settle_sync();
		sync_return(mine);
		mine = 0;
		n++
	:: else -> break
	od;
	ndone++
}

/* Asynchronous commands: [async stop], start; each CAS then try to settle. */
proctype starter()
{
	SETTLE_LOCALS;
	byte n;

#if ASYNC_STOP
	do_cmd(C_STOP);
	kick_all_if_stop_edge();
	w = 0; nw = 0;
	settle_async();
#endif
	do
	:: n < STARTS ->
#ifdef MUTANT_C
		do_cmd_stale(C_START);
#else
		do_cmd(C_START);
#endif
		w = 0; nw = 0;
		settle_async();
		n++
	:: else -> break
	od;
	ndone++
}

/* An internal lock holder: synchronous lock, check exclusion, unlock (plain,
 * asynchronous; or with a pause reason, a stopping call). */
proctype holder()
{
	SETTLE_LOCALS;
	byte mine;

	d_step { do_cmd(C_LOCK); mine = nedge };
	kick_all_if_stop_edge();
	w = 0; nw = 0;
	settle_sync();
	sync_return(mine);
	/* property 1: from here to the unlock no vCPU executes guest code */
	d_step { assert(NONE_INGUEST); holding = 1; mine = 0 };
	if
	:: d_step { holding = 0; do_cmd(C_UNLOCK) };
		w = 0; nw = 0;
		settle_async()
	:: d_step { holding = 0; do_cmd(C_UNLOCK_PAUSE); mine = nedge };
		w = 0; nw = 0;
		settle_sync();
		sync_return(mine)
	fi;
	ndone++
}

/* When all management is done and nothing else can move, check the quiet
 * state; then cont and ask every vCPU to exit. */
proctype finisher()
{
	SETTLE_LOCALS;

	ndone == NMGMT;
#ifndef LIVENESS
	atomic {
		timeout ->
		/* every edge settled, unless a kick was lost and nobody waits */
		assert(!(W & W_ST) || ANY_LOST);
		/* every outstanding acknowledgement has its WANTED bit */
		assert(pending == NWANTED || ANY_LOST);
		/* runnable: PARKED clear and every vCPU in guest code */
		assert(!MAYRUN(W) || !(W & W_PK));
		assert(!MAYRUN(W) || ALL_INGUEST);
		/* a sleeping vCPU can be found by a future waker */
		i = 0;
		do
		:: i < NV ->
			assert(!slp[i] || ((W & W_PK) && (S[i] & S_PK)));
			i++
		:: else -> i = 0; break
		od
	};
#endif
	do_cmd(C_START);	/* cont */
	w = 0; nw = 0;
	settle_async();
	i = 0;
	do
	:: i < NV -> exitreq[i] = 1; kick[i] = 1; i++
	:: else -> i = 0; break
	od
}

init {
	byte k;
	atomic {
		do
		:: k < NV -> run vcpu(k); k++
		:: else -> break
		od;
		run stopper();
		run starter();
		run holder();
		run finisher()
	}
}

#ifdef LIVENESS
/* Property 4: it is never the case that W stays runnable while a vCPU
 * (not exited) stays outside guest code forever. */
#define STUCK(j)	(MAYRUN(W) && !inguest[j] && !exited[j])
#if NV == 2
ltl progress { []<> !STUCK(0) && []<> !STUCK(1) }
#else
ltl progress { []<> !STUCK(0) && []<> !STUCK(1) && []<> !STUCK(2) }
#endif
#endif

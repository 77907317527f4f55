/* SPDX-License-Identifier: MIT */
/*
 * runstate.pml: a Promela model of runstate's vCPU stop/start protocol.
 * README.md (same folder) maps it to the design, says which steps are merged
 * and why, and records the results; run-model.sh runs it.
 *
 * Modelled:
 *   - the word W (the variable is `word`: spin's LTL reads W as "weak
 *     until"): pause bit, one lock bit, SETTLING, PARKED and the edge
 *     counter modulo 4 (odd while running); every change is one atomic step
 *     (a compare-and-swap loop collapsed into its successful CAS);
 *   - per-vCPU words S[i]: ACTIVE, WANTED, PARKED, generation modulo 2;
 *   - `pending` (outstanding acknowledgements) and its futex;
 *   - the settler role (a mutex: blocking acquire for synchronous stopping
 *     calls, try-acquire for asynchronous commands and the last acking
 *     vCPU), edge-by-edge settling, the re-kick timer, lost kicks and
 *     spurious futex wake-ups (each with a budget, so that a lost wake-up
 *     is a real hang);
 *   - management: a synchronous stop, an asynchronous start, a lock holder
 *     (synchronous lock, then unlock or unlock-with-pause), and a finisher
 *     that waits until nothing can move, checks that quiet state, then does
 *     a final cont and asks every vCPU to exit;
 *   - the early wake of a start (wake_early(), apply() and releasing() in
 *     lib/runstate.c): a start or cont whose CAS makes an edge on a word
 *     with PARKED, if that edge is the next to settle, clears PARKED in the
 *     same CAS, and its maker wakes every parked vCPU before it helps
 *     settle.
 *
 * Knobs (spin -DNAME=VALUE, defaults in brackets): NV vCPUs, 2 or 3 [2];
 * SPURIOUS, LOSTKICKS budgets [1, 1]; STOPS synchronous stops [1]; STARTS
 * asynchronous starts [1]; ASYNC_STOP: the starter also makes an
 * asynchronous stop, 1 before its starts, 2 after them [0]; HOLDER: run the
 * lock holder [1]; UNLOCKP: its unlock, 0 plain, 1 with pause, 2 either [2];
 * COARSE: a scan of all vCPUs and a wake of all vCPUs are one step each
 * (README); LIVENESS: add the progress formula, drop the quiet-state checks;
 * NO_EARLY_WAKE: the protocol without the early wake (wakes only by the
 * settling CAS); EARLY_SECOND_CAS: the early wake as first written, with a
 * second CAS after the command's to clear PARKED; EARLY_ALWAYS: the early
 * wake without its "next to settle" condition (that condition is a hint:
 * the protocol is safe without it).
 * The protocol as first written (README, findings): SPEC_KICK, RECHECK_SPEC.
 * Seeded bugs, each must make spin report an error: MUTANT_A .. MUTANT_F.
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
#ifndef HOLDER
#define HOLDER 1
#endif
#ifndef UNLOCKP
#define UNLOCKP 2	/* holder unlocks: 0 plain, 1 with pause, 2 either */
#endif

/* ---- The word W (`word`) ---------------------------------------------- */
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
#define GENINC(s)	((s) ^ 8)	/* generation modulo 2 */

/* ---- Commands ---------------------------------------------------------- */
#define C_STOP		0
#define C_START		1	/* start and cont: clear the pause reason */
#define C_LOCK		2
#define C_UNLOCK	3
#define C_UNLOCK_PAUSE	4

/* ---- Shared state ------------------------------------------------------ */
byte word = W_E1;			/* running, edge 1, settled */
byte S[NV] = S_ACT;		/* every vCPU active, generation 0 */
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
bit inguest[NV] = 1;		/* vCPU i executes a guest slice */
bit lostk[NV];			/* a kick to vCPU i was lost, slice not ended */
bit exited[NV];
bit holding;			/* the lock holder is inside its critical region */
byte nedge = 1;			/* edges so far, not wrapped */
byte nsettled = 1;		/* edges settled so far, not wrapped */

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

/* Locals of every thread that may settle (the inlines use them by name).
 * Every inline leaves them 0 when done, so that they do not split states. */
#define SETTLE_LOCALS \
	byte w, nw, s, e, i; \
	bit ok, allout, rekick, got, gaveup, blk, early

/* ======================================================================= */
/* The pure transition function (rs_transition): what a command does to a
 * word.  A change of running-ness advances the edge counter and sets
 * SETTLING; a word that lets vCPUs run has PARKED cleared (the caller
 * wakes). */
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

/* Ghost bookkeeping for a command step w -> nw. */
inline note_edge(w, nw)
{
	if
	:: EDGE(w) != EDGE(nw) ->
		nedge++;
		/* the mod-4 counter never laps the settled counter */
		assert(nedge - nsettled < 4)
	:: else
	fi;
	/* Every change of running-ness sets SETTLING, so no command makes
	 * the word runnable: only the clearing of SETTLING does, and it wakes
	 * the parked vCPUs (the early wake wakes them sooner, on a word that
	 * is not runnable yet; they park again until SETTLING clears). */
	assert(MAYRUN(w) || !MAYRUN(nw))
}

/* ---- The early wake (README, "Early wake") ----------------------------
 * Which variant: EARLY_CAS (the library's: the command's own CAS clears
 * PARKED), EARLY_SECOND_CAS (a second CAS after the command's), or neither
 * (NO_EARLY_WAKE). */
#if !defined(NO_EARLY_WAKE) && !defined(EARLY_SECOND_CAS)
#define EARLY_CAS
#endif
#if defined(NO_EARLY_WAKE) && defined(EARLY_SECOND_CAS)
#error "NO_EARLY_WAKE and EARLY_SECOND_CAS exclude each other"
#endif

/* wake_early(): is this start edge the next to settle?  e and mine hold what
 * EARLY_READ loaded: rs_edge_next(settled) modulo 4, and the same unwrapped
 * (the ghost nsettled + 1; settled == nsettled modulo 4 always).  The
 * library's counter has 19 bits; the model's wraps at 4, so the ghost rules
 * out a false match.  nedge + 1 is the number of the edge being made. */
#ifndef EARLY_ALWAYS
#define NEXT_TO_SETTLE(nw)	(EDGE(nw) == e && nedge + 1 == mine)
#else
#define NEXT_TO_SETTLE(nw)	1
#endif
/* The whole test, on one CAS attempt from w to nw: a start or cont (C_START;
 * releasing(), not rs_unlock) that makes an edge on a word with PARKED, next
 * to settle.  No listeners in the model, so that condition always holds; so
 * does "fewer vCPUs than CPUs" (with as many vCPUs as CPUs or more, the
 * library runs the protocol of NO_EARLY_WAKE). */
#define EARLY_OK(c, w, nw) \
	((c) == C_START && EDGE(w) != EDGE(nw) && ((nw) & W_PK) && NEXT_TO_SETTLE(nw))

/* The load of settled, before the command step of a releasing command.  In
 * the library it comes between the load of the word and the CAS of each
 * attempt, and only the successful attempt's counts; the model merges that
 * load of the word into the CAS (see do_cmd), so the load of settled comes
 * first, as its own step.  Made for every C_START, needed or not (a load
 * without effect). */
#ifdef EARLY_CAS
#define EARLY_READ(c) \
	if \
	:: (c) == C_START -> d_step { e = NEXTE(settled); mine = nsettled + 1 } \
	:: else \
	fi;
#else
#define EARLY_READ(c)
#endif

/* A management command: one CAS on the word (then see cmd_flags).  With
 * the early wake (EARLY_CAS), an attempt that passes EARLY_OK also clears
 * PARKED, and its maker wakes (EARLY_WAVE). */
inline do_cmd(c)
{
	d_step {
		w = word;
		transition(c, w, nw);
#ifdef EARLY_CAS
		if
		:: EARLY_OK(c, w, nw) -> nw = nw & ~W_PK; early = 1
		:: else
		fi;
		e = 0;
		mine = 0;
#endif
		word = nw;
		note_edge(w, nw);
		holding = 0;	/* the holder's unlock ends its exclusion */
		cmd_flags(c)
	}
}

/* After command c: ok = it made a stop edge (kick), got = the new word is
 * settling (settle); w is dropped.  nw is dropped too, unless the second
 * CAS of EARLY_SECOND_CAS may follow (a start or cont, C_START here, that
 * made an edge and whose new word has PARKED): then nw stays, and mine is
 * the edge's number (the ghost; see early_wake_second_cas). */
inline cmd_flags(c)
{
	ok = EDGE(w) != EDGE(nw) && ISSTOP(EDGE(nw));
	got = (nw & W_ST) != 0;
#ifdef EARLY_SECOND_CAS
	if
	:: c == C_START && EDGE(w) != EDGE(nw) && (nw & W_PK) -> mine = nedge
	:: else -> nw = 0
	fi;
#else
	nw = 0;
#endif
	w = 0
}

/* ---- Futexes and kicks -------------------------------------------------- */

/* Kick vCPU j (set its kick flag, which ends its current or next guest
 * slice).  A kick may be lost. */
inline do_kick(j)
{
	if
	:: kick[j] = 1
	:: lost > 0 -> lost--; lostk[j] = 1
	fi
}

/* Wake parked vCPUs (by whoever made the word runnable while the old word
 * had PARKED): for each vCPU with PARKED in S[i], clear it, FUTEX_WAKE. */
inline wake_all()
{
#ifdef COARSE
	d_step {
		i = 0;
		do
		:: i < NV ->
			if
			:: S[i] & S_PK -> S[i] = S[i] & ~S_PK; slp[i] = 0
			:: else
			fi;
			i++
		:: else -> i = 0; break
		od
	}
#else
	i = 0;
	do
	:: i < NV ->
		d_step {
			if
			:: S[i] & S_PK -> S[i] = S[i] & ~S_PK; slp[i] = 0
			:: else
			fi;
			i++
		}
	:: else -> i = 0; break
	od
#endif
}

/* The early wake's wave (EARLY_CAS): after the command whose CAS cleared
 * PARKED, wake every parked vCPU: the same wave as after the settling CAS.
 * A vCPU woken while SETTLING is still set re-parks and sets PARKED again,
 * which the settling CAS sees and wakes. */
#if defined(EARLY_CAS) && !defined(MUTANT_F)
#define EARLY_WAVE() \
	if \
	:: early -> early = 0; wake_all() \
	:: else \
	fi;
#elif defined(EARLY_CAS)
#define EARLY_WAVE()	early = 0;	/* seeded bug F: the wave came first */
#elif defined(EARLY_SECOND_CAS)
#define EARLY_WAVE()	early_wake_second_cas();
#else
#define EARLY_WAVE()
#endif

#ifdef EARLY_SECOND_CAS
/* The early wake as first written (-DEARLY_SECOND_CAS), called between the
 * command and the help to settle, entered with nw and mine kept by
 * cmd_flags (else nw is 0 and nothing happens).  One step loads `settled`
 * (is this start edge the next to settle?); then CAS the word from w (first
 * the command's new word, then what each failed CAS returns) to w without
 * PARKED, while w has PARKED; if a CAS succeeded, wake every parked vCPU. */
inline early_wake_second_cas()
{
	if
	:: nw != 0 ->
		d_step {
			/* rs_edge_next(settled) == edge(nw) in the library's 19-bit
			 * counter.  settled wraps at 4 here, so the unwrapped
			 * ghosts (which move with it) rule out a false match. */
			if
#ifndef EARLY_ALWAYS
			:: NEXTE(settled) == EDGE(nw) && nsettled + 1 == mine -> w = nw
#else
			:: true -> w = nw
#endif
			:: else
			fi;
			nw = 0;
			mine = 0
		};
#ifdef MUTANT_F
		/* Seeded bug F (this variant): the wave before the CAS. */
		if
		:: w & W_PK -> wake_all()
		:: else
		fi;
#endif
		do
		:: atomic {
			w & W_PK ->
			if
			:: word == w -> word = w & ~W_PK; w = 0; ok = 1
			:: else -> w = word	/* the failed CAS returns the word */
			fi
		   }
		:: else -> w = 0; break
		od;
		if
		:: ok ->
			ok = 0
#ifndef MUTANT_F
			; wake_all()
#endif
		:: else
		fi
	:: else
	fi
}
#endif

/* Seeded bug F: the early wake's wave before the CAS that clears PARKED
 * (to start the wake-ups sooner): the maker decides on the word it loaded
 * and wakes; its CAS comes after.  A vCPU that wakes, sees the word still
 * stopped (or SETTLING) and parks again before that CAS finds PARKED still
 * set, does not set it, and sleeps; the CAS then clears PARKED, and the
 * settling CAS sees none and wakes nobody. */
#if defined(MUTANT_F) && defined(EARLY_CAS)
#define MUTANT_F_WAVE(c) \
	d_step { \
		w = word; \
		transition(c, w, nw); \
		ok = EARLY_OK(c, w, nw); \
		w = 0; \
		nw = 0 \
	}; \
	if \
	:: ok -> ok = 0; wake_all() \
	:: else \
	fi;
#else
#define MUTANT_F_WAVE(c)
#endif

/* vCPU j, if ACTIVE, must owe an acknowledgement: pending++, then CAS S[j]
 * from the loaded value to value|WANTED (same generation, still ACTIVE) and
 * kick; if the CAS fails, pending-- (FUTEX_WAKE at 0).  With rekick set,
 * kick a vCPU that is already WANTED too. */
inline want_one(j)
{
	atomic {
		s = S[j];
		if
		:: (s & S_ACT) && !(s & S_WANT) -> pending++
		:: else
		fi
	};
	if
	:: s & S_ACT ->
		allout = 0;
		if
		:: !(s & S_WANT) ->
			atomic {
				if
				:: S[j] == s -> S[j] = s | S_WANT; do_kick(j)
				:: else ->
					pending--;
					if
					:: pending == 0 -> slp_p = 0
					:: else
					fi
				fi
			}
		:: rekick && (s & S_WANT) -> do_kick(j)
		:: else
		fi
	:: else
	fi;
	s = 0
}

/* Scan every vCPU with want_one; allout: every vCPU was seen out.  With
 * COARSE the whole scan is one step (a snapshot; README). */
inline scan()
{
#ifdef COARSE
	atomic {
#endif
	allout = 1;
	i = 0;
	do
	:: i < NV -> want_one(i); i++
	:: else -> i = 0; break
	od;
	rekick = 0
#ifdef COARSE
	}
#endif
}

/* Wait until no vCPU is ACTIVE.  Non-blocking form: give up (gaveup = 1)
 * while one is.  Blocking form: futex_wait(&pending, p) when p != 0; the
 * re-kick timer (spin's timeout: time passes when nothing else can happen)
 * and spurious wake-ups end the wait early.
 *
 * With COARSE, a scan and the decision to sleep are one step
 * (scan_and_sleep), and the caller has made the first one. */
inline scan_and_sleep(blocking)
{
	scan();
	if
	:: blocking && !allout && pending != 0 -> slp_p = 1	/* FUTEX_WAIT */
	:: else
	fi
}

inline wait_for_wake()
{
	if
	:: slp_p == 0
	:: timeout ->
		/* The re-kick timer fired.  It is the remedy for lost kicks
		 * only: with no kick lost, no stop should have to wait for it
		 * (README, finding 1). */
		assert(ANY_LOST);
		slp_p = 0;
		rekick = 1
	:: atomic { slp_p == 1 && spur > 0 -> spur--; slp_p = 0 }
	fi
}

inline wait_out(blocking)
{
#ifdef COARSE
	do
	:: allout -> break
	:: !allout && !blocking -> gaveup = 1; break
	:: !allout && blocking ->
		wait_for_wake();
		atomic { scan_and_sleep(blocking) }
	od;
#else
	do
	:: scan();
		if
		:: allout -> break
		:: !allout && !blocking -> gaveup = 1; break
		:: !allout && blocking ->
			d_step {
				if
				:: pending != 0 -> slp_p = 1	/* FUTEX_WAIT */
				:: else
				fi
			};
			wait_for_wake()
		fi
	od;
#endif
	allout = 0
}

/* The private start of each round of processing, with w just loaded:
 * settle a start edge at once (it needs no vCPU), and set e if the next edge
 * is a stop edge.  With COARSE, that edge's first scan is part of the same
 * step: the load only says that a stop edge is pending, which stays true
 * until the role holder settles it. */
inline process_head(blocking)
{
	assert((w & W_ST) || settled == EDGE(w));
	if
	:: settled != EDGE(w) && !ISSTOP(NEXTE(settled)) ->
		settled = NEXTE(settled);
		nsettled++
	:: else
	fi;
	e = (settled != EDGE(w));
#ifdef COARSE
	if
	:: e -> w = 0; scan_and_sleep(blocking)
	:: else
	fi
#endif
}

/* Process pending edges in order while holding the role (entered with w
 * loaded and process_head done); then clear SETTLING with a CAS that fails
 * if the word changed (a new edge), reloading it.  The CAS that makes the
 * word runnable clears PARKED and, if it was set, wakes. */
inline process(blocking)
{
	do
	:: e ->
		e = 0;
		w = 0;
		wait_out(blocking);
		if
		:: gaveup -> break
		:: else ->
			atomic {
				/* settled through a stop edge: every vCPU has
				 * been out of guest code since it */
				assert(NONE_INGUEST);
				settled = NEXTE(settled);
				nsettled++;
#ifdef COARSE
				/* a private step: the reload goes with it */
				w = word;
				process_head(blocking)
#endif
			};
#ifndef COARSE
			atomic { w = word; process_head(blocking) }
#endif
		fi
	:: !e && (w & W_ST) ->
		atomic {
			if
			:: word == w ->
				nw = w & ~W_ST;
				if
				:: MAYRUN(nw) -> nw = nw & ~W_PK
				:: else
				fi;
				word = nw;
				ok = 1
			:: else ->
				/* the failed CAS returns the new word */
				w = word;
				process_head(blocking);
				ok = 0
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
			/* Seeded bug A: the settle that makes the word
			 * runnable (a start's) forgets to wake parked vCPUs. */
#endif
			w = 0; nw = 0;
			break
		:: else
		fi
	:: !e && !(w & W_ST) -> w = 0; break
	od
}

/* After releasing the role: is there settle work that nobody else is bound
 * to pick up?  Sets ok. */
#ifdef RECHECK_SPEC
inline recheck()
{
	/* As first written: "settle work whose vCPUs are now all out": the
	 * next edge needs no vCPU (a start edge, or only the clearing of
	 * SETTLING is left), or no vCPU is ACTIVE.  (settled is read without
	 * the role here.) */
	d_step {
		w = word;
		ok = (w & W_ST) && (settled == EDGE(w) || !ISSTOP(NEXTE(settled)));
		e = (w & W_ST) != 0;
		w = 0
	};
	if
	:: !ok && e ->
		ok = 1;
		i = 0;
		do
		:: i < NV ->
			d_step {
				if
				:: S[i] & S_ACT -> ok = 0
				:: else
				fi;
				i++
			}
		:: else -> i = 0; break
		od
	:: else
	fi;
	e = 0
}
#define RECHECK_THEN_BREAK_UNLESS_OK \
	recheck(); \
	if \
	:: ok -> ok = 0 \
	:: else -> break \
	fi
#else
/* SETTLING is set and no acknowledgement is outstanding.  If one is, the
 * vCPU that brings pending to 0 does so after this load, hence after our
 * release, and then tries the role itself. */
#define RECHECK_THEN_BREAK_UNLESS_OK \
	atomic { \
		if \
		:: (word & W_ST) && pending == 0 -> skip \
		:: else -> break \
		fi \
	}
#endif

/* Settling.  blk = 1 (a synchronous stopping call): acquire the role,
 * blocking, and process edges waiting for vCPUs.  blk = 0 (an asynchronous
 * command, the last acknowledging vCPU): try-acquire the role and process
 * edges without waiting.  Either way: release, recheck, and go again if
 * needed, with try-acquire and without waiting. */
inline settle(blk)
{
	do
	:: atomic {
			if
			:: role == 0 -> role = 1; w = word; process_head(blk)
			:: role == 1 && !blk -> break
			fi	/* blk and role held: block */
		};
		process(blk);
		atomic { gaveup = 0; blk = 0; role = 0 };
		RECHECK_THEN_BREAK_UNLESS_OK
	od	/* blk is 0 again */
}

/* The stop-edge kick by the edge's maker, before it waits for anything. */
inline kick_all_if_stop_edge()
{
	if
	:: ok ->
		ok = 0;
#ifndef SPEC_KICK
		/* kick every ACTIVE vCPU, WANTED or not: a WANTED bit may be
		 * left over from a late scan for an earlier stop edge (README,
		 * finding 1), and nobody else would kick that vCPU now */
		rekick = 1;
#endif
		scan()
	:: else
	fi
}

/* Then settle if the new word is settling (else the caller's edge, if
 * any, is settled already). */
inline then_settle(b)
{
	if
	:: got -> got = 0; blk = b; settle(blk)
	:: else
	fi
}

/* Property 2: a synchronous stopping call returns with its edge settled;
 * if no edge came after it, no vCPU executes guest code now. */
inline sync_return(mine)
{
	d_step {
		assert(nsettled >= mine);
		assert(nedge != mine || NONE_INGUEST);
		mine = 0
	}
}
inline sync_return_nostep(mine)
{
	assert(nsettled >= mine);
	assert(nedge != mine || NONE_INGUEST);
	mine = 0
}

/* The vCPU's own steps on S[i].  The *_THEN forms end with the jump to
 * the next step, so that no local-only step sits in between. */

/* Announce (rs_vcpu_enter): unless an exit is requested, clear the kick flag,
 * clear own PARKED and set ACTIVE.  A stale kick flag may only be cleared
 * before the ACTIVE store (README). */
#ifndef MUTANT_E
#define SET_ACTIVE_UNLESS_E(me)	S[me] = (S[me] & ~S_PK) | S_ACT
#else
#define SET_ACTIVE_UNLESS_E(me)	S[me] = S[me] & ~S_PK
#endif
#define ANNOUNCE_THEN(me) \
	if \
	:: exitreq[me] -> S[me] = S[me] & ~S_PK; goto finished \
	:: else -> kick[me] = 0; SET_ACTIVE_UNLESS_E(me); goto announced \
	fi

/* Go out: exchange S[i] clearing ACTIVE and WANTED, generation + 1; then
 * acknowledge if WANTED was set, else park (with COARSE the first parking
 * step is part of this one). */
#define GO_OUT(me) \
	s = S[me]; \
	S[me] = GENINC(s) & ~(S_ACT | S_WANT)
#ifdef COARSE
#define GO_OUT_THEN(me) \
	GO_OUT(me); \
	if \
	:: s & S_WANT -> goto ack \
	:: else -> PARK_S_THEN(me) \
	fi
#else
#define GO_OUT_THEN(me) \
	GO_OUT(me); \
	if \
	:: s & S_WANT -> goto ack \
	:: else -> s = 0; goto park \
	fi
#endif

/* First parking step: unless an exit is requested, set PARKED in S[i] and
 * keep the value for the futex. */
#define PARK_S_THEN(me) \
	if \
	:: exitreq[me] -> s = 0; goto finished \
	:: else -> S[me] = S[me] | S_PK; s = S[me]; goto parkw \
	fi

/* ======================================================================= */
/* vCPU `me`: the emulator's loop around rs_vcpu_enter() and guest slices
 * while rs_may_run(). */
proctype vcpu(byte me)
{
	SETTLE_LOCALS;

	/* Every vCPU starts active, in guest code, the VM running. */
	goto guest;

announced:
	/* (Announced.)  The load of the word that decides.  In the library the
	 * announcement is a seq_cst fetch_or of ACTIVE and this load is seq_cst,
	 * with no fence between (two seq_cst accesses keep their order in the
	 * single total order; the model is sequentially consistent anyway).
	 * Pairs with the stopper's CAS on the word followed by its loads of
	 * S[i]: either the stopper sees ACTIVE or this load sees the stopped
	 * word.  The same step enters the first guest slice, or goes out. */
#ifndef MUTANT_E
	atomic {
		if
		:: MAYRUN(word) -> assert(!holding); inguest[me] = 1; goto guest
		:: else -> GO_OUT_THEN(me)
		fi
	};
#else
	/* Seeded bug E: the load of the word is satisfied before the store of
	 * ACTIVE is visible (a relaxed announcement without a fence; or the
	 * library's planted no-fence bug, which loads first).  In this variant
	 * ANNOUNCE_THEN does not set ACTIVE; the store comes after the load. */
	w = word;
	atomic {
		S[me] = S[me] | S_ACT;
		if
		:: MAYRUN(w) -> w = 0; assert(!holding); inguest[me] = 1; goto guest
		:: else -> w = 0; GO_OUT_THEN(me)
		fi
	};
#endif

guest:
	/* A guest slice ends when the vCPU is kicked (an exit request kicks).
	 * The same step is the fast path, rs_may_run() (and the exit request):
	 * start the next slice, or go out. */
	atomic {
		kick[me] == 1 ->
		kick[me] = 0;
		lostk[me] = 0;
		if
		:: !exitreq[me] && MAYRUN(word) -> assert(!holding); goto guest
		:: else ->
#ifndef MUTANT_D
			inguest[me] = 0;
			GO_OUT_THEN(me)
#else
			/* Seeded bug D: the acknowledgement (ACTIVE cleared) is
			 * made before the vCPU leaves guest code: the slice
			 * goes on for one more step. */
			GO_OUT(me);
			goto late
#endif
		fi
	};
#ifdef MUTANT_D
late:
	inguest[me] = 0;
	if
	:: s & S_WANT -> goto ack
	:: else -> s = 0; goto park
	fi;
#endif

ack:
	/* The acknowledgement: pending--, FUTEX_WAKE at 0, and the last one
	 * helps settle. */
	atomic {
		pending--;
		if
		:: pending == 0 -> slp_p = 0; goto help	/* FUTEX_WAKE(&pending) */
		:: else
		fi;
#ifdef COARSE
		PARK_S_THEN(me)
#else
		goto park
#endif
	};
help:
	settle(blk);	/* blk is 0 */

park:
	/* Park: PARKED in S[i], then PARKED in the word only if it is still not
	 * runnable (else announce again), then futex_wait(&S[i], gen|PARKED). */
	atomic { PARK_S_THEN(me) };
parkw:
	atomic {
		if
		:: MAYRUN(word) ->
			/* runnable after all: clear own PARKED, announce */
			s = 0;
			ANNOUNCE_THEN(me)
		:: else -> word = word | W_PK
		fi
	};
#ifndef MUTANT_B
	/* FUTEX_WAIT: compare and sleep in one step */
	d_step {
		if
		:: S[me] == s -> slp[me] = 1
		:: else
		fi;
		s = 0
	};
#else
	/* Seeded bug B: compare, then sleep in a separate step: a wake-up in
	 * between is lost. */
	d_step { ok = (S[me] == s); s = 0 };
	if
	:: ok -> ok = 0; slp[me] = 1
	:: else
	fi;
#endif
	/* Woken (or a spurious return): clear own PARKED and announce again,
	 * in one step (see README). */
	if
	:: atomic { slp[me] == 0 -> ANNOUNCE_THEN(me) }
	:: atomic {
		slp[me] == 1 && spur > 0 ->
		spur--;
		slp[me] = 0;
		ANNOUNCE_THEN(me)
	   }
	fi;

finished:
	assert(!(S[me] & S_ACT) && !inguest[me]);
	exited[me] = 1
}

/* The command's CAS and, on a stop edge, its kick of every ACTIVE vCPU:
 * two steps (README, finding 1 lives in between). */
#define CMD_THEN_KICK(c, sync) \
	d_step { do_cmd(c); if :: sync -> mine = nedge :: else fi }; \
	kick_all_if_stop_edge()

/* A synchronous stop (rs_stop with a timeout), STOPS times: CAS, kick on a
 * stop edge, settle through the edge, return. */
proctype stopper()
{
	SETTLE_LOCALS;
	byte mine, n;

	do
	:: n < STOPS ->
		CMD_THEN_KICK(C_STOP, 1);
		then_settle(1);
		sync_return(mine);
		n++
	:: else -> break
	od
}

/* Asynchronous commands: STARTS starts, with an asynchronous stop before
 * them (ASYNC_STOP 1) or after them (2): each a CAS, a kick on a stop edge,
 * then an attempt to settle. */
#define NSTARTER (STARTS + (ASYNC_STOP != 0))
#define STARTER_CMD(n) \
	(((ASYNC_STOP == 1 && (n) == 0) || \
	  (ASYNC_STOP == 2 && (n) == NSTARTER - 1)) -> C_STOP : C_START)
proctype starter()
{
	SETTLE_LOCALS;
	byte mine, n;	/* mine: for the early wake (EARLY_READ) */

	do
	:: n < NSTARTER ->
		EARLY_READ(STARTER_CMD(n))
		MUTANT_F_WAVE(STARTER_CMD(n))
#ifndef MUTANT_C
		CMD_THEN_KICK(STARTER_CMD(n), 0);
#else
		/* Seeded bug C: a stale plain store: the word is loaded, the
		 * new value computed from that load and written back later
		 * with a plain store, clobbering whatever changed between. */
		w = word;
		transition(STARTER_CMD(n), w, nw);
		d_step {
#ifdef EARLY_CAS
			if
			:: EARLY_OK(STARTER_CMD(n), w, nw) -> nw = nw & ~W_PK; early = 1
			:: else
			fi;
			e = 0;
			mine = 0;
#endif
			word = nw;
			note_edge(w, nw);
			cmd_flags(STARTER_CMD(n))
		};
		kick_all_if_stop_edge();
#endif
		EARLY_WAVE()	/* only after a start (releasing()) */
		then_settle(0);
		n++
	:: else -> break
	od
}

/* An internal lock holder: synchronous lock; exclusion until the unlock,
 * which is a plain unlock (asynchronous) or unlock-with-pause (a stopping
 * call); UNLOCKP picks which. */
proctype holder()
{
	SETTLE_LOCALS;
	byte mine, c;

	c = C_LOCK;
	do
	:: CMD_THEN_KICK(c, c != C_UNLOCK);	/* an unlock ends `holding` */
		then_settle(c != C_UNLOCK);
		if
		:: c == C_LOCK ->
			/* Property 1: from the return of the lock until the
			 * unlock no vCPU executes guest code (a vCPU asserts
			 * !holding on entering a slice). */
			atomic {
				sync_return_nostep(mine);
				assert(NONE_INGUEST);
				holding = 1;
				if
				:: UNLOCKP != 1 -> c = C_UNLOCK
				:: UNLOCKP != 0 -> c = C_UNLOCK_PAUSE
				fi
			}
		:: c == C_UNLOCK -> c = 0; break
		:: c == C_UNLOCK_PAUSE -> sync_return(mine); c = 0; break
		fi
	od
}

/* Once the management threads are done and nothing else can move (spin's
 * timeout; a settler asleep on `pending` means a stopping call is still
 * waiting), check the quiet state; then cont, and ask every vCPU to exit. */
proctype finisher()
{
	SETTLE_LOCALS;
	byte mine;	/* for the early wake (EARLY_READ) */

	atomic {
		timeout && !slp_p ->
#ifndef LIVENESS
		/* every edge settled, unless a kick was lost and nobody waits */
		assert(!(word & W_ST) || ANY_LOST);
		/* every outstanding acknowledgement has its WANTED bit */
		assert(pending == NWANTED);
		/* runnable: PARKED clear and every vCPU in guest code */
		assert(!MAYRUN(word) || !(word & W_PK));
		assert(!MAYRUN(word) || ALL_INGUEST);
		/* a sleeping vCPU can be found by a future waker */
		i = 0;
		do
		:: i < NV ->
			assert(!slp[i] || ((word & W_PK) && (S[i] & S_PK)));
			i++
		:: else -> i = 0; break
		od
#else
		skip
#endif
	};
	EARLY_READ(C_START)
	MUTANT_F_WAVE(C_START)
	do_cmd(C_START);	/* cont (releasing()) */
	EARLY_WAVE()
	then_settle(0);
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
		k = 0;
		run stopper();
		run starter();
#if HOLDER
		run holder();
#endif
		run finisher()
	}
}

#ifdef LIVENESS
/* Property 4: the word never stays runnable while a vCPU (not exited) stays out
 * of guest code forever. */
/* word % 8 == 0 is MAYRUN(word) (the LTL parser takes no bitwise and) */
#define STUCK(j)	(word % 8 == 0 && !inguest[j] && !exited[j])
#if NV == 2
ltl progress { []<> !STUCK(0) && []<> !STUCK(1) }
#else
ltl progress { []<> !STUCK(0) && []<> !STUCK(1) && []<> !STUCK(2) }
#endif
#endif

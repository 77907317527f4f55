/* SPDX-License-Identifier: MIT */
/*
 * runstate.pml: a Promela model of runstate's vCPU stop/start protocol.
 * README.md (same folder) maps it to the design, says which steps are merged
 * and why, and records the results; run-model.sh runs it.
 *
 * Modelled:
 *   - the word W (the variable is `word`: spin's LTL reads W as "weak
 *     until"): pause bit, one lock bit, the backlog (0..3, bounded by
 *     BMAX), the overflow bit and the coalesced count modulo 4, PARKED and
 *     the edge counter modulo 4 (8 with BMAX 2; odd while running); every change is one
 *     atomic step (a compare-and-swap loop collapsed into its successful
 *     CAS).  The counters are far narrower than the library's (the edge
 *     counter 32 bits, the coalesced count 9), so that they wrap within the
 *     runs: the design must not rely on them not wrapping;
 *   - per-vCPU words S[i]: ACTIVE, WANTED, PARKED, generation modulo 2;
 *   - `pending` (outstanding acknowledgements) and its futex;
 *   - the settler role (a mutex: blocking acquire for synchronous stopping
 *     calls, try-acquire for asynchronous commands and the last acking
 *     vCPU), settling entry by entry (an edge, or a run of coalesced edges
 *     taken up by absorb once the backlog has drained, counted from the
 *     word's count and the makers' bumps of `made`, which land a step after
 *     their CAS), a synchronous caller's wait for its own edge by the
 *     modular window check, the re-kick timer, lost kicks and
 *     spurious futex wake-ups (each with a budget, so that a lost wake-up
 *     is a real hang);
 *   - management: a synchronous stop, an asynchronous start, a lock holder
 *     (synchronous lock, then unlock or unlock-with-pause), and a finisher
 *     that waits until nothing can move, checks that quiet state, then does
 *     a final cont and asks every vCPU to exit;
 *   - the early wake of a start (wake_early(), rs_cmd_apply() and
 *     releasing() in lib/commands.c): a start or cont whose CAS makes an
 *     edge on a word with PARKED, if that edge is the next to settle,
 *     clears PARKED in the same CAS, and its maker wakes every parked vCPU
 *     before it helps settle;
 *   - with SECT or SECT_MGMT, exclusive sections (rs_exclusive_begin(),
 *     rs_exclusive_end(); README, "Exclusive sections"): the EX bit of the
 *     word, the queue (owner and FIFO under the mutex m, each waiter's
 *     granted flag and its futex), the owner's scan and wait for the vCPUs,
 *     the hand-over at the end, the owner's vCPU running alone, and the
 *     PARKED rule for "may run but for EX".
 *
 * Knobs (spin -DNAME=VALUE, defaults in brackets): NV vCPUs, 1, 2 or 3 [2];
 * BMAX the instance's max_backlog, 1 or 2 [1]; SPURIOUS, LOSTKICKS budgets
 * [1, 1]; STOPS synchronous stops [1]; STARTS asynchronous starts [1];
 * TOGGLES: the starter first makes that many asynchronous stop/start pairs
 * [0]; ASYNC_STOP: the starter also makes an
 * asynchronous stop, 1 before its starts, 2 after them [0]; HOLDER: run the
 * lock holder [1]; UNLOCKP: its unlock, 0 plain, 1 with pause, 2 either [2];
 * COARSE: a scan of all vCPUs and a wake of all vCPUs are one step each
 * (README); LIVENESS: add the progress formula, drop the quiet-state checks;
 * NO_EARLY_WAKE: the protocol without the early wake (wakes only by the
 * settling CAS); EARLY_SECOND_CAS: the early wake as first written, with a
 * second CAS after the command's to clear PARKED; EARLY_ALWAYS: the early
 * wake without its "next to settle" condition (it saves wasted wake-ups:
 * the protocol is safe without it).
 * Sections (none by default): SECT vCPU threads (vCPU 0, or 0 and 1) each
 * begin one section from an exit [0]; SECT_MGMT: a management thread
 * begins one [0]; SECT_TMO: timeouts of a section's waits, a budget [0].
 * The protocol as first written (README, findings): SPEC_KICK, RECHECK_SPEC.
 * Seeded bugs, each must make spin report an error: MUTANT_A .. MUTANT_H,
 * and with sections: MUTANT_I, the end hands the section over without
 * waking the waiter; MUTANT_J, PARKED cleared only when the word may run,
 * EX included (the rule before sections: a parked owner is never woken);
 * MUTANT_K, a command's CAS clears PARKED by the new rule and its maker
 * does not wake; MUTANT_L, the owner's rs_park() checks the plain may-run;
 * MUTANT_M, begin returns without waiting for the vCPUs; MUTANT_N, begin
 * leaves its own vCPU active and the owner's scan skips it.
 * The library's rule: commands clear PARKED by the old rule (the word may
 * run, EX included), the claim and the end by the new one (may run but
 * for EX).  SECT_CMD_NEWRULE: the alternative the README's finding 4
 * weighs, the new rule for commands too, each of which then wakes.
 */

#ifndef NV
#define NV 2
#endif
#ifndef BMAX
#define BMAX 1
#endif
#ifndef TOGGLES
#define TOGGLES 0
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
#ifndef SECT
#define SECT 0		/* vCPU threads that begin a section: 0, 1 or 2 */
#endif
#ifndef SECT_MGMT
#define SECT_MGMT 0	/* a management thread begins a section */
#endif
#ifndef SECT_TMO
#define SECT_TMO 0	/* timeouts of section waits (budget) */
#endif
#if SECT > 0 || SECT_MGMT > 0
#define SECTIONS
#endif
#if SECT > 2
#error "SECT is at most 2"
#endif
#if SECT > NV
#error "SECT is at most NV (a section per vCPU thread)"
#endif
#if defined(SECTIONS) && (defined(NO_EARLY_WAKE) || defined(EARLY_SECOND_CAS) || \
	defined(MUTANT_F) || defined(RECHECK_SPEC))
#error "sections are modelled with the library's early wake only"
#endif

/* ---- The word W (`word`) ---------------------------------------------- */
#define W_PAUSE	1	/* a pause reason is set (rank rules abstracted) */
#define W_LOCK	2	/* the one internal lock bit */
#define W_OV	4	/* the backlog is full: edges are coalesced */
#define W_BL1	8	/* backlog, bits 3..4: entries not settled (0..3) */
#define W_BLMASK	24
#define W_PK	32	/* PARKED: some vCPU is parked or about to park */
#define W_CC1	64	/* coalesced count, bits 6..7: modulo 4 */
#define W_CCMASK	192
/* The edge counter, from bit 8: modulo EMOD, 4 with BMAX 1, 8 with BMAX 2
 * (its window is BMAX + 2 edges, which must stay below the modulus). */
#if BMAX == 1
#define EMOD	4
#else
#define EMOD	8
#endif
#define EM	(EMOD - 1)
#define W_E1	256
#define W_EMASK	(EM * 256)
#define W_GN	(EMOD * 256)	/* the coalesced edges' generation */
/* EX (RS_W_EXCL): a section is owned.  A no-run bit, not a stop: no edge.
 * (Above GN here; never set without SECTIONS.) */
#define W_EX	(2 * W_GN)

#if BMAX < 1 || BMAX > 2
#error "BMAX must be 1 or 2 (the edge counter wraps at 4; the window is BMAX + 2)"
#endif

#define STOPPED(w)	(((w) & (W_PAUSE | W_LOCK)) != 0)
#define SETTLING(w)	(((w) & (W_OV | W_BLMASK)) != 0)
/* May run: no bit of the no-run mask (RS_W_NORUN_MASK), EX included. */
#define MAYRUN(w)	(((w) & (W_PAUSE | W_LOCK | W_OV | W_BLMASK | W_EX)) == 0)
/* May run but for EX: what the section owner's vCPU needs, and when a CAS
 * clears PARKED (the sections' rule). */
#define MAYRUN_BUT_EX(w)	(((w) & (W_PAUSE | W_LOCK | W_OV | W_BLMASK)) == 0)
/* When a CAS clears PARKED: the claim (PK_CLEARS_CLAIM) and a command's
 * transition (PK_CLEARS_CMD).  Without sections EX is never set and both
 * are MAYRUN.  Seeded bug J: the rule before sections (may run, EX
 * included).  Commands keep the old rule (lib/transition.c), unless
 * SECT_CMD_NEWRULE or MUTANT_K. */
#ifndef MUTANT_J
#define PK_CLEARS_CLAIM(w)	MAYRUN_BUT_EX(w)
#else
#define PK_CLEARS_CLAIM(w)	MAYRUN(w)
#endif
#if defined(SECT_CMD_NEWRULE) || defined(MUTANT_K)
#define PK_CLEARS_CMD(w)	MAYRUN_BUT_EX(w)
#else
#define PK_CLEARS_CMD(w)	MAYRUN(w)
#endif
#define EDGE(w)		(((w) & W_EMASK) >> 8)
#define BL(w)		(((w) & W_BLMASK) >> 3)
#define CC(w)		(((w) & W_CCMASK) >> 6)
#define GN(w)		(((w) & W_GN) != 0)
#define WITHE(w, e)	(((w) & ~W_EMASK) | (((e) & EM) << 8))
/* While edges are coalesced, the counter is the backlog's last edge (an
 * even count) or the one after it (odd). */
#define TAIL(w)		((EDGE(w) - (CC(w) & 1)) & EM)
/* The edge a synchronous caller waits for (rs_settle_target()). */
#define TARGET(w)	(((w) & W_OV) -> ((TAIL(w) + 1) & EM) : EDGE(w))
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
short word = W_E1;		/* running, edge 1, settled */
byte S[NV] = S_ACT;		/* every vCPU active, generation 0 */
byte pending;			/* outstanding acknowledgements */
/* The active hint (ack.c, P22): bit i set whenever vCPU i may be active;
 * one hint word (NV <= 3).  clrs and clrd: the clearers' clr_start and
 * clr_done (byte-wide: the runs make far fewer than 256 clears).  With
 * COARSE a scan loads them and the hint in one step, where clr_start !=
 * clr_done is exactly "a clearer is in flight": clin counts those instead,
 * so that the monotonic counts do not split states. */
byte H = (1 << NV) - 1;		/* every vCPU starts active */
#ifndef COARSE
byte clrs, clrd;
#define CLR_START()	clrs++
#define CLR_DONE()	clrd++
#else
byte clin;
#define CLR_START()	clin++
#define CLR_DONE()	clin--
#endif
bit role;			/* the settler role (a mutex) */
byte settled = 1;		/* the last settled edge counter, mod EMOD (under role) */
/* The coalesced run absorbed and not yet settled (under role): its end on
 * the edge counter and its number of edges. */
bit synth;
byte synth_end, synth_n;
byte made[2];			/* coalesced edges by generation, bumped after
				 * their CAS */
byte coal_acc[2];		/* made as accounted by the absorbs (under role) */

bit slp[NV];			/* vCPU i sleeps in futex_wait(&S[i]) */
bit slp_p;			/* the settler sleeps in futex_wait(&pending) */
bit kick[NV];			/* the kick flag: ends the current guest slice */
bit exitreq[NV];

byte spur = SPURIOUS;		/* spurious wake-up budget */
byte lost = LOSTKICKS;		/* lost-kick budget */

#ifdef SECTIONS
/* Sections.  Threads by id: vCPU i's thread is i, the management thread
 * NV; owner and queue entries are 1 + id (0: none).  owner and the queue
 * are the mutex m's: every critical section under m is one step in the
 * model (README), so m itself is not a variable. */
#define NT	(NV + 1)
byte owner;			/* the section's owner (granted, or holding) */
byte sq[NT];			/* the FIFO of waiters' nodes: sq[0] the head */
byte qlen;
bit granted[NT];		/* node.granted: store-release by the ender */
bit sslp[NT];			/* asleep in futex_wait(&node.granted, 0) */
byte stmo = SECT_TMO;		/* timeout budget of section waits */
byte sheld;			/* ghost: 1 + id of the thread whose begin
				 * returned 0, until its end */
#endif

/* ---- Ghosts (observation only; the protocol never reads them) ---------- */
bit inguest[NV] = 1;		/* vCPU i executes a guest slice */
bit lostk[NV];			/* a kick to vCPU i was lost, slice not ended */
bit exited[NV];
bit holding;			/* the lock holder is inside its critical region */
byte nedge = 1;			/* edges so far, not wrapped */
byte nsettled = 1;		/* edges settled so far, not wrapped */
byte grun;			/* edges in the current coalesced run */
byte gE = 1, gS = 1, gtail;	/* the edge counter, the settled one and the
				 * run's tail, not wrapped */
byte gsend;			/* the absorbed run's end, not wrapped */
byte gsn;			/* the absorbed run's number of edges */

#if NV == 1
#define NONE_INGUEST	(!inguest[0])
#define ALL_INGUEST	(inguest[0])
#define ANY_LOST	(lostk[0])
#define NWANTED		((S[0] & S_WANT) != 0)
#elif NV == 2
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
#error "NV must be 1, 2 or 3"
#endif

/* Locals of every thread that may settle (the inlines use them by name).
 * Every inline leaves them 0 when done, so that they do not split states. */
#ifndef SECTIONS
#define SETTLE_LOCALS \
	short w, nw; \
	byte s, e, i, t, cc, tg; \
	byte coal; \
	bit ok, allout, rekick, got, gaveup, blk, early; \
	byte hw, cd, cs, clm; \
	bit edg, fo, clg
#else
/* pkw: this thread's CAS cleared PARKED without an edge (a command on a
 * word that may run but for EX, or an end): it wakes every parked vCPU. */
#define SETTLE_LOCALS \
	short w, nw; \
	byte s, e, i, t, cc, tg; \
	byte coal; \
	bit ok, allout, rekick, got, gaveup, blk, early, pkw; \
	byte hw, cd, cs, clm; \
	bit edg, fo, clg
#endif

/* ======================================================================= */
/* The pure transition function (rs_transition): what a command does to a
 * word.  A change of running-ness either joins the backlog (counter and
 * backlog + 1) or, when the backlog is full or edges are being coalesced,
 * is coalesced (overflow bit, count + 1, the counter moves between the
 * backlog's last edge and the one after it); a word that lets vCPUs run has
 * PARKED cleared (the caller wakes).  Seeded bug G: no bound, every edge
 * joins the backlog (the design before the bound), whose field wraps. */
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
		if
#ifndef MUTANT_G
		:: !(w & W_OV) && BL(w) < BMAX ->
			nw = WITHE(nw, EDGE(w) + 1) + W_BL1
		:: else ->
			if
			:: w & W_OV -> t = TAIL(w); cc = (CC(w) + 1) & 3
			:: else -> t = EDGE(w); cc = 1
			fi;
			nw = WITHE((nw & ~W_CCMASK) | W_OV | (cc << 6), t + (cc & 1));
			t = 0;
			cc = 0
#else
		:: true ->
			nw = WITHE(nw & ~W_BLMASK, EDGE(w) + 1) | (((BL(w) + 1) & 3) << 3)
#endif
		fi
	:: else
	fi;
	if
	:: PK_CLEARS_CMD(nw) -> nw = nw & ~W_PK
	:: else
	fi
}

/* Ghost bookkeeping for a command step w -> nw. */
inline note_edge(w, nw)
{
	if
	:: STOPPED(w) != STOPPED(nw) ->
		nedge++;
		if
		:: nw & W_OV ->
			if
			:: !(w & W_OV) -> gtail = gE
			:: else
			fi;
			grun++;
			gE = gtail + (grun & 1)
		:: else -> gE++
		fi;
		/* The counter stays within the backlog's reach of the
		 * settled one (at most the bound plus 2 edges), so the
		 * modulo-4 comparisons never alias, however many edges are
		 * coalesced. */
#ifndef MUTANT_G
		assert(gE - gS <= BMAX + 2 && BMAX + 2 < EMOD && EDGE(nw) == (gE & EM))
#endif
	:: else
	fi;
	/* Every change of running-ness leaves the word settling, so no
	 * command makes it runnable: only the settler's last claim does, and
	 * it wakes the parked vCPUs (the early wake wakes them sooner, on a
	 * word that is not runnable yet; they park again until the claim).
	 * Commands leave EX alone: nor do they make it runnable but for EX. */
	assert(MAYRUN_BUT_EX(w) || !MAYRUN_BUT_EX(nw))
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

/* wake_early(): is this start edge the whole backlog?  The new word says so
 * (its backlog is 1, with no overflow): an exact test on the word alone, no
 * load of `settled`.  -DEARLY_ALWAYS drops it (not needed for safety). */
#ifndef EARLY_ALWAYS
#define NEXT_TO_SETTLE(nw)	(BL(nw) == 1 && !((nw) & W_OV))
#else
#define NEXT_TO_SETTLE(nw)	1
#endif
/* The whole test, on one CAS attempt from w to nw: a start or cont (C_START;
 * releasing(), not rs_unlock) that makes an edge on a word with PARKED, next
 * to settle.  No listeners in the model, so that condition always holds; so
 * does "fewer vCPUs than CPUs" (with as many vCPUs as CPUs or more, the
 * library runs the protocol of NO_EARLY_WAKE). */
#define EARLY_OK(c, w, nw) \
	((c) == C_START && STOPPED(w) != STOPPED(nw) && ((nw) & W_PK) && NEXT_TO_SETTLE(nw))

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
#endif
		word = nw;
		note_edge(w, nw);
		holding = 0;	/* the holder's unlock ends its exclusion */
#ifdef SECTIONS
		/* With sections a command can clear PARKED without an edge: a
		 * word that may run but for EX has PARKED from non-owners
		 * parked on EX, and the transition clears it (a start on a
		 * running VM: the library's CAS is made since the word
		 * changes).  Whoever clears PARKED wakes; MUTANT_K: not
		 * this maker (only the early wake's). */
#ifndef MUTANT_K
		pkw = (w & W_PK) && !(nw & W_PK) && !early;
#endif
#endif
		cmd_flags(c)
	}
}

/* A coalesced edge's maker bumps `made` of its generation a step after its
 * CAS (the library's rs_edge_cas()): absorb() must count it even while the
 * bump is in flight.  coal is 1 + the generation. */
inline coal_bump()
{
	if
	:: coal -> d_step { made[coal - 1]++; coal = 0 }
	:: else
	fi
}

/* After command c: ok = it made a stop edge (kick), got = the new word is
 * settling (settle), tg = the edge a synchronous caller waits for, coal = it
 * coalesced an edge (then its coal_bump() step follows); w is dropped.  nw
 * is dropped too, unless the second CAS of EARLY_SECOND_CAS may follow (a
 * start or cont, C_START here, that made an edge and whose new word has
 * PARKED): then nw stays. */
inline cmd_flags(c)
{
	ok = STOPPED(w) != STOPPED(nw) && STOPPED(nw);
	got = SETTLING(nw);
	tg = TARGET(nw);
	coal = (STOPPED(w) != STOPPED(nw) && (nw & W_OV)) * (1 + GN(nw));
#ifdef EARLY_SECOND_CAS
	if
	:: c == C_START && STOPPED(w) != STOPPED(nw) && (nw & W_PK) -> skip
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
 * cmd_flags (else nw is 0 and nothing happens).  One step tests the
 * command's new word (is this start edge the next to settle?  As first
 * written, a load of `settled`); then CAS the word from w (first
 * the command's new word, then what each failed CAS returns) to w without
 * PARKED, while w has PARKED; if a CAS succeeded, wake every parked vCPU. */
inline early_wake_second_cas()
{
	if
	:: nw != 0 ->
		d_step {
			/* The same test as the library's (on the word alone);
			 * the second CAS is what differs. */
			if
			:: NEXT_TO_SETTLE(nw) -> w = nw
			:: else
			fi;
			nw = 0
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
	:: else -> fo = 1	/* found out: a stop edge may clear its hint */
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
	/* P22: clr_done, the hint word, clr_start, three loads; a clearer
	 * may be between its clear and its re-check when they differ, and
	 * then every vCPU is visited. */
#ifndef COARSE
	cd = clrd;
	hw = H;
	cs = clrs;
#ifndef MUTANT_P
	if
	:: cs != cd -> hw = (1 << NV) - 1
	:: else
	fi;
#endif
	cd = 0;
	cs = 0;
#else
	hw = H;
#ifndef MUTANT_P
	if
	:: clin != 0 -> hw = (1 << NV) - 1
	:: else
	fi;
#endif
#endif
	i = 0;
	do
	:: i < NV ->
		if
		:: hw & (1 << i) ->
			want_one(i);
			/* found out at a stop edge with its bit set: clear it
			 * below (clm) */
			if
			:: edg && fo && (H & (1 << i)) -> clm = clm | (1 << i)
			:: else
			fi;
			fo = 0
		:: else
		fi;
		i++
	:: else -> i = 0; break
	od;
	hw = 0;
	rekick = 0
#ifdef COARSE
	}
#endif
	;
	/* A stop edge's scan clears the hint of each vCPU it found out, then
	 * re-checks its state: sets it back and counts it when it is active
	 * (hint_clear()).  Steps of their own even with COARSE: in the
	 * library the vCPU may announce between the visit and the clear. */
	do
	:: clm != 0 ->
		i = 0;
		do
		:: !(clm & (1 << i)) -> i++
		:: else -> break
		od;
		clm = clm & ~(1 << i);
		if
		:: !clg -> CLR_START(); clg = 1
		:: else
		fi;
		H = H & ~(1 << i);
#ifndef MUTANT_O
		if
		:: S[i] & S_ACT ->
			H = H | (1 << i);
			want_one(i);
			fo = 0
		:: else
		fi;
#endif
		i = 0
	:: else -> break
	od;
	/* After every re-check: clr_done. */
	if
	:: clg -> CLR_DONE(); clg = 0
	:: else
	fi
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

/* Is edge t (mod EMOD) unsettled (edge_unsettled())?  The unsettled edges
 * are those after `settled` up to the word's TARGET: at most BMAX + 2 of
 * them, so the modular window is exact. */
#define UNSETTLED(t) \
	(SETTLING(word) && (((t) - settled) & EM) != 0 && \
	 (((t) - settled) & EM) <= ((TARGET(word) - settled) & EM))

/* The backlog's first entry, with the role held and w just loaded: e = the
 * entry needs every vCPU out first (a stop edge, or a coalesced run that
 * ends stopped after changing running); got = there is an entry (else the
 * backlog is empty: absorb a coalesced run, or done). */
inline entry_kind()
{
	got = BL(w) > 0;
	if
	:: got && synth -> e = (synth_n & 1) && ISSTOP(synth_end)
	:: got && !synth -> e = ISSTOP((settled + 1) & EM)
	:: else -> e = 0
	fi
}

/* Claim the first entry: the CAS that takes it off the backlog (PARKED
 * cleared, and the parked woken, when it makes the word runnable, or, with
 * sections, runnable but for EX: a parked section owner must wake; the
 * non-owners re-park); then the settled counters.  Seeded bug A: the claim
 * that makes the word runnable forgets to wake the parked vCPUs. */
inline claim_entry()
{
	atomic {
		w = word;
		nw = w - W_BL1;
		if
		:: PK_CLEARS_CLAIM(nw) -> nw = nw & ~W_PK
		:: else
		fi;
		word = nw;
		if
		:: synth -> settled = synth_end; nsettled = nsettled + synth_n; gS = gsend; gsn = 0
		:: else -> settled = (settled + 1) & EM; nsettled++; gS++
		fi;
		synth = 0;
		synth_n = 0;
		synth_end = 0
	};
#ifndef MUTANT_A
	if
	:: PK_CLEARS_CLAIM(nw) && (w & W_PK) -> wake_all()
	:: else
	fi;
#endif
	w = 0;
	nw = 0
}

/* The backlog is empty and edges were coalesced: take them up as one entry
 * (the library's absorb()), in a CAS that also flips the generation; then
 * count them from the word's count modulo 4 and the bumps of their
 * generation that have landed (the others are still in flight: fewer than
 * 4 threads make edges; the next run's bumps go to the other generation).
 * Seeded bug H: only the landed bumps. */
inline absorb_run()
{
	atomic {
		if
		:: word == w ->
			t = (TAIL(w) + ((CC(w) & 1) -> 1 : 2)) & EM;
			word = (WITHE(w & ~(W_OV | W_CCMASK), t) + W_BL1) ^ W_GN;
			cc = CC(w);
			e = GN(w);
			gtail = gtail + ((grun & 1) -> 1 : 2);
			gE = gtail;
			gsend = gtail;
			gsn = grun;
			grun = 0;
			synth_end = t;
			synth = 1;
			ok = 1
		:: else -> ok = 0
		fi;
		t = 0;
		w = 0
	};
	if
	:: ok ->
		d_step {
			/* The count: a separate step from the CAS, as in the
			 * library (bumps may land in between). */
			t = made[e] - coal_acc[e];
#ifndef MUTANT_H
			synth_n = t + ((cc - t) & 3);
#else
			synth_n = t;
#endif
			coal_acc[e] = coal_acc[e] + synth_n;
			assert(synth_n == gsn);
			ok = 0;
			t = 0;
			e = 0;
			cc = 0
		}
	:: else
	fi
}

/* Process the backlog in order while holding the role, entered with w
 * loaded.  A stop entry waits for the vCPUs (blocking: while the caller's
 * edge tg is unsettled; seeded bug G's callers wait the same way) or gives
 * up (gaveup); a start entry is claimed at once. */
inline process(blocking)
{
	do
	:: BL(w) == 0 && !(w & W_OV) ->
		/* all settled: the settled counter had caught up with the
		 * word loaded (both are the role holder's to change) */
		assert(settled == EDGE(w) && !synth);
		w = 0;
		break
	:: BL(w) == 0 && (w & W_OV) ->
		absorb_run();
		atomic { w = word }
	:: BL(w) > 0 ->
		entry_kind();
		got = 0;
		w = 0;
		if
		:: e ->
			e = 0;
			/* wait for the caller's edge only while it is unsettled */
			if
			:: blocking && !UNSETTLED(tg) -> blocking = 0
			:: else
			fi;
#ifdef COARSE
			/* the first scan (wait_out() goes on from its result) */
			atomic { scan_and_sleep(blocking) };
#endif
			wait_out(blocking);
			if
			:: gaveup -> break
			:: else ->
				/* every vCPU has been out of guest code since
				 * the entry's edge */
				atomic { assert(NONE_INGUEST); skip }
			fi
		:: else
		fi;
		claim_entry();
		atomic { w = word }
	od
}

/* After releasing the role: is there settle work that nobody else is bound
 * to pick up?  Sets ok. */
#ifdef RECHECK_SPEC
inline recheck()
{
	/* As first written: "settle work whose vCPUs are now all out": the
	 * first entry needs no vCPU (a start, or an absorb), or no vCPU is
	 * ACTIVE.  (The entry is read without the role here.) */
	d_step {
		w = word;
		entry_kind();
		ok = SETTLING(w) && !e;
		e = SETTLING(w);
		got = 0;
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
/* Settling and no acknowledgement is outstanding.  If one is, the vCPU
 * that brings pending to 0 does so after this load, hence after our
 * release, and then tries the role itself. */
#define RECHECK_THEN_BREAK_UNLESS_OK \
	atomic { \
		if \
		:: SETTLING(word) && pending == 0 -> skip \
		:: else -> break \
		fi \
	}
#endif

/* Settling.  blk = 1 (a synchronous stopping call, waiting for its edge
 * tg): unless tg is settled already, acquire the role, blocking, look
 * again, and process waiting for vCPUs while tg is unsettled.  blk = 0 (an
 * asynchronous command, the last acknowledging vCPU): try-acquire the role
 * and process without waiting.  Either way: release, recheck, and go again
 * if needed, with try-acquire and without waiting. */
inline settle(blk)
{
	if
	:: blk -> atomic { blk = UNSETTLED(tg) }
	:: else
	fi;
	do
	:: atomic {
			if
			:: role == 0 -> role = 1; w = word
			:: role == 1 && !blk -> break
			fi	/* blk and role held: block */
		};
		process(blk);
		atomic { gaveup = 0; blk = 0; role = 0 };
		RECHECK_THEN_BREAK_UNLESS_OK
	od;	/* blk is 0 again */
	tg = 0
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
		/* the edge's scan: it clears the hints of vCPUs found out */
		edg = 1;
		scan();
		edg = 0
	:: else
	fi
}

/* Then settle if the new word is settling (else the caller's edge, if
 * any, is settled already). */
inline then_settle(b)
{
	if
	:: got -> got = 0; blk = b; settle(blk)
	:: else -> tg = 0
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

/* ======================================================================= */
/* Exclusive sections (README, "Exclusive sections"); thread id `id`: a
 * vCPU's (its index) or the management thread's (NV). */
#ifdef SECTIONS

/* Close the gap at sq[t]. */
inline sect_shift()
{
	do
	:: t + 1 < qlen -> sq[t] = sq[t + 1]; t++
	:: else -> break
	od;
	qlen--;
	sq[qlen] = 0;
	t = 0
}

/* Take id's node off the queue (t is left 0). */
inline sect_unlink(id)
{
	t = 0;
	do
	:: sq[t] != id + 1 -> t++
	:: else -> break
	od;
	sect_shift()
}

/* rs_exclusive_begin(), first half: lock m; with no owner and an empty
 * queue become the owner and set EX with a seq_cst CAS (inside m); else
 * join the queue; unlock m (one step: see `owner`).  A waiter then sleeps
 * on its node until granted (futex_wait(&granted, 0): the load and the
 * futex's compare-and-sleep are one step, the compare being atomic with the
 * sleep), or times out (SECT_TMO): then, under m, it is the owner if granted
 * meanwhile, else it unlinks its node and returns RS_ETIMEDOUT.
 * After: ok = 1, the owner (EX set); or gaveup = 1, timed out. */
inline sect_acquire(id)
{
	atomic {
		if
		:: owner == 0 && qlen == 0 ->
			owner = id + 1;
			w = word;
			/* a runnable word never has PARKED (so this CAS,
			 * whose new word may run but for EX, has none to
			 * clear); EX was clear with no owner */
			assert(!(w & W_EX) && (!MAYRUN(w) || !(w & W_PK)));
			word = w | W_EX;	/* the CAS: nothing but EX */
			w = 0;
			ok = 1
		:: else ->
			assert(!granted[id]);
			sq[qlen] = id + 1;
			qlen++
		fi
	};
	do
	:: ok -> break
	:: else ->
		atomic {
			if
			:: granted[id] -> granted[id] = 0; ok = 1; break
			:: else -> sslp[id] = 1	/* FUTEX_WAIT(&granted, 0) */
			fi
		};
		if
		:: sslp[id] == 0		/* woken: look again */
		:: atomic {
			stmo > 0 ->
			/* timed out: lock m; granted meanwhile? */
			stmo--;
			sslp[id] = 0;
			if
			:: granted[id] -> granted[id] = 0; ok = 1
			:: else -> sect_unlink(id); gaveup = 1
			fi;
			break
		   }
		fi
	od
	/* (granted is the node's, on the caller's stack: left 0 here) */
}

/* rs_exclusive_begin(), second half, as the owner (EX set): the scan of a
 * stop edge's maker (seq_cst fence, then each vCPU: count the ACTIVE ones
 * in pending, WANTED, kick; RS_SCAN_EDGE kicks a WANTED one too), then
 * rs_ack_wait() until every vCPU is out, as a synchronous stop's; on its
 * timeout (SECT_TMO: at a scan that finds a vCPU active) gaveup = 1.
 * Seeded bugs M and N: below. */
#ifndef MUTANT_N
#define SECT_SCAN(id)	edg = 1; scan(); edg = 0
#else
/* Seeded bug N: begin leaves its own vCPU active (no acknowledgement) and
 * the owner's scan skips its own vCPU instead. */
inline sect_scan_but(id)
{
#ifdef COARSE
	atomic {
#endif
	allout = 1;
	i = 0;
	do
	:: i < NV && i != id -> want_one(i); fo = 0; i++
	:: i < NV && i == id -> i++
	:: else -> i = 0; break
	od;
	rekick = 0
#ifdef COARSE
	}
#endif
}
#define SECT_SCAN(id)	sect_scan_but(id)
#endif

inline sect_wait_out(id)
{
	rekick = 1;
	do
	::
#ifdef COARSE
	   atomic {
		SECT_SCAN(id);
#else
		SECT_SCAN(id);
	   atomic {
#endif
		if
#ifdef MUTANT_M
		/* Seeded bug M: begin returns after the scan and its kicks,
		 * without waiting for the vCPUs to go out. */
		:: true -> break
#endif
		:: allout -> break
		:: !allout && stmo > 0 -> stmo--; gaveup = 1; break
		:: !allout ->
			if
			:: pending != 0 -> slp_p = 1	/* FUTEX_WAIT */
			:: else
			fi
		fi
	   };
	   wait_for_wake()
	od;
	allout = 0
}

/* Properties S1 and S2, as begin returns 0: EX is set, this thread is the
 * owner and no other thread holds a section, no vCPU is in guest code (a
 * vCPU thread's own vCPU is out too: begin took it out). */
inline sect_returned(id)
{
	d_step {
		assert(owner == id + 1 && (word & W_EX) && sheld == 0);
		assert(NONE_INGUEST);
		sheld = id + 1
	}
}

/* rs_exclusive_end(), and the roll-back of a begin whose wait for the
 * vCPUs timed out: lock m; a waiter: pop it, make it the owner, store
 * granted (release) and FUTEX_WAKE it, EX stays; else no owner, and the
 * CAS clears EX (and PARKED if the word may run); unlock m.  Then, if the
 * CAS cleared PARKED, wake every parked vCPU (after the unlock here: the
 * wave touches nothing of m's, and this only adds orders).  Property S4:
 * the CAS changes EX and PARKED alone (no edge, the same run state).
 * Seeded bug I: the hand-over stores granted but does not wake. */
inline sect_release(id)
{
	atomic {
		assert(owner == id + 1);
		if
		:: sheld == id + 1 -> sheld = 0
		:: else
		fi;
		if
		:: qlen > 0 ->
			owner = sq[0];	/* pop the head */
			t = 0;
			sect_shift();
			granted[owner - 1] = 1;
#ifndef MUTANT_I
			sslp[owner - 1] = 0	/* FUTEX_WAKE */
#else
			skip
#endif
		:: else ->
			owner = 0;
			w = word;
			nw = w & ~W_EX;
			if
			:: MAYRUN(nw) -> nw = nw & ~W_PK
			:: else
			fi;
			word = nw;
			assert((w & W_EX) && ((w ^ nw) & ~(W_EX | W_PK)) == 0);
			pkw = (w & W_PK) && !(nw & W_PK);
			w = 0;
			nw = 0
		fi
	};
	if
	:: pkw -> pkw = 0; wake_all()
	:: else
	fi
}

/* A section's whole begin for a thread that is not a vCPU's, its section,
 * its end (or none on a timeout). */
proctype sectioner()
{
	SETTLE_LOCALS;

	sect_acquire(NV);
	if
	:: ok ->
		ok = 0;
		sect_wait_out(NV);
		if
		:: gaveup -> gaveup = 0		/* roll back: ETIMEDOUT */
		:: else -> sect_returned(NV)	/* the section */
		fi;
		sect_release(NV)		/* its end */
	:: else -> gaveup = 0			/* ETIMEDOUT */
	fi
}

/* The owner's vCPU runs on a word that may run but for EX (rs_vcpu_enter()
 * and rs_park(), on the owner's thread: `sp` is the thread's own).
 * MUTANT_L: rs_park() checks the plain may-run. */
#define RUNNABLE_ME(w)	(MAYRUN(w) || (sp == SP_HELD && MAYRUN_BUT_EX(w)))
#ifndef MUTANT_L
#define PARK_RUNNABLE_ME(w)	RUNNABLE_ME(w)
#else
#define PARK_RUNNABLE_ME(w)	MAYRUN(w)
#endif
/* Property S1 at every entry into guest code (a slice or the next one). */
#define SECT_OK(me)	(sheld == 0 || sheld == (me) + 1)
/* A command that cleared PARKED without an edge wakes (see do_cmd). */
#define SECT_CMD_WAVE() \
	if \
	:: pkw -> pkw = 0; wake_all() \
	:: else \
	fi;
/* A vCPU thread's section phase (sp). */
#define SP_IDLE		0	/* will begin one */
#define SP_BEGIN	1	/* going out to begin: after the ack, begin */
#define SP_HELD		2	/* begin returned 0; until the end */
#define SP_DONE		3	/* no (more) section */
#else
#define RUNNABLE_ME(w)	MAYRUN(w)
#define PARK_RUNNABLE_ME(w)	MAYRUN(w)
#define SECT_OK(me)	1
#define SECT_CMD_WAVE()
#endif

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
#ifdef SECTIONS
	byte sp;	/* this thread's section phase (SP_*) */

	sp = (me < SECT -> SP_IDLE : SP_DONE);
#endif

	/* Every vCPU starts active, in guest code, the VM running. */
	goto guest;

announced:
	/* (Announced.)  The hint (hint_announce()): set own bit if clear,
	 * after ACTIVE and before the load of the word. */
	if
	:: !(H & (1 << me)) -> H = H | (1 << me)
	:: else
	fi;
	/* The load of the word that decides.  In the library the
	 * announcement is a seq_cst fetch_or of ACTIVE and this load is seq_cst,
	 * with no fence between (two seq_cst accesses keep their order in the
	 * single total order; the model is sequentially consistent anyway).
	 * Pairs with the stopper's CAS on the word followed by its loads of
	 * S[i]: either the stopper sees ACTIVE or this load sees the stopped
	 * word.  The same step enters the first guest slice, or goes out. */
#ifndef MUTANT_E
	atomic {
		if
		:: RUNNABLE_ME(word) ->
			assert(!holding && SECT_OK(me));
			inguest[me] = 1;
			goto guest
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
		:: RUNNABLE_ME(w) ->
			w = 0;
			assert(!holding && SECT_OK(me));
			inguest[me] = 1;
			goto guest
		:: else -> w = 0; GO_OUT_THEN(me)
		fi
	};
#endif

guest:
	/* A guest slice ends when the vCPU is kicked (an exit request kicks).
	 * The same step is the fast path, rs_may_run() (and the exit request):
	 * start the next slice, or go out. */
#ifdef SECTIONS
	if
	:: atomic {
		/* An exit whose handling begins a section: begin takes the
		 * vCPU out first (rs_vcpu_thread_out(), an acknowledgement if
		 * WANTED, which may help settle), then goes on at sbegin. */
		sp == SP_IDLE && !exitreq[me] ->
		sp = SP_BEGIN;
		inguest[me] = 0;
#ifndef MUTANT_N
		GO_OUT(me);
		if
		:: s & S_WANT -> goto ack
		:: else -> s = 0; goto sbegin
		fi
#else
		goto sbegin	/* seeded bug N: the vCPU stays ACTIVE */
#endif
	   }
	:: atomic {
		/* The owner's vCPU, alone in guest code, is done (QEMU's one
		 * instruction): its exit handling ends the section, the vCPU
		 * still ACTIVE. */
		sp == SP_HELD -> inguest[me] = 0; goto send
	   }
	::
#endif
	atomic {
		kick[me] == 1 ->
		kick[me] = 0;
		lostk[me] = 0;
		if
		:: !exitreq[me] && MAYRUN(word) -> assert(!holding && SECT_OK(me)); goto guest
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
#ifdef SECTIONS
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
#ifdef SECTIONS
		if
		:: sp == SP_BEGIN -> goto sbegin
		:: else
		fi;
#endif
#ifdef COARSE
		PARK_S_THEN(me)
#else
		goto park
#endif
	};
help:
	settle(blk);	/* blk is 0 */
#ifdef SECTIONS
	if
	:: sp == SP_BEGIN -> goto sbegin
	:: else
	fi;
#endif

park:
	/* Park: PARKED in S[i], then PARKED in the word only if it is still not
	 * runnable (else announce again), then futex_wait(&S[i], gen|PARKED). */
	atomic { PARK_S_THEN(me) };
parkw:
	atomic {
		if
		:: PARK_RUNNABLE_ME(word) ->
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

#ifdef SECTIONS
	goto finished;

sbegin:
	/* rs_exclusive_begin(), the vCPU out. */
	sect_acquire(me);
	if
	:: ok ->
		ok = 0;
		sect_wait_out(me);
		if
		:: gaveup -> gaveup = 0; sect_release(me); sp = SP_DONE	/* ETIMEDOUT */
		:: else -> sect_returned(me); sp = SP_HELD
		fi
	:: else -> gaveup = 0; sp = SP_DONE				/* ETIMEDOUT */
	fi;
	/* Back through rs_vcpu_enter() (the owner's vCPU runs on a word that
	 * may run but for EX). */
	atomic { ANNOUNCE_THEN(me) };

send:
	/* rs_exclusive_end() from exit handling, then the fast path. */
	sect_release(me);
	sp = SP_DONE;
	atomic {
		if
		:: !exitreq[me] && MAYRUN(word) ->
			assert(!holding && SECT_OK(me));
			inguest[me] = 1;
			goto guest
		:: else -> GO_OUT_THEN(me)
		fi
	};
#endif

finished:
#ifdef SECTIONS
	/* The exit request reached the owner's vCPU (kept out by a stop):
	 * end the section before the thread ends. */
	if
	:: sp == SP_HELD -> sect_release(me); sp = SP_DONE
	:: else
	fi;
#endif
	assert(!(S[me] & S_ACT) && !inguest[me]);
	exited[me] = 1
}

/* The command's CAS and, on a stop edge, its kick of every ACTIVE vCPU:
 * two steps (README, finding 1 lives in between). */
#define CMD_THEN_KICK(c, sync) \
	d_step { do_cmd(c); if :: sync -> mine = nedge :: else fi }; \
	coal_bump(); \
	SECT_CMD_WAVE() \
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

/* Asynchronous commands: TOGGLES stop/start pairs, then STARTS starts, with
 * an asynchronous stop before them (ASYNC_STOP 1) or after them (2): each a
 * CAS, a kick on a stop edge, then an attempt to settle. */
#define NSTARTER (2 * TOGGLES + STARTS + (ASYNC_STOP != 0))
#define STARTER_CMD(n) \
	(((ASYNC_STOP == 1 && (n) == 2 * TOGGLES) || \
	  (ASYNC_STOP == 2 && (n) == NSTARTER - 1)) -> C_STOP : C_START)
proctype starter()
{
	SETTLE_LOCALS;
	byte mine, n, cmdc;

	do
	:: n < NSTARTER ->
		/* (a variable: spin takes no nested conditional as an inline's
		 * argument) */
		d_step {
			if
			:: n < 2 * TOGGLES -> cmdc = n & 1	/* stop, start, ... */
			:: else -> cmdc = STARTER_CMD(n)
			fi
		};
		MUTANT_F_WAVE(cmdc)
#ifndef MUTANT_C
		CMD_THEN_KICK(cmdc, 0);
#else
		/* Seeded bug C: a stale plain store: the word is loaded, the
		 * new value computed from that load and written back later
		 * with a plain store, clobbering whatever changed between. */
		w = word;
		transition(cmdc, w, nw);
		d_step {
#ifdef EARLY_CAS
			if
			:: EARLY_OK(cmdc, w, nw) -> nw = nw & ~W_PK; early = 1
			:: else
			fi;
#endif
			word = nw;
			note_edge(w, nw);
			cmd_flags(cmdc)
		};
		coal_bump();
		kick_all_if_stop_edge();
#endif
		EARLY_WAVE()	/* only after a start (releasing()) */
		then_settle(0);
		cmdc = 0;
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

	atomic {
		timeout && !slp_p ->
#ifndef LIVENESS
		/* every edge settled, unless a kick was lost and nobody waits */
		assert(!SETTLING(word) || ANY_LOST);
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
#ifdef SECTIONS
			/* a section owner's vCPU never sleeps on a word that
			 * lets it run */
			assert(!(slp[i] && owner == i + 1 && MAYRUN_BUT_EX(word)));
#endif
			i++
		:: else -> i = 0; break
		od
#ifdef SECTIONS
		;
		/* EX is set exactly while a section is owned; nobody waits
		 * in the queue without an owner to hand it over; a thread
		 * granted the section is not asleep */
		assert(((word & W_EX) != 0) == (owner != 0));
		assert(qlen == 0 || owner != 0);
		assert(owner == 0 || !sslp[owner - 1])
#endif
#else
		skip
#endif
	};
	MUTANT_F_WAVE(C_START)
	do_cmd(C_START);	/* cont (releasing()) */
	coal_bump();
	SECT_CMD_WAVE()
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
#if SECT_MGMT
		run sectioner();
#endif
		run finisher()
	}
}

#ifdef LIVENESS
/* Property 4: the word never stays runnable while a vCPU (not exited) stays out
 * of guest code forever. */
/* word % 32 == 0 && word / W_EX % 2 == 0 is MAYRUN(word) (the LTL parser
 * takes no bitwise and; EX is never set without sections) */
#define STUCK(j)	(word % 32 == 0 && word / W_EX % 2 == 0 && !inguest[j] && !exited[j])
#if NV == 1
ltl progress { []<> !STUCK(0) }
#elif NV == 2
ltl progress { []<> !STUCK(0) && []<> !STUCK(1) }
#else
ltl progress { []<> !STUCK(0) && []<> !STUCK(1) && []<> !STUCK(2) }
#endif
#endif

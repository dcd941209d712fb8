"""Tabu search on machine assignment and sequence for the plain flexible job shop (makespan, no changeovers,
no calendars, nothing frozen): the disjunctive graph's heads and tails in numba, moves that take one critical
operation out and insert it at the best feasible place on any of its machines (Mastrolilli & Gambardella's
idea: the longest path through the re-inserted operation, in the graph without it, estimates the new makespan
in O(1) per position). Its best schedule seeds CP-SAT as a hint.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from scheduling.model import Instance, Placement, Schedule


def applicable(instance: Instance) -> bool:
    """Whether the instance is the plain problem this search models (no setups, calendars or frozen steps)."""
    return (not instance.has_setups() and not any(instance.unavailable.values())
            and all(op.fixed is None for _, _, op in instance.operations()))


class _Arrays:
    """The instance as flat arrays: operation v = job offset + op index; alternatives padded to the widest."""

    def __init__(self, instance: Instance) -> None:
        ops = instance.operations()
        self.keys = [(j, o) for j, o, _ in ops]
        index = {k: i for i, k in enumerate(self.keys)}
        n = len(ops)
        width = max(len(op.alternatives) for _, _, op in ops)
        self.jp = np.full(n, -1, np.int64)
        self.js = np.full(n, -1, np.int64)
        self.rel = np.zeros(n, np.int64)
        self.alt_m = np.full((n, width), -1, np.int64)
        self.alt_p = np.zeros((n, width), np.int64)
        self.n_alt = np.zeros(n, np.int64)
        for v, (j, o, op) in enumerate(ops):
            if o > 0:
                self.jp[v] = index[(j, o - 1)]
            if o + 1 < len(instance.jobs[j].operations):
                self.js[v] = index[(j, o + 1)]
            if o == 0:
                self.rel[v] = max(0, instance.jobs[j].release)
            for a, alt in enumerate(op.alternatives):
                self.alt_m[v, a], self.alt_p[v, a] = alt.machine, alt.duration
            self.n_alt[v] = len(op.alternatives)
        self.index = index
        self.n_machines = instance.n_machines

    def encode(self, schedule: Schedule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Machine index per operation, and per machine its operations in start order."""
        n = len(self.keys)
        mach = np.zeros(n, np.int64)
        seq = np.full((self.n_machines, n), -1, np.int64)
        length = np.zeros(self.n_machines, np.int64)
        for k, ps in enumerate(schedule.machine_sequences(self.n_machines)):
            for i, p in enumerate(ps):
                v = self.index[(p.job, p.op)]
                mach[v], seq[k, i] = k, v
            length[k] = len(ps)
        return mach, seq, length


@njit(cache=True)
def _dur(v, k, alt_m, alt_p, n_alt):  # type: ignore[no-untyped-def]
    for a in range(n_alt[v]):
        if alt_m[v, a] == k:
            return alt_p[v, a]
    return -1


@njit(cache=True)
def _links(mach, seq, length, n):  # type: ignore[no-untyped-def]
    mp = np.full(n, -1, np.int64)
    ms = np.full(n, -1, np.int64)
    for k in range(seq.shape[0]):
        for i in range(1, length[k]):
            mp[seq[k, i]] = seq[k, i - 1]
            ms[seq[k, i - 1]] = seq[k, i]
    return mp, ms


@njit(cache=True)
def _topo(jp, js, mp, ms, n):  # type: ignore[no-untyped-def]
    """Kahn's order of the disjunctive graph; fewer than n entries means a cycle."""
    indeg = np.zeros(n, np.int64)
    for v in range(n):
        indeg[v] = (jp[v] >= 0) + (mp[v] >= 0)
    order = np.empty(n, np.int64)
    head, tail = 0, 0
    for v in range(n):
        if indeg[v] == 0:
            order[tail] = v
            tail += 1
    while head < tail:
        v = order[head]
        head += 1
        for w in (js[v], ms[v]):
            if w >= 0:
                indeg[w] -= 1
                if indeg[w] == 0:
                    order[tail] = w
                    tail += 1
    return order, tail


@njit(cache=True)
def _heads_tails(order, excl, jp, js, mp, ms, p, rel, r, q):  # type: ignore[no-untyped-def]
    """Heads r (earliest start) and tails q (longest path after the end) without operation `excl`; its makespan."""
    n = order.shape[0]
    cmax = 0
    for i in range(n):
        x = order[i]
        if x == excl:
            continue
        a = jp[x]
        b = mp[x]
        if b == excl and excl >= 0:
            b = mp[excl]
        t = rel[x]
        if a >= 0 and a != excl and r[a] + p[a] > t:
            t = r[a] + p[a]
        if b >= 0 and r[b] + p[b] > t:
            t = r[b] + p[b]
        r[x] = t
        if t + p[x] > cmax:
            cmax = t + p[x]
    for i in range(n - 1, -1, -1):
        x = order[i]
        if x == excl:
            continue
        a = js[x]
        b = ms[x]
        if b == excl and excl >= 0:
            b = ms[excl]
        t = 0
        if a >= 0 and a != excl and q[a] + p[a] > t:
            t = q[a] + p[a]
        if b >= 0 and q[b] + p[b] > t:
            t = q[b] + p[b]
        q[x] = t
    return cmax


@njit(cache=True)
def _reach(order, excl, jp, js, mp, ms, src, dst, fwd, bwd):  # type: ignore[no-untyped-def]
    """Without `excl`: fwd[x] = x is reachable from src; bwd[x] = dst is reachable from x (exact cycle test)."""
    n = order.shape[0]
    for i in range(n):
        x = order[i]
        fwd[x] = False
        if x == excl or src < 0:
            continue
        a = jp[x]
        b = mp[x]
        if b == excl:
            b = mp[excl]
        fwd[x] = x == src or (a >= 0 and a != excl and fwd[a]) or (b >= 0 and fwd[b])
    for i in range(n - 1, -1, -1):
        x = order[i]
        bwd[x] = False
        if x == excl or dst < 0:
            continue
        a = js[x]
        b = ms[x]
        if b == excl:
            b = ms[excl]
        bwd[x] = x == dst or (a >= 0 and a != excl and bwd[a]) or (b >= 0 and bwd[b])


@njit(cache=True)
def _search(jp, js, rel, alt_m, alt_p, n_alt, mach, seq, length, iterations, seed, stall_limit):  # type: ignore[no-untyped-def]
    """Tabu search from (mach, seq); returns the best (mach, seq, length) and its makespan."""
    np.random.seed(seed)
    n = jp.shape[0]
    p = np.empty(n, np.int64)
    for v in range(n):
        p[v] = _dur(v, mach[v], alt_m, alt_p, n_alt)
    r = np.zeros(n, np.int64)
    q = np.zeros(n, np.int64)
    r2 = np.zeros(n, np.int64)
    q2 = np.zeros(n, np.int64)
    mp, ms = _links(mach, seq, length, n)
    order, cnt = _topo(jp, js, mp, ms, n)
    cur = _heads_tails(order, -1, jp, js, mp, ms, p, rel, r, q)
    best = cur
    best_mach, best_seq, best_len = mach.copy(), seq.copy(), length.copy()
    tabu = np.zeros(n, np.int64)
    fwd = np.zeros(n, np.bool_)
    bwd = np.zeros(n, np.bool_)
    stall = 0
    for it in range(iterations):
        # candidates: critical operations (on some longest path)
        best_est, best_tie = 1 << 60, 1 << 60
        mv_v, mv_k, mv_pos = -1, -1, -1
        n_crit = 0
        for v in range(n):
            if r[v] + p[v] + q[v] != cur:
                continue
            n_crit += 1
            is_tabu = tabu[v] > it
            c_minus = _heads_tails(order, v, jp, js, mp, ms, p, rel, r2, q2)
            a_, s_ = jp[v], js[v]
            _reach(order, v, jp, js, mp, ms, s_, a_, fwd, bwd)
            ra = rel[v]
            if a_ >= 0 and r2[a_] + p[a_] > ra:
                ra = r2[a_] + p[a_]
            qs = 0
            if s_ >= 0:
                qs = q2[s_] + p[s_]
            for ai in range(n_alt[v]):
                k = alt_m[v, ai]
                pk = alt_p[v, ai]
                # positions 0..L on machine k's sequence without v
                L = length[k]
                prev = -1
                i = 0
                while True:
                    # next operation w after position, skipping v
                    while i < L and seq[k, i] == v:
                        i += 1
                    w = seq[k, i] if i < L else -1
                    if not (k == mach[v] and ((prev == mp[v]) and (w == ms[v]))):
                        ok = not (prev >= 0 and fwd[prev]) and not (w >= 0 and bwd[w])
                        if ok:
                            rv = ra
                            if prev >= 0 and r2[prev] + p[prev] > rv:
                                rv = r2[prev] + p[prev]
                            qv = qs
                            if w >= 0 and q2[w] + p[w] > qv:
                                qv = q2[w] + p[w]
                            through = rv + pk + qv
                            est = through if through > c_minus else c_minus
                            if (not is_tabu or est < best) and (est < best_est or (est == best_est and (
                                    through < best_tie or (through == best_tie and np.random.random() < 0.5)))):
                                best_est, best_tie = est, through
                                mv_v, mv_k, mv_pos = v, k, i
                    if w < 0:
                        break
                    prev = w
                    i += 1
        if mv_v < 0:
            tabu[:] = 0
            stall += 1
            if stall > stall_limit:
                break
            continue
        # apply: take v out of its machine, insert before raw index mv_pos of machine mv_k (raw index counts v)
        v, k = mv_v, mv_k
        old_k = mach[v]
        ins = mv_pos
        # remove v
        j = 0
        for i in range(length[old_k]):
            if seq[old_k, i] != v:
                seq[old_k, j] = seq[old_k, i]
                j += 1
            elif old_k == k and i < mv_pos:
                ins -= 1
        length[old_k] -= 1
        seq[old_k, length[old_k]] = -1
        for i in range(length[k], ins, -1):
            seq[k, i] = seq[k, i - 1]
        seq[k, ins] = v
        length[k] += 1
        mach[v] = k
        p[v] = _dur(v, k, alt_m, alt_p, n_alt)
        mp, ms = _links(mach, seq, length, n)
        order, cnt = _topo(jp, js, mp, ms, n)
        if cnt < n:  # cannot happen with the feasibility test; restart from the best to be safe
            mach[:], seq[:, :], length[:] = best_mach, best_seq, best_len
            for x in range(n):
                p[x] = _dur(x, mach[x], alt_m, alt_p, n_alt)
            mp, ms = _links(mach, seq, length, n)
            order, cnt = _topo(jp, js, mp, ms, n)
        cur = _heads_tails(order, -1, jp, js, mp, ms, p, rel, r, q)
        tabu[v] = it + 2 + np.random.randint(0, max(2, n_crit // 2) + 1)
        if cur < best:
            best = cur
            best_mach[:], best_seq[:, :], best_len[:] = mach, seq, length
            stall = 0
        else:
            stall += 1
            if stall > stall_limit:
                # restart from the best with a cleared tabu list: a different random tie-break path
                mach[:], seq[:, :], length[:] = best_mach, best_seq, best_len
                for x in range(n):
                    p[x] = _dur(x, mach[x], alt_m, alt_p, n_alt)
                mp, ms = _links(mach, seq, length, n)
                order, cnt = _topo(jp, js, mp, ms, n)
                cur = _heads_tails(order, -1, jp, js, mp, ms, p, rel, r, q)
                tabu[:] = 0
                stall = 0
    return best_mach, best_seq, best_len, best


def tabu_search(instance: Instance, start: Schedule, time_limit: float, *, seed: int = 0,
                stall_limit: int = 1000, patience: float | None = None) -> Schedule:
    """The best schedule the search finds from `start` within time_limit seconds (semi-active: earliest starts);
    it stops early after `patience` seconds without an improvement."""
    arr = _Arrays(instance)
    mach, seq, length = arr.encode(start)
    deadline = time.monotonic() + time_limit
    best_mach, best_seq, best_len, best = mach, seq, length, None
    # numba cannot watch the clock: run in chunks sized from the measured iteration rate
    chunk, rounds, last = 500, 0, time.monotonic()
    while time.monotonic() < deadline and (patience is None or time.monotonic() - last < patience):
        t = time.monotonic()
        m2, s2, l2, value = _search(arr.jp, arr.js, arr.rel, arr.alt_m, arr.alt_p, arr.n_alt, best_mach.copy(),
                                    best_seq.copy(), best_len.copy(), chunk, seed + rounds, stall_limit)
        rounds += 1
        rate = chunk / max(1e-3, time.monotonic() - t)
        chunk = int(max(200, min(20000, rate * min(deadline - time.monotonic(), (patience or 1e9) / 3))))
        if best is None or value < best:
            last = time.monotonic()
        if best is None or value <= best:
            best_mach, best_seq, best_len, best = m2, s2, l2, value
    return _decode(instance, arr, best_mach, best_seq, best_len)


def _decode(instance: Instance, arr: _Arrays, mach: np.ndarray, seq: np.ndarray, length: np.ndarray) -> Schedule:
    n = len(arr.keys)
    p = np.array([_dur(v, mach[v], arr.alt_m, arr.alt_p, arr.n_alt) for v in range(n)], np.int64)
    mp, ms = _links(mach, seq, length, n)
    order, cnt = _topo(arr.jp, arr.js, mp, ms, n)
    r, q = np.zeros(n, np.int64), np.zeros(n, np.int64)
    _heads_tails(order, -1, arr.jp, arr.js, mp, ms, p, arr.rel, r, q)
    return Schedule([Placement(j, o, int(mach[v]), int(r[v]), int(r[v] + p[v])) for v, (j, o) in enumerate(arr.keys)])

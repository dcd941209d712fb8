"""Simulated annealing on an operation list, for rescheduling with changeovers, calendars and frozen steps: a
schedule is a sequence of job ids (the k-th occurrence of job j is its k-th step not yet started) and a machine per
step; decoding places the steps in list order, each as early as its job, its machine's last step plus the
changeover and the machine's unavailable windows allow. Every list decodes to a valid schedule, so a move (shift
one entry up to `reach` places, or give a step another of its machines) costs one O(n) decode in numba, a few
microseconds for a few hundred steps, against a CP-SAT sub-problem's tenths of a second.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

from scheduling.cpsat import Objective, with_setups
from scheduling.model import Instance, Placement, Schedule

_NO_DUE = -(1 << 62)


class _Arrays:
    """The instance after an event as flat arrays: steps not yet started, their machines, frozen work's state."""

    def __init__(self, instance: Instance, objective: Objective) -> None:
        ops = instance.operations()
        self.keys = [(j, o) for j, o, _ in ops]
        self.index = {k: v for v, k in enumerate(self.keys)}
        n, n_jobs, n_mach = len(ops), len(instance.jobs), instance.n_machines
        width = max((len(op.alternatives) for _, _, op in ops), default=1)
        families = sorted({op.family for _, _, op in ops})
        fam_id = {f: i for i, f in enumerate(families)}
        self.fam = np.array([fam_id[op.family] for _, _, op in ops] or [0], np.int64)
        self.setup = np.array([[instance.setup(a, b) for b in families] for a in families] or [[0]], np.int64)
        self.alt_m = np.full((max(n, 1), width), -1, np.int64)
        self.alt_p = np.zeros((max(n, 1), width), np.int64)
        self.n_alt = np.ones(max(n, 1), np.int64)
        for v, (_, _, op) in enumerate(ops):
            for a, alt in enumerate(op.alternatives):
                self.alt_m[v, a], self.alt_p[v, a] = alt.machine, alt.duration
            self.n_alt[v] = len(op.alternatives)
        windows = [sorted(instance.unavailable.get(m, [])) for m in range(n_mach)]
        self.win_ptr = np.cumsum([0] + [len(w) for w in windows]).astype(np.int64)
        self.win_s = np.array([s for w in windows for s, _ in w] or [0], np.int64)
        self.win_e = np.array([e for w in windows for _, e in w] or [0], np.int64)
        # frozen steps: where they run is given; their machines and jobs are ready after them
        self.m_ready = np.zeros(n_mach, np.int64)
        self.m_fam = np.full(n_mach, -1, np.int64)
        self.j_ready = np.array([max(0, j.release) for j in instance.jobs], np.int64)
        self.j_end = np.zeros(n_jobs, np.int64)
        self.fixed: list[Placement] = []
        free: list[list[int]] = [[] for _ in range(n_jobs)]
        for v, (j, o, op) in enumerate(ops):
            if op.fixed is None:
                free[j].append(v)
                continue
            mach, start = op.fixed
            end = start + next(a.duration for a in op.alternatives if a.machine == mach)
            self.fixed.append(Placement(j, o, mach, start, end))
            if end >= self.m_ready[mach]:
                self.m_ready[mach], self.m_fam[mach] = end, self.fam[v]
            self.j_ready[j] = max(self.j_ready[j], end)
            self.j_end[j] = max(self.j_end[j], end)
        self.free_ptr = np.cumsum([0] + [len(f) for f in free]).astype(np.int64)
        self.free_ops = np.array([v for f in free for v in f] or [0], np.int64)
        self.n_free = int(self.free_ptr[-1])
        self.free = {v for f in free for v in f}  # the steps not yet started
        self.due = np.array([j.due if j.due is not None else _NO_DUE for j in instance.jobs], np.int64)
        self.weight = np.array([j.weight for j in instance.jobs], np.int64)
        self.prev_m = np.full(max(n, 1), -1, np.int64)
        self.prev_s = np.zeros(max(n, 1), np.int64)
        if objective.previous is not None and (objective.move_weight or objective.shift_weight):
            for p in objective.previous.placements:
                v = self.index.get((p.job, p.op))
                if v is not None and ops[v][2].fixed is None:
                    self.prev_m[v], self.prev_s[v] = p.machine, p.start
        kind = objective.kind
        self.w = np.array([objective.makespan_weight if kind in ("makespan", "weighted") else 0,
                           objective.tardiness_weight if kind in ("tardiness", "weighted") else 0,
                           objective.move_weight, objective.shift_weight], np.int64)
        # caps (lexicographic stages): makespan, weighted tardiness, and the weighted sum, each -1 when absent
        self.caps = np.array([objective.caps.get(k, -1) for k in ("makespan", "tardiness", "weighted")], np.int64)
        self.cw = np.array([objective.makespan_weight, objective.tardiness_weight], np.int64)
        self.multi = np.array([v for v in self.free_ops[:self.n_free] if self.n_alt[v] > 1] or [-1], np.int64)
        # the alternative that puts a step back on its previous machine (-1: none), for moves that undo a move
        self.back = np.full(max(n, 1), -1, np.int64)
        if objective.move_weight > 1:
            for v in np.nonzero(self.prev_m >= 0)[0]:
                hit = np.nonzero(self.alt_m[v] == self.prev_m[v])[0]
                if len(hit):
                    self.back[v] = hit[0]

    def encode(self, schedule: Schedule) -> tuple[np.ndarray, np.ndarray]:
        """The list (free steps in start order) and the alternative index per step of a complete schedule."""
        alt = np.zeros(len(self.alt_m), np.int64)
        entries = []
        for p in schedule.placements:
            v = self.index[(p.job, p.op)]
            a = int(np.nonzero(self.alt_m[v] == p.machine)[0][0])
            alt[v] = a
            if v in self.free:
                entries.append((p.start, p.end, p.job, p.op))
        seq = np.array([j for _, _, j, _ in sorted(entries)] or [0], np.int64)[:self.n_free]
        return seq, alt

    def args(self) -> tuple:
        """The arrays the kernels take, in their order."""
        return (self.free_ptr, self.free_ops, self.alt_m, self.alt_p, self.fam, self.setup, self.win_ptr,
                self.win_s, self.win_e, self.m_ready, self.m_fam, self.j_ready, self.j_end, self.due, self.weight,
                self.prev_m, self.prev_s, self.w, self.caps, self.cw)

    def decode(self, seq: np.ndarray, alt: np.ndarray) -> Schedule:
        """The schedule a list and machine choice stand for, with changeovers filled in."""
        starts = np.zeros(len(self.alt_m), np.int64)
        _evaluate(seq, alt, *self.args(), starts)
        placements = list(self.fixed)
        for v in self.free_ops[:self.n_free]:
            j, o = self.keys[v]
            a = alt[v]
            placements.append(Placement(j, o, int(self.alt_m[v, a]), int(starts[v]),
                                        int(starts[v] + self.alt_p[v, a])))
        return Schedule(sorted(placements, key=lambda p: (p.job, p.op)))


@njit(cache=True)
def _evaluate(seq, alt, free_ptr, free_ops, alt_m, alt_p, fam, setup, win_ptr, win_s, win_e, m_ready0, m_fam0,
              j_ready0, j_end0, due, weight, prev_m, prev_s, w, caps, cw, starts):  # type: ignore[no-untyped-def]
    """Decode the list and return its objective, w . (makespan, weighted tardiness, moved steps, start shifts),
    and by how much it exceeds its caps (0 when within them)."""
    n_jobs = len(j_ready0)
    cnt = np.zeros(n_jobs, np.int64)
    jr = j_ready0.copy()
    jend = j_end0.copy()
    mr = m_ready0.copy()
    mf = m_fam0.copy()
    moved = 0
    shift = 0
    for i in range(len(seq)):
        j = seq[i]
        v = free_ops[free_ptr[j] + cnt[j]]
        cnt[j] += 1
        a = alt[v]
        m = alt_m[v, a]
        d = alt_p[v, a]
        st = mr[m]
        if mf[m] >= 0:
            st += setup[mf[m], fam[v]]
        if jr[j] > st:
            st = jr[j]
        for k in range(win_ptr[m], win_ptr[m + 1]):
            if st < win_e[k] and win_s[k] < st + d:
                st = win_e[k]
        e = st + d
        starts[v] = st
        jr[j] = e
        mr[m] = e
        mf[m] = fam[v]
        if e > jend[j]:
            jend[j] = e
        if prev_m[v] >= 0:
            if prev_m[v] != m:
                moved += 1
            shift += abs(st - prev_s[v])
    makespan = 0
    tardiness = 0
    for j in range(n_jobs):
        if jend[j] > makespan:
            makespan = jend[j]
        if due[j] != -(1 << 62) and jend[j] > due[j]:
            tardiness += weight[j] * (jend[j] - due[j])
    excess = 0
    if caps[0] >= 0 and makespan > caps[0]:
        excess += makespan - caps[0]
    if caps[1] >= 0 and tardiness > caps[1]:
        excess += tardiness - caps[1]
    if caps[2] >= 0 and cw[0] * makespan + cw[1] * tardiness > caps[2]:
        excess += cw[0] * makespan + cw[1] * tardiness - caps[2]
    return w[0] * makespan + w[1] * tardiness + w[2] * moved + w[3] * shift, excess


@njit(cache=True)
def _move(seq, a, b):  # type: ignore[no-untyped-def]
    """Take the entry at a out and put it back at b, the ones between shifting by one."""
    x = seq[a]
    if a < b:
        for i in range(a, b):
            seq[i] = seq[i + 1]
    else:
        for i in range(a, b, -1):
            seq[i] = seq[i - 1]
    seq[b] = x


@njit(cache=True, nogil=True)
def _anneal(seq, alt, n_alt, multi, back, n_iter, temp_from, temp_to, reach, p_machine, seed, current,
            best_value, best_seq, best_alt, free_ptr, free_ops, alt_m, alt_p, fam, setup, win_ptr, win_s, win_e,
            m_ready0, m_fam0, j_ready0, j_end0, due, weight, prev_m, prev_s, w, caps, cw,
            penalty):  # type: ignore[no-untyped-def]
    """n_iter iterations cooling geometrically from temp_from to temp_to; moves: an entry shifted up to `reach`
    places, or a step given another machine. A state above its caps costs `penalty` per unit of excess and is never
    kept as the best. Returns (current value, best value)."""
    np.random.seed(seed)
    starts = np.zeros(len(alt), np.int64)
    k = len(seq)
    ratio = temp_to / temp_from
    for it in range(n_iter):
        temp = temp_from * ratio ** (it / n_iter)
        machine_move = multi[0] >= 0 and np.random.random() < p_machine
        v = old = a = b = 0
        if machine_move:
            v = multi[np.random.randint(len(multi))]
            old = alt[v]
            if back[v] >= 0 and np.random.random() < 0.5:
                if back[v] == old:
                    continue
                new = back[v]  # back where it was: stability stages undo moves this way
            else:
                new = np.random.randint(n_alt[v] - 1)
                if new >= old:
                    new += 1
            alt[v] = new
        else:
            a = np.random.randint(k)
            b = a + np.random.randint(-reach, reach + 1)
            if b < 0:
                b = 0
            if b >= k:
                b = k - 1
            if a == b or seq[a] == seq[b]:
                continue
            _move(seq, a, b)
        value, excess = _evaluate(seq, alt, free_ptr, free_ops, alt_m, alt_p, fam, setup, win_ptr, win_s, win_e,
                                  m_ready0, m_fam0, j_ready0, j_end0, due, weight, prev_m, prev_s, w, caps, cw,
                                  starts)
        value += penalty * excess
        delta = value - current
        if delta <= 0 or np.random.random() < math.exp(-delta / temp):
            current = value
        else:  # undone
            if machine_move:
                alt[v] = old
            else:
                _move(seq, b, a)
            continue
        if current < best_value and excess == 0:
            best_value = current
            best_seq[:] = seq
            best_alt[:] = alt
    return current, best_value


@dataclass
class _Chain:
    """One annealing chain: its list and machines, their value, and the best within the caps it has seen."""

    seq: np.ndarray
    alt: np.ndarray
    current: int
    best: int
    best_seq: np.ndarray
    best_alt: np.ndarray


SYNC_FRACTION = 0.16  # chains that fell behind restart from the leader's state after each such share of the time


def anneal(instance: Instance, start: Schedule, objective: Objective, time_limit: float, *, seed: int = 0,
           workers: int = 1, reach: int = 80, p_machine: float = 0.2, hot: float = 0.2, cold: float = 1e-4,
           cancel: threading.Event | None = None) -> Schedule:
    """The best schedule simulated annealing finds from `start` (complete, valid) within time_limit seconds by
    `objective` (its weights, stability terms and caps), or `start` when none within the caps is found; `workers`
    chains run side by side (the kernel releases the GIL), those behind restarting now and then from the leader.
    The start is decoded first, which only moves steps earlier; callers compare the result with their own start."""
    t0 = time.monotonic()
    arrays = _Arrays(instance, objective)
    if arrays.n_free < 2:
        return start
    seq, alt = arrays.encode(start)
    args = arrays.args()
    starts = np.zeros(len(alt), np.int64)
    # a unit above a cap costs as much as ten moved steps (or ten time units): the search may cross the cap but
    # never settles above it, and only states within the caps are kept as the best
    penalty = 10 * max(1, int(arrays.w[2]), int(arrays.w[3]))

    plain, excess = (int(x) for x in _evaluate(seq, alt, *args, starts))
    current = plain + penalty * excess
    best = current if excess == 0 else np.iinfo(np.int64).max
    rng = np.random.default_rng(seed)
    # the temperature: from a fifth of the typical worsening of a random move down to 10^-4 of that (of the
    # objective alone: a cap's penalty would make it far too hot to settle within the cap)
    deltas = []
    for _ in range(300):
        a, b = rng.integers(len(seq)), rng.integers(len(seq))
        d = int(_evaluate(np.insert(np.delete(seq, a), b, seq[a]), alt, *args, starts)[0]) - plain
        if d > 0:
            deltas.append(d)
    t_hot = max(1.0, float(np.median(deltas)) * hot) if deltas else 1.0
    t_cold = t_hot * cold
    # cooling follows the clock, not an iteration count (the first call may include numba's compile or cache
    # load): each chunk of iterations covers the stretch of temperature its share of the time stands for
    chains = [_Chain(seq.copy(), alt.copy(), current, best, seq.copy(), alt.copy())
              for _ in range(max(1, workers))]
    pool = ThreadPoolExecutor(len(chains)) if len(chains) > 1 else None
    n_iter, per, next_sync = 1000, None, SYNC_FRACTION
    try:
        while not (cancel and cancel.is_set()):
            f0 = (time.monotonic() - t0) / time_limit
            if f0 >= 0.999:
                break
            if per is not None:  # chunks of a fiftieth of the time, at most 0.1 s: a cancel is seen within that
                n_iter = max(100, min(int(min(0.1, time_limit / 50) / per), int((1 - f0) * time_limit / per) + 1))
            f1 = min(1.0, f0 + (n_iter * per / time_limit if per else 0.0))
            temps = (t_hot * (t_cold / t_hot) ** f0, t_hot * (t_cold / t_hot) ** f1)

            def run(c: _Chain, chain_seed: int) -> None:
                c.current, c.best = _anneal(c.seq, c.alt, arrays.n_alt, arrays.multi, arrays.back, n_iter, *temps,
                                            reach, p_machine, chain_seed, c.current, c.best, c.best_seq, c.best_alt,
                                            *args, penalty)

            seeds = [int(rng.integers(1 << 30)) for _ in chains]
            c0 = time.monotonic()
            if pool is None:
                run(chains[0], seeds[0])
            else:
                list(pool.map(run, chains, seeds))
            spent = time.monotonic() - c0
            per = 1e-5 if per is None else max(1e-7, spent / n_iter)  # the first chunk may include compiling
            if len(chains) > 1 and (time.monotonic() - t0) / time_limit >= next_sync:
                next_sync += SYNC_FRACTION
                leader = min(chains, key=lambda c: c.current)
                for c in chains:
                    if c is not leader and c.current > leader.current:
                        c.seq[:], c.alt[:], c.current = leader.seq, leader.alt, leader.current
    finally:
        if pool is not None:
            pool.shutdown()
    top = min(chains, key=lambda c: c.best)
    best, best_seq, best_alt = top.best, top.best_seq, top.best_alt
    if best == np.iinfo(np.int64).max:
        return start  # nothing within the caps was found
    return with_setups(instance, arrays.decode(best_seq, best_alt))


__all__ = ["anneal"]

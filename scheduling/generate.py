"""Generated instances for benchmarks and tests: a flexible job shop with product families, changeovers and due dates."""

from __future__ import annotations

import random

from scheduling.model import Alternative, Instance, Job, Operation


def generate(jobs: int = 100, machines: int = 10, *, families: int = 4, ops: tuple[int, int] = (3, 5),
             alternatives: tuple[int, int] = (1, 3), durations: tuple[int, int] = (10, 60),
             changeover: tuple[int, int] = (5, 25), slack: float = 1.3, seed: int = 0) -> Instance:
    """A random instance: each job one family, ops on 1-3 eligible machines, due = release + slack x the line's load share."""
    rng = random.Random(seed)
    fams = [f"F{i + 1}" for i in range(families)]
    change = {(a, b): rng.randint(*changeover) for a in fams for b in fams if a != b}
    out = []
    mean_work = (durations[0] + durations[1]) / 2 * (ops[0] + ops[1]) / 2
    span = mean_work * jobs / machines  # what the whole load takes on the line, roughly
    for j in range(jobs):
        fam = rng.choice(fams)
        operations = []
        for o in range(rng.randint(*ops)):
            ms = rng.sample(range(machines), rng.randint(*alternatives))
            base = rng.randint(*durations)
            operations.append(Operation([Alternative(m, max(1, int(base * rng.uniform(0.8, 1.25)))) for m in ms],
                                        name=f"op{o + 1}", family=fam))
        release = int(rng.uniform(0, 0.2) * span)
        due = release + int(slack * rng.uniform(0.4, 1.0) * span)
        out.append(Job(f"WO-{j + 1:04d}", operations, release=release, due=due, weight=rng.choice([1, 1, 2, 3])))
    return Instance(f"gen{jobs}x{machines}s{seed}", [f"M{i + 1}" for i in range(machines)], out, change)

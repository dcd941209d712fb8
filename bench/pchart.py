"""False alarms of a camera station's p-chart in control: simulated binomial subgroups at a known p̄, judged with each
rule set through the same kernel and alarm tracker the station uses.

    python -m bench.pchart [--subgroups 20000] [--seed 0]

For each (p̄, n), `subgroups` subgroups of n parts each with NG ~ Binomial(n, p̄) (an in-control process at the
frozen p̄), the rules of `twin.kernels.rule_flags` at p̄ and sqrt(p̄(1-p̄)/n) masked to each rule set, and the bits
fed to `twin.alarms.AlarmTracker` as `inspection.pchart` does: alarms raised per 1000 subgroups is the false-alarm
rate an operator would see. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from inspection.pchart import RULE_SETS, limits
from twin.alarms import AlarmTracker
from twin.kernels import rule_flags

CASES = ((0.02, 25), (0.1, 25), (0.3, 25), (0.02, 100))


def false_alarms(p: float, n: int, subgroups: int, seed: int) -> dict[str, dict[str, float]]:
    """Per rule set: the share of points breaking a rule and the alarms raised per 1000 subgroups."""
    ng = np.random.default_rng(seed).binomial(n, p, subgroups)
    x = ng / n
    flags = rule_flags(x, p, limits(p, n)[3])
    out = {}
    for name, mask in RULE_SETS.items():
        bits = flags & np.uint32(mask)
        tracker = AlarmTracker()
        raised = sum(e.kind == "raised" for i, b in enumerate(bits.tolist())
                     for e in tracker.point(0, 1, i, b, [], float(x[i])))
        out[name] = {"points_flagged": round(float(np.mean(bits > 0)), 4),
                     "raised_per_1000": round(1000 * raised / subgroups, 1)}
    return out


def main() -> None:
    """Run every case, print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subgroups", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(json.dumps({"subgroups": a.subgroups, "seed": a.seed,
                      "cases": {f"p={p} n={n}": false_alarms(p, n, a.subgroups, a.seed + i)
                                for i, (p, n) in enumerate(CASES)}}))


if __name__ == "__main__":
    main()

"""Instances and schedules to and from JSON-ready dicts (for the store and the API)."""

from __future__ import annotations

from typing import Any

from scheduling.model import Alternative, Instance, Job, Operation, Placement, Schedule


def instance_to_dict(inst: Instance) -> dict[str, Any]:
    """A JSON-ready form of an instance."""
    return {"name": inst.name, "machines": inst.machines,
            "jobs": [{"name": j.name, "release": j.release, "due": j.due, "weight": j.weight,
                      "operations": [{"name": op.name, "family": op.family, "fixed": list(op.fixed) if op.fixed else None, "seq": op.seq,
                                      "alternatives": [[a.machine, a.duration] for a in op.alternatives]}
                                     for op in j.operations]} for j in inst.jobs],
            "changeover": [[a, b, v] for (a, b), v in inst.changeover.items()],
            "unavailable": {str(m): [list(w) for w in ws] for m, ws in inst.unavailable.items()}}


def instance_from_dict(d: dict[str, Any]) -> Instance:
    """The instance of instance_to_dict's output."""
    jobs = [Job(j["name"], [Operation([Alternative(m, t) for m, t in op["alternatives"]], op["name"], op["family"],
                                      tuple(op["fixed"]) if op["fixed"] else None, op.get("seq")) for op in j["operations"]],
                j["release"], j["due"], j["weight"]) for j in d["jobs"]]
    return Instance(d["name"], d["machines"], jobs, {(a, b): v for a, b, v in d["changeover"]},
                    {int(m): [tuple(w) for w in ws] for m, ws in d["unavailable"].items()})


def schedule_to_list(s: Schedule) -> list[list[int]]:
    """Placements as [job, op, machine, start, end, setup] rows."""
    return [[p.job, p.op, p.machine, p.start, p.end, p.setup] for p in s.placements]


def schedule_from_list(rows: list[list[int]]) -> Schedule:
    """The schedule of schedule_to_list's output."""
    return Schedule([Placement(*r) for r in rows])

"""The validator against hand-made invalid schedules: each names the job and operation at fault."""

from dataclasses import replace

import pytest

from scheduling.model import Alternative, Instance, Job, Operation, Placement, Schedule
from scheduling.validate import is_valid, violations


def toy() -> Instance:
    """Two jobs, two machines, families A and B with a changeover of 3 from A to B; M1 down 100-110."""
    a = Job("WO-1", [Operation([Alternative(0, 4), Alternative(1, 6)], "cut", "A"), Operation([Alternative(1, 2)], "weld", "A")])
    b = Job("WO-2", [Operation([Alternative(0, 5)], "cut", "B")], release=1)
    return Instance("toy", ["M0", "M1"], [a, b], changeover={("A", "B"): 3}, unavailable={1: [(100, 110)]})


def good() -> Schedule:
    return Schedule([Placement(0, 0, 0, 0, 4), Placement(0, 1, 1, 4, 6), Placement(1, 0, 0, 7, 12, 3)])


def test_good_schedule_is_valid():
    assert violations(toy(), good()) == []


def _with(index: int, **changes) -> Schedule:
    ps = list(good().placements)
    ps[index] = replace(ps[index], **changes)
    return Schedule(ps)


@pytest.mark.parametrize("schedule, expected", [
    (_with(2, start=5, end=10), "WO-2/cut on machine 0 at 5 leaves 1 for a changeover of 3 after WO-1/cut"),
    (_with(2, start=2, end=7), "overlaps WO-1/cut"),
    (_with(1, start=3, end=5), "WO-1/weld starts at 3 before WO-1/cut ends at 4"),
    (_with(1, machine=0), "WO-1/weld on machine 0, which is not eligible"),
    (_with(0, end=5), "WO-1/cut lasts 5, needs 4 on machine 0"),
    (Schedule(good().placements[:2]), "WO-2/cut not placed"),
    (Schedule(good().placements + [good().placements[0]]), "WO-1/cut placed twice"),
    (_with(1, start=99, end=101), "WO-1/weld runs 99-101 on machine 1 while it is unavailable 100-110"),
    (_with(2, setup=0), "WO-2/cut reports setup 0, the changeover is 3"),
])
def test_invalid_schedules_are_named(schedule, expected):
    found = violations(toy(), schedule)
    assert any(expected in v for v in found), found
    assert not is_valid(toy(), schedule)


def test_release_and_fixed():
    inst = toy()
    inst.jobs[1].release = 8
    assert any("WO-2/cut starts at 7 before the release 8" in v for v in violations(inst, good()))
    inst = toy()
    inst.jobs[0].operations[0].fixed = (1, 0)
    assert any("WO-1/cut is fixed at machine 1 start 0" in v for v in violations(inst, good()))

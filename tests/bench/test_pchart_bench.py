"""bench.pchart: in-control false alarms of a station's p-chart per rule set (a small run)."""

from bench.pchart import false_alarms


def test_each_rule_set_is_judged_and_western_electric_flags_no_more_than_all():
    out = false_alarms(0.1, 25, 2000, seed=1)
    assert set(out) == {"we", "nelson", "all"}
    assert out["we"]["points_flagged"] <= out["all"]["points_flagged"]  # its rules are a subset of all
    assert all(0 <= v["raised_per_1000"] <= 1000 and 0 <= v["points_flagged"] <= 1 for v in out.values())

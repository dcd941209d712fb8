"""The what-if model against cases worked out by hand, its scenarios, determinism and validation."""

from __future__ import annotations

import msgspec
import pytest

import threading

from twin.whatif import (
    MAX_HORIZON_S,
    STATES,
    Budget,
    LimitExceeded,
    UnknownProduct,
    Machine,
    Order,
    Scenario,
    WhatIfRequest,
    Window,
    Wip,
    compare,
    run,
    simulate,
)


def one_machine(horizon_s: float = 400.0, setup_s: float = 20.0, **machine: object) -> WhatIfRequest:
    """One machine m1 at 10 s a part, one order O1 of 30 parts of A due at 250 s."""
    spec: dict[str, object] = {"name": "m1", "nominal_cycle_s": 10.0, **machine}
    return WhatIfRequest(
        machines=[Machine(**spec)],  # type: ignore[arg-type]
        orders=[Order(id="O1", product="A", quantity=30, due_s=250.0)],
        setup_s=setup_s,
        horizon_s=horizon_s,
    )


def test_hand_computed_single_order():
    result, events = simulate(one_machine())
    # setup 0..20, then 30 parts × 10 s = 300 s: done at 320, due 250 -> 70 s late
    order = result.orders[0]
    assert order.finished_s == 320.0 and order.machine == "m1"
    assert (result.tardiness.total_s, result.tardiness.max_s, result.tardiness.late_orders) == (70.0, 70.0, 1)
    assert result.tardiness.unfinished == []
    # states over the 400 s horizon: setup 20, producing 300, idle 400 - 320 = 80
    m = result.machines[0]
    assert m.time_s == {
        "producing": 300.0, "idle": 80.0, "setup": 20.0, "unplanned_down": 0.0, "planned_down": 0.0, "off_shift": 0.0
    }
    # always on shift, nothing planned down: POT = PBT = 400; APT = 300
    # availability 300/400 = 0.75, effectiveness 30 × 10 / 300 = 1, quality 30/30 = 1, OEE 0.75
    oee = m.oee
    assert (oee.pot_s, oee.pbt_s, oee.apt_s, oee.planned_run_s) == (400.0, 400.0, 300.0, 300.0)
    assert (oee.availability, oee.effectiveness, oee.quality, oee.oee) == (0.75, 1.0, 1.0, 0.75)
    assert result.oee == oee  # the line is this one machine
    assert (result.throughput.good, result.throughput.scrap, result.throughput.completed_orders) == (30, 0, 1)
    assert result.events.counts == {"order_start": 1, "setup_start": 1, "good_part": 30, "order_done": 1}
    assert result.events.total == len(events) == 33
    assert [(e.t_s, e.kind) for e in events[:3]] == [(0.0, "order_start"), (0.0, "setup_start"), (30.0, "good_part")]
    assert (events[-1].t_s, events[-1].kind) == (320.0, "order_done")


def test_horizon_cuts_a_cycle_and_an_order():
    result = run(one_machine(horizon_s=205.0))
    # setup to 20, part k ends at 20 + 10k: 18 parts by 200; the 19th runs 200..205 when the horizon falls
    assert result.orders[0].made == 18 and result.orders[0].finished_s is None
    # unfinished and not yet due at 205 (due 250): listed, not late
    assert result.tardiness.unfinished == ["O1"] and result.tardiness.late_orders == 0
    # APT = 18 × 10 + 5 of the cut cycle = 185; effectiveness = 18 × 10 / 185
    assert result.oee.apt_s == 185.0
    assert result.oee.effectiveness == pytest.approx(180 / 185)


def test_unfinished_past_due_counts_as_late_to_the_horizon():
    result = run(one_machine(horizon_s=300.0))
    # setup 20 + 28 parts by 300 (the 28th at 20 + 280); due 250, horizon 300 -> 50 s late so far
    assert result.orders[0].made == 28
    assert result.tardiness.unfinished == ["O1"]
    assert (result.tardiness.total_s, result.tardiness.late_orders) == (50.0, 1)


def test_breakdown_at_end_of_life():
    result, events = simulate(one_machine(horizon_s=500.0, rul_parts=10, life_parts=100, repair_s=100.0))
    # setup 0..20; parts 1..10 end at 120 and use up the life: breakdown at 120, repaired at 220
    # with life 100 again; parts 11..30 take 200 s: done at 420, 170 s after due 250
    assert [(e.t_s, e.kind) for e in events if e.kind in ("breakdown", "repair_done", "order_done")] == [
        (120.0, "breakdown"),
        (220.0, "repair_done"),
        (420.0, "order_done"),
    ]
    assert result.tardiness.total_s == 170.0
    m = result.machines[0]
    assert (m.breakdowns, m.rul_parts_end) == (1, 80)  # 100 - 20 parts since the repair
    # setup 20, producing 300, unplanned 100, idle 500 - 420 = 80
    t = m.time_s
    assert (t["setup"], t["producing"], t["unplanned_down"], t["idle"]) == (20.0, 300.0, 100.0, 80.0)
    # unplanned downtime stays in PBT: availability = 300 / 500 = 0.6
    assert (m.oee.pbt_s, m.oee.availability) == (500.0, 0.6)


def test_scrap_at_its_expected_rate():
    result = run(one_machine(horizon_s=400.0, scrap_base=0.1))
    # every 10th part is scrap (10 × 0.1 makes a whole part): parts 10, 20, 30 scrapped,
    # so 30 good parts take 33 cycles: 20 + 330 = 350
    assert result.orders[0].finished_s == 350.0
    assert (result.throughput.good, result.throughput.scrap) == (30, 3)
    assert result.oee.quality == 30 / 33
    assert result.oee.effectiveness == 1.0  # 33 × 10 s planned over 330 s producing


def test_scrap_grows_with_wear():
    request = one_machine(horizon_s=100.0, setup_s=0.0, rul_parts=10, life_parts=10, scrap_slope=1.0)
    result, events = simulate(request)
    # wear at the start of part k is 1 - (11 - k)/10 = (k - 1)/10, so rates 0, .1, ..., .9; the running
    # sum after each part: 0, .1, .3, .6, 1.0 (scrap, -> 0), .5, 1.1 (scrap, -> .1), .8, 1.6 (scrap, -> .6),
    # 1.5 (scrap): parts 5, 7, 9 and 10 are scrap; the 10th ends at 100 = the horizon and still counts
    kinds = [e.kind for e in events if e.kind.endswith("_part")]
    good, scrap = "good_part", "scrap_part"
    assert kinds == [good, good, good, good, scrap, good, scrap, good, scrap, scrap]
    assert (result.throughput.good, result.throughput.scrap) == (6, 4)
    assert result.oee.quality == 0.6


def test_due_date_order_priority_and_setups():
    request = WhatIfRequest(
        machines=[Machine(name="m1", cycle_s={"A": 10.0, "B": 20.0})],
        orders=[
            Order(id="X", product="B", quantity=1, due_s=100.0),
            Order(id="Y", product="B", quantity=1, due_s=100.0, priority=5),
            Order(id="Z", product="A", quantity=1, due_s=50.0),
        ],
        setup_s=5.0,
        horizon_s=100.0,
    )
    result, events = simulate(request)
    # Z first (due 50), then Y before X (same due, higher priority)
    assert [e.order for e in events if e.kind == "order_start"] == ["Z", "Y", "X"]
    # Z: setup 0..5, part 5..15; Y: setup 15..20, part 20..40; X: same product, no setup, 40..60
    assert {o.id: o.finished_s for o in result.orders} == {"X": 60.0, "Y": 40.0, "Z": 15.0}
    assert result.events.counts["setup_start"] == 2
    assert result.tardiness.late_orders == 0


def test_wip_resumes_before_earlier_due_orders():
    request = WhatIfRequest(
        machines=[Machine(name="m1", nominal_cycle_s=10.0, setup_for="B")],
        wip=[Wip(machine="m1", order=Order(id="W", product="A", quantity=3, due_s=1000.0))],
        orders=[Order(id="Q", product="B", quantity=1, due_s=10.0)],
        setup_s=20.0,
        horizon_s=100.0,
    )
    result = run(request)
    # W is set up already: 3 parts 0..30; then Q needs a changeover to B: 30..50, part 50..60
    assert {o.id: o.finished_s for o in result.orders} == {"W": 30.0, "Q": 60.0}
    assert result.orders[1].late_s == 50.0  # 60 - 10


def test_machine_starting_down_with_worn_out_life():
    request = one_machine(
        horizon_s=400.0, setup_s=0.0, state="unplanned_down", remaining_s=40.0, rul_parts=0, life_parts=50
    )
    result, events = simulate(request)
    # repaired at 40 with life 50, then 30 parts: 40 + 300 = 340; life left 50 - 30 = 20
    assert result.orders[0].finished_s == 340.0
    m = result.machines[0]
    assert (m.rul_parts_end, m.breakdowns, m.time_s["unplanned_down"]) == (20, 0, 40.0)
    assert (events[0].t_s, events[0].kind) == (40.0, "repair_done")


def maintenance_case(kind: str) -> WhatIfRequest:
    """One machine 5 parts from failure: repair 300 s against 50 s of planned maintenance."""
    return WhatIfRequest(
        machines=[
            Machine(name="m1", nominal_cycle_s=10.0, rul_parts=5, life_parts=100, repair_s=300.0, maintenance_s=50.0)
        ],
        orders=[Order(id="O1", product="A", quantity=20, due_s=200.0)],
        horizon_s=300.0,
        scenario=Scenario(kind=kind, machine="m1"),  # type: ignore[arg-type]
    )


def test_maintain_now_against_run_to_failure():
    request = maintenance_case("baseline")
    scenarios = [Scenario(kind="maintain_now", machine="m1"), Scenario(kind="maintain_at_failure", machine="m1")]
    now, at_failure = compare(request, scenarios)
    assert now.scenario.kind == "maintain_now" and at_failure.scenario.kind == "maintain_at_failure"
    # maintain now: planned down 0..50 with life restored, 20 parts 50..250; due 200 -> 50 late
    assert (now.orders[0].finished_s, now.tardiness.total_s, now.throughput.good) == (250.0, 50.0, 20)
    # PBT = 300 - 50 planned = 250; APT = 200: availability 0.8
    assert (now.oee.pbt_s, now.oee.apt_s, now.oee.availability) == (250.0, 200.0, 0.8)
    # at failure: 5 parts 0..50, breakdown, repair 50..350: only 5 good by 300, unfinished,
    # 300 - 200 = 100 s late at the horizon; PBT 300, APT 50: availability 1/6
    late = at_failure.tardiness
    assert (at_failure.throughput.good, late.unfinished, late.total_s) == (5, ["O1"], 100.0)
    assert at_failure.oee.availability == pytest.approx(50 / 300)
    # run to failure is the baseline
    baseline = run(request)
    assert msgspec.structs.replace(baseline, scenario=at_failure.scenario) == at_failure


def test_shift_windows_pause_work():
    request = WhatIfRequest(
        machines=[Machine(name="m1", nominal_cycle_s=30.0)],
        orders=[Order(id="O1", product="A", quantity=5, due_s=0.0)],
        shifts=[Window(start_s=0.0, end_s=100.0), Window(start_s=200.0, end_s=400.0)],
        horizon_s=400.0,
    )
    result = run(request)
    # parts at 30, 60, 90; part 4 runs 90..100, pauses off shift, resumes 200..220; part 5 220..250
    assert result.orders[0].finished_s == 250.0
    m = result.machines[0]
    assert m.time_s == {
        "producing": 150.0, "idle": 150.0, "setup": 0.0, "unplanned_down": 0.0, "planned_down": 0.0, "off_shift": 100.0
    }
    # POT = PBT = 100 + 200 = 300 shift seconds; availability = 150 / 300
    assert (m.oee.pot_s, m.oee.pbt_s, m.oee.availability) == (300.0, 300.0, 0.5)


def test_add_shift():
    request = WhatIfRequest(
        machines=[Machine(name="m1", nominal_cycle_s=10.0)],
        orders=[Order(id="O1", product="A", quantity=15, due_s=300.0)],
        shifts=[Window(start_s=0.0, end_s=100.0)],
        horizon_s=300.0,
    )
    extra = Scenario(kind="add_shift", window=Window(start_s=100.0, end_s=200.0))
    baseline, more = compare(request, [Scenario(), extra])
    # one 100 s shift makes 10 parts; with 100..200 added, 15 parts finish at 150
    assert (baseline.throughput.good, baseline.orders[0].finished_s) == (10, None)
    assert (more.throughput.good, more.orders[0].finished_s) == (15, 150.0)
    assert (baseline.oee.pot_s, more.oee.pot_s) == (100.0, 200.0)


def test_machine_down_sends_work_to_the_other_machine():
    request = WhatIfRequest(
        machines=[Machine(name="m1", nominal_cycle_s=10.0), Machine(name="m2", nominal_cycle_s=10.0)],
        orders=[
            Order(id="A1", product="A", quantity=5, due_s=100.0),
            Order(id="A2", product="A", quantity=5, due_s=200.0),
        ],
        horizon_s=300.0,
    )
    baseline, down = compare(request, [Scenario(), Scenario(kind="machine_down", machine="m1", duration_s=100.0)])
    # baseline: m1 (listed first) takes A1, m2 takes A2, both done at 50
    assert {o.id: (o.machine, o.finished_s) for o in baseline.orders} == {"A1": ("m1", 50.0), "A2": ("m2", 50.0)}
    # m1 down 0..100: m2 makes A1 0..50 and A2 50..100; m1 comes back to an empty queue
    assert {o.id: (o.machine, o.finished_s) for o in down.orders} == {"A1": ("m2", 50.0), "A2": ("m2", 100.0)}
    m1 = down.machines[0]
    assert (m1.time_s["planned_down"], m1.time_s["idle"], m1.good) == (100.0, 200.0, 0)
    # planned downtime leaves PBT: 300 - 100 = 200 for m1, 300 for m2; line APT 100: availability 100/500
    assert (m1.oee.pbt_s, down.oee.pbt_s, down.oee.availability) == (200.0, 500.0, 0.2)
    _, events = simulate(msgspec.structs.replace(request, scenario=down.scenario))
    assert [(e.t_s, e.kind, e.machine) for e in events if e.kind.startswith("down_")] == [
        (0.0, "down_start", "m1"),
        (100.0, "down_end", "m1"),
    ]


def test_machine_down_later_pauses_a_cycle():
    request = one_machine(horizon_s=400.0, setup_s=0.0)
    down = Scenario(kind="machine_down", machine="m1", start_s=55.0, duration_s=45.0)
    request = msgspec.structs.replace(request, scenario=down)
    result = run(request)
    # 5 parts by 50, part 6 runs 50..55, pauses for 55..100, ends 105; 24 more parts: 105 + 240 = 345
    assert result.orders[0].finished_s == 345.0
    assert result.machines[0].time_s["planned_down"] == 45.0


def random_failures(seed: int) -> WhatIfRequest:
    """One machine failing at random once every 200 s of cycles on average."""
    return WhatIfRequest(
        machines=[Machine(name="m1", nominal_cycle_s=10.0, mtbf_s=200.0, repair_s=50.0)],
        orders=[Order(id="O1", product="A", quantity=100, due_s=1000.0)],
        horizon_s=2000.0,
        seed=seed,
    )


def test_same_seed_same_result_other_seed_other_result():
    first, log1 = simulate(random_failures(1))
    again, log2 = simulate(random_failures(1))
    assert msgspec.json.encode(first) == msgspec.json.encode(again) and log1 == log2
    other, log3 = simulate(random_failures(2))
    assert log3 != log1
    for result in (first, other):
        m = result.machines[0]
        assert m.failures == result.events.counts.get("failure", 0) > 0
        # each failure costs its 50 s repair (all within the horizon here: 100 parts + ~5 repairs < 2000 s)
        assert m.time_s["unplanned_down"] == 50.0 * m.failures
        assert sum(m.time_s.values()) == pytest.approx(2000.0)
    # without random failures the seed does not matter
    steady = [Machine(name="m1", nominal_cycle_s=10.0)]
    calm = [run(msgspec.structs.replace(random_failures(s), machines=steady)) for s in (1, 2)]
    assert msgspec.structs.replace(calm[0], seed=2) == calm[1]


def test_decodes_from_json():
    body = b"""{"machines": [{"name": "m1", "cycle_s": {"A": 10}}],
                "orders": [{"id": "O1", "product": "A", "quantity": 3, "due_s": 20}],
                "horizon_s": 100, "scenario": {"kind": "maintain_now", "machine": "m1"}}"""
    result = run(msgspec.json.decode(body, type=WhatIfRequest))
    # maintenance_s 0, no setup (setup_s 0): 3 parts done at 30, 10 s late
    assert result.orders[0].finished_s == 30.0 and result.tardiness.total_s == 10.0
    with pytest.raises(msgspec.ValidationError, match=r"\$\.machines\[0\]\.cycle_s"):
        msgspec.json.decode(b'{"machines": [{"name": "m1", "cycle_s": 10}], "horizon_s": 1}', type=WhatIfRequest)


def good_request() -> WhatIfRequest:
    return WhatIfRequest(
        machines=[Machine(name="m1", cycle_s={"A": 10.0}), Machine(name="m2", cycle_s={"B": 5.0})],
        orders=[Order(id="O1", product="A", quantity=3, due_s=20.0)],
        horizon_s=100.0,
    )


def with_(**changes: object) -> WhatIfRequest:
    return msgspec.structs.replace(good_request(), **changes)


def with_machine(**changes: object) -> WhatIfRequest:
    r = good_request()
    return msgspec.structs.replace(r, machines=[msgspec.structs.replace(r.machines[0], **changes), r.machines[1]])


def wip_on(machine: str) -> list[Wip]:
    return [Wip(machine=machine, order=Order(id="W", product="A", quantity=1, due_s=0.0))]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (with_(scenario=Scenario(kind="maintain_now", machine="press9")), "scenario.machine: no machine 'press9'"),
        (with_(scenario=Scenario(kind="machine_down", machine="m1")), "scenario.duration_s:"),
        (with_(scenario=Scenario(kind="add_shift")), "scenario.window: add_shift needs a window"),
        (with_(scenario=Scenario(kind="flood")), "scenario.kind: unknown kind 'flood'"),  # type: ignore[arg-type]
        (with_(machines=[]), "machines: at least one"),
        (with_(horizon_s=-5.0), "horizon_s:"),
        (with_(setup_s=-1.0), "setup_s:"),
        (with_machine(repair_s=-1.0), r"machines\[0\].repair_s:"),
        (with_machine(rul_parts=5), r"machines\[0\].life_parts: needed with rul_parts"),
        (with_machine(state="idle", remaining_s=10.0), r"machines\[0\].remaining_s:"),
        (with_machine(name="m2"), r"machines\[1\].name: duplicate machine 'm2'"),
        (with_machine(scrap_base=0.5, scrap_slope=0.8), r"machines\[0\].scrap_slope:"),
        (with_(orders=[Order(id="O1", product="C", quantity=1, due_s=0.0)]), r"orders\[0\].product: no machine makes 'C'"),
        (with_(wip=wip_on("m2")), r"wip\[0\].order.product: machine 'm2' has no cycle time for 'A'"),
        (with_(wip=wip_on("m7")), r"wip\[0\].machine: no machine 'm7'"),
        (with_(shifts=[Window(start_s=50.0, end_s=10.0)]), r"shifts\[0\].end_s:"),
    ],
)
def test_validation_names_the_field(request_, message):
    with pytest.raises(ValueError, match=message):
        run(request_)


def test_every_state_is_reported():
    result = run(good_request())
    for m in result.machines:
        assert tuple(m.time_s) == STATES
        assert sum(m.time_s.values()) == 100.0


def big(orders: int = 50) -> WhatIfRequest:
    """A request within the body limits that would simulate millions of events."""
    return WhatIfRequest(machines=[Machine(name=f"m{i}", nominal_cycle_s=1.0) for i in range(4)],
                         orders=[Order(id=f"o{i}", product="A", quantity=100_000, due_s=0) for i in range(orders)],
                         horizon_s=MAX_HORIZON_S)


def test_a_run_stops_at_its_event_limit_naming_it():
    budget = Budget(max_events=5_000)
    with pytest.raises(LimitExceeded, match="max_events") as e:
        compare(big(), [Scenario(), Scenario()], budget)
    assert e.value.limit == "max_events" and budget.used_events <= 6_000


def test_a_run_stops_at_its_wall_clock_budget_naming_it():
    with pytest.raises(LimitExceeded, match="budget_s"):
        run(big(), Budget(wall_s=0.0))


def test_a_run_in_a_worker_thread_stops_when_cancelled():
    budget = Budget(max_events=10**9, wall_s=600.0)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            run(big(), budget)
        except LimitExceeded as e:
            failure.append(e)

    worker = threading.Thread(target=work)
    worker.start()
    while budget.used_events == 0 and worker.is_alive():  # condition: the run is under way
        worker.join(0.01)
    budget.cancel()
    worker.join(10)
    assert not worker.is_alive() and failure and failure[0].limit == "cancelled"  # type: ignore[attr-defined]


def test_limits_past_the_body_constraints_are_refused_by_validate_too():
    with pytest.raises(LimitExceeded, match="horizon_s"):
        run(msgspec.structs.replace(one_machine(), horizon_s=1e9))
    with pytest.raises(LimitExceeded, match=r"orders\[0\].quantity"):
        run(msgspec.structs.replace(one_machine(), orders=[Order(id="o", product="A", quantity=10**12, due_s=0)]))
    with pytest.raises(LimitExceeded, match="orders"):
        run(msgspec.structs.replace(one_machine(), orders=[Order(id=f"o{i}", product="A", quantity=1, due_s=0)
                                                            for i in range(1001)]))


def test_an_order_no_machine_makes_is_an_unknown_product():
    request = one_machine(cycle_s={"A": 10.0}, nominal_cycle_s=None)
    with pytest.raises(UnknownProduct, match="'nope'") as e:
        run(msgspec.structs.replace(request, orders=[Order(id="o", product="nope", quantity=1, due_s=0)]))
    assert e.value.where == "orders[0].product"

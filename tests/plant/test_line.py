"""The simpy line: deterministic, plausible, and wearing out like its C-MAPSS engines."""

from plant.line import PRODUCING, SETUP, UNPLANNED_DOWN, Line


def run(hours: float, seed: int = 7) -> tuple[Line, set[str]]:
    line = Line(["press1", "press2", "oven1"], seed=seed)
    seen: set[str] = set()
    for _ in range(int(hours * 60)):
        line.advance(60)
        seen |= {m.state for m in line.machines.values()}
    return line, seen


def test_same_seed_same_plant():
    a, _ = run(2)
    b, _ = run(2)
    assert [m.values() for m in a.machines.values()] == [m.values() for m in b.machines.values()]


def test_a_day_of_production_is_plausible():
    line, seen = run(24)
    assert {PRODUCING, SETUP, UNPLANNED_DOWN} <= seen
    for m in line.machines.values():
        # at most one part per shortest cycle (6 s) over the day
        assert 0 < m.good_count + m.scrap_count <= 24 * 3600 / 6
        assert m.scrap_count < m.good_count
        assert m.energy_kwh > 0
    assert sum(lot.quantity for lot in line.lots_done) <= sum(m.good_count for m in line.machines.values())


def test_wear_raises_temperature_and_vibration():
    line = Line(["press1"], seed=1)
    samples = []
    while len(samples) < 150:
        line.advance(10)
        m = line.machines["press1"]
        if m.state == PRODUCING:
            samples.append((m.wear, m.temperature, m.vibration))
    early = [s for s in samples if s[0] < 0.3]
    late = [s for s in samples if s[0] > 0.7]
    assert early and late
    mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)  # noqa: E731
    assert mean(late, 1) > mean(early, 1)  # C-MAPSS T50 climbs toward failure
    assert mean(late, 2) > mean(early, 2)  # faulty bearing vibrates more


def test_speed_setpoint_is_checked():
    line = Line(["press1"])
    line.set_speed("press1", 80)
    assert line.machines["press1"].speed_setpoint == 80
    try:
        line.set_speed("press1", 500)
    except ValueError as e:
        assert "500" in str(e)
    else:
        raise AssertionError("500 % accepted")


def test_every_machine_of_the_demo_plant_produces_within_its_first_simulated_half_hour():
    # the demo's four machines: an operator each, so none waits for another to finish a lot
    line = Line(["press1", "press2", "oven1", "lathe1"], seed=7)
    line.advance(1800)
    assert all(m.good_count > 0 for m in line.machines.values()), {n: m.good_count for n, m in line.machines.items()}
    assert all(m.energy_kwh > 0 for m in line.machines.values())


def test_signals_vary_and_are_in_their_units():
    line = Line(["press1", "lathe1"], seed=5)
    vibration, temperature, process = set(), [], []
    for _ in range(600):
        line.advance(10)
        press, lathe = line.machines["press1"], line.machines["lathe1"]
        if press.state == PRODUCING:
            vibration.add(press.vibration)
            temperature.append(press.temperature)
        if lathe.state == PRODUCING:
            process.append(lathe.process)
    assert len(vibration) > 20  # bearing RMS window by window, not one constant
    assert all(0.01 < v < 2.0 for v in vibration)  # g
    assert all(1380 < t < 1450 for t in temperature)  # C-MAPSS T50 in degrees Rankine, as the model keeps it
    assert all(290 < air < 310 and 300 < proc < 320 and 1000 < rpm < 3000 for air, proc, rpm, _, _ in process)  # K

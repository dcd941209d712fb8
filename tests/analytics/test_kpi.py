"""ISO 22400 KPIs on a hand-built plant: every expected number is worked out here from the timeline below.

Times are hours after T0 = 2026-11-20 00:00 UTC (day 1 is [0, 24), day 2 [24, 48)).

Line L1 shifts: early [6, 14), late [14, 22), and day 2's early [30, 38). Line L2 has none.

m1 (L1)  planned downtime: break [10, 10.5) and an overlapping planned stop [10.25, 10.5) (merged:
         0.5 h), maintenance [21, 23) (only [21, 22) is inside a shift)
         states: idle [0, 5.5) producing [5.5, 8) setup [8, 8.5) unplanned_down [8.5, 9)
                 producing [9, 11) idle [11, 11.25) producing [11.25, 14.5) unplanned_down [14.5, 15)
                 producing [15, 21) planned_down [21, 23) idle [23, 30) producing [30, 36)
                 unplanned_down [36, 38) idle [38, 48)
         operations: A PRI 20 s [6, 12), B PRI 30 s from 14 (still running)
         part counts (good, scrap): 5 h (50, 0) outside shifts, 9.5 h (175, 5), 10.25 h (7, 0) in the
                 break, 12.5 h (700, 20) after A (A's PRI still applies), 18 h (400, 10), 20 h (180, 10),
                 33 h (500, 0)
         reports: A at 11.5 h good 870 scrap 25 rework 15 first-pass 860; B at 20.5 h good 580 scrap 20
                 rework 15 first-pass not given (= all 580 good)
         meter m1.energy, share 0.5: 0 h 1000, 6 h 1010, 13 h 1190, 14 h 1210, 21 h 1390, 22 h 1410,
                 23 h NaN (bad), 23.5 h 5 (restarted from 0), 24 h 10, 36 h 30
m2 (L1)  states: idle [0, 6) producing [6, 12) unplanned_down [12, 13) producing [13, 22) idle [22, 24)
         operation C PRI 30 s from 5 h (running); counts 10 h (700, 0), 20 h (790, 10);
         report C at 21 h good 1490 scrap 10 rework 5 first-pass 1480; no meter
m3 (L2)  no calendar; used by the tests that add their own rows
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from analytics.kpi import KpiRow, UnknownScopeError, kpis
from historian.errors import InvalidParameterError

T0 = datetime(2026, 11, 20, tzinfo=timezone.utc)
KPIS = ("availability", "effectiveness", "quality_rate", "oee", "setup_ratio", "technical_efficiency",
        "allocation_ratio", "scrap_ratio", "rework_ratio", "first_pass_yield", "energy_per_unit_kwh",
        "mtbf_s", "mttr_s")


def h(hours: float) -> datetime:
    """T0 plus some hours."""
    return T0 + timedelta(hours=hours)


async def _ids(conn: psycopg.AsyncConnection, sql: str, rows: list[tuple]) -> list[int]:
    ids = []
    for row in rows:
        cur = await conn.execute(sql, row)
        ids.append((await cur.fetchone())[0])  # type: ignore[index]
    return ids


async def build_plant(conn: psycopg.AsyncConnection) -> None:
    """The timeline of the module docstring."""
    m1, m2, m3 = await _ids(conn, "INSERT INTO machines (name, line) VALUES (%s, %s) RETURNING id",
                            [("m1", "L1"), ("m2", "L1"), ("m3", "L2")])
    for name, lo, hi in [("early", 6, 14), ("late", 14, 22), ("early", 30, 38)]:
        await conn.execute("INSERT INTO shifts (name, line, start_ts, end_ts) VALUES (%s, 'L1', %s, %s)",
                           (name, h(lo), h(hi)))
    for kind, lo, hi in [("break", 10, 10.5), ("planned_stop", 10.25, 10.5), ("maintenance", 21, 23)]:
        await conn.execute("INSERT INTO planned_downtime (machine_id, kind, start_ts, end_ts) VALUES (%s, %s, %s, %s)",
                           (m1, kind, h(lo), h(hi)))
    timeline = {
        m1: [("idle", 0, 5.5), ("producing", 5.5, 8), ("setup", 8, 8.5), ("unplanned_down", 8.5, 9),
             ("producing", 9, 11), ("idle", 11, 11.25), ("producing", 11.25, 14.5), ("unplanned_down", 14.5, 15),
             ("producing", 15, 21), ("planned_down", 21, 23), ("idle", 23, 30), ("producing", 30, 36),
             ("unplanned_down", 36, 38), ("idle", 38, 48)],
        m2: [("idle", 0, 6), ("producing", 6, 12), ("unplanned_down", 12, 13), ("producing", 13, 22),
             ("idle", 22, 24)],
    }
    for machine, intervals in timeline.items():
        for state, lo, hi in intervals:
            await conn.execute("INSERT INTO state_intervals VALUES (%s, %s, %s, %s)", (machine, state, h(lo), h(hi)))
    counts = {m1: [(5, 50, 0), (9.5, 175, 5), (10.25, 7, 0), (12.5, 700, 20), (18, 400, 10), (20, 180, 10),
                   (33, 500, 0)],
              m2: [(10, 700, 0), (20, 790, 10)]}
    for machine, rows in counts.items():
        for at, good, scrap in rows:
            await conn.execute("INSERT INTO part_counts VALUES (%s, %s, %s, %s)", (machine, h(at), good, scrap))

    (product,) = await _ids(conn, "INSERT INTO products (code) VALUES (%s) RETURNING id", [("P1",)])
    for order in ("WO1", "WO2"):
        await conn.execute("INSERT INTO work_orders (id, product_id, quantity) VALUES (%s, %s, 2000)", (order, product))
    op_a, op_b, op_c = await _ids(
        conn,
        "INSERT INTO operations (work_order_id, seq, machine_id, planned_cycle_s, status, started_at) "
        "VALUES (%s, %s, %s, %s, 'running', %s) RETURNING id",
        [("WO1", 1, m1, 20, h(6)), ("WO1", 2, m1, 30, h(14)), ("WO2", 1, m2, 30, h(5))],
    )
    for op, at, good, scrap, rework, first_pass in [(op_a, 11.5, 870, 25, 15, 860), (op_b, 20.5, 580, 20, 15, None),
                                                    (op_c, 21, 1490, 10, 5, 1480)]:
        await conn.execute(
            "INSERT INTO operation_reports (operation_id, ts, good, scrap, rework, first_pass_good) "
            "VALUES (%s, %s, %s, %s, %s, %s)", (op, h(at), good, scrap, rework, first_pass))
    # reports go on running operations only (0006), so A completes after its report
    await conn.execute("UPDATE operations SET status = 'completed', completed_at = %s WHERE id = %s", (h(12), op_a))

    (tag,) = await _ids(conn, "INSERT INTO tags (name, category, unit, machine_id, allow_nan) "
                              "VALUES ('m1.energy', 'energy', 'kWh', %s, true) RETURNING id", [(m1,)])
    await conn.execute("INSERT INTO energy_meters (tag_id, machine_id, share) VALUES (%s, %s, 0.5)", (tag, m1))
    await conn.execute("SELECT sf_ensure_partitions('samples', '2026-11-19', '2026-11-23')")
    for at, value, quality in [(0, 1000, 192), (6, 1010, 192), (13, 1190, 192), (14, 1210, 192), (21, 1390, 192),
                               (22, 1410, 192), (23, float("nan"), 0), (23.5, 5, 192), (24, 10, 192), (36, 30, 192)]:
        await conn.execute("INSERT INTO samples (tag_id, ts, value, quality) VALUES (%s, %s, %s, %s)",
                           (tag, h(at), value, quality))


@pytest.fixture
async def plant(conn: psycopg.AsyncConnection) -> psycopg.AsyncConnection:
    await build_plant(conn)
    return conn


def check(row: KpiRow, **expected: object) -> None:
    """Each named field equals its expected value (floats to 1e-9 relative), None where None."""
    for name, want in expected.items():
        got = getattr(row, name)
        if want is None or isinstance(want, (str, datetime)):
            assert got == want, f"{name}: {got!r} != {want!r}"
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9), f"{name}: {got!r} != {want!r}"


async def test_every_kpi_of_a_machine_over_a_day(plant):
    (row,) = await kpis(plant, machine="m1", start=h(0), end=h(24))
    # POT: early 8 h + late 8 h = 57600 s. PDOT: break [10, 10.5) (the planned stop inside it is merged)
    # 1800 + maintenance inside the late shift [21, 22) 3600 = 5400. PBT = 57600 - 5400 = 52200.
    # APT: [6, 8) 2 h + [9, 10) 1 h + [10.5, 11) 0.5 h + [11.25, 14.5) 3.25 h + [15, 21) 6 h = 12.75 h = 45900
    # ASUT [8, 8.5) 1800; ADET [8.5, 9) + [14.5, 15) = 3600 in 2 failures; idle [11, 11.25) 900;
    # planned_down [21, 23) lies in PDOT and after the shift: 0. 45900 + 1800 + 3600 + 900 = 52200 = PBT.
    # counts in PBT: 9.5 h (175, 5) and 12.5 h (700, 20) at A's 20 s; 18 h (400, 10) and 20 h (180, 10)
    # at B's 30 s; 5 h is outside the shifts, 10.25 h in the break.
    # PQ = 180 + 720 + 410 + 190 = 1500, GQ = 1455, SQ = 45, PRI*PQ = 900*20 + 600*30 = 36000 s.
    # AOET: A's [6, 12) in PBT = 4 h + 1.5 h, B's [14, 21) 7 h: 12.5 h = 45000.
    # AUBT: producing + setup under A: 2 + 1 + 0.5 + 0.75 + 0.5 (setup) = 4.75 h; under B: 0.5 + 6 = 6.5 h;
    # 11.25 h = 40500.
    # reports A + B: RQ 15 + 15 = 30, first-pass good 860 + 580 = 1440.
    # energy: increases 10 + 180 + 20 + 180 + 20, NaN skipped, then 5 after the restart = 415 kWh * 0.5 = 207.5
    check(row, machine="m1", line="L1", bucket_start=h(0), bucket_end=h(24), shift=None,
          pot_s=57600, pdot_s=5400, pbt_s=52200, apt_s=45900, asut_s=1800, adet_s=3600, idle_s=900,
          planned_down_s=0, aoet_s=45000, aubt_s=40500, failures=2, pq=1500, gq=1455, sq=45, rq=30, fpg=1440,
          pri_pq_s=36000, unrated_parts=0, energy_kwh=207.5,
          availability=45900 / 52200, effectiveness=36000 / 45900, quality_rate=1455 / 1500,
          oee=45900 / 52200 * 36000 / 45900 * 1455 / 1500,  # = 36000 * 0.97 / 52200 = 0.66897
          setup_ratio=1800 / (45900 + 1800),  # AUST / AUPT, AUPT = APT + AUST
          technical_efficiency=45900 / (45900 + 3600), allocation_ratio=40500 / 45000,
          scrap_ratio=45 / 1500, rework_ratio=30 / 1500, first_pass_yield=1440 / 1500,
          energy_per_unit_kwh=207.5 / 1455, mtbf_s=45900 / 2, mttr_s=3600 / 2)


async def test_intervals_are_clipped_at_the_window_edges(plant):
    (row,) = await kpis(plant, machine="m1", start=h(7.5), end=h(10.75))
    # POT [7.5, 10.75) = 3.25 h = 11700, PDOT [10, 10.5) 1800, PBT 9900.
    # producing [5.5, 8) clipped to [7.5, 8) 1800 + [9, 10) 3600 + [10.5, 10.75) 900 = 6300;
    # setup 1800, unplanned [8.5, 9) 1800 (1 failure). Count 9.5 h (175, 5) at 20 s = 3600 s; 10.25 h is in
    # the break. No report in the window; the meter has no sample in it: 0 kWh.
    # AOET: A runs through all of PBT: 9900; AUBT 6300 + 1800 = 8100.
    check(row, pot_s=11700, pdot_s=1800, pbt_s=9900, apt_s=6300, asut_s=1800, adet_s=1800, failures=1,
          pq=180, gq=175, sq=5, pri_pq_s=3600, rq=None, fpg=None, energy_kwh=0, aoet_s=9900, aubt_s=8100,
          availability=6300 / 9900, effectiveness=3600 / 6300, quality_rate=175 / 180,
          allocation_ratio=8100 / 9900, rework_ratio=None, first_pass_yield=None, energy_per_unit_kwh=0,
          mtbf_s=6300 / 1, mttr_s=1800 / 1)

    (row,) = await kpis(plant, machine="m1", start=h(8.75), end=h(9.5))
    # the failure that began at 8.5 h counts, clipped to [8.75, 9) = 900; producing [9, 9.5) 1800;
    # the count stamped 9.5 h is at the (exclusive) end: PQ 0, so effectiveness 0 / 1800 = 0
    check(row, pot_s=2700, pbt_s=2700, apt_s=1800, adet_s=900, failures=1, pq=0, mtbf_s=1800, mttr_s=900,
          effectiveness=0, quality_rate=None, oee=None)


async def test_grouped_by_shift(plant):
    early, late = await kpis(plant, machine="m1", start=h(0), end=h(24), group="shift")
    # early [6, 14): PDOT 1800, PBT 27000; APT 2 + 1 + 0.5 + 2.75 h = 22500; ASUT 1800; ADET [8.5, 9) 1800;
    # idle 900; PQ 180 + 720 = 900 (GQ 875, SQ 25) at 20 s = 18000; report A; meter 1010 -> 1190: 90 kWh;
    # AOET [6, 10) + [10.5, 12) = 19800, AUBT 2 + 1 + 0.5 + 0.75 + 0.5 h = 17100
    check(early, shift="early", bucket_start=h(6), bucket_end=h(14), pot_s=28800, pdot_s=1800, pbt_s=27000,
          apt_s=22500, asut_s=1800, adet_s=1800, idle_s=900, failures=1, pq=900, gq=875, sq=25, pri_pq_s=18000,
          rq=15, fpg=860, energy_kwh=90, aoet_s=19800, aubt_s=17100,
          availability=22500 / 27000, effectiveness=18000 / 22500, quality_rate=875 / 900,
          oee=18000 / 27000 * 875 / 900, rework_ratio=15 / 900, first_pass_yield=860 / 900,
          energy_per_unit_kwh=90 / 875, mtbf_s=22500, mttr_s=1800)
    # late [14, 22): PDOT [21, 22) 3600, PBT 25200; APT [14, 14.5) + [15, 21) = 23400; ADET 1800;
    # PQ 410 + 190 = 600 (GQ 580, SQ 20) at 30 s = 18000; report B (first-pass = good 580);
    # meter 1210 -> 1390: 90 kWh; B runs all of PBT: AOET 25200, AUBT 23400
    check(late, shift="late", bucket_start=h(14), bucket_end=h(22), pot_s=28800, pdot_s=3600, pbt_s=25200,
          apt_s=23400, asut_s=0, adet_s=1800, failures=1, pq=600, gq=580, sq=20, pri_pq_s=18000, rq=15, fpg=580,
          energy_kwh=90, aoet_s=25200, aubt_s=23400,
          availability=23400 / 25200, effectiveness=18000 / 23400, quality_rate=580 / 600,
          oee=18000 / 25200 * 580 / 600, setup_ratio=0, first_pass_yield=580 / 600, energy_per_unit_kwh=90 / 580)


async def test_grouped_by_day(plant):
    day1, day2 = await kpis(plant, machine="m1", start=h(0), end=h(48), group="day")
    check(day1, bucket_start=h(0), bucket_end=h(24), pbt_s=52200, apt_s=45900, pq=1500, oee=36000 * 0.97 / 52200)
    # day 2: early [30, 38) 28800, no downtime; producing [30, 36) 21600, failure [36, 38) 7200;
    # 33 h (500, 0) at B's 30 s (B still runs) = 15000; no report; meter 10 -> 30: 10 kWh
    check(day2, bucket_start=h(24), bucket_end=h(48), pot_s=28800, pbt_s=28800, apt_s=21600, adet_s=7200,
          failures=1, pq=500, gq=500, pri_pq_s=15000, aoet_s=28800, aubt_s=21600, energy_kwh=10,
          availability=21600 / 28800, effectiveness=15000 / 21600, quality_rate=1, oee=15000 / 28800,
          rework_ratio=None, first_pass_yield=None, energy_per_unit_kwh=10 / 500, mtbf_s=21600, mttr_s=7200)


async def test_a_line_sums_its_machines_then_divides(plant):
    (row,) = await kpis(plant, line="L1", start=h(0), end=h(24))
    # m2: PBT [6, 22) 57600; APT 6 h + 9 h = 54000; ADET 3600 (1 failure); PQ 700 + 800 = 1500 (GQ 1490,
    # SQ 10) at C's 30 s = 45000; C runs all day: AOET 57600, AUBT 54000; report C: RQ 5, first-pass 1480.
    # L1 = m1 + m2: PBT 52200 + 57600 = 109800, APT 45900 + 54000 = 99900, ADET 7200 in 3 failures,
    # PQ 3000, GQ 2945, SQ 55, PRI*PQ 81000, AOET 102600, AUBT 94500, RQ 35, first-pass 2920.
    # m2 has no meter, so the line's energy is unknown (a part of it would understate kWh per unit).
    check(row, machine=None, line="L1", pot_s=115200, pdot_s=5400, pbt_s=109800, apt_s=99900, adet_s=7200,
          failures=3, pq=3000, gq=2945, sq=55, pri_pq_s=81000, aoet_s=102600, aubt_s=94500, rq=35, fpg=2920,
          energy_kwh=None, energy_per_unit_kwh=None,
          # the ratio of sums, not the mean of m1's 0.8793 and m2's 0.9375 (0.9084)
          availability=99900 / 109800, effectiveness=81000 / 99900, quality_rate=2945 / 3000,
          oee=81000 / 109800 * 2945 / 3000, technical_efficiency=99900 / (99900 + 7200),
          allocation_ratio=94500 / 102600, scrap_ratio=55 / 3000, rework_ratio=35 / 3000,
          first_pass_yield=2920 / 3000, mtbf_s=99900 / 3, mttr_s=7200 / 3)
    assert row.availability != pytest.approx((45900 / 52200 + 54000 / 57600) / 2, rel=1e-6)

    early, late = await kpis(plant, line="L1", start=h(0), end=h(24), group="shift")
    # early: m1 PBT 27000 + m2 28800; late: m1 25200 + m2 28800
    check(early, shift="early", machine=None, pbt_s=27000 + 28800)
    check(late, shift="late", machine=None, pbt_s=25200 + 28800)


async def test_no_calendar_plans_the_whole_window_and_the_open_interval_counts(plant):
    m3 = await _m3(plant)
    await plant.execute("INSERT INTO state_intervals VALUES (%s, 'producing', %s, %s)", (m3, h(0), h(1)))
    # the twin's current state: down since 1 h, still open (now is after the window)
    await plant.execute("INSERT INTO machine_status (machine_id, state, state_since) "
                        "VALUES (%s, 'unplanned_down', %s)", (m3, h(1)))
    (row,) = await kpis(plant, machine="m3", start=h(0), end=h(2))
    # L2 has no shifts and there is no plant calendar: POT = PBT = 2 h; APT 3600, open failure clipped 3600;
    # nothing counted: effectiveness 0 / 3600 = 0, quality 0 / 0 undefined, so OEE undefined
    check(row, pot_s=7200, pbt_s=7200, apt_s=3600, adet_s=3600, failures=1, availability=0.5, effectiveness=0,
          quality_rate=None, oee=None, technical_efficiency=0.5, mtbf_s=3600, mttr_s=3600)

    # a plant calendar (line '') applies to lines without their own: POT [0.5, 1.5) only
    await plant.execute("INSERT INTO shifts (name, line, start_ts, end_ts) VALUES ('day', '', %s, %s)",
                        (h(0.5), h(1.5)))
    (row,) = await kpis(plant, machine="m3", start=h(0), end=h(2))
    check(row, pot_s=3600, pbt_s=3600, apt_s=1800, adet_s=1800, failures=1, availability=0.5)
    (l1_row,) = await kpis(plant, machine="m1", start=h(0), end=h(24))
    check(l1_row, pot_s=57600)  # L1 keeps its own shifts


async def test_pri_falls_back_to_routings_and_is_otherwise_unknown(plant):
    m3 = await _m3(plant)
    await plant.execute("INSERT INTO state_intervals VALUES (%s, 'producing', %s, %s)", (m3, h(0), h(1)))
    await plant.execute("INSERT INTO part_counts VALUES (%s, %s, 100, 0)", (m3, h(0.5)))
    (row,) = await kpis(plant, machine="m3", start=h(0), end=h(1))
    # no operation and no routing: 100 parts without PRI, effectiveness unknown (not 0)
    check(row, unrated_parts=100, effectiveness=None, oee=None, quality_rate=1)

    cur = await plant.execute("SELECT id FROM products WHERE code = 'P1'")
    (product,) = await cur.fetchone()
    cur = await plant.execute("INSERT INTO routings (product_id, version) VALUES (%s, 1) RETURNING id", (product,))
    (routing,) = await cur.fetchone()
    ro_fast, ro_slow = await _ids(plant, "INSERT INTO routing_operations (routing_id, seq, name, cycle_s) "
                                         "VALUES (%s, %s, 'op', %s) RETURNING id", [(routing, 1, 12), (routing, 2, 18)])
    await plant.execute("INSERT INTO routing_operation_machines VALUES (%s, %s)", (ro_fast, m3))
    (row,) = await kpis(plant, machine="m3", start=h(0), end=h(1))
    # before any operation: the fastest routing m3 is eligible for, 12 s: 100 * 12 / 3600
    check(row, unrated_parts=0, pri_pq_s=1200, effectiveness=1200 / 3600)

    await plant.execute("INSERT INTO operations (work_order_id, seq, machine_id, routing_operation_id, status, "
                        "started_at) VALUES ('WO2', 2, %s, %s, 'running', %s)", (m3, ro_slow, h(0.25)))
    (row,) = await kpis(plant, machine="m3", start=h(0), end=h(1))
    # an operation without its own planned cycle takes its routing operation's: 18 s, 100 * 18 / 3600
    check(row, pri_pq_s=1800, effectiveness=0.5, aoet_s=2700, aubt_s=2700, allocation_ratio=1)


async def test_zero_denominators_give_none(plant):
    (row,) = await kpis(plant, machine="m3", start=h(-10), end=h(-9))
    # no calendar: PBT 3600 with no state at all: availability 0 / 3600 = 0, every other ratio 0 / 0
    check(row, pbt_s=3600, apt_s=0, availability=0, **{k: None for k in KPIS if k != "availability"})
    (row,) = await kpis(plant, machine="m1", start=h(48), end=h(72), group="day")
    # L1 has a calendar but no shift on day 3: POT 0, every ratio undefined
    check(row, pot_s=0, pbt_s=0, **{k: None for k in KPIS})


async def test_sql_functions_and_views_for_analysts(plant):
    cur = await plant.execute("SELECT oee, shift FROM kpi_machine('m1', %s, %s, 'shift')", (h(0), h(24)))
    assert [r[1] for r in await cur.fetchall()] == ["early", "late"]
    cur = await plant.execute("SELECT availability FROM kpi_line('L1', %s, %s)", (h(0), h(24)))
    assert (await cur.fetchone())[0] == pytest.approx(99900 / 109800)
    cur = await plant.execute("SELECT machine FROM kpi_machines_24h")
    assert sorted(r[0] for r in await cur.fetchall()) == ["m1", "m2", "m3"]
    cur = await plant.execute("SELECT line, machine FROM kpi_lines_24h")
    assert await cur.fetchall() == [("L1", None), ("L2", None)]
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown machine"):
        await plant.execute("SELECT * FROM kpi_machine('nope', %s, %s)", (h(0), h(1)))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="group_by"):
        await plant.execute("SELECT * FROM kpi_line('L1', %s, %s, 'week')", (h(0), h(1)))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="after"):
        await plant.execute("SELECT * FROM kpi_line('L1', %s, %s)", (h(1), h(1)))


@pytest.mark.parametrize(
    "kwargs, parameter",
    [({"machine": "m1", "line": "L1"}, "machine"), ({}, "machine"), ({"machine": "m1", "group": "week"}, "group"),
     ({"machine": "m1", "start": h(1), "end": h(0)}, "end"),
     ({"machine": "m1", "start": datetime(2026, 11, 20)}, "start")],
)
async def test_bad_arguments_name_the_parameter(conn, kwargs, parameter):
    args = {"start": h(0), "end": h(1)} | kwargs
    with pytest.raises(InvalidParameterError) as e:
        await kpis(conn, **args)
    assert e.value.parameter == parameter


async def test_unknown_machine_or_line(plant):
    with pytest.raises(UnknownScopeError, match="machine 'nope'"):
        await kpis(plant, machine="nope", start=h(0), end=h(1))
    with pytest.raises(UnknownScopeError, match="line 'L9'"):
        await kpis(plant, line="L9", start=h(0), end=h(1))


async def _m3(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT id FROM machines WHERE name = 'm3'")
    return (await cur.fetchone())[0]  # type: ignore[index]

"""`shopfloor schedule solve`: one JSON line, the schedule with --out, one-line errors naming file and line."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", "shopfloor.cli", "schedule", "solve", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_solve_ft06_prints_one_json_line_and_writes_the_schedule(data_dir, tmp_path):
    out = tmp_path / "ft06.json"
    r = run(data_dir / "ft06", "--time-limit", "10", "--workers", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert {k: line[k] for k in ("instance", "makespan", "status", "schedule_valid")} == {
        "instance": "ft06", "makespan": 55, "status": "OPTIMAL", "schedule_valid": True}
    assert line["bound"] == 55 and line["seconds"] >= 0
    saved = json.loads(out.read_text())
    assert len(saved["schedule"]) == 36 and max(p["end"] for p in saved["schedule"]) == 55


def test_reference_model_and_machines_from(data_dir, tmp_path):
    r = run(data_dir / "kacem4x5.fjs", "--time-limit", "5", "--reference")
    assert json.loads(r.stdout)["makespan"] == 11
    f = tmp_path / "zero.fjs"
    f.write_text("2 2\n2 1 0 3 1 1 2\n1 2 0 2 1 4\n")
    r = run(f, "--machines-from", "0", "--time-limit", "2")
    assert r.returncode == 0 and json.loads(r.stdout)["makespan"] == 5


def test_malformed_file_is_one_line_naming_file_and_line(tmp_path):
    f = tmp_path / "bad.fjs"
    f.write_text("2 2\n1 1 1 3\n1 1 two 2\n")
    r = run(f)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"shopfloor: {f}:3: 'two' is not an integer"]


def hard_fjs(n_jobs=30, n_ops=6, n_machines=8, seed=3):
    """A random flexible job shop that no solver finishes within seconds (its bound stays far below)."""
    import random

    rng = random.Random(seed)
    lines = [f"{n_jobs} {n_machines}"]
    for _ in range(n_jobs):
        row = [n_ops]
        for _ in range(n_ops):
            machines = rng.sample(range(1, n_machines + 1), rng.randint(1, 3))
            row.append(len(machines))
            for m in machines:
                row += [m, rng.randint(5, 50)]
        lines.append(" ".join(map(str, row)))
    return "\n".join(lines) + "\n"


def test_time_limit_and_workers_default_to_the_scheduling_table_and_flags_win(tmp_path):
    f = tmp_path / "hard.fjs"
    f.write_text(hard_fjs())
    config = tmp_path / "shopfloor.toml"
    config.write_text('[scheduling]\ntime_limit_s = 0.5\nworkers = 1\nobjective = "makespan,tardiness"\n')
    r = run(f, "--config", config)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout)
    assert line["schedule_valid"] and line["status"] == "FEASIBLE"
    assert line["seconds"] < 2.5  # the table's 0.5 s, not the CLI's own 10 s
    r = run(f, "--config", config, "--time-limit", "3")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["seconds"] >= 2.5  # the flag wins


def test_without_a_config_file_the_cli_keeps_its_defaults(data_dir, tmp_path):
    # no shopfloor.toml where it runs: 10 s and 2 workers at most; ft06 is proved optimal long before
    r = subprocess.run([sys.executable, "-m", "shopfloor.cli", "schedule", "solve", str(data_dir / "ft06")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["makespan"] == 55


def test_bad_scheduling_table_is_one_line_naming_its_line(data_dir, tmp_path):
    config = tmp_path / "shopfloor.toml"
    config.write_text('[scheduling]\ntime_limit_s = 5\ntrigger = "always"\n')
    r = run(data_dir / "ft06", "--config", config)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (f'shopfloor: config error: {config}:3: scheduling: trigger: must be "off" or '
                                "\"latest\", got 'always'")

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

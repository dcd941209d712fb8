"""`shopfloor evaluate`: anyone can score the committed models on held-out data, one JSON line each; bad input is named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support import has_full_set

from datasets import dataset_dir
from twin.model_card import load

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shopfloor.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def shopfloor(*args: str) -> dict:
    done = run(*args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


def test_evaluate_bearing_prints_confusion_recall_and_protocol():
    folder = dataset_dir("cwru-bearing")  # the full set, or the committed slices of the same files
    files = [folder / "Normal" / "Normal_0.mat", folder / "12k_DE" / "IR021_0.mat"]
    result = shopfloor("evaluate", "bearing", *map(str, files))
    assert result["model"] == "bearing" and len(result["sha256"]) == 64
    assert set(result["recall"]) == {"normal", "inner"} and result["classes"] == ["normal", "inner", "outer", "ball"]
    # both were trained on: only their held-out tails are scored, and the output says so
    assert result["n"] == sum(f["n"] for f in result["files"].values()) == sum(map(sum, result["confusion"]))
    assert all("held-out" in f["scored"] for f in result["files"].values())
    assert "held-out tail only" in result["protocol"]
    if has_full_set("cwru-bearing"):  # a slice's tail is not the recording's held-out tail the card scored
        card = load("bearing").card.metrics["within_recording_heldout"]["per_file"]
        assert result["files"]["IR021_0.mat"]["accuracy"] == pytest.approx(card["IR021_0.mat"])


def test_evaluate_rul_prints_true_and_capped_metrics_with_the_protocol(tmp_path):
    # three units of the FD001 test set (in the committed slice too), written out as a user's own file
    folder = dataset_dir("cmapss")
    test = np.loadtxt(folder / "test_FD001.txt")
    truth = np.loadtxt(folder / "RUL_FD001.txt")
    keep = np.isin(test[:, 0], [1, 2, 3])
    np.savetxt(tmp_path / "test.txt", test[keep], fmt="%.4f")
    np.savetxt(tmp_path / "rul.txt", truth[:3], fmt="%d")
    result = shopfloor("evaluate", "rul", "--subset", "FD001", "--test-file", str(tmp_path / "test.txt"),
                       "--rul-file", str(tmp_path / "rul.txt"))
    assert result["n"] == 3 and result["model"] == "rul_FD001" and result["cap"] == 125.0
    assert {"rmse", "score", "rmse_capped", "score_capped", "protocol"} <= set(result)
    assert "min(true RUL, cap" in result["protocol"]


def test_evaluate_failure_scores_the_untouched_test_split():
    result = shopfloor("evaluate", "failure")
    card = load("failure").card.metrics["test"]
    assert result["n"] == card["n"] and result["f1"] == pytest.approx(card["f1"])
    assert "untouched" in result["protocol"]


def _cmapss_line(unit: int, cycle: int, last: str = "0.5") -> str:
    return " ".join([str(unit), str(cycle), *["0.5"] * 23, last])


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Each case: the command's arguments and what its one error line must say."""
    ok = tmp_path / "ok.txt"
    ok.write_text(_cmapss_line(1, 1) + "\n" + _cmapss_line(2, 1) + "\n")
    rul2 = tmp_path / "rul2.txt"
    rul2.write_text("10\n20\n")
    rul3 = tmp_path / "rul3.txt"
    rul3.write_text("10\n20\n30\n")
    malformed = tmp_path / "malformed.txt"
    malformed.write_text(_cmapss_line(1, 1) + "\n1 2 0.5\n")
    nan = tmp_path / "nan.txt"
    nan.write_text(_cmapss_line(1, 1) + "\n" + _cmapss_line(1, 2, "NaN") + "\n")
    rulnan = tmp_path / "rulnan.txt"
    rulnan.write_text("10\nnan\n")
    corrupt = tmp_path / "IR007_0.mat"
    corrupt.write_bytes(b"\x00garbage, not a MATLAB file")
    import scipy.io

    short = tmp_path / "B007_0.mat"
    scipy.io.savemat(short, {"X118_DE_time": np.ones((500, 1)), "X118RPM": np.array([[1796.0]])})
    rul = ["evaluate", "rul", "--subset", "FD001", "--test-file"]
    return {
        "missing file": ([*rul, str(tmp_path / "none.txt"), "--rul-file", str(rul2)], "none.txt: no such file"),
        "malformed line": ([*rul, str(malformed), "--rul-file", str(rul2)], "malformed.txt: line 2: 3 fields, expected 26"),
        "nan": ([*rul, str(nan), "--rul-file", str(rul2)], "nan.txt: line 2: field 26: 'NaN' is not finite"),
        "nan in rul": ([*rul, str(ok), "--rul-file", str(rulnan)], "rulnan.txt: line 2: field 1: 'nan' is not finite"),
        "wrong rul length": ([*rul, str(ok), "--rul-file", str(rul3)], "rul3.txt: 3 RUL values for 2 units"),
        "corrupt mat": (["evaluate", "bearing", str(corrupt)], "IR007_0.mat: not a readable MATLAB .mat file"),
        "short signal": (["evaluate", "bearing", str(short)], "B007_0.mat: X118_DE_time has 500 samples, too short"),
        "bad name": (["evaluate", "bearing", str(tmp_path / "x.mat")], "x.mat: not a standard CWRU name"),
    }


@pytest.mark.parametrize("case", ["missing file", "malformed line", "nan", "nan in rul", "wrong rul length",
                                  "corrupt mat", "short signal", "bad name"])
def test_bad_input_ends_with_one_line_naming_it(bad_inputs, case, capsys):
    from shopfloor.cli import main

    args, says = bad_inputs[case]
    # in process, so an escaping exception would fail the test with its traceback
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert says in lines[0] and out == ""


def test_bad_input_from_the_console_has_no_traceback(tmp_path):
    done = run("evaluate", "rul", "--subset", "FD001", "--test-file", str(tmp_path / "none.txt"),
               "--rul-file", str(tmp_path / "none.txt"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"shopfloor evaluate rul: {tmp_path / 'none.txt'}: no such file"

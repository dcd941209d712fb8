"""Instance files: both formats read, and every malformed line is named by file and line."""

import pytest

from scheduling.parsers import InstanceFormatError, load_instance, parse_fjs, parse_orlib


def test_orlib_ft06(data_dir):
    inst = load_instance(data_dir / "ft06")
    assert (len(inst.jobs), inst.n_machines) == (6, 6)
    # first job of ft06: machine 2 for 1, machine 0 for 3, ...
    first = inst.jobs[0].operations
    assert [(op.alternatives[0].machine, op.alternatives[0].duration) for op in first[:2]] == [(2, 1), (0, 3)]


def test_fjs_mk01(data_dir):
    inst = load_instance(data_dir / "Mk01.fjs")
    assert (len(inst.jobs), inst.n_machines) == (10, 6)
    assert sum(len(j.operations) for j in inst.jobs) == 55
    op = inst.jobs[0].operations[0]
    assert [(a.machine, a.duration) for a in op.alternatives] == [(0, 5), (2, 4)]


def test_machines_from_zero(tmp_path):
    f = tmp_path / "zero.fjs"
    f.write_text("1 2\n2 1 0 3 2 0 1 1 2\n")
    inst = parse_fjs(f, machines_from=0)
    assert [[(a.machine, a.duration) for a in op.alternatives] for op in inst.jobs[0].operations] == [[(0, 3)], [(0, 1), (1, 2)]]
    with pytest.raises(InstanceFormatError, match=r"zero.fjs:2: machine 0 outside 1..2"):
        parse_fjs(f, machines_from=1)


@pytest.mark.parametrize("text, where, what", [
    ("2 2\n1 1 1 3\n1 x 2 2\n", 3, "'x' is not an integer"),
    ("2 2\n1 1 1 3\n", 2, "header says 2 jobs"),
    ("2 2\n1 1 1 3\n2 1 1 4\n", 3, "ends after 1 of 2 operations"),
    ("1 2\n1 2 1 3\n", 2, "needs 2 machine/time pairs"),
    ("1 2\n1 1 1 3 7\n", 2, "numbers after its last operation"),
    ("1 2\n1 1 1 -3\n", 2, "negative processing time"),
    ("1\n", 1, "header needs"),
    ("1 2\n1 2 1 3 1 4\n", 2, "lists a machine twice"),
    ("1 2\n1 1 1 3\n1 1 2 2\n", 3, "unexpected line"),
])
def test_malformed_fjs_names_file_and_line(tmp_path, text, where, what):
    f = tmp_path / "bad.fjs"
    f.write_text(text)
    with pytest.raises(InstanceFormatError) as e:
        load_instance(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:{where}: ") and what in msg and "\n" not in msg


def test_malformed_orlib_names_line(tmp_path):
    f = tmp_path / "bad"
    f.write_text("# comment\n2 2\n0 3 1 2\n0 3 1\n")
    with pytest.raises(InstanceFormatError, match=r"bad:4: job 2 needs 4 numbers"):
        parse_orlib(f)


def test_missing_file(tmp_path):
    with pytest.raises(InstanceFormatError, match="no such file"):
        load_instance(tmp_path / "nope.fjs")

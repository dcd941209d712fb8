"""Instance files: the classic flexible job-shop `.fjs` format and OR-Library job-shop files.

A malformed file raises InstanceFormatError whose message is one line naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

from scheduling.model import Alternative, Instance, Job, Operation


class InstanceFormatError(ValueError):
    """A malformed instance file; the message is `file:line: problem`."""


def _ints(path: Path, lineno: int, text: str) -> list[int]:
    try:
        return [int(t) for t in text.split()]
    except ValueError:
        bad = next(t for t in text.split() if not t.lstrip("-").isdigit())
        raise InstanceFormatError(f"{path}:{lineno}: {bad!r} is not an integer") from None


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank, non-comment lines with their 1-based line numbers."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InstanceFormatError(f"{path}:1: not a text file") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def _machine(path: Path, lineno: int, raw: int, base: int, n_machines: int) -> int:
    m = raw - base
    if not 0 <= m < n_machines:
        raise InstanceFormatError(f"{path}:{lineno}: machine {raw} outside {base}..{n_machines - 1 + base} "
                                  f"(machines numbered from {base}; see --machines-from)")
    return m


def _duration(path: Path, lineno: int, value: int) -> int:
    if value < 0:
        raise InstanceFormatError(f"{path}:{lineno}: negative processing time {value}")
    return value


def _header(path: Path, lines: list[tuple[int, str]]) -> tuple[int, int]:
    if not lines:
        raise InstanceFormatError(f"{path}:1: empty file")
    lineno, text = lines[0]
    parts = text.split()
    if len(parts) < 2:
        raise InstanceFormatError(f"{path}:{lineno}: header needs '<jobs> <machines>', got {text!r}")
    n, m = _ints(path, lineno, " ".join(parts[:2]))
    if n <= 0 or m <= 0:
        raise InstanceFormatError(f"{path}:{lineno}: jobs and machines must be positive, got {n} {m}")
    return n, m


def parse_fjs(path: str | Path, machines_from: int = 1) -> Instance:
    """Read a `.fjs` file: `<jobs> <machines> [avg]`, then per job `<ops>` and per op `<k> (<machine> <time>){k}`."""
    path = Path(path)
    lines = _lines(path)
    n, m = _header(path, lines)
    if len(lines) - 1 < n:
        last = lines[-1][0]
        raise InstanceFormatError(f"{path}:{last}: header says {n} jobs, file has {len(lines) - 1} job lines")
    jobs = []
    for j, (lineno, text) in enumerate(lines[1:n + 1]):
        tokens = _ints(path, lineno, text)
        if not tokens or tokens[0] <= 0:
            raise InstanceFormatError(f"{path}:{lineno}: job line must start with its number of operations")
        pos, ops = 1, []
        for o in range(tokens[0]):
            if pos >= len(tokens):
                raise InstanceFormatError(f"{path}:{lineno}: job {j + 1} ends after {o} of {tokens[0]} operations")
            k = tokens[pos]
            pairs = tokens[pos + 1:pos + 1 + 2 * k]
            if k <= 0 or len(pairs) < 2 * k:
                raise InstanceFormatError(f"{path}:{lineno}: job {j + 1} operation {o + 1}: "
                                          f"needs {max(k, 1)} machine/time pairs")
            alts = [Alternative(_machine(path, lineno, pairs[i], machines_from, m), _duration(path, lineno, pairs[i + 1]))
                    for i in range(0, 2 * k, 2)]
            if len({a.machine for a in alts}) != len(alts):
                raise InstanceFormatError(f"{path}:{lineno}: job {j + 1} operation {o + 1} lists a machine twice")
            ops.append(Operation(alts, name=f"op{o + 1}"))
            pos += 1 + 2 * k
        if pos != len(tokens):
            raise InstanceFormatError(f"{path}:{lineno}: job {j + 1}: {len(tokens) - pos} numbers after its last operation")
        jobs.append(Job(f"job{j + 1}", ops))
    if len(lines) > n + 1:
        raise InstanceFormatError(f"{path}:{lines[n + 1][0]}: unexpected line after {n} jobs")
    return Instance(path.stem, [f"M{i + machines_from}" for i in range(m)], jobs)


def parse_orlib(path: str | Path, machines_from: int = 0) -> Instance:
    """Read an OR-Library job-shop file: `#` comments, `<jobs> <machines>`, then per job m `<machine> <time>` pairs."""
    path = Path(path)
    lines = _lines(path)
    n, m = _header(path, lines)
    if len(lines) - 1 < n:
        raise InstanceFormatError(f"{path}:{lines[-1][0]}: header says {n} jobs, file has {len(lines) - 1} job lines")
    jobs = []
    for j, (lineno, text) in enumerate(lines[1:n + 1]):
        tokens = _ints(path, lineno, text)
        if len(tokens) != 2 * m:
            raise InstanceFormatError(f"{path}:{lineno}: job {j + 1} needs {2 * m} numbers ({m} machine/time pairs), "
                                      f"got {len(tokens)}")
        ops = [Operation([Alternative(_machine(path, lineno, tokens[i], machines_from, m),
                                      _duration(path, lineno, tokens[i + 1]))], name=f"op{i // 2 + 1}")
               for i in range(0, 2 * m, 2)]
        jobs.append(Job(f"job{j + 1}", ops))
    if len(lines) > n + 1:
        raise InstanceFormatError(f"{path}:{lines[n + 1][0]}: unexpected line after {n} jobs")
    return Instance(path.stem, [f"M{i + machines_from}" for i in range(m)], jobs)


def looks_like_orlib(path: Path) -> bool:
    """Whether a file reads as OR-Library job shop: every job line holds exactly 2 x machines numbers."""
    lines = _lines(path)
    try:
        n, m = (int(t) for t in lines[0][1].split()[:2])
        return len(lines) >= n + 1 and all(len(t.split()) == 2 * m for _, t in lines[1:n + 1]) \
            and len(lines[0][1].split()) == 2
    except (ValueError, IndexError):
        return False


def load_instance(path: str | Path, machines_from: int | None = None) -> Instance:
    """Read either format: `.fjs` files as flexible job shop, others by their shape (OR-Library if it fits)."""
    path = Path(path)
    if not path.is_file():
        raise InstanceFormatError(f"{path}:0: no such file")
    if path.suffix.lower() != ".fjs" and looks_like_orlib(path):
        return parse_orlib(path, 0 if machines_from is None else machines_from)
    return parse_fjs(path, 1 if machines_from is None else machines_from)

"""`shopfloor schedule solve FILE`: solve an instance file and print one JSON line (the schedule with --out).
Time limit, workers and objective default to the [scheduling] table of the shopfloor.toml the CLI loaded."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scheduling.config import SchedulingConfig


def add_commands(sub: Any) -> None:
    """Register `schedule solve` on the top-level subparsers."""
    schedule = sub.add_parser("schedule", help="production scheduling").add_subparsers(dest="schedule_command", required=True)
    solve = schedule.add_parser("solve", help=cmd_solve.__doc__)
    solve.add_argument("file", type=Path, help=".fjs (Brandimarte, Hurink, Barnes, Dauzere-Peres) or OR-Library job-shop file")
    solve.add_argument("--time-limit", type=float, default=None,
                       help="seconds (default: [scheduling] time_limit_s of shopfloor.toml, else 10)")
    solve.add_argument("--workers", type=int, default=None,
                       help="CP-SAT threads (default: [scheduling] workers of shopfloor.toml, else 2)")
    solve.add_argument("--machines-from", type=int, choices=[0, 1], default=None,
                       help="first machine number in the file (default: 1 for .fjs, 0 for OR-Library)")
    solve.add_argument("--reference", action="store_true", help="the plain CP-SAT model instead of Shopfloor's solver")
    solve.add_argument("--out", type=Path, help="write the schedule here as JSON")
    solve.set_defaults(func=cmd_solve)


def schedule_json(instance: Any, schedule: Any) -> list[dict[str, Any]]:
    """Placements as JSON rows: job, op, machine (names), start, end, setup."""
    return [{"job": instance.jobs[p.job].name, "op": p.op + 1, "machine": instance.machines[p.machine],
             "start": p.start, "end": p.end, "setup": p.setup} for p in schedule.placements]


def objective_for(instance: Any, table: SchedulingConfig) -> str:
    """The table's objective, or makespan when no job has a due date (tardiness is then zero for any schedule)."""
    # the instance formats carry no due dates: `weighted` or a lexicographic pair would come down to makespan
    # anyway, but only the plain makespan objective gets the tabu search (scheduling/README.md)
    return table.objective if any(j.due is not None for j in instance.jobs) else "makespan"


def cmd_solve(args: argparse.Namespace, config: Any = None) -> int:
    """Solve a flexible or classic job-shop instance file (for makespan) and print one JSON line."""
    from scheduling.cpsat import Objective
    from scheduling.parsers import InstanceFormatError, load_instance
    from scheduling.reference import solve_reference
    from scheduling.solver import solve, solve_lex
    from scheduling.validate import violations

    # `config` is the loaded shopfloor.toml (its defaults when there is none); an explicit flag wins
    table: SchedulingConfig = config.scheduling if config is not None else SchedulingConfig()
    time_limit = args.time_limit if args.time_limit is not None else table.time_limit_s
    workers = args.workers if args.workers is not None else table.workers
    if time_limit <= 0 or workers <= 0:
        print("shopfloor: --time-limit and --workers must be positive", file=sys.stderr)
        return 2
    try:
        instance = load_instance(args.file, args.machines_from)
    except InstanceFormatError as e:
        print(f"shopfloor: {e}", file=sys.stderr)
        return 2
    objective = objective_for(instance, table)
    if args.reference:
        result = solve_reference(instance, time_limit, workers)
    elif "," in objective:
        first, second = objective.split(",")
        result, _ = solve_lex(instance, (first, second), time_limit, workers, tolerance=table.lexicographic_tolerance)
    else:
        result = solve(instance, time_limit, workers, objective=Objective(objective))
    problems = violations(instance, result.schedule) if result.schedule is not None else ["no schedule"]
    line = {"instance": instance.name, "makespan": result.schedule.makespan() if result.schedule else None,
            "bound": result.bound, "status": result.status, "seconds": round(result.seconds, 3),
            "schedule_valid": not problems}
    if problems and result.schedule is not None:
        line["violations"] = problems[:5]
    if args.out and result.schedule is not None:
        args.out.write_text(json.dumps({**line, "schedule": schedule_json(instance, result.schedule)}, indent=1))
    print(json.dumps(line))
    return 0 if not problems else 1

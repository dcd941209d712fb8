"""`shopfloor data fetch [SET...]`: the full public data sets from their publishers, sha256-checked.

Into $SHOPFLOOR_DATA, else the user data folder (datasets.user_data_dir()), where training, evaluation
and the tests find them. A set that cannot be downloaded ends the command with one line naming it and
where to get it by hand, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shopfloor.config import Config


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `data fetch` on the top-level parser's subcommands."""
    from datasets.catalog import SETS

    data = sub.add_parser("data", help="the public data sets").add_subparsers(dest="data_command", required=True)
    fetch = data.add_parser("fetch", help=cmd_fetch.__doc__)
    fetch.add_argument("sets", nargs="*", metavar="SET",
                       help=f"one or more of {', '.join(SETS)} (default: all)")
    fetch.add_argument("--dest", type=Path, help="target folder (default: $SHOPFLOOR_DATA, else the user data folder)")
    fetch.add_argument("--mirror", help="a base URL serving <set>/<file name> in place of the publishers")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace, config: Config) -> int:
    """Download the full public data sets with checksums (default: all of them)."""
    from datasets import user_data_dir
    from datasets.catalog import SETS
    from datasets.fetch import FetchError, fetch_set

    dest = args.dest or (Path(os.environ["SHOPFLOOR_DATA"]) if os.environ.get("SHOPFLOOR_DATA") else user_data_dir())
    unknown = [n for n in args.sets if n not in SETS]
    if unknown:
        print(f"shopfloor data fetch: unknown set {unknown[0]!r}; known: {', '.join(SETS)}", file=sys.stderr)
        return 2
    for name in args.sets or list(SETS):
        try:
            folder = fetch_set(name, dest, mirror=args.mirror, progress=not args.quiet)
        except FetchError as e:
            print(f"shopfloor data fetch: {e}", file=sys.stderr)
            return 2
        print(f"{name}: {folder}")
    return 0

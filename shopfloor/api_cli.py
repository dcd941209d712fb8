"""`shopfloor keys create|list|revoke|hash`, `shopfloor serve` as [api] says, and the CLI's common frame:
options after the subcommand, `--version`, and user errors as one line with exit code 2."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

_COMMON = ("--config", "--dsn", "-v")


class UserError(Exception):
    """Bad input from the user (a file, a line, a field): shown as one line, exit code 2, no traceback."""


def shopfloor_version() -> str:
    """The installed package's version."""
    try:
        return version("shopfloor")
    except PackageNotFoundError:
        return "unknown"


def frame(parser: argparse.ArgumentParser) -> None:
    """Accept --config, --dsn and -v after any subcommand too (`shopfloor demo -v`), and add --version."""
    parser.add_argument("--version", action="version", version=f"shopfloor {shopfloor_version()}")

    def add(p: argparse.ArgumentParser) -> None:
        for action in p._actions:  # noqa: SLF001 - argparse exposes its subparsers only this way
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for child in action.choices.values():
                    add(child)
        if p is parser:
            return
        taken = {s for a in p._actions for s in a.option_strings}  # noqa: SLF001
        if "--config" not in taken:
            p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="shopfloor.toml")
        if "--dsn" not in taken:
            p.add_argument("--dsn", default=argparse.SUPPRESS, help="historian database URI")
        if "-v" not in taken and "--verbose" not in taken:
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log at INFO")

    add(parser)


def run_guarded(func: Callable[[], int]) -> int:
    """Run a command; a user error ends as one line on stderr naming the file or field, exit code 2."""
    from psycopg import OperationalError

    from historian.errors import InvalidParameterError

    try:
        return func()
    except UserError as e:
        print(f"shopfloor: {e}", file=sys.stderr)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        print(f"shopfloor: {e.filename}: {e.strerror}", file=sys.stderr)
    except InvalidParameterError as e:
        print(f"shopfloor: {e.parameter}: {e.problem}", file=sys.stderr)
    except OperationalError as e:  # not the user's input, but no traceback either
        print(f"shopfloor: database: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 2


def serve(app: Any, api: Any) -> None:
    """Run the API as `[api]` says: host, port, TLS, and a drain of `drain_timeout` s on SIGTERM/Ctrl-C."""
    import logging

    import uvicorn

    from api.observe import RequestIdFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    tls = {"ssl_certfile": api.certfile, "ssl_keyfile": api.keyfile} if api.certfile else {}
    uvicorn.run(app, host=api.host, port=api.port, log_level="warning", server_header=False,
                timeout_graceful_shutdown=int(api.drain_timeout) or 1, proxy_headers=False, **tls)


def _expires(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--expires: {text!r} is not an ISO 8601 time such as 2027-01-01T00:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def cmd_keys(args: argparse.Namespace, dsn: str) -> int:
    """Create, list or revoke API keys in the database, or print the argon2id hash of a key for shopfloor.toml."""
    from api import keys
    from api.config import ApiUser
    from historian.db import connect

    if args.keys_command == "hash":
        key = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass("key: ")
        if len(key) < 16:
            raise UserError("key: API keys need at least 16 characters")
        key_id = keys.key_id_of(key)
        if key_id is not None and not key_id.isdigit():
            try:
                ApiUser(name="-", key_id=key_id, key_hash="$argon2id$")  # checks the id's form, naming key_id
            except ValueError as e:
                raise UserError(str(e).replace(" (user '-')", "")) from None
            print(f'key_id = "{key_id}"')
        else:
            print("(no key id: every key without one then costs a verification; prefer sf_<id>_<secret>, "
                  "id a lowercase word)", file=sys.stderr)
        print(f'key_hash = "{keys.hash_key(key)}"')
        return 0

    expires = _expires(args.expires) if args.keys_command == "create" else None

    async def go() -> int:
        conn = await connect(dsn)
        try:
            if args.keys_command == "create":
                key = await keys.create(conn, args.name, args.role, expires)
                print(key)
                print(f"(key {args.name!r}, role {args.role}: shown once, only its hash is stored)", file=sys.stderr)
            elif args.keys_command == "list":
                for row in await keys.listing(conn):
                    print(json.dumps({k: (v.isoformat() if isinstance(v, datetime) else v)
                                      for k, v in row.__dict__.items()}))
            else:
                await keys.revoke(conn, args.name)
                print(f"revoked {args.name!r} (refused by every server within {keys.RECHECK_S:g} s)")
        except keys.KeyError_ as e:
            raise UserError(str(e)) from None
        finally:
            await conn.close()
        return 0

    return asyncio.run(go())


def add_commands(sub: Any, dsn_of: Callable[[argparse.Namespace, Any], str]) -> None:
    """Register `keys` on the CLI's subparsers."""
    from api.config import ROLES

    keys = sub.add_parser("keys", help=cmd_keys.__doc__).add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="make a key, print it once, store its argon2id hash")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--expires", help="ISO 8601 time after which the key stops working")
    keys.add_parser("list", help="every key: name, role, created, expires, revoked, last used (never the key)")
    revoke = keys.add_parser("revoke", help="stop a key now (every server within seconds)")
    revoke.add_argument("name")
    keys.add_parser("hash", help="key_id and argon2id key_hash of a key sf_<id>_<secret> read from stdin, "
                                 "for an [[api.users]] entry")
    for p in keys.choices.values():
        p.set_defaults(func=lambda args, config: cmd_keys(args, dsn_of(args, config)
                                                          if args.keys_command != "hash" else ""))

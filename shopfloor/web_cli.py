"""`shopfloor users create|list|disable|unlock`: the people who sign in to the command center."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import datetime
from typing import Any, Callable

from shopfloor.api_cli import UserError


def _password() -> str:
    """The new password: from stdin when piped (scripts), else asked twice without echo."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("password: the two entries differ")
    return first


def cmd_users(args: argparse.Namespace, dsn: str) -> int:
    """Create, list, disable or unlock command-center users (argon2id password hashes, the API keys' roles)."""
    from historian.db import connect
    from web import users

    password = _password() if args.users_command == "create" else ""

    async def go() -> int:
        conn = await connect(dsn)
        try:
            if args.users_command == "create":
                await users.create(conn, args.name, args.role, password)
                print(f"created {args.name!r} with role {args.role} (only the password's argon2id hash is stored)")
            elif args.users_command == "list":
                for row in await users.listing(conn):
                    print(json.dumps({k: (v.isoformat() if isinstance(v, datetime) else v)
                                      for k, v in row.__dict__.items()}))
            elif args.users_command == "disable":
                await users.disable(conn, args.name)
                print(f"disabled {args.name!r}; their sessions ended")
            else:
                await users.unlock(conn, args.name)
                print(f"unlocked {args.name!r}")
        except users.UserError as e:
            raise UserError(str(e)) from None
        finally:
            await conn.close()
        return 0

    return asyncio.run(go())


def add_commands(sub: Any, dsn_of: Callable[[argparse.Namespace, Any], str]) -> None:
    """Register `users` on the CLI's subparsers."""
    from api.config import ROLES

    users = sub.add_parser("users", help=cmd_users.__doc__).add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="add a user; the password is read from stdin or asked for")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    users.add_parser("list", help="every user: role, created, disabled, failures, locked until, last sign-in")
    for name, text in (("disable", "disable a user and end their sessions"), ("unlock", "lift a lockout")):
        users.add_parser(name, help=text).add_argument("name")
    for p in users.choices.values():
        p.set_defaults(func=lambda args, config: cmd_users(args, dsn_of(args, config)))

"""``rag user add|remove|list|logout|migrate``: who may log in to the app."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings
from rag.errors import RagError

if TYPE_CHECKING:
    from rag.library.access import Access


def _add_user(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("user", help="manage who may log in to the app")
    user_sub = p.add_subparsers(dest="action", required=True)
    p = user_sub.add_parser(
        "add", parents=[common], help="add a user or set a new password (asked, or read from stdin)"
    )
    p.add_argument("name")
    p.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="GROUP",
        help="also put the user in this group; repeatable",
    )
    p.set_defaults(run=cmd_user_add)
    for action, run, what in (
        ("join", cmd_user_join, "put a user in a group (its libraries, from the next question)"),
        ("leave", cmd_user_leave, "take a user out of a group, from the next question"),
    ):
        p = user_sub.add_parser(action, parents=[common], help=what)
        p.add_argument("name")
        p.add_argument("group")
        p.set_defaults(run=run)
    p = user_sub.add_parser(
        "migrate",
        parents=[common],
        help="copy this machine's users, keys and library rights into RAG_DATABASE_URL's "
        "PostgreSQL (shared by every replica); the files are kept as *.copied",
    )
    p.set_defaults(run=cmd_user_migrate)
    p = user_sub.add_parser("remove", parents=[common], help="remove a user")
    p.add_argument("name")
    p.set_defaults(run=cmd_user_remove)
    p = user_sub.add_parser("list", parents=[common], help="list the users")
    p.set_defaults(run=cmd_user_list)
    p = user_sub.add_parser(
        "logout", parents=[common], help="end every session of a user, in every running app"
    )
    p.add_argument("name")
    p.set_defaults(run=cmd_user_logout)


def _read_password() -> str:
    """Asked twice on a terminal; otherwise the first line of stdin (for scripts)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise RagError("The two passwords differ; nothing changed.")
    return first


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from rag.web.users import Users

    users = Users.of(settings)
    new = users.add(args.name, _read_password())
    print(f"{'Added' if new else 'Changed the password of'} {args.name} ({users.where}).")
    for group in args.groups:
        _access(settings).join(args.name, group)
        print(f"{args.name} is in the group {group}.")
    return 0


def _access(settings: Settings) -> Access:
    from rag.library.access import Access

    return Access.of(settings)


def cmd_user_join(args: argparse.Namespace, settings: Settings) -> int:
    _access(settings).join(args.name, args.group)
    print(f"{args.name} is in the group {args.group}.")
    return 0


def cmd_user_leave(args: argparse.Namespace, settings: Settings) -> int:
    if _access(settings).leave(args.name, args.group):
        print(f"{args.name} left the group {args.group}.")
        return 0
    print(f"{args.name} was not in the group {args.group}.")
    return 1


def cmd_user_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from rag import private_db
    from rag.library import access
    from rag.web import users

    url = private_db.shared_database(settings.database_url)
    if url is None:
        raise RagError(
            "`rag user migrate` copies into PostgreSQL: set RAG_DATABASE_URL to it first."
        )
    records = (
        (users.users_path(settings), users.RECORD),
        (access.access_path(settings), access.TABLES),
    )
    for path, tables in records:
        if not path.exists():
            print(f"Nothing to copy from {path} (no such file).")
            continue
        kept = private_db.copy_file(path, tables, private_db.PostgresTables(url, tables))
        print(f"Copied {path} into PostgreSQL; the file is now {path.name}.copied.")
        for row in kept:
            print(f"  kept as PostgreSQL has it (this file's differs): {row}")
    return 0


def cmd_user_remove(args: argparse.Namespace, settings: Settings) -> int:
    from rag.web.users import Users

    if Users.of(settings).remove(args.name):
        print(f"Removed {args.name}.")
        return 0
    print(f"There is no user {args.name}.", file=sys.stderr)
    return 1


def cmd_user_list(args: argparse.Namespace, settings: Settings) -> int:
    from rag.web.users import Users

    for name in Users.of(settings).names():
        print(name)
    return 0


def cmd_user_logout(args: argparse.Namespace, settings: Settings) -> int:
    from rag.web.users import Users

    Users.of(settings).logout(args.name)
    print(f"Every session of {args.name} has ended; the next request logs in again.")
    return 0


COMMANDS: dict[str, AddCommand] = {
    "user": _add_user,
}

"""``rag library create|list|delete|grant|revoke`` and ``rag key create|list|revoke``:
who may read and add to which library, and the API keys of ``rag serve`` (#24)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings
from rag.errors import RagError

if TYPE_CHECKING:
    from rag.library.access import Access
    from rag.web.keys import Keys


def _add_library(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("library", help="libraries and who may read or add to them")
    lib_sub = p.add_subparsers(dest="action", required=True)
    p = lib_sub.add_parser("create", parents=[common], help="make a library (nobody reads it yet)")
    p.add_argument("name")
    p.set_defaults(run=cmd_library_create)
    p = lib_sub.add_parser("list", parents=[common], help="the libraries and their members")
    p.set_defaults(run=cmd_library_list)
    p = lib_sub.add_parser(
        "delete", parents=[common], help="delete a library with its documents and rights"
    )
    p.add_argument("name")
    p.set_defaults(run=cmd_library_delete)
    for action, run, what in (
        ("grant", cmd_library_grant, "let a user or @GROUP read or write (add to) a library"),
        ("revoke", cmd_library_revoke, "take a right back; read takes both"),
    ):
        p = lib_sub.add_parser(action, parents=[common], help=what)
        p.add_argument("name")
        p.add_argument("who", metavar="USER|@GROUP")
        p.add_argument("right", choices=["read", "write"])
        p.set_defaults(run=run)


def _access(settings: Settings) -> Access:
    from rag.library.access import Access

    return Access.of(settings)


def cmd_library_create(args: argparse.Namespace, settings: Settings) -> int:
    new = _access(settings).create(args.name)
    print(
        f"Made the library {args.name}; `rag library grant {args.name} USER|@GROUP read` "
        "lets someone read it."
        if new
        else f"The library {args.name} exists already."
    )
    return 0


def cmd_library_list(args: argparse.Namespace, settings: Settings) -> int:
    access = _access(settings)
    names = access.libraries()
    if settings.collection not in names:
        print(f"{settings.collection}  (the default collection: every user reads it)")
    for name in names:
        members = ", ".join(f"{who} {can}" for who, can in access.members(name).items())
        print(f"{name}  {members or '(nobody but the machine account)'}")
    return 0


def cmd_library_delete(args: argparse.Namespace, settings: Settings) -> int:
    from rag.cli.library import _store

    access = _access(settings)
    if args.name not in access.libraries():
        raise RagError(f"There is no library {args.name!r}; `rag library list` shows them.")
    access.delete(args.name)  # first: nobody reads it while its documents go
    store = _store(settings.with_overrides(collection=args.name))
    try:
        sources = list(store.documents())
        store.remove(sources)
    finally:
        store.close()
    print(f"Deleted the library {args.name} and its {len(sources)} document(s).")
    return 0


def cmd_library_grant(args: argparse.Namespace, settings: Settings) -> int:
    _access(settings).grant(args.name, args.who, args.right)
    print(f"{args.who} may {args.right} {args.name}, from the next question on.")
    return 0


def cmd_library_revoke(args: argparse.Namespace, settings: Settings) -> int:
    if _access(settings).revoke(args.name, args.who, args.right):
        print(f"{args.who} may no longer {args.right} {args.name}, from the next question on.")
        return 0
    print(f"{args.who} had no {args.right} right on {args.name}.")
    return 1


def _add_key(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("key", help="API keys of rag serve, per user")
    key_sub = p.add_subparsers(dest="action", required=True)
    p = key_sub.add_parser("create", parents=[common], help="make a key (printed once)")
    p.add_argument("user")
    p.add_argument(
        "--library",
        dest="libraries",
        action="append",
        metavar="NAME",
        help="the key reads only this library; repeatable (default: all the user may read)",
    )
    p.add_argument("--expires", type=float, metavar="DAYS", help="the key ends after DAYS")
    p.set_defaults(run=cmd_key_create)
    p = key_sub.add_parser("list", parents=[common], help="the keys (never their text)")
    p.set_defaults(run=cmd_key_list)
    p = key_sub.add_parser("revoke", parents=[common], help="end a key, at once")
    p.add_argument("id", help="the key's id (`rag key list`) or the key itself")
    p.set_defaults(run=cmd_key_revoke)


def _keys(settings: Settings) -> Keys:
    from rag.web.keys import Keys

    return Keys.of(settings)


def cmd_key_create(args: argparse.Namespace, settings: Settings) -> int:
    key = _keys(settings).create(args.user, args.libraries, args.expires)
    print(key)
    print("This key is shown once: give it to its user now.", flush=True)
    return 0


def cmd_key_list(args: argparse.Namespace, settings: Settings) -> int:
    for k in _keys(settings).list():
        ends = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.expires)) if k.expires else "never"
        libraries = ",".join(k.libraries) if k.libraries is not None else "(all the user reads)"
        print(f"{k.id}  {k.user}  {libraries}  expires {ends}")
    return 0


def cmd_key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    if _keys(settings).revoke(args.id):
        print("Revoked: the next request with this key is refused.")
        return 0
    print(f"There is no key {args.id!r}.")
    return 1


COMMANDS: dict[str, AddCommand] = {
    "library": _add_library,
    "key": _add_key,
}

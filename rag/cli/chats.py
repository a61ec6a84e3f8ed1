"""``rag chats list|export|delete``: the stored chats, without a library or a model."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings

if TYPE_CHECKING:
    from rag.conversations.stored_chats import Conversations

T = TypeVar("T")


def _add_chats(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("chats", parents=[common], help="stored chats: list, export, delete")
    chats_sub = p.add_subparsers(dest="action", required=True)
    p = chats_sub.add_parser("list", parents=[common], help="stored chats, newest first")
    p.add_argument("--user", default=None, help="whose chats (default: the local user)")
    p.add_argument("--all", action="store_true", help="every user's chats")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_chats_list)
    p = chats_sub.add_parser("export", parents=[common], help="a chat as Markdown with sources")
    p.add_argument("id")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    p.add_argument(
        "--user",
        default=None,
        help="export as this user: their chat, without passages of libraries they may no "
        "longer read (default: the machine's own account, any chat, every passage)",
    )
    p.set_defaults(run=cmd_chats_export)
    p = chats_sub.add_parser(
        "delete", parents=[common], help="delete a chat with its messages and files"
    )
    p.add_argument("id")
    p.set_defaults(run=cmd_chats_delete)


def _chats_call(settings: Settings, call: Callable[[Conversations], Awaitable[T]]) -> T:
    from rag.conversations.conversation import Engine
    from rag.conversations.stored_chats import Conversations

    async def run() -> T:
        chats = Conversations(Engine(settings, live=None))  # no library: nothing is searched
        try:
            return await call(chats)
        finally:
            if chats.engine.store is not None:
                await chats.engine.store.close()

    return asyncio.run(run())


def cmd_chats_list(args: argparse.Namespace, settings: Settings) -> int:
    from rag.conversations.records import LOCAL_USER

    user = None if args.all else (args.user or LOCAL_USER)
    rows = _chats_call(settings, lambda chats: chats.list(user))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r["id"],
                        "name": r["name"],
                        "user": r["user_identifier"],
                        "updated": r["updated_at"],
                    }
                    for r in rows
                ]
            )
        )
        return 0
    for r in rows:
        print(
            f"{r['id']}  {r['updated_at'][:16].replace('T', ' ')}  "
            f"{r['user_identifier'] or '-':10}  {r['name'] or ''}"
        )
    print(f"{len(rows)} chat(s)")
    return 0


def cmd_chats_export(args: argparse.Namespace, settings: Settings) -> int:
    from rag.library.access import Access, Reader

    readable = None
    if args.user is not None:  # read afresh: a revoke since the chat withholds its passages
        readable = Access.of(settings).readable(Reader(args.user), settings.collection)
    text = _chats_call(
        settings, lambda chats: chats.export(args.id, user=args.user, readable=readable)
    )
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def cmd_chats_delete(args: argparse.Namespace, settings: Settings) -> int:
    _chats_call(settings, lambda chats: chats.delete(args.id, user=None))
    print(f"deleted chat {args.id} with its messages and files")
    return 0


COMMANDS: dict[str, AddCommand] = {
    "chats": _add_chats,
}

"""Who must log in to the app: nobody on loopback by default, everybody beyond it.

``RAG_AUTH`` chooses: ``none``, ``password`` (users from ``rag user add``) or
``header:NAME`` (a reverse proxy that has logged the user in sets that header).
Every login cookie carries its login mode and the user's session version, and is checked
against both on every request (``still_logged_in``); password logins are throttled.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.conversations.records import LOCAL_USER
from rag.errors import RagError
from rag.hosts import is_loopback
from rag.web.throttle import Guesses, retry_after
from rag.web.users import SessionVersions, Users

SECRET_FILE = "chainlit-auth-secret"


@dataclass(frozen=True)
class LoginPolicy:
    mode: str  # none | password | header
    header: str | None = None

    @property
    def label(self) -> str:
        """The mode as every login cookie carries it: a cookie of another mode is refused."""
        return f"header:{(self.header or '').lower()}" if self.mode == "header" else self.mode


def login_policy(settings: Settings, bind_host: str) -> LoginPolicy:
    value = settings.auth or ("none" if is_loopback(bind_host) else "password")
    if value.startswith("header:"):
        return LoginPolicy("header", value.split(":", 1)[1].strip())
    return LoginPolicy(value)


def header_user(headers: Mapping[str, str], name: str) -> str | None:
    """The user a trusted reverse proxy names in ``name``; none when the header is absent."""
    value = (headers.get(name) or "").strip()
    return value or None


def request_user(policy: LoginPolicy, headers: Mapping[str, str]) -> str | None:
    """Who is asking, when no password is involved. Without a login (loopback) everyone
    is the one local user, so chat history still has an owner; with header login the
    trusted proxy names the user (no header, no entry)."""
    if policy.mode == "header":
        return header_user(headers, policy.header or "")
    return LOCAL_USER if policy.mode == "none" else None


def auth_secret(cache_dir: Path, mode: str) -> str:
    """The key that signs login cookies: kept in the cache so logins survive a restart,
    one per login mode so that no mode's cookie is even well signed for another."""
    path = cache_dir / f"{SECRET_FILE}-{mode}"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    cache_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Created readable by this account only, and never overwritten by a second process.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process was quicker
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret)
    return secret


def password_users(settings: Settings, bind_host: str) -> Users:
    """The login users; with none, the app cannot start: exit saying how to add one."""
    users = Users.of(settings)
    users.make_tables()  # a users file from before session versions gains their table
    if not users.names():
        raise SystemExit(
            f"A login is required on {bind_host} (RAG_AUTH=password) but there are "
            "no users: add one with `rag user add NAME`."
        )
    return users


def login_claims(policy: LoginPolicy, version: str) -> dict[str, str]:
    """What a login cookie carries besides the name (Chainlit signs it as the user's
    metadata): the login mode and the user's session version at login."""
    return {"login": policy.label, "session": version}


def still_logged_in(
    policy: LoginPolicy, sessions: SessionVersions, name: str, claims: dict
) -> bool:
    """Whether a login cookie still holds: minted by this login mode, for a password user
    who still exists, with the session version the user has now (read from the users
    file on every request, so `rag user remove|add|logout` ends sessions everywhere)."""
    if claims.get("login") != policy.label:
        return False
    is_user, version = sessions.lookup(name)
    if policy.mode == "password" and not is_user:
        return False
    return hmac.compare_digest(str(claims.get("session", "")).encode(), version.encode())


class TooManyTries(RagError):
    """Too many failed logins from this address for this account: wait."""

    def __init__(self, wait: float) -> None:
        self.retry_after = retry_after(wait)
        super().__init__(f"Too many failed logins: try again in {self.retry_after} s.")


class PasswordLogin:
    """A password login: throttled per account and address, and the cookie's claims."""

    def __init__(
        self,
        settings: Settings,
        policy: LoginPolicy,
        users: Users,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy, self.users = policy, users
        self.sessions = SessionVersions(users.tables)
        self.guesses = Guesses(settings, clock)

    async def check(self, name: str, password: str, address: str) -> dict[str, str] | None:
        """The claims of the new cookie, or None for a wrong name or password; raises
        ``TooManyTries`` while this account must wait at this address (not checked then)."""
        if wait := self.guesses.begin(address, name):
            raise TooManyTries(wait)
        # The version first: a new password set during the check ends this login too.
        version = (await asyncio.to_thread(self.sessions.lookup, name))[1]  # maybe a database
        if not await asyncio.to_thread(self.users.verify, name, password):
            return None
        self.guesses.succeeded(address, name)
        return login_claims(self.policy, version)

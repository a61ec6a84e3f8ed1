"""Who must log in to the app: nobody on loopback by default, everybody beyond it.

``RAG_AUTH`` chooses: ``none``, ``password`` (users from ``rag user add``) or
``header:NAME`` (a reverse proxy that has logged the user in sets that header).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.security import is_loopback
from rag.users import Users, users_path

SECRET_FILE = "chainlit-auth-secret"
LOCAL_USER = "local"  # the one user of a chat without login (loopback)


@dataclass(frozen=True)
class LoginPolicy:
    mode: str  # none | password | header
    header: str | None = None


def login_policy(settings: Settings, bind_host: str) -> LoginPolicy:
    value = settings.auth or ("none" if is_loopback(bind_host) else "password")
    if value.startswith("header:"):
        return LoginPolicy("header", value.split(":", 1)[1].strip())
    return LoginPolicy(value)


def header_user(headers, name: str) -> str | None:
    """The user a trusted reverse proxy names in ``name``; none when the header is absent."""
    value = (headers.get(name) or "").strip()
    return value or None


def request_user(policy: LoginPolicy, headers) -> str | None:
    """Who is asking, when no password is involved. Without a login (loopback) everyone
    is the one local user, so chat history still has an owner; with header login the
    trusted proxy names the user (no header, no entry)."""
    if policy.mode == "header":
        return header_user(headers, policy.header or "")
    return LOCAL_USER if policy.mode == "none" else None


def auth_secret(cache_dir: Path) -> str:
    """The key that signs login cookies: kept in the cache so logins survive a restart."""
    path = cache_dir / SECRET_FILE
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
    users = Users(users_path(settings))
    if not users.names():
        raise SystemExit(
            f"A login is required on {bind_host} (RAG_AUTH=password) but there are "
            "no users: add one with `rag user add NAME`."
        )
    return users

"""Chainlit's login glue: who may log in, and a check of every login on every request.

This, app.py and app_datalayer.py are the only modules that import Chainlit; rag/web/auth.py
decides (login mode, session versions, throttling), this wires it into Chainlit. History
needs a login: on loopback everyone is the one local user, logged in by header.
"""

from __future__ import annotations

import os

import chainlit as cl
import chainlit.auth as cl_auth
import chainlit.server as cl_server
import jwt
from chainlit.config import config
from fastapi import HTTPException

from rag.config import Settings
from rag.errors import RagError
from rag.web import auth, security
from rag.web.users import SessionVersions, session_versions, user_tables


def set_up_login(server, settings: Settings, bind: str) -> None:
    """Login mode, signing secret, proxies and the per-request check, once at import."""
    policy = auth.login_policy(settings, bind)
    os.environ.setdefault("CHAINLIT_AUTH_SECRET", auth.auth_secret(settings.cache_dir, policy.mode))
    # The client's address and scheme come from RAG_TRUSTED_PROXIES alone (ProxyGate), which
    # must see the real peer: uvicorn's own X-Forwarded-For handling is turned off.
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    security.gate(server, settings, policy.header)
    try:
        sessions = session_versions(user_tables(settings))
    except RagError as exc:  # e.g. this machine's users file waits for `rag user migrate`
        raise SystemExit(str(exc)) from None
    _check_every_login(policy, sessions)
    if policy.mode == "password":
        users = auth.password_users(settings, bind)  # no users yet: says how to add one, exits
        _password_login(auth.PasswordLogin(settings, policy, users))
    else:
        _header_login(policy, sessions)


def _check_every_login(policy: auth.LoginPolicy, sessions: SessionVersions) -> None:
    signed = cl_auth.decode_jwt

    def current(token: str) -> cl.User:
        """Chainlit's check of a login cookie (every HTTP request, Socket.IO connect and
        /auth/jwt go through it), then ours: same login mode, same session version. A read
        of a few microseconds from the users file, so a logout anywhere counts at once (with
        PostgreSQL, from memory kept within a second of it: rag/web/users.py)."""
        user = signed(token)
        try:
            ended = not auth.still_logged_in(policy, sessions, user.identifier, user.metadata)
        except RagError as exc:  # the shared users record is out of reach: refused, not a 500
            raise jwt.InvalidTokenError(str(exc)) from None
        if ended:
            raise jwt.InvalidTokenError("This login has ended: log in again.")
        return user

    cl_auth.decode_jwt = cl_server.decode_jwt = current


async def login_ended() -> bool:
    """A chat left open when its login ended (user removed, new password, logout) is told
    so and answers nothing more: the Socket.IO connect was the last token check."""
    try:
        cl_auth.decode_jwt(cl.context.session.token or "")
    except Exception:
        await cl.ErrorMessage(content="Your login has ended: reload the page.").send()
        return True
    return False


def _password_login(passwords: auth.PasswordLogin) -> None:
    async def login(name: str, password: str) -> cl.User | None:
        try:
            claims = await passwords.check(name, password, security.client_address())
        except auth.TooManyTries as exc:
            retry = {"Retry-After": exc.retry_after}
            raise HTTPException(429, str(exc), headers=retry) from None
        return cl.User(identifier=name, metadata=claims) if claims else None

    cl.password_auth_callback(login)
    # Called as it is: Chainlit's wrapper would turn the 429 into a plain 401.
    config.code.password_auth_callback = login


def _header_login(policy: auth.LoginPolicy, sessions: SessionVersions) -> None:
    async def login_by_header(headers) -> cl.User | None:
        if not (name := auth.request_user(policy, headers)):
            return None
        version = sessions.lookup(name)[1]  # microseconds: no thread needed
        return cl.User(identifier=name, metadata=auth.login_claims(policy, version))

    cl.header_auth_callback(login_by_header)

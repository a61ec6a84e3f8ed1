"""Chainlit glue for answers written in the user's browser (#23); the logic lives in
rag/models/browser.py (the model whose answers the page writes) and rag/web/browser_llm.py
(the routes the page calls).

Each chat page gets a link at chat start: the server sends it, as a window message over
the page's own Socket.IO session, to the page script (Chainlit's ``custom_js``), which
answers with what it can do. A question then goes to the page when the chat's setting
is on and ``RAG_BROWSER_LLM`` allows it.
"""

from __future__ import annotations

from pathlib import Path

import chainlit as cl
import chainlit.auth as cl_auth
from chainlit.auth.cookie import get_token_from_cookies
from chainlit.config import APP_ROOT, config
from chainlit.input_widget import Switch

from rag.answers.turn import Turn
from rag.config import Settings
from rag.conversations.conversation import Conversation
from rag.models.browser import BrowserChat, BrowserPool
from rag.models.browser_jobs import MESSAGE, Links
from rag.models.routing import ModelPool
from rag.web import browser_llm

SWITCH = "browser_llm"
LINKS = Links()
ROUTES: list[browser_llm.BrowserRoutes] = []  # one, once set up


def set_up_browser(server, settings: Settings, panel: list) -> None:
    """The routes, the page script and the chat setting, unless RAG_BROWSER_LLM=off."""
    if settings.browser_llm == "off" or ROUTES:
        return
    # Chainlit has one page script: the one .chainlit/config.toml names (the passage panel's,
    # under public/) is served first in ours. Both are of our origin: no CSP hash needed.
    named = config.ui.custom_js or ""
    before = (Path(APP_ROOT) / named.lstrip("/"),) if named.startswith("/public/") else ()
    ROUTES.append(browser_llm.BrowserRoutes(settings, LINKS, _who, before))
    browser_llm.mount(server, ROUTES[0])
    config.ui.custom_js = browser_llm.PAGE_URL
    panel.append(Switch(id=SWITCH, label="Write answers in this browser (WebGPU)", initial=True))


async def _who(request) -> str | None:
    """The user a request is logged in as, checked as every Chainlit request is."""
    token = get_token_from_cookies(request.cookies)
    try:
        return cl_auth.decode_jwt(token).identifier if token else None
    except Exception:
        return None


async def offer() -> None:
    """A link for this chat's page (chat start and resume), and a hello to its script."""
    user = cl.context.session.user
    if not ROUTES or user is None:
        return
    link = LINKS.open(user.identifier, cl.context.emitter.send_window_message)
    cl.user_session.set("browser_link", link)
    await link.notify({"type": MESSAGE, "kind": "hello", "link": link.token})


def configure(values: dict) -> None:
    cl.user_session.set(SWITCH, bool(values.get(SWITCH, True)))


def pool(conv: Conversation) -> ModelPool | None:
    """This chat's pool with its browser first, or None: the server writes the answer."""
    link = cl.user_session.get("browser_link")
    if (
        link is None
        or not ROUTES
        or link not in LINKS
        or not link.ready
        or not cl.user_session.get(SWITCH, True)
    ):
        return None
    routes = ROUTES[0]
    if not routes.wanted(link.adapter is not None) or routes.problem():
        return None
    chat = BrowserChat(routes.model(), link)
    cl.user_session.set("browser_chat", chat)
    return BrowserPool(conv.engine.pool(conv.spec), chat)


def credit(turn: Turn) -> None:
    """Say on the answer where it was written, once the page has written it."""
    chat: BrowserChat | None = cl.user_session.get("browser_chat")
    cl.user_session.set("browser_chat", None)
    if chat is not None and chat.used and turn.model.startswith(f"{chat.model.name}, written in"):
        turn.model, turn.written_in = chat.name, chat.place


def close() -> None:
    if (link := cl.user_session.get("browser_link")) is not None:
        LINKS.close(link)

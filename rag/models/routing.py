"""Which configured model answers a question, in which order to try them.

The primary model (``RAG_LLM``) is tried first, then each ``RAG_LLM_FALLBACK``
spec; a routing rule (``RAG_LLM_ROUTES``) can put a task's model in front.
Models load on first use, so a fallback that is never needed costs nothing.
"""

from __future__ import annotations

import re
import threading

from rag.config import Settings
from rag.models.base import ChatModel
from rag.models.queue import Gate, QueuedChat, parallel
from rag.models.spec import load_chat_model, parse

_CODE_HINTS = re.compile(
    r"```|\b(def|class|import|function|return|lambda|regex|stack ?trace|traceback|compile[sr]?|"
    r"python|javascript|typescript|java|rust|golang|sql|bash|powershell|api|json|yaml)\b"
    r"|[A-Za-z_]\w*\([^)]*\)|[{};]\s*$|\w+\.\w+\(",
    re.IGNORECASE | re.MULTILINE,
)


def task_of(question: str) -> str | None:
    """A coarse task label for routing; ``None`` for ordinary questions."""
    return "code" if len(_CODE_HINTS.findall(question)) >= 2 else None


class ModelPool:
    """The configured models, each loaded once and shared by every chat."""

    def __init__(self, settings: Settings, loaded: dict[str, ChatModel] | None = None) -> None:
        self.settings = settings
        self.specs = list(dict.fromkeys([settings.llm, *settings.llm_fallback]))
        for spec in [*self.specs, *settings.llm_routes.values()]:
            parse(spec)  # a typo should fail at start-up, not at the first question
        # Models in memory, by spec; pools made from one dict share their models.
        self.loaded: dict[str, ChatModel] = loaded if loaded is not None else {}
        self._lock = threading.Lock()

    def candidates(self, question: str) -> list[str]:
        routed = self.settings.llm_routes.get(task_of(question) or "")
        return list(dict.fromkeys([routed, *self.specs] if routed else self.specs))

    def load(self, spec: str) -> ChatModel:
        """Blocking: call through ``asyncio.to_thread`` from async code. Each model comes
        behind its gate: as many answers at once as it gives, the others wait in line."""
        with self._lock:
            if spec not in self.loaded:
                model = load_chat_model(spec, self.settings)
                gate = Gate(parallel(model), self.settings.queue_timeout_s)
                self.loaded[spec] = QueuedChat(model, gate)
            return self.loaded[spec]

"""The model ids this server offers, and what each one answers with.

- ``rag-<collection>``: answers from that collection's documents only, one id per
  served collection; ``rag-<collection>+sources`` also ends the text with its sources.
- ``local-rag-chat``: the first served collection, under the id earlier versions used.
- the chat model's own id: the client's messages go straight to the model.
- the embedding model's id (not listed, as it cannot chat): ``/v1/embeddings``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rag.errors import RagError
from rag.library.search import Library

RAG_MODEL = "local-rag-chat"
SOURCES_SUFFIX = "+sources"


def model_id(name: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class Target:
    id: str
    collection: str | None = None  # None: the chat model alone
    library: Library | None = None
    sources_in_text: bool = False


class Catalog:
    """The ids offered; given names (not libraries), the ids one reader may use: a key
    limited to some libraries (``limited``) gets their ``rag-<library>`` ids alone."""

    def __init__(
        self,
        libraries: Mapping[str, Library] | Sequence[str],
        chat_model: str,
        embedding_model: str,
        limited: bool = False,
    ) -> None:
        if isinstance(libraries, Mapping) and not libraries:
            raise RagError("rag serve needs at least one collection to serve.")
        named: Mapping[str, Library | None] = (
            libraries if isinstance(libraries, Mapping) else dict.fromkeys(libraries)
        )
        targets = [] if limited else [Target(model_id(chat_model))]
        if named and not limited:
            first = next(iter(named))
            targets.insert(0, Target(RAG_MODEL, first, named[first]))
        for name, library in named.items():
            rid = "rag-" + model_id(name)
            targets += [
                Target(rid, name, library),
                Target(rid + SOURCES_SUFFIX, name, library, sources_in_text=True),
            ]
        self.targets: dict[str, Target] = {}
        for target in targets:
            if target.id in self.targets:
                raise RagError(
                    f"Two served models would share the id {target.id!r}: rename a collection."
                )
            self.targets[target.id] = target
        self.embedding_ids = {
            model_id(embedding_model),
            embedding_model.lower(),
            f"sentence-transformers/{embedding_model}".lower(),
        }
        self.embedding_model = model_id(embedding_model)

    @property
    def listed(self) -> list[str]:
        return list(self.targets)

    def chat(self, name: object) -> Target | None:
        return self.targets.get(name) if isinstance(name, str) else None

    def embeds(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.embedding_ids

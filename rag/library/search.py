"""Finding the chunks that answer a question: vector and BM25 search, fused and diversified."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.config import Settings
from rag.library import filters, fusion
from rag.library.chunks import Hit
from rag.library.diversify import mmr
from rag.library.live import Library, open_library

__all__ = ["Library", "open_library", "search", "search_by_vector"]


def search(library: Library, query: str, k: int, settings: Settings | None = None) -> list[Hit]:
    """The ``k`` best chunks, ranked 1..k, searched as ``settings`` (else the library's) say."""
    [vector] = library.embedder.embed([query])
    return search_by_vector(library, query, vector, k, settings)


def _sources(library: Library, patterns: Sequence[str]) -> list[str] | None:
    """The sources a filter selects; None when there is no filter."""
    if not patterns:
        return None
    return filters.matching(sorted(library.store.documents()), patterns)


def search_by_vector(
    library: Library,
    query: str,
    vector: Sequence[float],
    k: int,
    settings: Settings | None = None,
) -> list[Hit]:
    """``search`` with the question already embedded (evaluation embeds them in one batch)."""
    settings = settings or library.settings
    library.store.refresh()  # what other processes wrote since (cheap when nothing did)
    sources = _sources(library, settings.sources)
    if sources == [] or k <= 0:
        return []
    n = max(settings.candidates, k)
    near, bm25 = _candidates(library, query, vector, n, sources, settings.search_mode)
    # Fetching checks existence too: the word index may hold ids of a version just replaced.
    pool = library.store.fetch(list(dict.fromkeys([*near, *bm25])))
    if not pool:
        return []
    q = np.asarray(vector, dtype=np.float32)
    similarity = {i: float(q @ np.asarray(v, dtype=np.float32)) for i, (_, v) in pool.items()}
    relevance = _relevance(library, query, list(pool), near, bm25, similarity, settings)
    return _diversified(pool, relevance, similarity, k, settings.mmr_lambda)


def _candidates(
    library: Library,
    query: str,
    vector: Sequence[float],
    n: int,
    sources: list[str] | None,
    mode: str,
) -> tuple[list[str], dict[str, float]]:
    """Vector ranking (ids, best first) and BM25 scores (best first), as the mode asks."""
    near: list[str] = []
    if mode != "lexical":
        near = [i for i, _ in library.store.nearest(vector, n, sources)]
    bm25 = dict(library.store.keyword(query, n, sources)) if mode != "vector" else {}
    return near, bm25


def _relevance(
    library: Library,
    query: str,
    ids: list[str],
    near: list[str],
    bm25: dict[str, float],
    similarity: dict[str, float],
    settings: Settings,
) -> dict[str, float]:
    if settings.search_mode == "vector":
        return similarity
    if settings.search_mode == "lexical":
        return {i: bm25[i] for i in ids}
    if settings.fusion == "rrf":
        known = set(ids)
        return fusion.rrf(
            [i for i in near if i in known],
            [i for i in bm25 if i in known],
            settings.lexical_weight,
            settings.rrf_k,
        )
    # A blend needs both scores of every candidate: BM25 of those only vectors found.
    bm25 = {**bm25, **library.store.keyword_scores(query, [i for i in ids if i not in bm25])}
    return fusion.blend(similarity, bm25, ids, settings.lexical_weight)


def _diversified(
    pool: dict, relevance: dict[str, float], similarity: dict[str, float], k: int, lam: float
) -> list[Hit]:
    ids = list(pool)
    # Relevance divided by the best, so diversity weighs the same against any scale.
    best = max(relevance[i] for i in ids) or 1.0
    lam = max(lam, 1e-6)
    picked = mmr(ids, {i: relevance[i] / best for i in ids}, {i: pool[i][1] for i in ids}, k, lam)
    return [
        # The MMR value back on the relevance's scale: equal to it without diversification,
        # less the redundancy penalty with it, and never increasing down the list.
        Hit(chunk=pool[i][0], score=value * best / lam, rank=rank, similarity=similarity[i])
        for rank, (i, value) in enumerate(picked, start=1)
    ]

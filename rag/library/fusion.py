"""Fusing the vector and the lexical ranking into one relevance score.

Both functions return a score per id where higher is better. ``blend`` (the
default) is a convex combination of the two scores, each scaled to 0..1 over
the candidate pool; ``rrf`` is weighted reciprocal rank fusion, which ignores
the scores and uses ranks only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _scaled_by_range(scores: Mapping[str, float], ids: Sequence[str]) -> dict[str, float]:
    values = [scores[i] for i in ids if i in scores]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    span = high - low or 1.0
    return {i: (scores[i] - low) / span if i in scores else 0.0 for i in ids}


def _scaled_by_max(scores: Mapping[str, float], ids: Sequence[str]) -> dict[str, float]:
    # BM25 is 0 for a chunk without any query word: that, not the pool's minimum, is the floor.
    high = max((scores.get(i, 0.0) for i in ids), default=0.0) or 1.0
    return {i: max(scores.get(i, 0.0), 0.0) / high for i in ids}


def blend(
    similarity: Mapping[str, float],
    bm25: Mapping[str, float],
    ids: Sequence[str],
    lexical_weight: float,
) -> dict[str, float]:
    """``(1 - w) * cosine + w * BM25``, cosine min-max scaled and BM25 scaled by its best."""
    vec = _scaled_by_range(similarity, ids)
    lex = _scaled_by_max(bm25, ids)
    return {i: (1 - lexical_weight) * vec[i] + lexical_weight * lex[i] for i in ids}


def rrf(
    vector_ranking: Sequence[str],
    lexical_ranking: Sequence[str],
    lexical_weight: float,
    k: int = 60,
) -> dict[str, float]:
    """Weighted reciprocal rank fusion; weight 0.5 is the classic unweighted RRF (times 1/2)."""
    fused: dict[str, float] = {}
    for weight, ranking in (
        (1 - lexical_weight, vector_ranking),
        (lexical_weight, lexical_ranking),
    ):
        for rank, id_ in enumerate(ranking, start=1):
            fused[id_] = fused.get(id_, 0.0) + weight / (k + rank)
    return fused

"""The retrieval evaluation set: encyclopedia-like articles with questions, hidden among
unrelated technical documentation, like the held-out set of issue #7.

Three parts, all made on this machine (nothing is downloaded):

- ``benchmarks/encyclopedia/*.md`` with ``benchmarks/qa/encyclopedia.jsonl``:
  articles and questions written by hand, questions worded as a reader would
  ask, not copied from the sentence that answers them.
- A gazetteer of invented towns, generated from structured facts: each fact is
  written in one of several phrasings and asked about in another, so a
  question shares some words with its answer but rarely the sentence.
- Technical documentation as distractors: the Python reference topics and the
  docstrings of the standard library, as shipped with this Python.
"""

from __future__ import annotations

import importlib
import pydoc_data.topics
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from rag.library.evaluation import Question, load_questions

HERE = Path(__file__).resolve().parent
ARTICLES = HERE / "encyclopedia"
ARTICLE_QA = HERE / "qa" / "encyclopedia.jsonl"

# Modules whose import has side effects (a browser, a window, printed text) or that are slow.
_SKIP = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc",
    "venv",
    "test",
    "xxsubtype",
    "msvcrt",
    "winreg",
    "winsound",
}


# --- technical documentation -------------------------------------------------------------


def _module_doc(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(name)
    parts = [f"# The {name} module", module.__doc__ or ""]
    for attr in sorted(getattr(module, "__all__", None) or dir(module)):
        obj = getattr(module, attr, None)
        doc = getattr(obj, "__doc__", None) if not attr.startswith("_") else None
        if isinstance(doc, str) and len(doc) > 80 and getattr(obj, "__module__", name) == name:
            parts.append(f"## {name}.{attr}\n\n{doc.strip()}")
    return "\n\n".join(p for p in parts if p)


def write_technical_docs(folder: Path, max_bytes: int) -> int:
    """Python reference topics, then standard-library docstrings, up to ``max_bytes``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    topics = pydoc_data.topics.topics
    texts = [(f"reference-{t}", f"# {t}\n\n{topics[t]}") for t in sorted(topics)]
    for name in sorted(sys.stdlib_module_names):
        if written + sum(len(t) for _, t in texts) > max_bytes * 1.2:
            break
        if name.startswith("_") or name in _SKIP:
            continue
        try:
            texts.append((f"stdlib-{name}", _module_doc(name)))
        except Exception:
            continue
    for name, text in texts:
        if written >= max_bytes:
            break
        text = text[: max_bytes - written]
        (folder / f"{name}.md").write_text(text, encoding="utf-8")
        written += len(text)
    return written


# --- a gazetteer of invented towns -------------------------------------------------------

_SYLLABLES = [
    "bar",
    "dun",
    "mel",
    "tor",
    "vin",
    "ash",
    "cal",
    "dor",
    "fen",
    "gar",
    "hal",
    "kes",
    "lin",
    "mor",
    "nor",
    "pel",
    "quin",
    "ros",
    "sar",
    "tal",
    "vel",
    "wick",
    "yar",
    "zen",
    "bro",
    "cra",
    "fal",
    "gle",
    "har",
    "jor",
    "kil",
    "lor",
    "mar",
    "nen",
    "ost",
    "pry",
    "rhu",
    "sel",
    "thor",
    "ulm",
    "vey",
    "wen",
]
_INDUSTRIES = [
    "shipbuilding",
    "wool weaving",
    "glassmaking",
    "salt mining",
    "paper milling",
    "clockmaking",
    "brewing",
    "copper smelting",
    "boat building",
    "cheese making",
    "tanning",
    "pottery",
    "silk spinning",
    "timber trade",
    "fishing",
]
_LANDMARKS = [
    "a stone bridge with seven arches",
    "a ruined abbey",
    "a lighthouse on the breakwater",
    "a covered market hall",
    "an astronomical clock",
    "a hilltop castle",
    "a round church",
    "a botanical garden",
    "a windmill museum",
    "a salt warehouse",
]
_FESTIVALS = [
    "lantern festival",
    "herring fair",
    "harvest procession",
    "kite festival",
    "music week",
    "horse fair",
    "ice carnival",
    "flower parade",
    "boat race",
    "wine market",
]

_FILLER = [
    "The climate is temperate, with mild summers and cool, wet winters.",
    "Most of the old town was rebuilt after a fire in the 18th century.",
    "The surrounding countryside is used for grazing and mixed farming.",
    "A regional bus service links the town with neighbouring villages.",
    "Several houses along the main street are protected as historic monuments.",
    "The town has a primary school, a secondary school and a small public library.",
    "Local government is carried out by an elected council that meets monthly.",
    "The parish records go back to the late Middle Ages.",
    "Tourism has grown in importance since the end of the 20th century.",
    "A weekly market is held in the central square.",
]


@dataclass(frozen=True)
class Fact:
    sentences: tuple[str, ...]  # phrasings in the article, with {town} and {value}
    questions: tuple[str, ...]  # phrasings of the question


_FACTS = {
    "founded": Fact(
        (
            "{town} was founded in {value} as a crossing point on the old trade road.",
            "The first settlement at {town} dates from {value}, "
            "when a ferry was set up on the river.",
            "Records show that {town} received its charter in {value}.",
        ),
        (
            "When was {town} established?",
            "In what year did {town} come into being?",
            "How old is the settlement of {town}; when did it begin?",
        ),
    ),
    "population": Fact(
        (
            "At the last census {town} had {value} inhabitants.",
            "The town is home to about {value} people.",
            "Some {value} residents live within the municipal boundary of {town}.",
        ),
        (
            "How many people live in {town}?",
            "What is the population of {town}?",
            "How large is the number of residents in {town}?",
        ),
    ),
    "industry": Fact(
        (
            "For centuries the economy of {town} rested on {value}.",
            "{town} grew wealthy from {value}, which still employs many of its workers.",
            "The main trade of {town} has long been {value}.",
        ),
        (
            "What did {town} make its living from?",
            "Which trade made {town} prosperous?",
            "What is the traditional business of {town}?",
        ),
    ),
    "landmark": Fact(
        (
            "The best-known sight of {town} is {value}.",
            "Visitors to {town} come above all to see {value}.",
            "Among the buildings of {town}, the most photographed is {value}.",
        ),
        (
            "What is the most famous attraction in {town}?",
            "What do tourists go to see in {town}?",
            "Which monument is {town} known for?",
        ),
    ),
    "festival": Fact(
        (
            "Every summer {town} holds a {value} that draws crowds from the region.",
            "The {value} of {town} takes place each year in the old harbour.",
            "Since the 1950s the town has celebrated an annual {value}.",
        ),
        (
            "What yearly event is celebrated in {town}?",
            "Which festival does {town} host?",
            "What kind of annual celebration takes place in {town}?",
        ),
    ),
    "elevation": Fact(
        (
            "{town} lies at an altitude of {value} metres above sea level.",
            "The centre of {town} stands {value} metres above the sea.",
            "At {value} metres, {town} is one of the higher towns of its valley.",
        ),
        (
            "How high above sea level is {town}?",
            "What is the elevation of {town}?",
            "At what height is {town} situated?",
        ),
    ),
    "founder": Fact(
        (
            "According to tradition, the town was laid out by the merchant {value}.",
            "{value}, a wealthy trader, is remembered as the founder of {town}.",
            "The plan of {town} is credited to {value}, who built its first warehouse.",
        ),
        (
            "Who founded {town}?",
            "Which merchant is said to have established {town}?",
            "Who is regarded as the founder of {town}?",
        ),
    ),
    "twin": Fact(
        (
            "{town} has been twinned with {value} since 1968.",
            "A partnership with the town of {value} was signed by {town} after the war.",
            "School exchanges link {town} with its partner town, {value}.",
        ),
        (
            "Which town is {town} twinned with?",
            "What is the sister town of {town}?",
            "With which town does {town} have a partnership?",
        ),
    ),
}


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def _facts(rng: random.Random, town: str) -> dict[str, str]:
    return {
        "founded": str(rng.randint(1100, 1890)),
        "population": f"{rng.randint(2, 95)},{rng.randint(0, 999):03}",
        "industry": rng.choice(_INDUSTRIES),
        "landmark": rng.choice(_LANDMARKS),
        "festival": rng.choice(_FESTIVALS),
        "elevation": str(rng.randint(40, 1900)),
        "founder": f"{_name(rng)} {_name(rng, 3)}",
        "twin": _name(rng, 3),
    }


def write_gazetteer(
    folder: Path, towns: int, questions_per_town: int = 3, seed: int = 11
) -> list[Question]:
    """One article per town, facts in a random phrasing; questions in another phrasing."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    questions: list[Question] = []
    names: set[str] = set()
    while len(names) < towns:
        names.add(_name(rng, 3))
    for town in sorted(names):
        facts = _facts(rng, town)
        used: dict[str, int] = {}
        paragraphs = []
        keys = list(_FACTS)
        rng.shuffle(keys)
        for group in (keys[:3], keys[3:6], keys[6:]):
            sentences = []
            for key in group:
                used[key] = rng.randrange(len(_FACTS[key].sentences))
                sentences.append(
                    _FACTS[key].sentences[used[key]].format(town=town, value=facts[key])
                )
                sentences.append(rng.choice(_FILLER))
            paragraphs.append(" ".join(sentences))
        (folder / f"{town.lower()}.md").write_text(
            f"# {town}\n\n{town} is a small town in the province of {_name(rng)}.\n\n"
            + "\n\n".join(paragraphs)
            + "\n",
            encoding="utf-8",
        )
        for key in rng.sample(keys, questions_per_town):
            fact = _FACTS[key]
            evidence = fact.sentences[used[key]].format(town=town, value=facts[key])
            asked = rng.choice(fact.questions).format(town=town)
            questions.append(Question(asked, (facts[key],), evidence))
    return questions


# --- the whole set -----------------------------------------------------------------------


def build(folder: Path, tech_bytes: int = 1_500_000, towns: int = 120) -> dict[str, list[Question]]:
    """Write the corpus under ``folder``; returns the question sets by name."""
    write_technical_docs(folder / "technical", tech_bytes)
    docs = folder / "encyclopedia"
    docs.mkdir(parents=True, exist_ok=True)
    for article in ARTICLES.glob("*.md"):
        (docs / article.name).write_text(article.read_text(encoding="utf-8"), encoding="utf-8")
    return {
        "articles": load_questions(ARTICLE_QA),
        "gazetteer": write_gazetteer(folder / "gazetteer", towns),
    }

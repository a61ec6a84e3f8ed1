"""All settings in one object, read once from ``RAG_*`` variables and ``.env``.

Entry points (CLI, app, tests) build one ``Settings`` and pass it down; nothing
else reads the environment.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Lists and maps may be given as JSON or, more readably, comma-separated:
# RAG_LLM_FALLBACK=foundry:phi-4-mini,openai:gpt-4o-mini@https://api.openai.com/v1
SpecList = Annotated[list[str], NoDecode]
HostList = Annotated[list[str], NoDecode]
RouteMap = Annotated[dict[str, str], NoDecode]
NameList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_file=".env", extra="ignore", validate_default=True
    )

    index: Path = Field(Path("data/index"), description="Folder of the Chroma index.")
    collection: str = Field("library", description="Chroma collection name.")
    chroma_url: str | None = Field(
        None,
        description="A Chroma server (chroma run) every process shares; unset: embedded.",
    )
    chroma_token: SecretStr | None = Field(
        None,
        description="Sent to the Chroma server as 'Authorization: Bearer TOKEN'.",
    )
    cache_dir: Path = Field(
        Path(platformdirs.user_cache_dir("local-rag-chat")),
        description="Per-user cache; the embedded chat model and the ONNX embedder are built here.",
    )

    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="all-MiniLM-L6-v2 (shipped in a package) or a sentence-transformers folder.",
    )
    embed_batch_size: int = Field(64, ge=1)
    embedder: Literal["onnx", "onnx-int8", "sentence-transformers"] = Field(
        "onnx",
        description="What runs the embedding model: ONNX Runtime (exported once) or the reference.",
    )

    chunk_tokens: int = Field(
        200, ge=16, description="Chunk size in embedding-model tokens (MiniLM reads 256)."
    )
    chunk_overlap: int = Field(40, ge=0, description="Overlap between chunks, in tokens.")
    ocr: bool = Field(
        True, description="Read scanned pages and images with OCR (RapidOCR), where installed."
    )
    max_file_mb: int = Field(
        100, ge=1, description="Larger files are not read, by ingest or as uploads."
    )
    min_free_mb: int = Field(
        200,
        ge=0,
        description="Writing to the index stops with a message when its disk has less free "
        "space than this; 0 turns the check off.",
    )
    read_memory_mb: int = Field(
        1280,
        ge=256,
        description="Memory a file's reader process may use (Linux); a file that needs more "
        "fails as too large to read safely. OCR of a page needs about 1.1 GB.",
    )
    read_timeout_s: float = Field(
        600.0, gt=0, description="Seconds a file may take to read (OCR included) before it fails."
    )
    ocr_max_pages: int = Field(
        100,
        ge=1,
        description="Scanned pages OCR reads in one file (blank pages not counted); a file "
        "with more fails as too large to read safely.",
    )

    llm: str = Field("embedded", description="Chat model spec: embedded, onnx:PATH, ...")
    llm_api_key: SecretStr | None = Field(None, description="Key for openai: servers.")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a server.")
    llm_concurrency: int | None = Field(
        None,
        ge=1,
        description="Answers an openai: or foundry: model server gives at once; unset: what "
        "the server says (llama.cpp's slots), else 1. Models in this process answer one at "
        "a time.",
    )
    queue_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Seconds a question waits in line for its model before it is told the "
        "model is busy (and a fallback model, if any, is tried).",
    )
    foundry_url: str | None = Field(
        None, description="A running Foundry Local service; found with the foundry CLI if unset."
    )
    foundry_catalog_url: str | None = Field(
        None, description="Foundry Local's model catalog; unset means Microsoft's online one."
    )
    llm_context_window: int = Field(
        4096, ge=512, description="Context window of openai: models (servers don't report it)."
    )
    llm_fallback: SpecList = Field(
        default_factory=list, description="Specs tried in order when the model fails to start."
    )
    llm_routes: RouteMap = Field(
        default_factory=dict, description="Task to spec, e.g. code=openai:qwen2.5-coder@URL."
    )
    browser_llm: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Write answers in the user's browser (ONNX Runtime Web): auto = when it "
        "has a WebGPU adapter, on = also on WASM without one, off = never; a chat setting.",
    )
    browser_model: Path | None = Field(
        None,
        description="An ONNX Runtime GenAI web model folder the browser runs; unset: the "
        "embedded model's web copy, made by `rag model prepare`.",
    )
    llm_local_hosts: HostList = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Server hosts trusted with private documents (on this machine).",
    )

    # Who may talk to the app and to `rag serve` (see SECURITY.md).
    allowed_hosts: HostList = Field(
        default_factory=list,
        description="Host names accepted besides localhost and the bound address; * allows any.",
    )
    allowed_origins: HostList = Field(
        default_factory=list,
        description="Web origins (scheme://host:port) allowed besides the app's own.",
    )
    auth: str | None = Field(
        None,
        description="none, password or header:NAME; unset: none on loopback, else password.",
    )
    users_db: Path | None = Field(
        None,
        description="SQLite file of login users (unless RAG_DATABASE_URL names PostgreSQL); "
        "unset: users.sqlite3 in the index folder.",
    )
    serve_api_key: SecretStr | None = Field(None, description="Bearer key `rag serve` requires.")
    trusted_proxies: HostList = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Addresses or networks of reverse proxies whose X-Forwarded-For, "
        "X-Forwarded-Proto and login header (RAG_AUTH=header:NAME) are believed.",
    )
    throttle_after: int = Field(
        5,
        ge=1,
        description="Failed logins (per account and address) or wrong API keys (per "
        "address) before each further try must wait.",
    )
    throttle_max_wait: float = Field(
        300.0,
        gt=0,
        description="The longest wait, in seconds, after repeated failures; it doubles from 1 s.",
    )

    # What one client may cost `rag serve` and the app (rag/web/limits.py, SECURITY.md).
    max_request_mb: float = Field(
        8.0,
        gt=0,
        description="Largest request body accepted (413 above); the app's uploads may be "
        "RAG_MAX_FILE_MB.",
    )
    max_question_chars: int = Field(
        16000, ge=1, description="Longest message `rag serve` accepts (400 above)."
    )
    request_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client has to send a request's headers, and again its body; "
        "slower connections are closed.",
    )
    max_connections: int = Field(
        256, ge=1, description="Connections held at once; a request beyond them is answered 503."
    )

    top_k: int = Field(4, ge=1, le=50)

    # Retrieval. Defaults measured with `python -m benchmarks.retrieval`.
    search_mode: Literal["hybrid", "vector", "lexical"] = Field(
        "hybrid", description="vector (Chroma), lexical (BM25) or both fused."
    )
    fusion: Literal["blend", "rrf"] = Field(
        "blend", description="How hybrid search fuses: score blend, or reciprocal rank fusion."
    )
    lexical_weight: float = Field(
        0.4, ge=0.0, le=1.0, description="Share of BM25 in the fused score (vector gets the rest)."
    )
    rrf_k: int = Field(60, ge=1, description="The constant of reciprocal rank fusion.")
    candidates: int = Field(
        30, ge=1, le=500, description="Chunks each retriever proposes before fusion."
    )
    mmr_lambda: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="Relevance against diversity (maximal marginal relevance); 1 turns it off.",
    )
    sources: list[str] = Field(
        default_factory=list,
        description="Search only documents matching these paths or globs, e.g. manuals/*.pdf.",
    )
    min_similarity: float = Field(
        0.25,
        ge=-1.0,
        le=1.0,
        description="Below this cosine similarity no passage counts as relevant (calibrated).",
    )
    off_topic: Literal["refuse", "general"] = Field(
        "refuse",
        description="No relevant passage: say so, or add a labelled general answer.",
    )
    history_turns: int = Field(3, ge=0, le=20, description="Earlier exchanges sent to the model.")
    max_answer_tokens: int = Field(384, ge=1)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    # 1 by default: ONNX Runtime GenAI penalises every token of the prompt too, so a
    # penalty keeps a small model from quoting the passages (benchmarks.answers:
    # answer accuracy 0.62 at 1.0, 0.44 at 1.05, 0.10 at 1.1); the loop guard ends loops.
    repetition_penalty: float = Field(
        1.0,
        ge=1.0,
        le=2.0,
        description="Above 1 makes repeated tokens less likely; 1 is none, and is said "
        "to servers that would otherwise apply their own (measured with benchmarks.answers).",
    )
    stop_loops: bool = Field(
        True, description="Stop an answer that starts repeating itself, and cut the repetition."
    )
    evidence_in_prompt: bool = Field(
        True,
        description="Point the model at the best evidence sentence after the passages "
        "(measured with benchmarks.answers).",
    )
    evidence_sentences: int = Field(
        2, ge=0, le=5, description="Sentences of the passages shown as evidence under an answer."
    )
    evidence_first: Literal["auto", "checked", "always", "never"] = Field(
        "auto",
        description="When the evidence sentence is shown first, as a quote above the model's "
        "answer: checked (when the answer is contradicted or no sentence of it is supported), "
        "always, never, or auto: always for the built-in tiny model (also when the browser "
        "writes with it), checked for any other (measured with benchmarks.answers).",
    )
    unsupported_below: float = Field(
        0.95,
        ge=0.0,
        le=2.0,
        description="Support score under which an answer sentence is marked unsupported "
        "(calibrated with benchmarks.answers).",
    )

    serve_collections: NameList = Field(
        default_factory=list,
        description="Collections rag serve offers, one model id rag-<name> each; "
        "empty means RAG_COLLECTION alone.",
    )

    # Chat history (rag/conversations/chat_store.py).
    chats_dir: Path | None = Field(
        None,
        description="Stored chats and their files; default: the chats folder in the index.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RAG_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL for chat history, users, API keys and library rights "
        "(postgresql://...), shared by every replica; default SQLite.",
    )
    chat_retention_days: int = Field(
        0,
        ge=0,
        description="Delete chats untouched for this many days; 0 keeps them.",
    )

    @field_validator(
        "llm_fallback",
        "llm_local_hosts",
        "allowed_hosts",
        "allowed_origins",
        "serve_collections",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return (
                json.loads(text)
                if text.startswith("[")
                else [part.strip() for part in text.split(",") if part.strip()]
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("auth")
    @classmethod
    def _auth_mode(cls, value: str | None) -> str | None:
        if value is None or value in ("none", "password"):
            return value
        if value.startswith("header:") and value[len("header:") :].strip():
            return value
        raise ValueError("must be none, password or header:HEADER-NAME")

    @field_validator("llm_routes", mode="before")
    @classmethod
    def _split_map(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            pairs = (part.split("=", 1) for part in text.split(",") if part.strip())
            return {task.strip(): spec.strip() for task, spec in pairs}
        return value

    def with_overrides(self, **values: object) -> Settings:
        """A copy with command-line values applied; ``None`` means not given."""
        given = {k: v for k, v in values.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given})

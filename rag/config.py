"""All settings in one object, read once from ``RAG_*`` variables and ``.env``.

Entry points (CLI, app, tests) build one ``Settings`` and pass it down; nothing
else reads the environment.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_file=".env", extra="ignore", validate_default=True
    )

    index: Path = Field(Path("data/index"), description="Folder of the Chroma index.")
    collection: str = Field("library", description="Chroma collection name.")
    cache_dir: Path = Field(
        Path(platformdirs.user_cache_dir("local-rag-chat")),
        description="Per-user cache; the embedded chat model is built here.",
    )

    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="all-MiniLM-L6-v2 (shipped in a package) or a sentence-transformers folder.",
    )
    embed_batch_size: int = Field(64, ge=1)

    chunk_tokens: int = Field(
        200, ge=16, description="Chunk size in embedding-model tokens (MiniLM reads 256)."
    )
    chunk_overlap: int = Field(40, ge=0, description="Overlap between chunks, in tokens.")

    llm: str = Field("embedded", description="Chat model spec: embedded, onnx:PATH, ...")
    llm_api_key: SecretStr | None = Field(None, description="Key for openai: servers.")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a server.")
    foundry_url: str | None = Field(
        None, description="A running Foundry Local service; found with the foundry CLI if unset."
    )
    llm_context_window: int = Field(
        4096, ge=512, description="Context window of openai: models (servers don't report it)."
    )

    top_k: int = Field(4, ge=1, le=50)
    max_answer_tokens: int = Field(384, ge=16)
    temperature: float = Field(0.2, ge=0.0, le=2.0)

    def with_overrides(self, **values: object) -> Settings:
        """A copy with command-line values applied; ``None`` means not given."""
        given = {k: v for k, v in values.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given})

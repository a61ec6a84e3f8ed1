"""``python -m ingest PATH...``: the same as ``rag ingest PATH...`` (the code is in rag.ingest)."""

"""Reading, chunking and indexing documents (``rag ingest``, ``python -m ingest``)."""

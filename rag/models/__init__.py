"""Chat models: one small class per backend, chosen by a spec (``RAG_LLM``)."""

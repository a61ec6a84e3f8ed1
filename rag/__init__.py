"""Local RAG Chat: retrieval, prompts and local chat models, independent of any UI."""

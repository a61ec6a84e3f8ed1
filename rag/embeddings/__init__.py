"""Embedding text: the ONNX Runtime embedder and its one-time export."""

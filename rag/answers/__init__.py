"""Answering one question: the turn record, prompts, evidence, grounding, checks, summaries."""

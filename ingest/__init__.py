"""Reading, chunking and indexing documents."""

"""The document library: chunks, the store and catalog, the word index, search."""

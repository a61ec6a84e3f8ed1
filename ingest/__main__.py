"""``python -m ingest PATH...``: the same as ``rag ingest PATH...``."""

import sys

from rag.cli import main

sys.exit(main(["ingest", *sys.argv[1:]]))

"""Smoke runs of the benchmarks: they must run and print their figures (not judge them)."""

import re
import subprocess
import sys


def test_ingest_benchmark_prints_its_ratios():
    done = subprocess.run([sys.executable, "-m", "benchmarks.ingest", "--docs", "12"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert re.search(r"ratio to embedding alone: \d+\.\d+", done.stdout)
    assert re.search(r"ratio to first ingest: +\d+\.\d+", done.stdout)

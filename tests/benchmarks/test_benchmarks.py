"""Smoke runs of the benchmarks: they must run and print their figures (not judge them).

Each runs at its smallest useful size (few questions, one embedder, a few variants):
the figures' code runs in full, only on less data."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # each benchmark runs as its own process


def test_ingest_benchmark_prints_its_ratios():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--docs", "12", "--ocr-pages", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"ratio to embedding alone: \d+\.\d+", done.stdout)
    assert re.search(r"ratio to first ingest: +\d+\.\d+", done.stdout)
    assert re.search(r"OCR, scanned pages: .* \d+\.\d+ pages/s", done.stdout)
    assert re.search(r"same pages, text layer: .* \d+\.\d+ pages/s", done.stdout)


def test_relevance_calibration_prints_the_trade_off():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.relevance"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"threshold 0\.25: answers \d+/11 on-topic, refuses \d+/10 off-topic", done.stdout
    )


def test_retrieval_benchmark_prints_each_variant():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.retrieval",
            "--tech-kb",
            "40",
            "--towns",
            "4",
            "--variant",
            "search_mode=vector",
            "--variant",
            "search_mode=lexical",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    for variant in ("default", "search_mode=vector", "search_mode=lexical"):
        assert re.search(rf"^{re.escape(variant)}( +\d\.\d{{3}}){{6}}$", done.stdout, re.M), variant
    assert "== all ==" in done.stdout


def test_search_latency_benchmark_prints_median_and_p95():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.search_latency",
            "--chunks",
            "800",
            "--repeat",
            "1",
            "--questions",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"index: 800 chunks in Chroma, 800 in the lexical index", done.stdout)
    for mode in ("vector", "lexical", "hybrid"):
        assert re.search(rf"^{mode} +median +\d+\.\d ms +p95 +\d+\.\d ms", done.stdout, re.M)


def test_startup_benchmark_prints_each_figure():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.startup",
            "--repeat",
            "1",
            "--docs",
            "4",
            "--embedder",
            "onnx",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("rag query (onnx)", "rag sources"):
        assert re.search(
            rf"^{re.escape(label)} +\d+\.\d\d s +\d+\.\d\d s +\d+ MB$", done.stdout, re.M
        ), label
    assert re.search(
        r"^app \(onnx\): serving +\d+\.\d\d s .* first answer +\d+\.\d\d s", done.stdout, re.M
    )
    assert re.search(r"^ingest with onnx +\d+\.\d chunks/s", done.stdout, re.M)
    assert "sentence-transformers" not in done.stdout  # one embedder, as asked


def test_scale_benchmark_prints_both_stores_side_by_side():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.scale",
            "--sizes",
            "300",
            "--repeat",
            "1",
            "--questions",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    for store in ("embedded", "server"):
        assert re.search(
            # ingest, open, median, limited (#24), p95, CPU median (#25), peak, disk, load
            rf"^ +300 {store} +\d+ +\d+\.\d +\d+\.\d +\d+\.\d +\d+\.\d +\d+\.\d +\d+ "
            r"+\d+\.\d +\d+\.\d$",
            done.stdout,
            re.M,
        ), done.stdout


def test_answer_benchmark_prints_each_model_and_its_baseline():
    # On the set nothing was tuned on (#26): what is shown first, contradictions caught,
    # false alarms and citation coverage, beside the older figures.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.answers",
            "--qa",
            "benchmarks/qa/encyclopedia.jsonl",
            "--limit",
            "2",
            "--baseline",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"answer +evidence +shown +led +caught +alarms +covered", done.stdout)
    figures = r"(\d\.\d{3} +){3}\d\.\d\d +\d+/\d+ +\d+/\d+ +(\d\.\d{3} +){3}\d+\.\d\ds +\d+\.\d"
    for variant in ("embedded", "embedded baseline"):
        assert re.search(rf"^{re.escape(variant)} +{figures}$", done.stdout, re.M), (
            variant,
            done.stdout,
        )


def test_contradiction_calibration_prints_each_kind_of_claim():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.answers", "--contradictions", "--limit", "6"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert "6 claims over the sample documents and the encyclopedia" in done.stdout
    for kind in ("contradicting", "true", "false"):
        assert re.search(rf"^{kind} +\d+ +\d+$", done.stdout, re.M), done.stdout


LOAD = ["--conversations", "2", "--questions", "1", "--tokens", "8", "--replicas", "1", "--app"]


def test_load_benchmark_prints_each_setup_side_by_side():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", *LOAD],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    for setup in ("embedded, 1 replica", "app, embedded, 1 replica"):
        # Two questions at once to a fresh server: both answered (its first requests
        # once raced to create the chat store's tables).
        assert re.search(
            rf"^{setup} +2 +0 +\d+\.\d\d s +\d+\.\d\d s +\d+\.\d +\d+\.\d$", done.stdout, re.M
        ), done.stdout


def test_browser_benchmark_prints_server_and_browser_side_by_side():
    """WASM only: WebGPU on this machine's software GPU takes minutes a token."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.browser",
            "--tokens",
            "3",
            "--providers",
            "wasm",
            "--prompts",
            "1",
            "--answer-tokens",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^server \(ONNX Runtime GenAI\) +- +\d+\.\d\d s", done.stdout, re.M)
    assert re.search(r"^browser \(wasm\) +\d+\.\d s +\d+\.\d\d s", done.stdout, re.M)
    assert re.search(r"^greedy parity \(WASM\): [01] of 1 answers", done.stdout, re.M)
    assert re.search(r"server writing \d+\.\d .* browser writing \d+", done.stdout)

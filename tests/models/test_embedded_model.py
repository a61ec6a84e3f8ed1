"""The embedded SmolLM2 model, built and run for real (no fakes).

The first run builds the ONNX GenAI folder (about a minute) into RAG_CACHE_DIR
or the user cache dir; later runs reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime_genai as og
import pytest

from rag.config import Settings
from rag.models.embedded import embedded_model_dir, prepare_embedded_model

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is the capital of France? Answer in one word."
MAX_LENGTH = 256


def _cache_dir() -> Path:
    return Settings().cache_dir


@pytest.fixture(scope="session")
def model_dir(models) -> Path:
    return prepare_embedded_model(_cache_dir(), log=lambda line: print(line, flush=True))


@pytest.fixture(scope="session")
def model(model_dir):
    return og.Model(str(model_dir))


@pytest.fixture(scope="session")
def tokenizer(model):
    return og.Tokenizer(model)


def _eos_ids(model_dir: Path) -> list[int]:
    config = json.loads((model_dir / "genai_config.json").read_text(encoding="utf-8"))
    eos = config["model"]["eos_token_id"]
    return eos if isinstance(eos, list) else [eos]


def _single_id(tokenizer, text: str) -> int:
    ids = list(tokenizer.encode(text))
    assert len(ids) == 1, f"{text} should be one special token, got {ids}"
    return int(ids[0])


def _prompt(tokenizer, question: str) -> str:
    messages = json.dumps([{"role": "user", "content": question}])
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def test_folder_is_where_documented(model_dir):
    assert model_dir == embedded_model_dir(_cache_dir())
    assert (model_dir / "genai_config.json").is_file()


def test_eos_ids_include_end_of_turn_tokens(model_dir, tokenizer):
    eos = _eos_ids(model_dir)
    assert _single_id(tokenizer, "<|im_end|>") in eos
    assert _single_id(tokenizer, "<|endoftext|>") in eos


def test_context_length_is_the_model_window(model_dir):
    config = json.loads((model_dir / "genai_config.json").read_text(encoding="utf-8"))
    assert config["model"]["context_length"] == 8192


def test_chat_template_is_smollm2_chatml(tokenizer):
    assert _prompt(tokenizer, "Hi") == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
        "trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_short_answer_stops_at_end_of_turn(model_dir, model, tokenizer):
    prompt_ids = tokenizer.encode(_prompt(tokenizer, QUESTION))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=MAX_LENGTH, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt_ids)
    stream, pieces, ids = tokenizer.create_stream(), [], []
    while not generator.is_done():
        generator.generate_next_token()
        ids.append(int(generator.get_next_tokens()[0]))
        pieces.append(stream.decode(ids[-1]))
    answer = "".join(pieces).strip()

    # Which words, and whether this model ends a short answer at all, depend on the CPU's
    # floating-point path. What any run shows: the first end-of-turn token ends the
    # answer (with it missing from the EOS ids, the model writes the next turns itself),
    # and an answer that stops before the limit stops on an EOS token.
    end_of_turn = _single_id(tokenizer, "<|im_end|>")
    assert end_of_turn not in ids[:-1], f"went on after the end of its turn: {answer!r}"
    ended_early = len(prompt_ids) + len(ids) < MAX_LENGTH
    assert not ended_early or ids[-1] in _eos_ids(model_dir), f"ended on {ids[-1]}: {answer!r}"
    assert answer and "<|im_end|>" not in answer


def test_second_prepare_does_not_rebuild(model_dir):
    before = model_dir.stat().st_mtime_ns
    again = prepare_embedded_model(
        _cache_dir(), log=lambda line: pytest.fail(f"unexpected log: {line}")
    )
    assert again == model_dir
    assert model_dir.stat().st_mtime_ns == before


def test_concurrent_builds_share_one_result(tmp_path, processes):
    # A leftover of an interrupted build must be cleaned, not taken as ready.
    stale = (
        embedded_model_dir(tmp_path).parent / f".build-{embedded_model_dir(tmp_path).name}-stale"
    )
    stale.mkdir(parents=True)
    (stale / "genai_config.json").write_text("{}")
    script = (
        "import sys; from pathlib import Path; "
        "from rag.models.embedded import prepare_embedded_model;"
        "print('READY', prepare_embedded_model(Path(sys.argv[1])))"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=1200)[0] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], outputs
    target = embedded_model_dir(tmp_path)
    assert all(f"READY {target}" in out for out in outputs), outputs
    assert sum("Converting the GGUF weights..." in out for out in outputs) == 1, outputs
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        [target.name, f"{target.name}.lock"]
    )
    shutil.rmtree(target)  # pytest keeps recent tmp dirs; this one holds ~270 MB

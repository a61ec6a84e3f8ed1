"""The chat-model kinds are entries of one registry: each spec form is checked, named and
loaded through its entry, and reading the registry loads no model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag.errors import RagError
from rag.models.registry import BACKENDS
from rag.models.spec import label, parse

# One valid spec per kind: a new kind must add one here.
EXAMPLES = {
    "embedded": "embedded",
    "onnx": "onnx:/models/phi-4-mini",
    "foundry": "foundry:phi-4-mini",
    "openai": "openai:qwen@http://127.0.0.1:8080/v1",
}


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(BACKENDS)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_each_kind_parses_and_names_its_spec(kind):
    assert parse(EXAMPLES[kind])[0] == kind
    assert label(EXAMPLES[kind]).strip()


@pytest.mark.parametrize(
    "spec", ["ollama", "gpt:x", "onnx:", "foundry:", "embedded:extra", "openai:qwen@localhost"]
)
def test_an_unknown_kind_or_a_malformed_spec_names_every_valid_form(spec):
    with pytest.raises(RagError) as raised:
        parse(spec)
    message = str(raised.value)
    assert f"Unknown model spec {spec!r}" in message
    assert all(backend.form in message for backend in BACKENDS.values())


@pytest.mark.integration  # a fresh interpreter: imports are per process
def test_checking_and_naming_specs_loads_no_model_runtime():
    probe = (
        "import json, sys; from rag.models.spec import label; "
        f"[label(s) for s in {list(EXAMPLES.values())!r}]; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('onnxruntime', 'onnxruntime_genai', 'openai', 'httpx', 'foundry_local', 'torch') "
        "or m in ('rag.models.onnx_genai', 'rag.models.foundry', 'rag.models.embedded', "
        "'rag.models.openai_compat'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []

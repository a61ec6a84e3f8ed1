"""The app's routes for answers written in the browser (#23): what the page may send,
which files are served, and the one thing the page's policy had to allow."""

from __future__ import annotations

import json

from rag.config import Settings
from rag.models.browser_jobs import Links
from rag.web import browser_llm, security
from rag.web.browser_llm import BrowserRoutes, _job_message


def test_the_policy_allows_webassembly_and_no_script_eval():
    rules = dict(r.split(" ", 1) for r in security.content_security_policy(["x"]).split("; "))
    assert "'wasm-unsafe-eval'" in rules["script-src"].split()
    assert "'unsafe-eval'" not in rules["script-src"].split()
    assert "'unsafe-inline'" not in rules["script-src"]
    assert rules["connect-src"] == "'self'"  # models and runtime come from the app alone


def test_the_page_may_send_token_ids_and_nothing_else():
    assert _job_message({"tokens": [1, 2], "provider": "webgpu"}) == {
        "tokens": [1, 2],
        "done": False,
        "provider": "webgpu",
    }
    for bad in ([1.5], ["1"], [True], [-1], [1 << 24], list(range(5000)), "12"):
        assert _job_message({"tokens": bad}) is None, bad
    sneaky = _job_message({"tokens": [], "provider": "cuda", "error": "<img src=x>" * 50})
    assert sneaky is not None and "provider" not in sneaky
    assert "<" not in sneaky["error"] and len(sneaky["error"]) <= 200


def test_only_the_models_graph_and_weights_are_served(tmp_path):
    """A boundary: the request is made in memory (no socket), and the user is named by a
    stand-in for Chainlit's login, which tests/web/test_login_security.py covers."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    config = {
        "model": {
            "context_length": 64,
            "eos_token_id": [2],
            "decoder": {
                "filename": "model.onnx",
                "num_hidden_layers": 1,
                "num_key_value_heads": 1,
                "head_size": 4,
            },
        }
    }
    (tmp_path / "genai_config.json").write_text(json.dumps(config))
    for name in ("model.onnx", "model.onnx.data"):
        (tmp_path / name).write_bytes(b"x" * 10)
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "France": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    template = {"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(template))

    async def who(request):
        return request.headers.get("x-test-user") or None

    server = Starlette()
    browser_llm.mount(
        server,
        BrowserRoutes(Settings(browser_model=tmp_path, cache_dir=tmp_path / "cache"), Links(), who),
    )
    client = TestClient(server)
    assert client.get("/browser-llm/model/model.onnx.data").status_code == 401  # logged out
    client.headers["x-test-user"] = "alice"
    weights = client.get("/browser-llm/model/model.onnx.data")
    assert weights.status_code == 200 and "immutable" in weights.headers["cache-control"]
    assert weights.headers["content-encoding"] == "identity"  # never gzipped on the fly
    for other in ("tokenizer.json", "genai_config.json", "..%2Fgenai_config.json"):
        assert client.get(f"/browser-llm/model/{other}").status_code == 404, other
    assert client.get("/browser-llm/static/browser_llm.js").status_code == 200
    assert client.get("/browser-llm/manifest", headers={"x-test-user": ""}).status_code == 401
    assert client.get("/browser-llm/static/..%2F..%2Fconfig.py").status_code == 404
    described = client.get("/browser-llm/manifest").json()
    assert described["model"]["data"] == "model.onnx.data"
    assert 1 in described["probe"]["tokens"]  # the check page's prompt, tokenized here
    assert described["embedding"] is None  # no embedder export in this cache folder

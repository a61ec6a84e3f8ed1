"""The app's routes for answers written in the browser (#23), under ``/browser-llm/``.

- ``static/NAME``: the page script (Chainlit's ``custom_js``) and the WebGPU check page.
- ``ort/NAME``: ONNX Runtime Web, from ``node_modules`` as ``package-lock.json`` pins it
  (``npm ci``, run by ``make``): served from the app's own origin, never a CDN.
- ``model/NAME?v=VERSION``: the browser model's graph and weights, for logged-in users,
  cached for good (a new version is a new URL), and kept by the page in the Cache API.
- ``embedder/model.onnx`` and ``manifest``: the check page's embedding model and test.
- ``links/TOKEN/hello`` and ``jobs/ID`` (POST): the page says what it can do, and sends
  the tokens it writes. Both answer only the logged-in user whose chat it is.

Only the files named here are served; the routes know no Chainlit: ``who`` says which
user a request is logged in as.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.errors import RagError
from rag.models.browser import WebModel, prepare_web_model
from rag.models.browser_jobs import PROVIDERS, Links, NotFound

if TYPE_CHECKING:  # Starlette loads with the app that mounts these routes
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

PREFIX = "/browser-llm"
SCRIPT_URL = f"{PREFIX}/static/browser_llm.js"
PAGE_URL = f"{PREFIX}/page.js"  # the app's page script, then ours: see BrowserRoutes.page
CHECK_URL = f"{PREFIX}/static/webgpu_check.html"
STATIC = Path(__file__).with_name("static")
STATIC_FILES = ("browser_llm.js", "webgpu_check.html", "webgpu_check.js")
ORT = Path(__file__).resolve().parents[2] / "node_modules" / "onnxruntime-web" / "dist"
# The native WebGPU bundle (the only one that runs 8-bit MatMulNBits) and its WASM part.
ORT_FILES = (
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
MAX_TOKENS_PER_POST = 4096
SENTENCE = "The nightly hotel limit is 260 euros in London."
PROBE = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
_UNPRINTABLE = re.compile(r"[^\w .,:;()'/+-]")

# Said outright: a module script or streamed WebAssembly of any other type is refused.
_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
}

Who = Callable[["Request"], Awaitable[str | None]]


def ort_problem() -> str | None:
    missing = [n for n in ORT_FILES if not (ORT / n).is_file()]
    return (
        f"ONNX Runtime Web is not installed ({missing[0]}): run `make install` (npm ci)."
        if missing
        else None
    )


class BrowserRoutes:
    def __init__(
        self, settings: Settings, links: Links, who: Who, before: tuple[Path, ...] = ()
    ) -> None:
        self.settings, self.links, self.who = settings, links, who
        self.before = before  # page scripts the app had already (e.g. the passage panel's)
        self._model: WebModel | None = None

    def model(self) -> WebModel:
        """Blocking: the browser model, read on first use (made then if `rag model prepare`
        did not)."""
        if self._model is None:
            self._model = WebModel(prepare_web_model(self.settings, log=lambda line: None))
        return self._model

    def problem(self) -> str | None:
        """Why answers cannot be written in the browser now, or None."""
        try:
            self.model()
        except RagError as exc:
            return str(exc)
        return ort_problem()

    def routes(self) -> list:
        from starlette.routing import Route

        return [
            Route("/page.js", self.page, methods=["GET"]),
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/ort/{name}", self.ort, methods=["GET"]),
            Route("/model/{name}", self.model_file, methods=["GET"]),
            Route("/embedder/{name}", self.embedder_file, methods=["GET"]),
            Route("/manifest", self.manifest, methods=["GET"]),
            Route("/links/{token}/hello", self.hello, methods=["POST"]),
            Route("/jobs/{job}", self.job, methods=["POST"]),
            Route("/decode", self.decode, methods=["POST"]),
        ]

    async def page(self, request: Request) -> Response:
        """Chainlit loads one page script: the app's own first, then ours, in one file,
        so that ours listens before the chat's first window message arrives."""
        from starlette.responses import Response

        scripts = [*self.before, STATIC / "browser_llm.js"]
        text = "\n;\n".join(await asyncio.to_thread(lambda: [p.read_text() for p in scripts]))
        return Response(text, media_type=_TYPES[".js"], headers={"Cache-Control": "no-cache"})

    async def static(self, request: Request) -> Response:
        # The page script may change with the app: the browser asks again each time.
        return _file(STATIC, STATIC_FILES, request.path_params["name"], "no-cache")

    async def ort(self, request: Request) -> Response:
        return _file(ORT, ORT_FILES, request.path_params["name"], "public, max-age=86400")

    async def model_file(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        if await self.who(request) is None:  # weights only for people who may chat
            return PlainTextResponse("Log in first.", status_code=401)
        try:
            files = (await asyncio.to_thread(self.model)).files()
        except RagError as exc:
            return PlainTextResponse(str(exc), status_code=503)
        name = request.path_params["name"]
        # Each version has its own URL, so a copy never goes stale.
        reply = _file(
            self.model().folder, tuple(files), name, "private, max-age=31536000, immutable"
        )
        # Sent as they are: Chainlit's gzip would compress hundreds of MB of weights (barely
        # compressible) on every download, a minute of the server's CPU each.
        reply.headers["Content-Encoding"] = "identity"
        return reply

    def embedder_folder(self) -> Path:
        """The embedding model's fp32 ONNX export (made by `rag model prepare`)."""
        from rag.embeddings.onnx_export import export_dir

        return export_dir(self.settings.cache_dir, self.settings.embedding_model, "fp32")

    async def embedder_file(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        if await self.who(request) is None:
            return PlainTextResponse("Log in first.", status_code=401)
        name = request.path_params["name"]
        return _file(self.embedder_folder(), ("model.onnx",), name, "private, max-age=86400")

    def embedding_probe(self) -> dict | None:
        """Blocking: the check page's test sentence, tokenized, and the server's vector."""
        from tokenizers import Tokenizer

        from rag.embeddings.session import OnnxSession

        folder = self.embedder_folder()
        if not (folder / "model.onnx").is_file():
            return None
        encoded = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(SENTENCE)
        [vector] = OnnxSession(folder, 256).embed([SENTENCE], 1)
        return {
            "url": f"{PREFIX}/embedder/model.onnx?v={(folder / 'model.onnx').stat().st_mtime_ns}",
            "ids": encoded.ids,
            "type_ids": encoded.type_ids,
            "vector": vector,
            "sentence": SENTENCE,
        }

    async def manifest(self, request: Request) -> Response:
        """What the check page needs: the model to load (for any logged-in user)."""
        from starlette.responses import JSONResponse

        if await self.who(request) is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        described = await asyncio.to_thread(self._described)
        if described["model"] is not None:
            model = self.model()
            described["probe"] = {
                "tokens": await asyncio.to_thread(model.prompt_ids, PROBE),
                "max_tokens": 16,
                "temperature": 0,
                "eos": model.eos,
            }
            described["embedding"] = await asyncio.to_thread(self.embedding_probe)
        return JSONResponse(described)

    async def decode(self, request: Request) -> Response:
        """The check page's answer as text (the tokenizer stays on the server)."""
        from starlette.responses import JSONResponse

        message = _job_message(await _json(request))
        if await self.who(request) is None or message is None:
            return JSONResponse({"error": "log in, and send token ids"}, status_code=400)
        decode = self.model().decoder()
        return JSONResponse({"text": "".join(decode(t) for t in message["tokens"])})

    def _described(self) -> dict:
        problem = self.problem()
        return {
            "problem": problem,
            "model": None if problem else self.model().manifest(f"{PREFIX}/model/"),
            "ort": f"{PREFIX}/ort/",
        }

    async def hello(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        body = await _json(request)
        adapter = body.get("adapter")
        webgpu = body.get("webgpu") is True
        await asyncio.to_thread(self.problem)  # reads (or makes) the model off the event loop
        try:
            self.links.hello(
                request.path_params["token"],
                await self.who(request),
                webgpu=webgpu,
                adapter=_printable(adapter) if isinstance(adapter, str) else None,
            )
        except NotFound:
            return JSONResponse({"error": "no such chat"}, status_code=404)
        return JSONResponse({**self._described(), "use": self.wanted(webgpu)})

    def wanted(self, webgpu: bool) -> bool:
        """RAG_BROWSER_LLM: auto writes in browsers with WebGPU, on in every browser."""
        return self.settings.browser_llm == "on" or (self.settings.browser_llm == "auto" and webgpu)

    async def job(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        message = _job_message(await _json(request))
        if message is None:
            return JSONResponse({"error": "malformed message"}, status_code=400)
        try:
            self.links.post(request.path_params["job"], await self.who(request), message)
        except NotFound:
            # Stopped, finished or never this user's: either way the page stops writing.
            return JSONResponse({"stop": True}, status_code=404)
        return JSONResponse({"stop": False})


def _job_message(body: dict) -> dict | None:
    """What the page may say about a job, checked: token ids, which runtime, done, error."""
    tokens = body.get("tokens", [])
    if not isinstance(tokens, list) or len(tokens) > MAX_TOKENS_PER_POST:
        return None
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 1 << 24 for t in tokens):
        return None
    message: dict = {"tokens": tokens, "done": body.get("done") is True}
    if body.get("provider") in PROVIDERS:
        message["provider"] = body["provider"]
    if isinstance(body.get("error"), str):
        message["error"] = _printable(body["error"]) or "unknown error"
    return message


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub(" ", text)[:200].strip()


async def _json(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _file(folder: Path, allowed: tuple[str, ...], name: str, cache: str) -> Response:
    from starlette.responses import FileResponse, PlainTextResponse

    if name not in allowed:
        return PlainTextResponse("Not found.", status_code=404)
    path = folder / name
    if not path.is_file():
        problem = ort_problem() if folder == ORT else f"{name} is missing."
        return PlainTextResponse(problem or "Not found.", status_code=404)
    kind = _TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=kind, headers={"Cache-Control": cache})


def mount(server: Starlette, routes: BrowserRoutes) -> None:
    """Put the routes first: Chainlit's catch-all route would answer their GETs with
    its page otherwise."""
    from starlette.routing import Mount

    server.router.routes.insert(0, Mount(PREFIX, routes=routes.routes()))

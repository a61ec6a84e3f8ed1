"""The page's guesses (rag/web/static/browser_llm.js, ``generate``): several tokens a run,
and the answer is token for token the one a token at a time gives.

The page script runs in Node with a stand-in for ONNX Runtime Web's session, at the one
boundary a real model cannot serve: a model whose choices the test knows, so that some
guesses are right and some wrong in every answer, and which holds the key-value cache as
the real one does (what the attention mask marks as kept, overwritten from there). The
real model in real Chromium is tests/browser/test_browser_llm.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from servers import ROOT

SCRIPT = ROOT / "rag" / "web" / "static" / "browser_llm.js"
# Loads the page script with what it needs of a window, then writes answers.
RUN = r"""
const fs = require("fs");
global.window = { addEventListener() {} };
global.performance = { now: () => Date.now() };
global.console.info = () => {};
eval(fs.readFileSync(process.argv[1], "utf8"));
const V = 40;
class Tensor {
  constructor(type, data, dims) { Object.assign(this, { type, data, dims, location: "cpu" }); }
  async getData() { return this.data; }
}
// The next token depends on the last two (so the answer repeats itself, as an answer
// repeats its passages) and on the position (so some repeats break: wrong guesses).
const choice = (h, p) => 1 + ((h[p] + 2 * (p > 0 ? h[p - 1] : 0) + (p % 11 === 0 ? 1 : 0)) % 6);
function session(rows) {
  const cache = [];
  const self = {
    runs: 0,
    async run(feeds) {
      self.runs += 1;
      const ids = Array.from(feeds.input_ids.data, Number);
      const mask = Array.from(feeds.attention_mask.data, Number);
      const kept = mask.indexOf(0) < 0 ? mask.length : mask.indexOf(0);
      if (mask.slice(kept).some((m) => m !== 0)) throw new Error("the mask is not a prefix");
      const start = kept - ids.length; // where this run's tokens go in the cache
      ids.forEach((t, i) => (cache[start + i] = t));
      const out = Math.min(rows, ids.length);
      const logits = new Float32Array(out * V);
      for (let r = 0; r < out; r++) {
        const p = start + ids.length - out + r;
        logits[r * V + choice(cache.slice(0, p + 1), p)] = 1;
      }
      const result = { logits: new Tensor("float32", logits, [1, out, V]) };
      for (const name of Object.keys(feeds)) {
        const kept = name.replace("past_key_values.", "present.");
        if (kept !== name) result[kept] = feeds[name];
      }
      return result;
    },
  };
  return self;
}
(async () => {
  const report = [];
  const manifest = { layers: 2, kv_heads: 1, head_size: 1, rows: 8 };
  for (const prompt of [[1, 2, 3, 4, 5, 1, 2, 3], [9, 8, 7, 9, 8, 7, 9, 8, 6], [5]]) {
    for (const provider of ["wasm", "webgpu"]) {
      const answers = {};
      for (const width of [1, 8]) {
        const s = session(manifest.rows);
        const got = [];
        const job = { tokens: prompt, max_tokens: 30, temperature: 0, eos: [0] };
        const model = { ort: { Tensor }, session: s, manifest, provider };
        const keep = async (t) => got.push(...t) && false;
        const times = await window.ragBrowserLlm.generate(job, model, keep, "static", width);
        answers[width] = { tokens: got, runs: s.runs, counted: times.tokens };
      }
      report.push({ prompt, provider, answers });
    }
  }
  console.log(JSON.stringify(report));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_the_pages_guesses_save_runs_and_change_no_token(processes):
    node = shutil.which("node")
    assert node, "Node.js is needed (make install runs npm ci with it)"
    done = subprocess.run(
        [node, "-e", RUN, str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    saved = 0
    for case in json.loads(done.stdout):
        one, many = case["answers"]["1"], case["answers"]["8"]
        assert many["tokens"] == one["tokens"], case  # the same answer, token for token
        assert len(one["tokens"]) == one["counted"] == many["counted"], case
        assert one["runs"] == len(one["tokens"])  # the prompt's run writes the first token
        saved += one["runs"] - many["runs"]
        assert 0 < len(one["tokens"]) <= 30, case
    assert saved > 0  # some guesses were right

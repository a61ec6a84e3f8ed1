// The WebGPU check page: what this browser has, and how fast it writes a short answer
// with the chat's own model and code (browser_llm.js). benchmarks.browser reads
// window.ragCheck once document.body.dataset.done is set.
(async () => {
  "use strict";
  const show = (id, text) => (document.getElementById(id).textContent = text);
  const options = new URLSearchParams(location.search);
  const result = {};
  try {
    const api = window.ragBrowserLlm;
    const adapter = await api.findAdapter();
    show("webgpu", adapter ? "yes" : "no (answers use WASM)");
    show("adapter", adapter || "none");
    const began = performance.now();
    const { described, model } = await api.load(options.get("provider") || undefined);
    result.load_s = (performance.now() - began) / 1000;
    result.provider = model.provider;
    result.model = described.model.name;
    show("provider", model.provider);
    show("model", `${described.model.name} (${described.model.layers} layers)`);
    show("load", `${result.load_s.toFixed(1)} s`);
    const probe = { ...described.probe };
    if (options.get("tokens")) probe.max_tokens = Number(options.get("tokens"));
    if (options.get("ids")) probe.tokens = options.get("ids").split(",").map(Number);
    show("prompt", `${probe.tokens.length} tokens`);
    const written = [];
    const width = options.get("width") ? Number(options.get("width")) : undefined;
    const keep = async (tokens) => written.push(...tokens) && false;
    const times = await api.generate(probe, model, keep, options.get("cache") || "static", width);
    Object.assign(result, times, { prompt_tokens: probe.tokens.length, written });
    result.tokens_per_s = times.tokens > 1 ? (times.tokens - 1) / (times.seconds - times.first) : null;
    show("first", `${times.first.toFixed(2)} s`);
    show("speed", result.tokens_per_s ? result.tokens_per_s.toFixed(2) : "-");
    result.text = (await api.post("decode", { tokens: written })).text;
    show("answer", result.text);
    if (described.embedding) {
      result.cosine = await api.embed(described.embedding, model);
      show("embedding", `cosine ${result.cosine.toFixed(4)} with the server's vector of “${described.embedding.sentence}”`);
    } else {
      show("embedding", "no embedding model export on the server (rag model prepare)");
    }
    show("status", "Done.");
  } catch (e) {
    result.error = String((e && e.message) || e);
    show("status", `Failed: ${result.error}`);
  }
  window.ragCheck = result;
  document.body.dataset.done = "1";
})();

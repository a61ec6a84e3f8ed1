// Writes the chat's answers in this browser with ONNX Runtime Web (#23): WebGPU when the
// browser has an adapter, WASM otherwise. The server retrieves, builds the prompt and
// sends its token ids here as a window message on the chat's own Socket.IO session;
// this page runs the model and posts each token back, and the server turns the tokens
// into text, checks the answer and stores it like any other. Served by the app (Chainlit's
// custom_js); ONNX Runtime Web and the model come from the app's own origin only.
(() => {
  "use strict";
  const BASE = "/browser-llm/";
  const TAG = "rag-browser-llm";
  const CACHE = "rag-browser-llm";
  let described = null; // what the server said at hello: the model, where ONNX Runtime Web is
  let loaded = null; // Promise of {ort, session, provider, manifest}
  let adapter; // undefined until asked, then a description or null
  let queue = Promise.resolve(); // one answer at a time

  async function findAdapter() {
    if (adapter !== undefined) return adapter;
    adapter = null;
    try {
      const found = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
      if (found) {
        const info = found.info || {};
        adapter = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "WebGPU adapter";
      }
    } catch (e) {
      adapter = null;
    }
    return adapter;
  }

  async function post(path, body) {
    const reply = await fetch(BASE + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await reply.json().catch(() => ({}));
    if (!reply.ok && !answer.stop) throw new Error(`${path}: HTTP ${reply.status}`);
    return answer;
  }

  // The model's files, kept in the Cache API: a later visit reads them from disk.
  async function bytes(url) {
    const began = performance.now();
    try {
      return await cachedBytes(url);
    } finally {
      console.info(`rag-browser-llm: ${url} read in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    }
  }

  async function cachedBytes(url) {
    let cache = null;
    try {
      cache = await caches.open(CACHE);
    } catch (e) {
      cache = null; // no Cache API outside a secure context: downloaded each visit
    }
    let reply = cache ? await cache.match(url) : undefined;
    if (!reply) {
      reply = await fetch(url, { credentials: "same-origin" });
      if (!reply.ok) throw new Error(`${url}: HTTP ${reply.status} ${await reply.text()}`);
      if (cache) await cache.put(url, reply.clone());
    }
    return new Uint8Array(await reply.arrayBuffer());
  }

  async function forget(prefix, keep) {
    try {
      const cache = await caches.open(CACHE);
      for (const request of await cache.keys()) {
        if (request.url.startsWith(prefix) && !keep.includes(request.url)) await cache.delete(request);
      }
    } catch (e) {
      /* nothing cached */
    }
  }

  // ONNX Runtime Web's attention goes wrong on adapters whose subgroups have fewer than 8
  // lanes (SwiftShader has 4): from the fifth token on its output was 10-40 % off, and
  // greedy answers parted from WASM's and the server's (1 of 4 equal). Given a device
  // without the subgroups feature it takes its other kernels, which agree with WASM to
  // within 1e-6. Other adapters get the device ONNX Runtime Web makes itself.
  const GPU_LIMITS = [
    "maxBindGroups",
    "maxBufferSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxComputeWorkgroupSizeY",
    "maxComputeWorkgroupSizeZ",
    "maxComputeWorkgroupStorageSize",
    "maxComputeWorkgroupsPerDimension",
    "maxStorageBufferBindingSize",
    "maxStorageBuffersPerShaderStage",
    "maxUniformBufferBindingSize",
  ];

  async function webgpu() {
    const found = await navigator.gpu.requestAdapter();
    const info = (found && found.info) || {};
    if (!found || !found.features.has("subgroups") || !(info.subgroupMinSize < 8)) return "webgpu";
    const requiredFeatures = [...found.features].filter((f) => !f.startsWith("subgroup") && !f.startsWith("chromium-"));
    const requiredLimits = {};
    for (const name of GPU_LIMITS) if (found.limits[name] !== undefined) requiredLimits[name] = found.limits[name];
    console.info(`rag-browser-llm: subgroups of ${info.subgroupMinSize} lanes: WebGPU without subgroups`);
    return { name: "webgpu", device: await found.requestDevice({ requiredFeatures, requiredLimits }) };
  }

  async function open(manifest, ortBase, provider) {
    const ort = await import(ortBase + "ort.webgpu.min.mjs");
    ort.env.wasm.wasmPaths = new URL(ortBase, location.href).href;
    // One thread: more need SharedArrayBuffer, hence COOP/COEP headers the app does not send.
    ort.env.wasm.numThreads = 1;
    const url = (name) => new URL(`${manifest.base}${name}?v=${manifest.version}`, location.href).href;
    const urls = [url(manifest.graph), ...(manifest.data ? [url(manifest.data)] : [])];
    await forget(new URL(manifest.base, location.href).href, urls); // older versions go
    const runtime = provider === "webgpu" ? await webgpu() : provider;
    const options = { executionProviders: [runtime], graphOptimizationLevel: "all" };
    if (manifest.data) options.externalData = [{ path: manifest.data, data: await bytes(urls[1]) }];
    if (provider === "webgpu") {
      // The key-value cache stays on the GPU between tokens.
      options.preferredOutputLocation = {};
      for (let i = 0; i < manifest.layers; i++) {
        options.preferredOutputLocation[`present.${i}.key`] = "gpu-buffer";
        options.preferredOutputLocation[`present.${i}.value`] = "gpu-buffer";
      }
    }
    const began = performance.now();
    const session = await ort.InferenceSession.create(await bytes(urls[0]), options);
    console.info(`rag-browser-llm: ${manifest.name} on ${provider} in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    return { ort, session, provider, manifest };
  }

  async function load(wanted) {
    const provider = wanted || ((await findAdapter()) ? "webgpu" : "wasm");
    try {
      return await open(described.model, described.ort, provider);
    } catch (e) {
      if (provider !== "webgpu") throw e;
      console.warn("WebGPU could not run the model; using WASM", e);
      return open(described.model, described.ort, "wasm");
    }
  }

  function int64(values, dims) {
    return [BigInt64Array.from(values, (v) => BigInt(v)), dims];
  }

  function pick(logits, offset, size, job, seen) {
    const row = new Float32Array(size);
    for (let i = 0; i < size; i++) row[i] = logits[offset + i];
    const penalty = job.repetition_penalty || 1;
    if (penalty !== 1) {
      for (const t of seen) row[t] = row[t] > 0 ? row[t] / penalty : row[t] * penalty;
    }
    if (!(job.temperature > 0)) {
      let best = 0;
      for (let i = 1; i < size; i++) if (row[i] > row[best]) best = i;
      return best;
    }
    // Temperature, then the smallest set of tokens holding 90% of the probability.
    let max = -Infinity;
    for (let i = 0; i < size; i++) max = Math.max(max, row[i]);
    const order = [];
    let total = 0;
    for (let i = 0; i < size; i++) {
      row[i] = Math.exp((row[i] - max) / job.temperature);
      total += row[i];
      order.push(i);
    }
    order.sort((a, b) => row[b] - row[a]);
    let kept = 0;
    let n = 0;
    while (n < order.length && kept < 0.9 * total) kept += row[order[n++]];
    let draw = Math.random() * kept;
    for (let i = 0; i < n; i++) {
      draw -= row[order[i]];
      if (draw <= 0) return order[i];
    }
    return order[0];
  }

  // Guesses at the next tokens from the text so far (prompt lookup): an answer repeats its
  // passages and question word for word, so what followed the latest earlier occurrence of
  // the last few tokens is a good guess at what comes next.
  function guess(history, wanted) {
    for (let size = 3; size >= 1; size--) {
      if (history.length <= size) continue;
      const tail = history.length - size;
      for (let start = tail - 1; start >= 0; start--) {
        let same = true;
        for (let j = 0; j < size && same; j++) same = history[start + j] === history[tail + j];
        if (same) return history.slice(start + size, start + size + wanted);
      }
    }
    return [];
  }

  function draft(history, wanted) {
    const guesses = [];
    while (guesses.length < wanted) {
      const more = guess([...history, ...guesses], wanted - guesses.length);
      if (!more.length) break;
      guesses.push(...more);
    }
    return guesses;
  }

  // Tokens checked per run after the prompt. A run's cost hardly depends on how many tokens
  // it reads, up to a few dozen: on a GPU it is bound by reading the weights; SwiftShader
  // (a software GPU) takes 12-17 s for 1 or 8, nearly all of it the GPU's own work (the
  // dispatches are issued in about 2 s); WASM takes 1.5 s for 8 where it takes 0.7-2 s
  // for 1. So each right guess saves a run.
  const WIDTH = 8;

  // One answer: the prompt in one pass, then runs of the newest token and up to WIDTH - 1
  // guesses. The model's own choice is taken at every position and a guess kept only while
  // it equals that choice, so the answer is the one a token at a time would give (greedy
  // or sampled); a wrong guess only costs the rest of that run. The key-value cache has
  // room for the whole answer from the start ("static"): the mask marks the tokens kept so
  // far, so a rejected guess's keys are simply written over by the next run, and every run
  // has the same shapes (on WebGPU short guesses are padded), so WebGPU compiles its
  // shaders once instead of at every token. "dynamic" grows the cache by each run's input
  // (it cannot take guesses back: one token a run).
  async function generate(job, model, onTokens, cache = "static", width = WIDTH) {
    const { ort, session, manifest, provider } = model;
    const tensor = (values, dims) => new ort.Tensor("int64", ...int64(values, dims));
    const wide = cache === "static" ? Math.max(1, Math.min(width, manifest.rows || width)) : 1;
    const room = cache === "static" ? job.tokens.length + job.max_tokens + wide : 0;
    let past = {};
    for (let i = 0; i < manifest.layers; i++) {
      for (const part of ["key", "value"]) {
        const dims = [1, manifest.kv_heads, room, manifest.head_size];
        past[`past_key_values.${i}.${part}`] = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b)), dims);
      }
    }
    const seen = new Set(job.tokens);
    const history = [...job.tokens];
    let ids = job.tokens; // this run's input: the prompt, then the newest token and guesses
    let guesses = [];
    let kept = 0; // tokens whose keys and values in the cache are the answer's
    let written = 0;
    const began = performance.now();
    const times = { first: null, tokens: 0, seconds: 0, runs: 0 };
    try {
      while (written < job.max_tokens) {
        const length = kept + ids.length;
        const mask = room ? Array.from({ length: room }, (_, i) => (i < length ? 1 : 0)) : new Array(length).fill(1);
        const feeds = {
          ...past,
          input_ids: tensor(ids, [1, ids.length]),
          attention_mask: tensor(mask, [1, mask.length]),
        };
        const out = await session.run(feeds);
        times.runs += 1;
        for (const t of Object.values(past)) if (t.location === "gpu-buffer") t.dispose();
        past = {};
        for (const name of Object.keys(out)) {
          if (name.startsWith("present.")) past[name.replace("present.", "past_key_values.")] = out[name];
        }
        const logits = out.logits;
        const [, rows, size] = logits.dims;
        const values = await logits.getData();
        // The rows are the last input positions' (the web graph computes no more than
        // it needs); after the prompt only its last counts, after a run every one.
        const skipped = ids.length - rows;
        const from = ids === job.tokens ? ids.length - 1 : 0;
        if (from < skipped) throw new Error(`the model gave ${rows} rows of logits for ${ids.length} tokens`);
        const chosen = [];
        for (let at = from; at < ids.length && written + chosen.length < job.max_tokens; at++) {
          const next = pick(values, (at - skipped) * size, size, job, seen);
          seen.add(next);
          chosen.push(next);
          const guessed = at - from < guesses.length ? guesses[at - from] : undefined;
          if (next !== guessed || job.eos.includes(next)) break;
        }
        if (logits.location === "gpu-buffer") logits.dispose();
        if (times.first === null) times.first = (performance.now() - began) / 1000;
        kept += ids === job.tokens ? ids.length : chosen.length; // the input rows now kept
        history.push(...chosen);
        written += chosen.length;
        times.tokens += chosen.length;
        const last = chosen[chosen.length - 1];
        if ((await onTokens(chosen)) || job.eos.includes(last)) break;
        guesses = wide > 1 ? draft(history, Math.min(wide - 1, job.max_tokens - written - 1)) : [];
        ids = [last, ...guesses];
        // WebGPU: the same shapes every run (a new shape compiles new shaders).
        while (provider === "webgpu" && room && ids.length < wide) ids.push(last);
      }
    } finally {
      for (const t of Object.values(past)) if (t.location === "gpu-buffer") t.dispose();
      times.seconds = (performance.now() - began) / 1000;
      console.info(`rag-browser-llm: ${job.tokens.length} prompt tokens, first token in ${times.first && times.first.toFixed(1)} s, ${times.tokens} tokens in ${times.runs} runs, ${times.seconds.toFixed(1)} s`);
    }
    return times;
  }

  async function run(job) {
    try {
      if (!described || described.problem) throw new Error(described ? described.problem : "no hello yet");
      loaded = loaded || load();
      const model = await loaded;
      const started = await post(`jobs/${job.job}`, { tokens: [], provider: model.provider });
      if (started.stop) return;
      await generate(job, model, async (tokens) => (await post(`jobs/${job.job}`, { tokens })).stop);
      await post(`jobs/${job.job}`, { tokens: [], done: true });
    } catch (e) {
      console.error("rag-browser-llm", e);
      await post(`jobs/${job.job}`, { error: String((e && e.message) || e) }).catch(() => {});
    }
  }

  async function hello(message) {
    const found = await findAdapter();
    described = await post(`links/${message.link}/hello`, { webgpu: !!found, adapter: found });
    document.documentElement.dataset.ragBrowserLlm = described.problem ? "unavailable" : found ? "webgpu" : "wasm";
    if (!described.problem && described.use && !loaded) {
      // Loaded now, while the question is typed: the model is what the first answer waits for.
      loaded = load();
      loaded.catch((e) => console.error("rag-browser-llm: the model did not load", e));
    }
  }

  // For the WebGPU check page (webgpu_check.js): the same loading and generation.
  window.ragBrowserLlm = {
    findAdapter,
    post,
    async load(provider) {
      described = await (await fetch(BASE + "manifest", { credentials: "same-origin" })).json();
      if (described.problem) throw new Error(described.problem);
      return { described, model: await load(provider) };
    },
    generate,
    // The embedding model on the same runtime: mean of the token vectors, unit length,
    // as the server's does; the cosine with the server's vector of the same sentence.
    async embed(probe, model) {
      const { ort, provider } = model;
      const session = await ort.InferenceSession.create(await bytes(new URL(probe.url, location.href).href), {
        executionProviders: [provider],
      });
      const n = probe.ids.length;
      const feeds = {};
      const given = { input_ids: probe.ids, attention_mask: new Array(n).fill(1), token_type_ids: probe.type_ids };
      for (const name of session.inputNames) feeds[name] = new ort.Tensor("int64", ...int64(given[name], [1, n]));
      const out = await session.run(feeds);
      const hidden = await out[session.outputNames[0]].getData();
      const size = hidden.length / n;
      const mean = new Float64Array(size);
      for (let t = 0; t < n; t++) for (let i = 0; i < size; i++) mean[i] += hidden[t * size + i] / n;
      const norm = Math.hypot(...mean);
      let dot = 0;
      for (let i = 0; i < size; i++) dot += (mean[i] / norm) * probe.vector[i];
      return dot;
    },
  };

  window.addEventListener("message", (event) => {
    // Chainlit hands the server's window messages to window.parent, which is this window.
    if (event.source !== window || event.origin !== location.origin) return;
    const message = event.data;
    if (!message || message.type !== TAG) return;
    if (message.kind === "hello") hello(message).catch((e) => console.error("rag-browser-llm", e));
    if (message.kind === "job") queue = queue.then(() => run(message));
  });
})();

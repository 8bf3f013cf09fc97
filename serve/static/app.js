// StyleAtlas page: plain JavaScript over the /api/ endpoints (no framework, no build step, no network but this server).
"use strict";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- state (mirrored in the URL: a permalink)
const state = {
  prompt: "", neutral: "", alpha: 0, beta: null, autoBeta: false, method: "global",  // beta, psi: applySliders
  sources: [{seed: 0}, {seed: 1}, {seed: 2}, {seed: 3}], psi: null,
  off: [],        // "layer:channel" left out of the current edit
  stack: [],      // accepted edits: {prompt, neutral, beta, alpha, off}
  selected: 0,    // index of the image the strips show
  channel: null,  // "layer:channel" shown in the channel panel
};
let info = null;
// slider ranges and defaults: the server's (/api/info "sliders"), else the page's own input attributes
let sliders = null;
let direction = null;  // the /api/channels answer for the current prompt

function readURL() {
  const q = new URLSearchParams(location.search);
  if (q.has("prompt")) state.prompt = q.get("prompt");
  if (q.has("neutral")) state.neutral = q.get("neutral");
  if (q.has("alpha")) state.alpha = clamp(parseFloat(q.get("alpha")) || 0, ...sliders.alpha);
  if (q.get("beta") === "auto") state.autoBeta = true;
  else if (q.has("beta")) state.beta = clamp(parseFloat(q.get("beta")) || sliders.default_beta, ...sliders.beta);
  const psi = parseFloat(q.get("psi"));  // 0 is a truncation too (every image the mean one)
  if (Number.isFinite(psi)) state.psi = psi;
  const sources = [];
  for (const s of (q.get("seeds") || "").split(",")) if (/^\d+$/.test(s)) sources.push({seed: parseInt(s, 10)});
  for (const l of (q.get("latents") || "").split(",")) {
    const m = /^([0-9a-f]+):(\d+)$/.exec(l);
    if (m) sources.push({latent: m[1], index: parseInt(m[2], 10)});
  }
  if (q.has("seeds") || q.has("latents")) state.sources = sources;
  state.off = (q.get("off") || "").split(",").filter((s) => /^\d+:\d+$/.test(s));
  try { state.stack = JSON.parse(q.get("stack") || "[]"); } catch (e) { state.stack = []; }
  if (!Array.isArray(state.stack)) state.stack = [];
  state.selected = clamp(parseInt(q.get("sel") || "0", 10) || 0, 0, Math.max(state.sources.length - 1, 0));
  state.channel = /^\d+:\d+$/.test(q.get("ch") || "") ? q.get("ch") : null;
  if (["global", "mapper", "optimize", "auto"].includes(q.get("method"))) state.method = q.get("method");
}

function writeURL() {
  const q = new URLSearchParams();
  if (state.prompt) q.set("prompt", state.prompt);
  if (state.neutral) q.set("neutral", state.neutral);
  q.set("alpha", String(state.alpha));
  q.set("beta", betaParam());
  q.set("seeds", state.sources.filter((s) => "seed" in s).map((s) => s.seed).join(","));
  const latents = state.sources.filter((s) => "latent" in s).map((s) => `${s.latent}:${s.index}`);
  if (latents.length) q.set("latents", latents.join(","));
  q.set("psi", String(state.psi));
  if (state.off.length) q.set("off", state.off.join(","));
  if (state.stack.length) q.set("stack", JSON.stringify(state.stack));
  if (state.selected) q.set("sel", String(state.selected));
  if (state.channel) q.set("ch", state.channel);
  if (state.method !== "global") q.set("method", state.method);
  history.replaceState(null, "", "?" + q.toString());
}

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const betaParam = () => (state.autoBeta ? "auto" : String(state.beta));

// ---------------------------------------------------------------- requests
function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, params) {
  const url = params ? `${path}?${params}` : path;
  const r = await fetch(url);
  const body = await r.json().catch(() => ({error: `${r.status} ${r.statusText}`}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function editParams(extra) {
  const q = new URLSearchParams();
  if (state.prompt) q.set("prompt", state.prompt);
  if (state.neutral) q.set("neutral", state.neutral);
  q.set("beta", betaParam());
  q.set("alpha", String(state.alpha));
  if (state.off.length) q.set("off", state.off.join(","));
  if (state.stack.length) q.set("stack", JSON.stringify(state.stack));
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);  // images here: the global direction (jobs.js: the others)
  return q;
}

function addSource(q, s) {
  if ("seed" in s) q.append("seed", String(s.seed));
  else q.append("latent", `${s.latent}:${s.index}`);
  q.set("psi", String(state.psi));
  const size = displaySize();
  if (size) q.set("size", String(size));
  return q;
}

function displaySize() {  // big generators: ask for 256 px, the size the page shows
  return info && info.resolution > 256 ? 256 : null;
}

// An <img> fed through fetch: errors come back as one-line JSON, and while a request is in flight only the
// newest of the URLs asked for meanwhile is fetched next, so the images follow a slider without a backlog.
class Slot {
  constructor(img) { this.img = img; this.busy = false; this.pending = null; this.current = null; }
  set(url) {
    if (url === this.current || url === this.pending) return;
    if (this.busy) { this.pending = url; return; }
    this.load(url);
  }
  async load(url) {
    this.busy = true;
    this.current = url;
    this.img.classList.add("loading");
    try {
      const r = await fetch(url);
      if (!r.ok) {
        const body = await r.json().catch(() => ({}));
        throw new Error(body.error || `${r.status} ${r.statusText}`);
      }
      const blob = await r.blob();
      const old = this.img.src;
      this.img.src = URL.createObjectURL(blob);
      await this.img.decode().catch(() => {});
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      this.img.dataset.url = url;
    } catch (e) {
      showError(e.message);
      this.current = null;
    } finally {
      this.img.classList.remove("loading");
      this.busy = false;
      const next = this.pending;
      this.pending = null;
      if (next && next !== this.current) this.load(next);
    }
  }
}

// ---------------------------------------------------------------- images
let cards = [];  // [{source, original: Slot, edited: Slot, link}]
const stripSlot = new Slot($("strip"));
const channelSlot = new Slot($("channel-strip"));

function sourceName(s) { return "seed" in s ? `seed ${s.seed}` : `latent ${s.latent.slice(0, 6)}…[${s.index}]`; }

function buildCards() {
  const box = $("cards");
  box.textContent = "";
  cards = state.sources.map((source, i) => {
    const card = document.createElement("div");
    card.className = "card" + (i === state.selected ? " selected" : "");
    card.dataset.index = String(i);
    const head = document.createElement("header");
    head.innerHTML = `<span></span><span><a download>png</a><button class="remove" title="remove">×</button></span>`;
    head.firstChild.textContent = sourceName(source);
    const pair = document.createElement("div");
    pair.className = "pair";
    const figures = ["original", "edited"].map((label) => {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.className = label;
      img.alt = `${label} ${sourceName(source)}`;
      const cap = document.createElement("figcaption");
      cap.textContent = label;
      fig.append(img, cap);
      pair.append(fig);
      return img;
    });
    card.append(head, pair);
    card.addEventListener("click", (ev) => {
      if (ev.target.closest("button.remove, a")) return;
      state.selected = i;
      document.querySelectorAll(".card").forEach((c) => c.classList.toggle("selected", c === card));
      refreshStrips();
      writeURL();
    });
    head.querySelector("button.remove").addEventListener("click", () => {
      state.sources.splice(i, 1);
      state.selected = clamp(state.selected, 0, Math.max(state.sources.length - 1, 0));
      buildCards();
      refreshImages();
    });
    box.append(card);
    return {source, original: new Slot(figures[0]), edited: new Slot(figures[1]), link: head.querySelector("a")};
  });
}

function refreshEdited() {
  for (const c of cards) {
    c.edited.set("/api/edit.png?" + addSource(editParams(), c.source));
    c.link.href = "/api/edit.png?" + addSource(editParams({download: "1"}), c.source);
  }
  const all = editParams({download: "1"});
  state.sources.forEach((s) => addSource(all, s));
  $("dl-png").href = "/api/edit.png?" + all;
  $("dl-delta").href = "/api/delta.npy?" + editParams();
  writeURL();
}

function refreshStrips() {
  const s = state.sources[state.selected];
  if (!s) return;
  $("strip-label").textContent = `${sourceName(s)}: α = -10 … 10` + (state.prompt ? ` along "${state.prompt}"` : "");
  stripSlot.set("/api/strip.png?" + addSource(editParams({alphas: "-10:10:7"}), s));
  if (state.channel) {
    const [layer, ch] = state.channel.split(":");
    channelSlot.set(`/api/channel/${layer}/${ch}/strip.png?` + addSource(new URLSearchParams({alpha: 10, steps: 5}), s));
  }
}

function refreshOriginals() {
  for (const c of cards) c.original.set("/api/edit.png?" + addSource(new URLSearchParams(), c.source));
}

function refreshImages() {
  refreshOriginals();
  refreshEdited();
  refreshStrips();
}

// ---------------------------------------------------------------- controls
function applyPrompts() {
  const prompt = $("prompt").value.trim(), neutral = $("neutral").value.trim();
  if (prompt === state.prompt && neutral === state.neutral) return;
  state.prompt = prompt;
  state.neutral = neutral;
  state.off = [];
  writeURL();
  refreshDirection();
}

function drawStack() {
  const box = $("stack");
  box.textContent = "";
  state.stack.forEach((e, i) => {
    const li = document.createElement("li");
    li.textContent = `${e.prompt} α ${e.alpha} β ${e.beta}` + (e.off && e.off.length ? ` (${e.off.length} off)` : "");
    const rm = document.createElement("button");
    rm.textContent = "×";
    rm.title = "remove this accepted edit";
    rm.addEventListener("click", () => { state.stack.splice(i, 1); drawStack(); refreshEdited(); refreshStrips(); });
    li.append(rm);
    box.append(li);
  });
}

function setAlpha(a) {
  state.alpha = Math.round(clamp(a, ...sliders.alpha) * 10) / 10;
  $("alpha").value = state.alpha;
  $("alpha-value").textContent = state.alpha.toFixed(1);
}

function startNextEdit() {  // after Accept or Reset: alpha 0, every channel on, the stack as it now is
  state.off = [];
  setAlpha(0);
  drawStack();
  drawChart();
  refreshEdited();
  refreshStrips();
}

function bindControls() {
  suggestions($("prompt"), $("prompt-suggest"), applyPrompts);
  suggestions($("neutral"), $("neutral-suggest"), applyPrompts);
  $("alpha").addEventListener("input", () => { setAlpha(parseFloat($("alpha").value)); refreshEdited(); });
  let betaTimer = null;
  $("beta").addEventListener("input", () => {
    state.beta = parseFloat($("beta").value);
    $("beta-value").textContent = state.beta.toFixed(3);
    clearTimeout(betaTimer);
    betaTimer = setTimeout(() => { writeURL(); refreshDirection(); }, 60);
  });
  $("auto-beta").addEventListener("change", () => {
    state.autoBeta = $("auto-beta").checked;
    $("beta").disabled = state.autoBeta;
    if (!state.autoBeta) $("beta-value").textContent = state.beta.toFixed(3);
    writeURL();
    refreshDirection();
  });
  $("accept").addEventListener("click", () => {
    if (!state.prompt || !state.alpha) { showError("set a target prompt and a nonzero α before Accept."); return; }
    if (state.stack.length >= ((info && info.limits.stack) || 8)) { showError("the stack is full; Reset or remove an edit."); return; }
    state.stack.push({prompt: state.prompt, neutral: state.neutral, beta: betaParam(), alpha: state.alpha, off: state.off.slice()});
    startNextEdit();
  });
  $("reset").addEventListener("click", () => { state.stack = []; startNextEdit(); });
  $("add-seed").addEventListener("click", () => {
    const typed = $("seed-input").value.trim();
    const seeds = state.sources.filter((s) => "seed" in s).map((s) => s.seed);
    const seed = /^\d+$/.test(typed) ? parseInt(typed, 10) : (seeds.length ? Math.max(...seeds) + 1 : 0);
    if (state.sources.length >= ((info && info.limits.sources) || 16)) { showError("at most 16 images at once."); return; }
    state.sources.push({seed});
    $("seed-input").value = "";
    buildCards();
    refreshImages();
  });
  $("psi").addEventListener("change", () => {
    const psi = parseFloat($("psi").value);
    if (!Number.isFinite(psi)) return;
    state.psi = psi;
    refreshImages();
  });
  $("latent-file").addEventListener("change", uploadLatents);
  $("channel-toggle").addEventListener("click", () => state.channel && toggleChannel(state.channel));
  $("copy-link").addEventListener("click", async () => {
    writeURL();
    try { await navigator.clipboard.writeText(location.href); $("copy-link").textContent = "link copied"; }
    catch (e) { prompt("Copy this link:", location.href); }
    setTimeout(() => { $("copy-link").textContent = "permalink"; }, 1500);
  });
  window.addEventListener("resize", drawChart);
}

async function uploadLatents() {
  const file = $("latent-file").files[0];
  if (!file) return;
  try {
    const r = await fetch(`/api/latents?name=${encodeURIComponent(file.name)}`, {method: "POST", body: file});
    const body = await r.json().catch(() => ({error: `${r.status} ${r.statusText}`}));
    if (!r.ok) throw new Error(body.error);
    const room = ((info && info.limits.sources) || 16) - state.sources.length;
    for (let i = 0; i < Math.min(body.count, room); i++) state.sources.push({latent: body.id, index: i});
    showError(body.count > room ? `${body.name}: showing ${room} of its ${body.count} codes.` : "");
    buildCards();
    refreshImages();
  } catch (e) {
    showError(e.message);
  } finally {
    $("latent-file").value = "";
  }
}

function pageSliders() {
  const range = (id) => [parseFloat($(id).min), parseFloat($(id).max)];
  return {alpha: range("alpha"), beta: range("beta"), default_beta: parseFloat($("beta").value),
          psi: parseFloat($("psi").value)};
}

function applySliders(given) {
  sliders = given;
  for (const id of ["alpha", "beta"]) [$(id).min, $(id).max] = sliders[id];
  state.beta = sliders.default_beta;
  state.psi = sliders.psi;
}

async function start() {
  let given = pageSliders();
  try {
    info = await api("/api/info");
    $("atlas-info").textContent = `${info.name}: ${info.num_channels.toLocaleString()} channels, ` +
      `${info.vocab_size.toLocaleString()} phrases, ${info.resolution} px, neutral "${info.neutral}"`;
    $("neutral").placeholder = info.neutral;
    given = info.sliders;
  } catch (e) {
    showError(e.message);
  }
  applySliders(given);
  readURL();
  bindControls();
  $("prompt").value = state.prompt;
  $("neutral").value = state.neutral;
  setAlpha(state.alpha);
  $("beta").value = state.beta;
  $("beta-value").textContent = state.beta.toFixed(3);
  $("auto-beta").checked = state.autoBeta;
  $("beta").disabled = state.autoBeta;
  $("psi").value = state.psi;
  drawStack();
  buildCards();
  await refreshDirection();
  if (state.channel) selectChannel(state.channel);
  document.body.dataset.ready = "1";
}

start();

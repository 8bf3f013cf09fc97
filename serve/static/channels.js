// StyleAtlas page: the direction of the current prompt, its per-layer channel chart and the channel panel.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

// ---------------------------------------------------------------- direction and channel chart
let directionToken = 0;

async function refreshDirection() {
  const token = ++directionToken;
  if (!state.prompt) {
    direction = null;
    drawChart();
    showError("");
    refreshImages();
    return;
  }
  const q = new URLSearchParams({prompt: state.prompt, beta: betaParam()});
  if (state.neutral) q.set("neutral", state.neutral);
  try {
    const d = await api("/api/channels", q);
    if (token !== directionToken) return;
    direction = d;
    showError("");
    if (state.autoBeta && typeof d.beta === "number") {
      $("beta").value = d.beta;
      $("beta-value").textContent = `auto: ${d.beta.toFixed(2)}`;
    }
    drawChart();
    refreshImages();
  } catch (e) {
    if (token !== directionToken) return;
    direction = null;
    drawChart();
    refreshOriginals();
    showError(e.message);
  }
}

function drawChart() {
  const svg = $("chart");
  svg.textContent = "";
  const list = $("channel-list");
  list.textContent = "";
  if (!direction) { $("direction-label").textContent = ""; return; }
  const d = direction;
  $("direction-label").textContent =
    `"${d.prompt}" vs "${d.neutral}": ${d.num_c} channels, β ${d.beta == null ? "mixed" : d.beta.toFixed(3)}` +
    (state.off.length ? `, ${state.off.length} off` : "");
  const layers = d.layers;
  const width = svg.clientWidth || 600, height = 220, top = 8, axis = 30;
  const mid = top + (height - top - axis) / 2;
  const colW = width / Math.max(layers.length, 1);
  const byLayer = new Map(layers.map((l) => [l.index, {up: [], down: []}]));
  for (const c of d.channels) byLayer.get(c.layer)[c.delta_s > 0 ? "up" : "down"].push(c);
  let tallest = 1e-9;
  for (const v of byLayer.values()) for (const side of ["up", "down"]) {
    tallest = Math.max(tallest, v[side].reduce((t, c) => t + Math.abs(c.score), 0));
  }
  const scale = (mid - top - 2) / tallest;
  const line = document.createElementNS(SVG, "line");
  Object.entries({x1: 0, x2: width, y1: mid, y2: mid, stroke: "#999"}).forEach(([k, v]) => line.setAttribute(k, v));
  svg.append(line);
  layers.forEach((l, i) => {
    const x = i * colW + colW * 0.15, w = colW * 0.7;
    for (const side of ["up", "down"]) {
      let y = mid;
      for (const c of byLayer.get(l.index)[side]) {
        const h = Math.max(2, Math.abs(c.score) * scale);
        const rect = document.createElementNS(SVG, "rect");
        const key = `${c.layer}:${c.channel}`;
        rect.setAttribute("x", x);
        rect.setAttribute("y", side === "up" ? y - h : y);
        rect.setAttribute("width", w);
        rect.setAttribute("height", Math.max(h - 0.5, 1.5));
        rect.setAttribute("fill", side === "up" ? "#d9534f" : "#337ab7");
        rect.setAttribute("class", "bar" + (state.off.includes(key) ? " off" : "") + (state.channel === key ? " selected" : ""));
        rect.dataset.ch = key;
        const title = document.createElementNS(SVG, "title");
        title.textContent = `layer ${c.layer} channel ${c.channel}: score ${c.score.toFixed(3)}, consistency ` +
          `${c.consistency.toFixed(2)}; ${c.labels.map((p) => p[0]).join(", ")}`;
        rect.append(title);
        rect.addEventListener("click", () => selectChannel(key));
        svg.append(rect);
        y = side === "up" ? y - h : y + h;
      }
    }
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", i * colW + colW / 2);
    label.setAttribute("y", height - 14);
    label.setAttribute("text-anchor", "middle");
    label.textContent = `L${l.index}`;
    const res = label.cloneNode();
    res.setAttribute("y", height - 2);
    res.textContent = `${l.resolution}px`;
    svg.append(label, res);
  });
  list.innerHTML = "<tr><th>on</th><th>layer</th><th>channel</th><th>score</th><th>consistency</th><th>labels</th></tr>";
  for (const c of d.channels.slice(0, 12)) {
    const key = `${c.layer}:${c.channel}`;
    const tr = document.createElement("tr");
    tr.className = "ch" + (state.channel === key ? " selected" : "");
    tr.dataset.ch = key;
    tr.innerHTML = "<td><input type=checkbox></td><td></td><td></td><td></td><td></td><td></td>";
    const cells = tr.querySelectorAll("td");
    cells[1].textContent = c.layer;
    cells[2].textContent = c.channel;
    cells[3].textContent = (c.score > 0 ? "+" : "") + c.score.toFixed(3);
    cells[4].textContent = c.consistency.toFixed(2);
    cells[5].textContent = c.labels.map((p) => p[0]).join(", ");
    const box = cells[0].firstChild;
    box.checked = !state.off.includes(key);
    box.addEventListener("click", (ev) => { ev.stopPropagation(); toggleChannel(key); });
    tr.addEventListener("click", () => selectChannel(key));
    list.append(tr);
  }
}

function toggleChannel(key) {
  const i = state.off.indexOf(key);
  if (i >= 0) state.off.splice(i, 1); else state.off.push(key);
  drawChart();
  updateChannelPanel();
  refreshEdited();
  refreshStrips();
}

async function selectChannel(key) {
  state.channel = key;
  drawChart();
  refreshStrips();
  writeURL();
  const [layer, ch] = key.split(":");
  try {
    const c = await api(`/api/channel/${layer}/${ch}`, new URLSearchParams({k: 10}));
    if (state.channel !== key) return;
    $("channel-panel").hidden = false;
    $("channel-title").textContent = `layer ${c.layer} (${c.resolution} px), channel ${c.channel}`;
    $("channel-stats").textContent = `consistency ${c.consistency.toFixed(3)} · style mean ${c.style_mean.toFixed(3)}` +
      ` · std ${c.style_std.toFixed(3)} · strip: this channel alone, -10σ … +10σ`;
    const words = $("channel-words");
    words.textContent = "";
    for (const w of c.words) {
      const li = document.createElement("li");
      li.textContent = `${w.phrase} (${w.score >= 0 ? "+" : ""}${w.score.toFixed(3)})`;
      words.append(li);
    }
    updateChannelPanel();
  } catch (e) {
    showError(e.message);
  }
}

function updateChannelPanel() {
  if (!state.channel) return;
  const off = state.off.includes(state.channel);
  $("channel-toggle").textContent = off ? "turn this channel back on" : "turn this channel off in the edit";
  $("channel-toggle").dataset.off = off ? "1" : "0";
}


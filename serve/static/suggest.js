// StyleAtlas page: vocabulary suggestions under a prompt box, as you type (prefix / substring, then FAISS).
"use strict";

// ---------------------------------------------------------------- prompt suggestions
function suggestions(input, list, onPick) {
  let items = [], active = -1, timer = null, asked = 0;
  const close = () => { list.hidden = true; active = -1; };
  const draw = () => {
    list.textContent = "";
    items.forEach((p, i) => {
      const li = document.createElement("li");
      li.textContent = p.phrase;
      if (p.note) { const s = document.createElement("small"); s.textContent = " " + p.note; li.append(s); }
      if (i === active) li.className = "active";
      li.addEventListener("mousedown", (ev) => { ev.preventDefault(); input.value = p.phrase; close(); onPick(); });
      list.append(li);
    });
    list.hidden = items.length === 0;
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = input.value.trim();
      const token = ++asked;
      if (!text) { items = []; close(); return; }
      try {
        const s = await api("/api/suggest", new URLSearchParams({q: text, k: 8, similar: "0"}));
        if (token !== asked) return;
        items = s.matches.map((p) => ({phrase: p}));
        if (s.exact) {  // a vocabulary phrase: its neighbours in CLIP space cost nothing (FAISS)
          const n = await api("/api/suggest", new URLSearchParams({q: text, k: 5, similar: "1"}));
          if (token !== asked) return;
          for (const p of n.similar || []) {
            if (!items.some((x) => x.phrase === p.phrase)) items.push({phrase: p.phrase, note: `≈ ${p.cosine.toFixed(2)}`});
          }
        }
        active = -1;
        draw();
      } catch (e) { items = []; close(); }
    }, 90);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!items.length) return;
      ev.preventDefault();
      active = (active + (ev.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      draw();
    } else if (ev.key === "Enter") {
      if (active >= 0 && !list.hidden) input.value = items[active].phrase;
      clearTimeout(timer);
      asked++;
      close();
      onPick();
    } else if (ev.key === "Escape") {
      close();
    }
  });
  input.addEventListener("blur", () => setTimeout(close, 150));
  input.addEventListener("change", onPick);
}


// The slow edits as server jobs: the method selector (mapper / optimize / auto: POST /api/edit) and image upload
// (inversion: POST /api/images). Both poll GET /api/job/{id} and show its progress. Uses app.js's globals.
"use strict";

function jobBox(label, total) {
  $("job-box").hidden = false;
  $("job-label").textContent = label;
  $("job-progress").max = Math.max(total, 1);
  $("job-progress").value = 0;
}

async function startJob(url, body) {
  const r = await fetch(url, {method: "POST", body});
  const job = await r.json().catch(() => ({error: `${r.status} ${r.statusText}`}));
  if (!r.ok) throw new Error(job.error || `${r.status} ${r.statusText}`);
  return job;
}

async function pollJob(job, label) {  // until done: the finished job, or an Error with its one line
  for (;;) {
    $("job-progress").max = Math.max(job.total, 1);
    $("job-progress").value = job.step;
    $("job-label").textContent = `${label}: step ${job.step} of ${job.total} (${job.status}, ${job.seconds} s)`;
    if (job.status === "done") return job;
    if (job.status === "error") throw new Error(job.error);
    await new Promise((resolve) => setTimeout(resolve, 250));
    job = await api(`/api/job/${job.id}`);
  }
}

function showMethodControls() {
  $("method").value = state.method;
  $("method-run").hidden = state.method === "global";
}

async function runMethod() {
  if (!state.prompt) { showError("set a target prompt first."); return; }
  if (!state.sources.length) { showError("add an image first."); return; }
  const steps = clamp(parseInt($("method-steps").value, 10) || 20, 1, (info && info.limits.optimize_steps) || 300);
  const q = new URLSearchParams({prompt: state.prompt, beta: betaParam(), method: state.method, steps: String(steps)});
  if (state.neutral) q.set("neutral", state.neutral);
  if (state.alpha) q.set("alpha", String(state.alpha));
  state.sources.forEach((s) => addSource(q, s));
  $("run-method").disabled = true;
  $("method-note").textContent = "";
  showError("");
  try {
    const label = `${state.method} "${state.prompt}"`;
    jobBox(label, steps);
    const job = await pollJob(await startJob("/api/edit?" + q), label);
    const img = $("method-result");
    img.src = job.image;
    img.hidden = false;
    const ignored = state.stack.length || state.off.length ? " (one edit: stacked edits and channels turned off are for the global view)" : "";
    $("method-note").textContent = `method used: ${job.method}. ${job.reason}${ignored}`;
  } catch (e) {
    showError(e.message);
  } finally {
    $("run-method").disabled = false;
  }
}

async function uploadImage() {
  const file = $("image-file").files[0];
  if (!file) return;
  const steps = clamp(parseInt($("invert-steps").value, 10) || 100, 1, (info && info.limits.invert_steps) || 500);
  showError("");
  try {
    if (state.sources.length >= ((info && info.limits.sources) || 16)) throw new Error("at most 16 images at once.");
    const label = `inverting ${file.name}`;
    jobBox(label, steps);
    const q = new URLSearchParams({name: file.name, steps: String(steps)});
    const job = await pollJob(await startJob("/api/images?" + q, file), label);
    const latent = job.latent;
    state.sources.push({latent: latent.id, index: 0});
    $("method-note").textContent = `${latent.name}: inverted in ${latent.steps} steps, PSNR ${latent.psnr} dB; it is now an image to edit.`;
    buildCards();
    refreshImages();
  } catch (e) {
    showError(e.message);
  } finally {
    $("image-file").value = "";
  }
}

$("method").addEventListener("change", () => {
  state.method = $("method").value;
  showMethodControls();
  writeURL();
});
$("run-method").addEventListener("click", runMethod);
$("image-file").addEventListener("change", uploadImage);
showMethodControls();

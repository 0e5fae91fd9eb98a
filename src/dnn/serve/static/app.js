// dnn serve: the page. Plain JavaScript, no framework, nothing from another site. Every text that came from a
// client or a model is put in with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const PANELS = ["translate", "classify", "tag", "image", "generate", "run"];
let runs = [];
let current = null;

// A server bound beyond this machine needs its token: dnn serve prints the page's address with #token=… (a
// fragment, never sent to the server). It is kept for this tab, taken out of the address bar, and sent with every
// request as a bearer header.
const TOKEN = (() => {
  const found = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (found) {
    sessionStorage.setItem("dnn-token", decodeURIComponent(found[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("dnn-token");
})();
const authorized = (headers) => (TOKEN ? { ...headers, Authorization: `Bearer ${TOKEN}` } : headers);

// ---------------------------------------------------------------------------------------------------- helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, body) {
  const options = body === undefined ? { headers: authorized({}) } : {
    method: "POST", headers: authorized({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

async function busy(button, work) {
  button.disabled = true;
  showError("");
  try { await work(); } catch (e) { showError(e.message); } finally { button.disabled = false; }
}

// Viridis, 9 stops: weight 0 → dark blue, 1 → yellow.
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
  [92, 200, 99], [170, 220, 50], [253, 231, 37]];
function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

const shown = (token) => (token === " " ? "␣" : token === "\n" ? "↵" : token);

function bars(container, classes, probabilities, top) {
  container.replaceChildren();
  classes.forEach((name, i) => {
    const row = el("div", "bar-row" + (name === top ? " top" : ""));
    row.append(el("span", "bar-label", name));
    const track = el("span", "bar-track");
    const fill = el("span", "bar-fill");
    fill.style.width = `${(100 * probabilities[i]).toFixed(1)}%`;
    track.append(fill);
    row.append(track, el("span", "bar-value", probabilities[i].toFixed(3)));
    container.append(row);
  });
}

// ------------------------------------------------------------------------------------------ runs and the header

async function waitUntilHealthy() {
  for (;;) {
    const response = await fetch("/health", { headers: authorized({}) }).catch(() => null);
    const data = response ? await response.json().catch(() => ({})) : {};
    if (response && response.ok) return;
    if (data.status === "failed" || (response && response.status === 401)) throw new Error(data.detail);
    $("status").textContent = data.total ? `loading runs (${data.loaded} of ${data.total})…` : "connecting…";
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

async function start() {
  try {
    await waitUntilHealthy();
    runs = await api("/runs");
  } catch (e) {
    $("status").textContent = "";
    showError(e.message);
    return;
  }
  const select = $("run");
  for (const run of runs) {
    const option = el("option", null, `${run.name} — ${run.task}, ${run.model}`);
    option.value = run.name;
    select.append(option);
  }
  select.disabled = false;
  select.addEventListener("change", () => choose(select.value));
  $("status").textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}`;
  const wanted = new URLSearchParams(location.search).get("run");
  choose(runs.some((r) => r.name === wanted) ? wanted : runs[0].name);
}

function choose(name) {
  current = runs.find((r) => r.name === name);
  $("run").value = name;
  showError("");
  $("about").hidden = false;
  $("about-task").textContent = current.task;
  $("about-model").textContent = `${current.model} · ${current.parameters.toLocaleString("en")} parameters` +
    (current.steps ? ` · ${current.steps.toLocaleString("en")} steps` : "");
  const h = current.headline;
  $("about-headline").textContent = h ? `${h.split} ${h.metric.replace(/_/g, " ")} ${h.value.toFixed(3)}` : "";
  const report = $("report-link");
  report.hidden = !current.report;
  // a report opens as a page of its own, which carries no header: the token goes in its address
  if (current.report) report.href = TOKEN ? `${current.report}?token=${encodeURIComponent(TOKEN)}` : current.report;
  $("curves-button").hidden = !current.curves;
  $("curves").hidden = true;
  $("curves").replaceChildren();
  for (const p of PANELS) $(`panel-${p}`).hidden = p !== current.panel;
  if (current.panel === "run") buildRunPanel(current);
}

// ------------------------------------------------------------------------------------------ training curves

function lineChart(title, xs, ys, color) {
  const W = 320, H = 160, L = 44, R = 8, T = 22, B = 24;
  const points = xs.map((x, i) => [x, ys[i]]).filter((p) => p[1] !== null && Number.isFinite(p[1]));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  const text = (x, y, s, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor || "start");
    t.textContent = s;
    svg.append(t);
  };
  text(L, 14, title);
  if (!points.length) { text(L, H / 2, "no data"); return svg; }
  const x0 = Math.min(...points.map((p) => p[0])), x1 = Math.max(...points.map((p) => p[0]));
  const y0 = Math.min(...points.map((p) => p[1])), y1 = Math.max(...points.map((p) => p[1]));
  const sx = (x) => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (H - T - B);
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${L},${T} V${H - B} H${W - R}`);
  axis.setAttribute("class", "axis");
  svg.append(axis);
  const line = document.createElementNS(ns, points.length > 1 ? "polyline" : "circle");
  if (points.length > 1) {
    line.setAttribute("points", points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "));
  } else {
    line.setAttribute("cx", sx(points[0][0])); line.setAttribute("cy", sy(points[0][1])); line.setAttribute("r", 3);
  }
  line.setAttribute("class", "series");
  line.style.stroke = color;
  line.style.fill = points.length > 1 ? "none" : color;
  svg.append(line);
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
  text(L - 4, T + 4, fmt(y1), "end");
  text(L - 4, H - B, fmt(y0), "end");
  text(L, H - 6, `step ${x0}`);
  text(W - R, H - 6, `${x1}`, "end");
  return svg;
}

async function showCurves() {
  const box = $("curves");
  if (!box.hidden) { box.hidden = true; return; }
  await busy($("curves-button"), async () => {
    const data = await api(current.curves);
    box.replaceChildren(lineChart("training loss", data.train.step, data.train.loss, "#3b518b"));
    const metric = current.headline ? current.headline.metric : Object.keys(data.eval).find((k) => k !== "step");
    if (metric && data.eval[metric]) {
      box.append(lineChart(`validation ${metric.replace(/_/g, " ")}`, data.eval.step, data.eval[metric], "#21908d"));
    }
    box.hidden = false;
  });
}

// ------------------------------------------------------------------------------------------ translation

function heatmap(container, sourceTokens, outputTokens, attention) {
  container.replaceChildren();
  container.style.gridTemplateColumns = `auto repeat(${sourceTokens.length}, minmax(1.6em, 2.2em))`;
  container.append(el("div", "corner"));
  sourceTokens.forEach((s) => container.append(el("div", "col-label", shown(s))));
  outputTokens.forEach((t, i) => {
    container.append(el("div", "row-label", shown(t)));
    sourceTokens.forEach((s, j) => {
      const w = attention[i][j];
      const cell = el("div", "cell");
      cell.style.background = viridis(w);
      cell.dataset.weight = w.toFixed(4);
      cell.dataset.source = s;
      cell.dataset.target = t;
      cell.title = `${shown(t)} ← ${shown(s)}: ${w.toFixed(3)}`;
      container.append(cell);
    });
  });
}

function hoverTooltip(event) {
  const tip = $("tooltip");
  const cell = event.target.closest ? event.target.closest(".cell") : null;
  if (!cell) { tip.hidden = true; return; }
  tip.textContent = `“${shown(cell.dataset.target)}” ← “${shown(cell.dataset.source)}”  ${cell.dataset.weight}`;
  tip.style.left = `${event.pageX + 12}px`;
  tip.style.top = `${event.pageY + 12}px`;
  tip.hidden = false;
}

async function translate(event) {
  event.preventDefault();
  const button = event.submitter || $("translate-form").querySelector("button");
  await busy(button, async () => {
    const body = { text: $("translate-text").value, beam_size: Number($("translate-beam").value) };
    const data = await api(`/runs/${encodeURIComponent(current.name)}/translate`, body);
    $("translate-output").textContent = data.output;
    const has = data.attention.length > 0;
    $("heatmap-caption").hidden = !has;
    $("legend").hidden = !has;
    if (has) heatmap($("heatmap"), data.source_tokens, data.output_tokens, data.attention);
    else $("heatmap").replaceChildren(el("p", "hint", "This model has no attention: nothing to draw."));
  });
}

// ------------------------------------------------------------------------------------------ text classification, tags

async function classify(event) {
  event.preventDefault();
  await busy(event.submitter || $("classify-form").querySelector("button"), async () => {
    const data = await api(`/runs/${encodeURIComponent(current.name)}/predict`, { text: $("classify-text").value });
    $("classify-output").textContent = `${data.label} (${data.probability.toFixed(3)})`;
    bars($("classify-bars"), data.classes, data.probabilities, data.label);
  });
}

async function tag(event) {
  event.preventDefault();
  await busy(event.submitter || $("tag-form").querySelector("button"), async () => {
    const data = await api(`/runs/${encodeURIComponent(current.name)}/predict`, { text: $("tag-text").value });
    const out = $("tag-output");
    out.replaceChildren();
    data.tokens.forEach((token, i) => {
      const pair = el("span", "tagged");
      pair.append(el("span", "token", token), el("span", "tag", data.tags[i]));
      out.append(pair);
    });
  });
}

// ------------------------------------------------------------------------------------------ images: pad, upload, maps

const pad = $("pad");
const ctx = pad.getContext("2d");
let drawing = false;
let drawn = false;

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = padPoint(event);
  ctx.beginPath();
  ctx.moveTo(x, y);
  ctx.lineTo(x + 0.1, y);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.stroke();
  drawn = true;
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = padPoint(event);
  ctx.lineTo(x, y);
  ctx.stroke();
});
for (const name of ["pointerup", "pointercancel", "pointerleave"]) pad.addEventListener(name, () => { drawing = false; });

// The drawing cropped to its ink, centred in a square with a margin (the digits fill their 8×8 frame).
function padImage() {
  const { width, height } = pad;
  const pixels = ctx.getImageData(0, 0, width, height).data;
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (pixels[(y * width + x) * 4] > 16) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) return null;
  const side = Math.max(x1 - x0, y1 - y0) + 1;
  const margin = Math.round(side * 0.12);
  const out = document.createElement("canvas");
  out.width = out.height = 64;
  const c = out.getContext("2d");
  c.fillStyle = "#000";
  c.fillRect(0, 0, 64, 64);
  const scale = 64 / (side + 2 * margin);
  const cx = (x0 + x1 + 1) / 2, cy = (y0 + y1 + 1) / 2;
  c.imageSmoothingQuality = "high";
  c.drawImage(pad, 0, 0, width, height, 32 - cx * scale, 32 - cy * scale, width * scale, height * scale);
  return out.toDataURL("image/png");
}

function drawMaps(info) {
  const box = $("maps");
  box.replaceChildren();
  const caption = $("maps-caption");
  if (!info) { caption.hidden = true; return; }
  const [channels, h, w] = info.shape;
  caption.textContent = `First layer (${info.layer}): ${channels} feature maps of ${h}×${w}` +
    (info.maps.length < channels ? `, the first ${info.maps.length} shown` : "") + "; brighter is higher.";
  caption.hidden = false;
  info.maps.forEach((map, k) => {
    const rows = map.length, cols = map[0].length;
    const flat = map.flat();
    const lo = Math.min(...flat), hi = Math.max(...flat);
    const canvas = el("canvas", "map");
    canvas.width = cols; canvas.height = rows;
    canvas.title = `map ${k + 1}: ${lo.toFixed(2)} … ${hi.toFixed(2)}`;
    const c = canvas.getContext("2d");
    const image = c.createImageData(cols, rows);
    flat.forEach((v, i) => {
      const g = hi > lo ? Math.round((255 * (v - lo)) / (hi - lo)) : 0;
      image.data.set([g, g, g, 255], i * 4);
    });
    c.putImageData(image, 0, 0);
    box.append(canvas);
  });
}

async function classifyImage(dataUrl, button) {
  await busy(button, async () => {
    if (!dataUrl) throw new Error("draw a digit first (or upload an image)");
    const data = await api(`/runs/${encodeURIComponent(current.name)}/predict`, { image: dataUrl });
    $("image-output").textContent = `prediction: ${data.label} (${data.probability.toFixed(3)})`;
    bars($("image-bars"), data.classes, data.probabilities, data.label);
    drawMaps(data.feature_maps);
  });
}

function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    const img = new Image();
    img.onload = () => {
      clearPad();
      ctx.drawImage(img, 0, 0, pad.width, pad.height);
      // a large photo is shrunk here to at most 512 pixels a side: the server's body and pixel limits stay far
      const scale = Math.min(1, 512 / Math.max(img.width, img.height));
      const small = document.createElement("canvas");
      small.width = Math.max(1, Math.round(img.width * scale));
      small.height = Math.max(1, Math.round(img.height * scale));
      small.getContext("2d").drawImage(img, 0, 0, small.width, small.height);
      classifyImage(small.toDataURL("image/png"), $("pad-classify"));
    };
    img.src = reader.result;
  };
  reader.readAsDataURL(file);
}

// ------------------------------------------------------------------------------------------ generation

function sliderLabels() {
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  $("top-k-value").textContent = $("top-k").value === "0" ? "off" : $("top-k").value;
  $("length-value").textContent = $("length").value;
}

async function generate(event) {
  event.preventDefault();
  await busy(event.submitter || $("generate-form").querySelector("button"), async () => {
    const k = Number($("top-k").value);
    const temperature = Number($("temperature").value);
    // temperature 0 takes the most likely token: top-k does not apply (the server refuses the pair)
    const body = {
      prompt: $("generate-prompt").value, length: Number($("length").value),
      temperature, top_k: k > 0 && temperature > 0 ? k : null,
    };
    const data = await api(`/runs/${encodeURIComponent(current.name)}/generate`, body);
    const out = $("generate-output");
    out.replaceChildren(el("span", "prompt", data.prompt), el("span", "continuation", data.continuation));
  });
}

// ------------------------------------------------------------------------------------------ wiring

$("translate-form").addEventListener("submit", translate);
$("heatmap").addEventListener("mousemove", hoverTooltip);
$("heatmap").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
$("classify-form").addEventListener("submit", classify);
$("tag-form").addEventListener("submit", tag);
$("pad-clear").addEventListener("click", clearPad);
$("pad-classify").addEventListener("click", (e) => classifyImage(drawn ? padImage() : null, e.currentTarget));
$("upload").addEventListener("change", upload);
$("generate-form").addEventListener("submit", generate);
$("run-form").addEventListener("submit", runRun);
for (const id of ["temperature", "top-k", "length"]) $(id).addEventListener("input", sliderLabels);
$("curves-button").addEventListener("click", showCurves);
clearPad();
sliderLabels();
start();

// The service's page (index.html): uploads, the results table, fields, the per-sample table, Grad-CAM.
"use strict";
(function () {
  // All user-supplied strings (file names, server messages) go into the DOM through textContent or
  // setAttribute, never through innerHTML.
  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#results tbody");
  const IMAGE_NAME = /\.(png|jpe?g|bmp|tiff?|gif|webp)$/i;

  let model = null;       // GET /v1/model
  let items = [];         // one per file: {file, path, url, row, state: pending|ok|skipped, result, reason, cam}
  let queue = [];         // items still to send
  let running = false;
  let generation = 0;     // bumped by Clear: answers to older requests are dropped
  let controller = new AbortController();
  let selected = null;    // the item whose Grad-CAM is shown
  let shownField = null;  // the field whose overlay is shown
  let samplesTimer = null, samplesAsked = 0;  // the per-sample table, asked of the server after each answer

  // A server started with --token answers only requests that carry it. The page is opened once as
  // /?token=TOKEN (or asks for it); the token is kept for this tab and taken out of the address bar.
  const TOKEN_KEY = "cellscreen-token";
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.size ? "?" + params : "") + location.hash);
  }
  function authorised(options = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { ...options, headers: { ...options.headers, Authorization: "Bearer " + token } } : options;
  }

  const { el, bytesText, percent, count, shareText, thresholdText, validationRows, fieldCountRows, sampleRow,
          csvField } = window.cellscreenText;

  function message(text) { $("message").textContent = text || ""; }

  // ---- the model ---------------------------------------------------------------------------------------

  function showModel(info) {
    const dl = $("model-info");
    dl.replaceChildren();
    const limits = info.limits || {};
    const rows = [
      ["Model", info.model || "(unnamed)"],
      ["Engine", info.engine],
      ["Dataset", info.dataset || "–"],
      ["Classes", (info.classes || []).join(", ")],
      ["Positive class", info.positive_class || "none"],
      ["Input size", `${info.input_size} × ${info.input_size} px`],
      ["Decision threshold", thresholdText(info)],
      ["Whole fields", info.field_min_side ? `images at least ${info.field_min_side} px on their shorter side ` +
                       "(or chosen below)" : "not with this model (it classifies white cells): single cells only"],
      ["Grad-CAM", info.gradcam ? "available" : "not available for this model"],
      ["Max files / request", String(limits.max_files)],
      ["Max upload / request", `${bytesText(limits.max_upload_bytes)} (${Number(limits.max_upload_bytes).toLocaleString("en")} bytes)`],
    ];
    for (const [term, value] of rows) dl.append(el("dt", { text: term }), el("dd", { text: value }));
    dl.append(el("dt", { class: "section", text: "Validated on" }));
    for (const [term, value] of validationRows(info.validation || {})) {
      dl.append(el("dt", { text: term }), el("dd", { text: value }));
    }
    $("samples-positive").textContent = info.positive_class || "Positive";
    $("prob-heading").textContent = info.positive_class ? `P(${info.positive_class})` : "Probability";
    $("cam-heading").hidden = !info.gradcam;
    $("cam-panel").hidden = !info.gradcam;
    if (!info.gradcam) {
      $("results-caption").textContent = "One row per image.";
      for (const item of items) item.cells.camCell.hidden = true;
    }
  }

  async function loadModel() {
    try {
      let response = await fetch("v1/model", authorised());
      if (response.status === 401) {
        const token = window.prompt("This server needs its access token (ask whoever started it):");
        if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
        if (token) response = await fetch("v1/model", authorised());
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const info = await response.json();
      if (!Array.isArray(info.classes) || !info.limits) throw new Error("unexpected answer");
      model = info;
      showModel(info);
      pump();
    } catch (err) {
      const dl = $("model-info");
      dl.replaceChildren(el("dt", { text: "Status" }), el("dd", { text: "cannot reach the model: " + err.message }));
      message("The server did not describe its model (GET /v1/model failed); reload the page to try again.");
    }
  }

  // ---- adding files ------------------------------------------------------------------------------------

  function addFiles(files) {
    if (!files.length) return;
    message("");
    if (tbody.querySelector(".empty")) tbody.replaceChildren();
    for (const part of files) {
      const file = part instanceof File ? part : part.file;
      const path = (part instanceof File ? file.webkitRelativePath : part.path) || file.name;
      const item = { file, path, url: URL.createObjectURL(file), state: "pending", result: null, reason: "", cam: null };
      item.row = makeRow(item);
      items.push(item);
      queue.push(item);
      tbody.append(item.row);
    }
    update();
    pump();
  }

  function makeRow(item) {
    const img = el("img", { alt: "", loading: "lazy" });
    img.addEventListener("error", () => { img.style.visibility = "hidden"; });
    img.src = item.url;
    const camButton = el("button", { type: "button", class: "cam-button", text: "Grad-CAM",
                                     "aria-label": "Show Grad-CAM for " + item.file.name });
    camButton.hidden = true;
    camButton.addEventListener("click", (event) => { event.stopPropagation(); showCam(item); });
    const row = el("tr", { class: "pending" },
      el("td", { class: "thumb" }, img),
      el("td", { class: "name", text: item.path }),
      el("td", { class: "class" }),
      el("td", { class: "prob" }),
      el("td", { class: "status", text: "waiting…" }),
      el("td", { class: "cam-cell" }, camButton));
    row.addEventListener("click", () => (item.result && item.result.kind === "field" ? showField(item) : showCam(item)));
    item.cells = { cls: row.children[2], prob: row.children[3], status: row.children[4], cam: camButton,
                   camCell: row.children[5] };
    if (model && !model.gradcam) item.cells.camCell.hidden = true;
    return row;
  }

  // Folders dropped onto the page are walked; only files with an image suffix are taken from them.
  function readEntries(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }

  async function walk(entry, out, ignored) {
    if (entry.isFile) {
      if (entry.name.startsWith(".") || !IMAGE_NAME.test(entry.name)) { ignored.count++; return; }
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, path: entry.fullPath.replace(/^\//, "") });  // the dropped folder names the sample
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      const children = [];
      for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) children.push(...batch);
      children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const child of children) await walk(child, out, ignored);
    }
  }

  async function filesFromDrop(dataTransfer) {
    // Everything is taken out of the DataTransfer before the first await: it is emptied after the event.
    const parts = [];
    if (dataTransfer.items && dataTransfer.items.length) {
      for (const item of dataTransfer.items) {
        if (item.kind !== "file") continue;
        const entry = typeof item.webkitGetAsEntry === "function" ? item.webkitGetAsEntry() : null;
        if (entry && entry.isDirectory) parts.push(entry);
        else { const file = item.getAsFile(); if (file) parts.push(file); }
      }
    } else {
      parts.push(...dataTransfer.files);
    }
    const files = [];
    const ignored = { count: 0 };
    for (const part of parts) {
      if (part instanceof File) files.push(part);
      else {
        try { await walk(part, files, ignored); }
        catch (err) { message(`Could not read the folder ${part.name}: ${err.message || err}`); }
      }
    }
    return { files, ignored: ignored.count };
  }

  // ---- uploading ---------------------------------------------------------------------------------------

  // The file name as the browser writes it into the multipart body (HTML's form-data encoding).
  function sentName(name) { return name.replace(/\n/g, "%0A").replace(/\r/g, "%0D").replace(/"/g, "%22"); }

  function partBytes(file) { return file.size + 3 * file.name.length + 400; }  // file + multipart headers

  function takeBatch() {
    const limits = model.limits;
    const maxFiles = Math.max(1, Math.min(32, limits.max_files));
    const budget = Math.floor(limits.max_upload_bytes / 2);   // well under the server's limit
    const batch = [];
    const names = new Set();  // never two files of one name in a request: errors name files
    const fieldsAsked = $("kind").value === "field";
    let bytes = 0;
    while (queue.length && batch.length < maxFiles) {
      const item = queue[0];
      const size = partBytes(item.file);
      if (size + 200 > limits.max_upload_bytes) {
        queue.shift();
        skip(item, `file of ${item.file.size.toLocaleString("en")} bytes is over the server's ` +
                   `${limits.max_upload_bytes.toLocaleString("en")}-byte upload limit`);
        continue;
      }
      if (batch.length && (bytes + size > budget || names.has(sentName(item.path)))) break;
      if (batch.length >= 4 && (fieldsAsked || item.file.size > 100000)) break;  // fields are slow: few at a time
      queue.shift();
      batch.push(item);
      names.add(sentName(item.path));
      bytes += size;
    }
    return batch;
  }

  async function pump() {
    if (running || !model) return;
    running = true;
    const gen = generation;
    try {
      while (queue.length && gen === generation) {
        const batch = takeBatch();
        if (batch.length) await send(batch, gen);
      }
    } finally {
      if (gen === generation) running = false;
    }
  }

  function errorOf(body, status) {
    const detail = body && body.detail;
    if (detail && typeof detail === "object" && !Array.isArray(detail)) {
      return { error: String(detail.error || `HTTP ${status}`), files: Array.isArray(detail.files) ? detail.files : [] };
    }
    if (typeof detail === "string") return { error: detail, files: [] };
    return { error: `HTTP ${status}`, files: [] };
  }

  async function post(items, query, signal) {
    const form = new FormData();
    for (const item of items) form.append("files", item.file, item.path);  // a folder in front names the sample
    const response = await fetch("v1/predict" + (query || ""), authorised({ method: "POST", body: form, signal }));
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON: reported by status below */ }
    return { response, body };
  }

  async function send(batch, gen) {
    let response, body;
    try {
      ({ response, body } = await post(batch, "?kind=" + encodeURIComponent($("kind").value), controller.signal));
    } catch (err) {
      if (gen !== generation) return;
      // A server refusing an over-large body may close the connection before the browser reads the 413.
      if (batch.length > 1) await sendEach(batch, gen);
      else skip(batch[0], "request failed: " + (err.message || err));
      return;
    }
    if (gen !== generation) return;
    if (response.ok) {
      const results = body && Array.isArray(body.results) ? body.results : [];
      if (results.length === batch.length) {
        batch.forEach((item, k) => (results[k].kind === "field" ? fieldResult : showResult)(item, results[k]));
      }
      else batch.forEach((item) => skip(item, "the server answered with the wrong number of results"));
      return;
    }
    const { error, files } = errorOf(body, response.status);
    if (files.length) {
      // Skip the files the server named, send the others again.
      const rest = [];
      if (files.every((f) => Number.isInteger(f.index))) {  // the server names each bad file's position
        const byIndex = new Map(files.map((f) => [f.index, String(f.reason || error)]));
        batch.forEach((item, k) => (byIndex.has(k) ? skip(item, byIndex.get(k)) : rest.push(item)));
      } else {
        const reasons = new Map(files.map((f) => [String(f.filename), String(f.reason || error)]));
        for (const item of batch) {
          const name = sentName(item.path);
          if (reasons.has(name)) skip(item, reasons.get(name));
          else if (reasons.has(item.path)) skip(item, reasons.get(item.path));
          else rest.push(item);
        }
      }
      if (rest.length === batch.length) {  // no name matched: find the culprits one file at a time
        if (batch.length > 1) await sendEach(batch, gen);
        else skip(batch[0], String(files[0].reason || error));
      } else if (rest.length) {
        await send(rest, gen);
      }
      return;
    }
    if (response.status === 413 && batch.length > 1) { await sendEach(batch, gen); return; }
    batch.forEach((item) => skip(item, error));
  }

  async function sendEach(batch, gen) {
    for (const item of batch) {
      if (gen !== generation) return;
      await send([item], gen);
    }
  }

  function showResult(item, result) {
    item.state = "ok";
    item.result = result;
    const positive = model.positive_class;
    const p = positive && result.probabilities && positive in result.probabilities
      ? Number(result.probabilities[positive]) : Number(result.probability);
    const row = item.row;
    row.className = "ok" + (result.flagged || (positive && result.class === positive) ? " flagged" : "");
    item.cells.cls.textContent = String(result.class);
    const fill = el("div");
    fill.style.width = Math.max(0, Math.min(100, 100 * p)).toFixed(1) + "%";
    const bar = el("span", { class: "bar", "aria-hidden": "true" }, fill);
    item.cells.prob.replaceChildren(bar, el("span", { class: "p", text: percent(p) }));
    item.cells.prob.title = Object.entries(result.probabilities || {})
      .map(([c, v]) => `${c}: ${percent(Number(v), 2)}`).join("\n");
    item.cells.status.textContent = "ok";
    item.cells.cam.hidden = !model.gradcam;
    update();
  }

  function skip(item, reason) {
    item.state = "skipped";
    item.reason = reason;
    item.row.className = "skipped";
    item.cells.cls.textContent = "";
    item.cells.prob.replaceChildren();
    item.cells.status.textContent = "skipped: " + reason;
    item.cells.cam.hidden = true;
    update();
  }

  // ---- fields --------------------------------------------------------------------------------------------

  function fieldResult(item, result) {
    item.state = "ok";
    item.result = result;
    const c = result.counts || {};
    const positive = model.positive_class || "positive";
    item.row.className = "ok field" + (c.positive ? " flagged" : "");
    item.cells.cls.textContent = `field: ${count(c.red_counted)} red cells, ${count(c.positive)} ${positive}`;
    const share = result.parasitemia;
    const shown = share ? shareText(share.percent, share.low, share.high) : "–";
    item.cells.prob.replaceChildren(el("span", { class: "p", text: shown }));
    item.cells.prob.title = "";
    const warnings = (result.warnings || []).length;
    item.cells.status.textContent = "ok" + (warnings ? ` · ${warnings} warning(s)` : "");
    item.cells.cam.hidden = true;
    if (!shownField) showField(item);
    update();
  }

  function showField(item) {
    if (!item.result || item.result.kind !== "field") return;
    shownField = item;
    const r = item.result;
    const positive = model.positive_class || "positive";
    $("field-panel").hidden = false;
    $("field-title").textContent = `${item.path} — ${r.width} × ${r.height} px, ` +
      `red cells about ${Number(r.cell_diameter).toFixed(0)} px across`;
    const img = $("field-overlay");
    img.src = r.overlay;
    img.alt = "cells found on " + item.path + ", outlined by what was decided";
    const rows = fieldCountRows(r, positive);
    $("field-counts").replaceChildren(...rows.flatMap(([t, v]) => [el("dt", { text: t }), el("dd", { text: v })]));
    $("field-warnings").replaceChildren(...(r.warnings || []).map((w) => el("li", { text: w })));
    for (const other of tbody.querySelectorAll("tr.selected")) other.classList.remove("selected");
    item.row.classList.add("selected");
  }

  // ---- per sample ----------------------------------------------------------------------------------------

  function scheduleSamples() {
    clearTimeout(samplesTimer);
    samplesTimer = setTimeout(loadSamples, 150);
  }

  async function loadSamples() {
    const done = items.filter((item) => item.state === "ok");
    const asked = ++samplesAsked;
    const gen = generation;
    if (!done.length) { $("samples-section").hidden = true; return; }
    const uploads = done.map((item) => (item.result.kind === "field"
      ? { path: item.path, kind: "field", ...item.result.counts }
      : { path: item.path, kind: "cell", flagged: Boolean(item.result.flagged) }));
    const pattern = $("group-regex").value.trim();
    let response, body = null;
    try {
      response = await fetch("v1/samples", authorised({ method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ uploads, group_regex: pattern || null }) }));
      try { body = await response.json(); } catch (_) { /* reported below */ }
    } catch (err) {
      if (asked === samplesAsked) $("regex-message").textContent = "could not sum per sample: " + (err.message || err);
      return;
    }
    if (asked !== samplesAsked || gen !== generation) return;  // a newer table is on its way
    if (!response.ok) { $("regex-message").textContent = errorOf(body, response.status).error; return; }
    $("regex-message").textContent = "";
    showSamples(body.samples || []);
  }

  function showSamples(samples) {
    const rows = samples.map(sampleRow);
    document.querySelector("#samples tbody").replaceChildren(...rows);
    $("samples-section").hidden = !rows.length;
  }

  // ---- progress, summary, CSV --------------------------------------------------------------------------

  function update() {
    const total = items.length;
    const all = items.filter((item) => item.state === "ok");
    const ok = all.filter((item) => item.result.kind !== "field");
    const fieldItems = all.filter((item) => item.result.kind === "field");
    const skipped = items.filter((item) => item.state === "skipped").length;
    const done = all.length + skipped;
    const unit = fieldItems.length ? "files" : "cells";
    $("progress-text").textContent = `${done} of ${total} ${unit}` + (total && done === total ? " done" : "");
    $("progress-bar").max = Math.max(1, total);
    $("progress-bar").value = done;
    $("download").disabled = done === 0;

    const box = $("summary");
    scheduleSamples();
    if (!total) { box.replaceChildren(el("p", { class: "headline", text: "No cells classified yet." })); return; }
    const positive = model && model.positive_class;
    const n = ok.length;
    let headline;
    if (!n && fieldItems.length) headline = null;
    else if (!n) headline = "No cells classified yet.";
    else if (positive) {
      const flagged = ok.filter((item) => item.result.flagged || item.result.class === positive).length;
      const fraction = percent(flagged / n);
      headline = positive === "Parasitized"
        ? `Parasitemia estimate: ${fraction} (${flagged} of ${n} red cells flagged Parasitized)`
        : `${flagged} of ${n} cells flagged ${positive} (${fraction})`;
    } else {
      const counts = new Map();
      for (const item of ok) counts.set(item.result.class, (counts.get(item.result.class) || 0) + 1);
      headline = [...counts].map(([c, k]) => `${c}: ${k} (${percent(k / n)})`).join(" · ");
    }
    const pending = total - done;
    const counts = `${n} cell${n === 1 ? "" : "s"} classified · ` +
                   (fieldItems.length ? `${fieldItems.length} field${fieldItems.length === 1 ? "" : "s"} ` +
                                        "screened · " : "") +
                   `${skipped} skipped` + (pending ? ` · ${pending} still in progress` : "");
    const lines = headline ? [el("p", { class: "headline", text: headline })] : [];
    if (fieldItems.length) {
      const sum = (key) => fieldItems.reduce((a, item) => a + Number(item.result.counts[key] || 0), 0);
      const red = sum("red_counted"), hits = sum("positive");
      lines.push(el("p", { class: "headline", text: `Fields: ${count(red)} red cells counted, ${count(hits)} ` +
        `${positive || "positive"}` +
        (red ? ` (${(100 * hits / red).toFixed(2)}%; intervals per field and per sample below)` : "") }));
    }
    box.replaceChildren(...lines, el("p", { class: "counts", text: counts }));
  }

  function csv() {
    const classes = model ? model.classes : [];
    const lines = [["filename", "predicted", ...classes.map((c) => "p_" + c), "status"]];
    for (const item of items) {
      if (item.state === "ok" && item.result.kind === "field") {
        const c = item.result.counts, share = item.result.parasitemia;
        lines.push([item.path, "", ...classes.map(() => ""), `ok (field: ${c.red_counted} red cells counted, ` +
                    `${c.positive} ${model.positive_class || "positive"}` +
                    (share ? `, ${shareText(share.percent, share.low, share.high)})` : ")")]);
      } else if (item.state === "ok") {
        const probs = item.result.probabilities || {};
        lines.push([item.path, item.result.class, ...classes.map((c) => (c in probs ? probs[c] : "")), "ok"]);
      } else {
        const status = item.state === "skipped" ? "skipped: " + item.reason : "pending";
        lines.push([item.path, "", ...classes.map(() => ""), status]);
      }
    }
    return lines.map((fields) => fields.map(csvField).join(",")).join("\r\n") + "\r\n";
  }

  function download() {
    const url = URL.createObjectURL(new Blob([csv()], { type: "text/csv;charset=utf-8" }));
    const link = el("a", { href: url, download: "cellscreen-results.csv" });
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---- Grad-CAM ----------------------------------------------------------------------------------------

  function resetCam() {
    selected = null;
    $("cam-title").textContent = "";
    $("cam-note").textContent = "Click a classified row to see which part of the cell the model looked at.";
    $("cam-pictures").hidden = true;
    $("cam-original").removeAttribute("src");
    const old = document.querySelector("#cam-figure img.cam");
    if (old) old.remove();
  }

  function renderCam(item) {
    if (selected !== item) return;
    const figure = $("cam-figure");
    const old = figure.querySelector("img.cam");
    if (old) old.remove();
    $("cam-pictures").hidden = false;
    $("cam-original").src = item.url;
    if (item.cam && item.cam.image) {
      const img = el("img", { class: "cam", alt: "Grad-CAM overlay for " + item.path });
      img.src = item.cam.image;
      figure.prepend(img);
      $("cam-note").textContent = `Regions that pushed the model towards ${item.result.class} are warm.`;
    } else if (item.cam && item.cam.error) {
      $("cam-note").textContent = "Grad-CAM failed: " + item.cam.error;
    } else {
      $("cam-note").textContent = "Computing Grad-CAM…";
    }
  }

  async function showCam(item) {
    if (!model || !model.gradcam || item.state !== "ok" || item.result.kind === "field") return;
    for (const other of tbody.querySelectorAll("tr.selected")) other.classList.remove("selected");
    item.row.classList.add("selected");
    selected = item;
    $("cam-title").textContent = `${item.path} — ${item.result.class} (${percent(item.result.probability)})`;
    renderCam(item);
    if (item.cam && (item.cam.image || item.cam.loading)) return;
    item.cam = { loading: true };
    const gen = generation;
    try {
      const { response, body } = await post([item], "?gradcam=true&kind=cell", controller.signal);
      if (gen !== generation) return;
      const result = response.ok && body && Array.isArray(body.results) ? body.results[0] : null;
      const image = result && typeof result.gradcam === "string" && result.gradcam.startsWith("data:image/png;base64,")
        ? result.gradcam : null;
      if (image) item.cam = { image };
      else item.cam = { error: response.ok ? "no picture in the answer" : errorOf(body, response.status).error };
    } catch (err) {
      if (gen !== generation) return;
      item.cam = { error: "request failed: " + (err.message || err) };
    }
    renderCam(item);
  }

  // ---- clearing and wiring -----------------------------------------------------------------------------

  function clearAll() {
    generation++;
    controller.abort();
    controller = new AbortController();
    running = false;
    for (const item of items) URL.revokeObjectURL(item.url);
    items = [];
    queue = [];
    tbody.replaceChildren();
    $("files").value = "";
    message("");
    resetCam();
    shownField = null;
    $("field-panel").hidden = true;
    $("field-overlay").removeAttribute("src");
    $("folder").value = "";
    update();
    pump();
  }

  const input = $("files");
  input.addEventListener("change", () => {
    const files = Array.from(input.files || []);
    input.value = "";  // choosing the same files again adds them again
    addFiles(files);
  });

  const folder = $("folder");
  folder.addEventListener("change", () => {
    const files = Array.from(folder.files || []).filter((f) => !f.name.startsWith(".") && IMAGE_NAME.test(f.name))
      .sort((a, b) => (a.webkitRelativePath < b.webkitRelativePath ? -1 : a.webkitRelativePath > b.webkitRelativePath ? 1 : 0));
    const ignored = (folder.files || []).length - files.length;
    folder.value = "";
    addFiles(files);  // each keeps its path inside the folder (webkitRelativePath): the folder names the sample
    if (ignored) message(`${ignored} file(s) in the folder are not images and were left out.`);
  });
  $("group-regex").addEventListener("input", scheduleSamples);

  const drop = $("drop");
  let depth = 0;
  drop.addEventListener("dragenter", (event) => { event.preventDefault(); depth++; drop.classList.add("over"); });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); event.dataTransfer.dropEffect = "copy"; });
  drop.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; drop.classList.remove("over"); } });
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    depth = 0;
    drop.classList.remove("over");
    if (!event.dataTransfer) return;
    const { files, ignored } = await filesFromDrop(event.dataTransfer);
    addFiles(files);
    if (ignored) message(`${ignored} file(s) in the dropped folders are not images and were left out.`);
  });
  // A file dropped beside the drop zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  $("download").addEventListener("click", download);
  $("clear").addEventListener("click", clearAll);

  update();
  loadModel();
})();

// The page at GET /: lists the server's models (from openapi.json), shows the chosen model's inputs, and sends
// the request in the text box to its invocations URL. Plain JavaScript, no library, nothing from the network but
// this server. Every URL is relative to the page's own, so the page works behind a proxy that adds a path prefix.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const models = [];
  let current = null;

  /** "/models/a/invocations" -> "models/a/invocations": resolved against the page's URL. */
  function relative(path) {
    return path.replace(/^\/+/, "");
  }

  function text(tag, value, attrs) {
    const el = document.createElement(tag);
    el.textContent = value === undefined || value === null ? "" : String(value);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  /**
   * Parse a response body: the server writes NaN and infinities as the bare literals NaN, Infinity and -Infinity
   * (as MLflow does), which JSON.parse refuses. Outside strings they become the strings "NaN", "Infinity"...
   */
  function parseLenient(body) {
    try {
      return JSON.parse(body);
    } catch (err) {
      const fixed = body.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (m) => (m[0] === '"' ? m : `"${m}"`));
      return JSON.parse(fixed);
    }
  }

  /** JSON with two-space indents, but an array of plain values (a row, a list of names) on one line. */
  function pretty(value, indent) {
    const pad = indent || "";
    const inner = pad + "  ";
    const flat = (v) => v === null || typeof v !== "object";
    if (Array.isArray(value)) {
      if (!value.length) return "[]";
      if (value.every(flat)) return `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
      return `[\n${value.map((v) => inner + pretty(v, inner)).join(",\n")}\n${pad}]`;
    }
    if (value !== null && typeof value === "object") {
      const keys = Object.keys(value);
      if (!keys.length) return "{}";
      return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${pretty(value[k], inner)}`).join(",\n")}\n${pad}}`;
    }
    return JSON.stringify(value);
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  // ------------------------------------------------------------------ the models

  function exampleOf(op) {
    const media = ((op.requestBody || {}).content || {})["application/json"] || {};
    for (const example of Object.values(media.examples || {})) {
      if (example && "value" in example) return example.value;
    }
    return media.example;
  }

  /** A request to start from when the model was saved without an example: one row of placeholder values. */
  function skeleton(signature) {
    const inputs = (signature && signature.inputs) || [];
    const placeholder = { boolean: false, integer: 0, long: 0, float: 0, double: 0, string: "", binary: "",
                          datetime: "2024-01-01T00:00:00" };
    if (inputs.length && inputs.every((s) => s.type === "tensor")) {
      const fill = (shape) => (shape.length ? Array.from({ length: Math.max(shape[0], 1) },
                                                         () => fill(shape.slice(1))) : 0);
      const one = (s) => fill((s["tensor-spec"].shape || []).map((d, i) => (i === 0 || d < 0 ? 1 : d)));
      if (inputs.length === 1 && !inputs[0].name) return { inputs: one(inputs[0]) };
      return { inputs: Object.fromEntries(inputs.map((s) => [s.name, one(s)])) };
    }
    if (inputs.length && inputs[0].name !== undefined) {
      return { dataframe_split: { columns: inputs.map((s) => s.name),
                                  data: [inputs.map((s) => placeholder[s.type] ?? null)] } };
    }
    return { dataframe_split: { columns: ["x"], data: [[0]] } };
  }

  function readModels(doc) {
    const byName = new Map();
    for (const [path, item] of Object.entries(doc.paths || {})) {
      const op = item && item.post;
      const info = op && op["x-modelpack"];
      if (!info) continue;
      const seen = byName.get(info.model);
      // a single-model server answers at /invocations and /models/<name>/invocations: keep the per-model URL
      if (seen && !path.startsWith("/models/")) continue;
      const example = exampleOf(op);
      byName.set(info.model, {
        name: info.model,
        url: path,
        flavor: info.flavor,
        signature: info.signature || {},
        example: example === undefined ? null : example,
      });
    }
    return [...byName.values()];
  }

  function renderInputs(model) {
    const head = $("inputs-head");
    const body = $("inputs-body");
    clear(head);
    clear(body);
    const inputs = model.signature.inputs;
    const note = $("inputs-note");
    if (!Array.isArray(inputs) || !inputs.length) {
      note.textContent = "This model was saved without an input signature: it takes any input.";
      note.hidden = false;
      $("inputs-table").hidden = true;
      return;
    }
    note.hidden = true;
    $("inputs-table").hidden = false;
    const tensors = inputs.every((s) => s.type === "tensor");
    const columns = tensors ? ["Name", "Type", "Shape"] : ["Name", "Type", "Required"];
    for (const c of columns) head.appendChild(text("th", c, { scope: "col" }));
    inputs.forEach((spec, i) => {
      const tr = document.createElement("tr");
      tr.dataset.input = spec.name === undefined ? String(i) : spec.name;
      tr.appendChild(text("th", spec.name === undefined ? `(column ${i})` : spec.name, { scope: "row" }));
      if (tensors) {
        const t = spec["tensor-spec"] || {};
        tr.appendChild(text("td", t.dtype));
        tr.appendChild(text("td", `(${(t.shape || []).join(", ")})`));
      } else {
        tr.appendChild(text("td", spec.type));
        tr.appendChild(text("td", spec.required === false ? "optional" : "required"));
      }
      body.appendChild(tr);
    });
  }

  function renderParams(model) {
    const params = model.signature.params;
    const body = $("params-body");
    clear(body);
    show("params-block", Array.isArray(params) && params.length > 0);
    for (const p of params || []) {
      const tr = document.createElement("tr");
      tr.appendChild(text("th", p.name, { scope: "row" }));
      tr.appendChild(text("td", p.shape ? `list of ${p.type}` : p.type));
      tr.appendChild(text("td", JSON.stringify(p.default)));
      body.appendChild(tr);
    }
  }

  function resetRequest() {
    if (!current) return;
    const example = current.example !== null ? current.example : skeleton(current.signature);
    $("request-body").value = pretty(example);
    $("request-hint").textContent = current.example !== null
      ? "The model's saved example: edit it and press Send (Ctrl+Enter in the box)."
      : "This model was saved without an example: fill in the values and press Send.";
  }

  function select(name) {
    current = models.find((m) => m.name === name) || models[0];
    $("model-flavor").textContent = current.flavor || "";
    $("model-url").textContent = `POST ${current.url}`;
    renderInputs(current);
    renderParams(current);
    resetRequest();
    show("response-section", false);
  }

  // ------------------------------------------------------------------ the response

  function isPlainObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }

  /** The predictions as rows and column names, or null when they are no table. */
  function asTable(predictions) {
    if (Array.isArray(predictions) && predictions.length) {
      if (predictions.every(isPlainObject)) {
        const columns = [...new Set(predictions.flatMap((r) => Object.keys(r)))];
        return { columns, rows: predictions.map((r) => columns.map((c) => r[c])) };
      }
      if (predictions.every(Array.isArray)) {
        const width = Math.max(...predictions.map((r) => r.length));
        if (predictions.every((r) => r.every((v) => !isPlainObject(v) && !Array.isArray(v)))) {
          return { columns: Array.from({ length: width }, (_, i) => String(i)), rows: predictions };
        }
        return null;
      }
      if (predictions.every((v) => !isPlainObject(v) && !Array.isArray(v))) {
        return { columns: ["prediction"], rows: predictions.map((v) => [v]) };
      }
      return null;
    }
    if (isPlainObject(predictions)) {  // named outputs: one column each, when all are lists of one length
      const columns = Object.keys(predictions);
      const values = columns.map((c) => predictions[c]);
      if (columns.length && values.every((v) => Array.isArray(v) && v.length === values[0].length)
          && values.every((v) => v.every((x) => !isPlainObject(x) && !Array.isArray(x)))) {
        return { columns, rows: values[0].map((_, i) => values.map((v) => v[i])) };
      }
    }
    return null;
  }

  function cell(value) {
    if (value === null || value === undefined) return "null";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function renderPredictions(predictions) {
    const table = asTable(predictions);
    const head = $("predictions-head");
    const body = $("predictions-body");
    clear(head);
    clear(body);
    $("predictions-table").hidden = table === null;
    $("predictions-json").hidden = table !== null;
    if (table === null) {
      $("predictions-json").textContent = JSON.stringify(predictions, null, 2);
      return;
    }
    head.appendChild(text("th", "row", { scope: "col" }));
    for (const c of table.columns) head.appendChild(text("th", c, { scope: "col" }));
    table.rows.forEach((row, i) => {
      const tr = document.createElement("tr");
      tr.appendChild(text("th", i, { scope: "row" }));
      for (const v of row) tr.appendChild(text("td", cell(v)));
      body.appendChild(tr);
    });
  }

  function renderError(status, statusText, code, message) {
    $("error-status").textContent = `${status} ${statusText}`.trim();
    $("error-code").textContent = code || "";
    $("error-message").textContent = message || "";
    show("error-box", true);
    show("predictions-box", false);
  }

  function shellQuote(s) {
    return `'${s.replace(/'/g, "'\\''")}'`;
  }

  async function send() {
    if (!current) return;
    const body = $("request-body").value;
    const url = new URL(relative(current.url), document.baseURI).href;
    $("curl-command").textContent =
      `curl -X POST ${shellQuote(url)} -H 'Content-Type: application/json' -d ${shellQuote(body)}`;
    $("send-button").disabled = true;
    $("send-status").textContent = "Sending\u2026";
    const started = performance.now();
    let response;
    let raw;
    try {
      response = await fetch(relative(current.url), {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body,
      });
      raw = await response.text();
    } catch (err) {
      $("send-status").textContent = "";
      show("response-section", true);
      renderError("", "Network error", "", String(err));
      $("send-button").disabled = false;
      return;
    }
    const ms = Math.round(performance.now() - started);
    $("send-button").disabled = false;
    $("send-status").textContent = `${response.status} ${response.statusText} in ${ms} ms`;
    $("raw-response").textContent = raw;
    show("response-section", true);
    let parsed = null;
    try {
      parsed = parseLenient(raw);
    } catch (err) {
      parsed = null;
    }
    if (response.ok && parsed && "predictions" in parsed) {
      show("error-box", false);
      show("predictions-box", true);
      renderPredictions(parsed.predictions);
    } else if (parsed && typeof parsed.message === "string") {
      renderError(response.status, response.statusText, parsed.error_code, parsed.message);
    } else {
      renderError(response.status, response.statusText, "", raw.slice(0, 2000));
    }
  }

  // ------------------------------------------------------------------ start

  async function start() {
    let doc;
    try {
      const response = await fetch("openapi.json", { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`GET openapi.json answered ${response.status}`);
      doc = await response.json();
    } catch (err) {
      $("load-status").textContent = `Cannot read the server's models: ${err.message || err}`;
      return;
    }
    models.push(...readModels(doc));
    if (!models.length) {
      $("load-status").textContent = "This server lists no model.";
      return;
    }
    const selectEl = $("model-select");
    for (const m of models) selectEl.appendChild(text("option", m.name, { value: m.name }));
    selectEl.addEventListener("change", () => select(selectEl.value));
    $("send-button").addEventListener("click", send);
    $("reset-button").addEventListener("click", resetRequest);
    $("request-body").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        send();
      }
    });
    select(models[0].name);
    $("load-status").textContent = `${models.length} model${models.length === 1 ? "" : "s"} on this server.`;
    show("model-section", true);
    show("request-section", true);
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

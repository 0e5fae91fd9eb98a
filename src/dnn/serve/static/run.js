// dnn serve: the panel of any run without one of its own, made from what GET /runs says of it (its predictor's
// contract): a file input accepting what its modality reads, or a text box; one control per option of its schema;
// the rows it answers with and the picture of why. Loaded before app.js, whose helpers ($, el, api, busy) and
// chosen run (current) it uses when called; app.js wires the form. Text from a model goes in with textContent.
"use strict";

function buildRunPanel(run) {
  $("run-title").textContent = `Try ${run.what}`;
  const reads = run.inputs.replace(/[;,] or [^;,(]*\(B,[^)]*\)[^;]*$/, "");  // not the library's tensors (B, ...)
  $("run-about").textContent = `${reads} → ${run.outputs}`;
  const input = $("run-input");
  if (run.modality === "text") {
    const example = run.inputs.match(/e\.g\. '([^']*)'/);  // the example its description gives, if any
    const box = el("textarea");
    box.id = "run-text";
    box.rows = 2;
    box.value = example ? example[1] : "";
    box.placeholder = run.inputs;
    box.setAttribute("aria-label", run.inputs);
    input.replaceChildren(box);
  } else {
    const label = el("label", "upload", `${run.modality} file `);
    const file = el("input");
    file.id = "run-file";
    file.type = "file";
    file.accept = run.accept || "";
    label.append(file);
    input.replaceChildren(label);
  }
  $("run-options").replaceChildren(...run.options.map(optionControl));
  $("run-rows").replaceChildren();
  $("run-explanation").hidden = true;
  $("run-picture").removeAttribute("src");
}

function optionControl(option) {
  const label = el("label", "option", `${option.name.replace(/_/g, " ")} `);
  label.title = option.help;
  let control;
  if (option.type === "bool") {
    control = el("input");
    control.type = "checkbox";
    control.checked = option.default === true;
  } else if (option.choices.length) {
    control = el("select");
    for (const choice of option.choices) control.append(el("option", null, choice));
    if (option.default !== null) control.value = option.default;
  } else {
    control = el("input");
    control.type = option.type === "str" ? "text" : "number";
    if (control.type === "number") {
      control.step = option.type === "int" ? "1" : "any";
      if (option.low !== null) control.min = option.zero ? Math.min(0, option.low) : option.low;
      if (option.high !== null) control.max = option.high;
    }
    control.value = option.default === null ? "" : String(option.default);
    control.placeholder = option.default === null ? "off" : "";
  }
  control.dataset.option = option.name;
  control.dataset.type = option.type;
  control.dataset.default = JSON.stringify(option.default);
  label.append(control);
  return label;
}

// The options the user changed from their defaults (the others the server fills in): a rule between options, such
// as "length penalty applies to beam search", then speaks only of what the user set.
function chosenOptions() {
  const options = {};
  for (const control of $("run-options").querySelectorAll("[data-option]")) {
    const type = control.dataset.type;
    let value;
    if (type === "bool") value = control.checked;
    else if (type === "int" || type === "float") value = control.value.trim() === "" ? null : Number(control.value);
    else value = control.value;
    if (value !== null && JSON.stringify(value) !== control.dataset.default) {
      options[control.dataset.option] = value;
    }
  }
  return options;
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

const number = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v));

// The main line of a row, by the fields it has (every predictor's rows name their answer so).
function rowMain(row) {
  if ("label" in row) return "probability" in row ? `${row.label} (${number(row.probability)})` : String(row.label);
  if ("caption" in row) return row.caption || "(empty caption)";
  if ("prediction" in row) {
    return `predicted ${number(row.prediction)}` + ("target" in row ? ` · target ${number(row.target)}` : "");
  }
  if ("output" in row) return row.output;
  if ("text" in row) return row.text || "(nothing recognised)";
  if ("tags" in row) return row.tokens.map((t, i) => `${t}/${row.tags[i]}`).join(" ");
  const scalars = Object.entries(row).filter(([k, v]) => k !== "input" && typeof v !== "object");
  return scalars.map(([k, v]) => `${k} ${number(v)}`).join(" · ");
}

async function runRun(event) {
  event.preventDefault();
  await busy(event.submitter || $("run-form").querySelector("button"), async () => {
    const run = current;
    let input;
    if (run.modality === "text") {
      input = $("run-text").value;
    } else {
      const file = $("run-file").files[0];
      if (!file) throw new Error(`choose a ${run.modality} file first (${run.accept})`);
      input = { file: await readFile(file), name: file.name };
    }
    const body = { inputs: [input], options: chosenOptions(), explain: Boolean(run.explains) };
    const data = await api(`/runs/${encodeURIComponent(run.name)}/run`, body);
    if (current !== run) return;  // another run was chosen meanwhile: its panel is not this answer's
    $("run-rows").replaceChildren(...data.rows.map((row) => {
      const line = el("div", "run-row");
      line.append(el("span", "row-input", String(row.input)), el("span", "row-main output", rowMain(row)));
      return line;
    }));
    const picture = data.explanation;
    $("run-explanation").hidden = !picture;
    if (picture) {
      $("run-picture").src = `data:image/png;base64,${picture.png}`;
      $("run-picture").alt = picture.title;
      $("run-explains").textContent = `${picture.title}: ${picture.explains}`;
    }
  });
}

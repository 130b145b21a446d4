// The predict page: queue clips, follow each one's stages, show a finished clip's result.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 300;
const state = { stages: {}, jobs: new Map(), shown: null, pinned: false, limit: 0, limitText: "",
                page: {} };  // the header the server asks of uploads (no other site can read it)

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

async function loadConfig() {
  const response = await fetch("/api/config");
  const config = await response.json();
  state.stages = config.stages;
  state.limit = config.max_upload_bytes;
  state.limitText = config.max_upload;
  state.page = { [config.page_header]: config.page_token };
  $("limit").textContent = config.max_upload;
  const select = $("model");
  select.replaceChildren();
  for (const model of config.models) {  // what the model is and was trained on, then its file
    const option = element("option", "", `${model.about} — ${model.label}`);
    option.value = model.id;
    select.append(option);
  }
  if (!config.models.length) {
    showMessage("No model to choose: start merkit serve with --model CKPT, or --runs DIR " +
                "holding a .pt checkpoint (after `merkit demo`: --runs merkit-demo).");
  }
}

// ---- the queue ---------------------------------------------------------------------------------

function card(key, name) {
  const item = element("li");
  item.id = "job-" + key;
  const head = element("div", "job-head");
  head.append(element("span", "job-name", name), element("span", "job-status", "uploading"));
  const stages = element("span", "stages");
  for (const [key, label] of Object.entries(state.stages)) {
    const chip = element("span", "stage", label);
    chip.dataset.stage = key;
    stages.append(chip);
  }
  head.append(stages);
  item.append(head);
  item.addEventListener("click", () => {
    const job = state.jobs.get(item.dataset.job);
    if (job && job.status === "done") {
      state.pinned = true;
      showResult(job);
    }
  });
  $("jobs").append(item);
  $("no-jobs").hidden = true;
  return item;
}

function fail(item, text) {
  item.classList.add("failed");
  item.querySelector(".job-status").textContent = "failed";
  let note = item.querySelector(".job-error");
  if (!note) {
    note = element("p", "job-error error");
    note.setAttribute("role", "alert");
    item.append(note);
  }
  note.textContent = text;
}

function render(item, job) {
  item.dataset.job = job.id;
  const status = job.status === "queued" && job.ahead
    ? `queued (${job.ahead} ahead)`
    : job.status === "done" ? `done in ${job.seconds} s` : job.status;
  item.querySelector(".job-status").textContent = status;
  for (const chip of item.querySelectorAll(".stage")) {
    chip.classList.toggle("done", job.done.includes(chip.dataset.stage));
    chip.classList.toggle("active", job.stage === chip.dataset.stage);
  }
  if (job.status === "failed") fail(item, `${job.error} (HTTP ${job.httpStatus})`);
}

async function follow(item, job) {
  state.jobs.set(job.id, job);
  render(item, job);
  while (job.status === "queued" || job.status === "running") {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    let response, body;
    try {
      response = await fetch(`/api/jobs/${job.id}`);
      body = await response.json();
    } catch (error) {
      fail(item, `${job.name}: the server stopped answering (${error.message})`);
      return;
    }
    if (!body.id) {  // the server no longer knows it
      fail(item, `${body.error || "the server lost this clip"} (HTTP ${response.status})`);
      return;
    }
    job = body;
    job.httpStatus = response.status;
    state.jobs.set(job.id, job);
    render(item, job);
  }
  if (job.status === "done" && (!state.pinned || state.shown === null)) showResult(job);
}

async function submit(file) {
  const item = card("upload-" + Math.random().toString(36).slice(2), file.name);
  const form = new FormData();
  form.append("model", $("model").value);
  form.append("aligned", $("aligned").checked ? "1" : "0");
  form.append("file", file, file.name);
  let response;
  try {
    response = await fetch("/api/jobs", { method: "POST", body: form, headers: state.page });
  } catch (error) {  // a connection dropped mid-upload: most often a file far over the limit
    const over = file.size > state.limit
      ? `${file.name} (${(file.size / 1e6).toFixed(0)} MB) is over the ${state.limitText} upload limit`
      : `${file.name}: the upload failed (${error.message})`;
    fail(item, over);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    fail(item, `${body.error || "the server refused the upload"} (HTTP ${response.status})`);
    return;
  }
  await follow(item, body);
}

function queueFiles(files) {
  showMessage("");
  for (const file of files) submit(file);
}

// ---- one result --------------------------------------------------------------------------------

function svgNode(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawCurve(job) {
  const { numbers, curve } = job.views;
  const result = job.result;
  const svg = $("curve");
  svg.replaceChildren();
  const [width, height, left, right, top, bottom] = [640, 210, 36, 10, 44, 24];
  const measured = curve.filter((v) => v !== null);
  const low = Math.min(...measured), high = Math.max(...measured);
  const x = (i) => left + (numbers.length > 1 ? i / (numbers.length - 1) : 0.5) * (width - left - right);
  const y = (v) => height - bottom - (high > low ? (v - low) / (high - low) : 0) * (height - top - bottom);
  svg.append(svgNode("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  svg.append(svgNode("text", { x: left, y: height - 6 }, `frame ${numbers[0]}`));
  svg.append(svgNode("text", { x: width - right, y: height - 6, "text-anchor": "end" },
                     `frame ${numbers[numbers.length - 1]}`));
  svg.append(svgNode("text", { class: "axis-label", x: 4, y: top + 8 }, "more motion"));
  svg.append(svgNode("text", { class: "axis-label", x: 4, y: height - bottom - 4 }, "less"));
  let path = "", pen = "M";  // a gap where the curve has no value
  curve.forEach((v, i) => {
    if (v === null) { pen = "M"; return; }
    path += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
    pen = "L";
  });
  svg.append(svgNode("path", { class: "line", d: path.trim() }));
  // Labels never overlap: the apex's on the top row; the onset's left of its line and the
  // offset's right of its own on the next row, except near an edge, where one turns inwards
  // and drops to a third row (and the other end of a short episode is then on the second).
  const rows = { apex: 12, onset: 26, offset: 26 };
  const outward = { apex: 1, onset: -1, offset: 1 };
  for (const [name, number] of [["onset", result.onset], ["apex", result.apex], ["offset", result.offset]]) {
    const at = x(numbers.indexOf(number));
    svg.append(svgNode("line", { class: `mark ${name}`, x1: at, y1: top - 4, x2: at, y2: height - bottom }));
    const room = outward[name] > 0 ? width - right - at : at - left;
    const turned = room < 70;
    const side = turned ? -outward[name] : outward[name];
    const label = svgNode("text", {
      class: name, x: at + 3 * side, y: rows[name] + (turned && name !== "apex" ? 14 : 0),
      "text-anchor": side > 0 ? "start" : "end",
    }, `${name} ${number}`);
    label.id = `mark-${name}`;
    svg.append(label);
  }
  const cursor = svgNode("line", { class: "cursor", x1: 0, y1: top - 4, x2: 0, y2: height - bottom });
  cursor.id = "cursor";
  svg.append(cursor);
  svg.onclick = (event) => {
    const box = svg.getBoundingClientRect();
    const fraction = ((event.clientX - box.left) / box.width * width - left) / (width - left - right);
    setFrame(job, Math.round(Math.min(1, Math.max(0, fraction)) * (numbers.length - 1)));
  };
  svg.dataset.x = JSON.stringify(numbers.map((_, i) => x(i)));
}

function setFrame(job, index) {
  const { numbers } = job.views;
  const result = job.result;
  $("slider").value = index;
  const number = numbers[index];
  const tags = ["onset", "apex", "offset"].filter((name) => result[name] === number);
  $("frame-number").textContent = `${number}${tags.length ? " (" + tags.join(", ") + ")" : ""}`;
  $("frame").src = `/api/jobs/${job.id}/frames/${index}.jpg`;
  const xs = JSON.parse($("curve").dataset.x);
  $("cursor").setAttribute("x1", xs[index]);
  $("cursor").setAttribute("x2", xs[index]);
}

function drawBars(result) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(result.probabilities)) {
    const bar = element("div", name === result.predicted ? "bar top" : "bar");
    bar.dataset.class = name;
    const label = element("div", "label");
    label.append(element("span", "", name), element("span", "value", p.toFixed(2)));
    const track = element("div", "track");
    const fill = element("div", "fill");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    bar.append(label, track);
    bars.append(bar);
  }
}

function showPicture(job, name) {
  const figure = $(`fig-${name}`);
  figure.hidden = !job.views.images.includes(name);
  if (figure.hidden) return;
  $(`img-${name}`).src = `/api/jobs/${job.id}/images/${name}.png`;
  const caption = $(`caption-${name}`);
  if (caption) caption.textContent = job.views.captions[name];
}

function showWords(words) {
  $("verdict").replaceChildren(element("strong", "", words.verdict));
  if (words.runner_up) $("verdict").append(" ", element("span", "hint", `(${words.runner_up})`));
  $("when").textContent = words.when;
  $("rate").textContent = words.rate ? `Times ${words.rate}.` : "";
  $("rate").hidden = !words.rate;
  $("detail-list").replaceChildren(
    ...words.details.flatMap(([key, text]) => [element("dt", "", key), element("dd", "", text)]));
}

function showResult(job) {
  state.shown = job.id;
  for (const item of $("jobs").children) item.classList.toggle("shown", item.dataset.job === job.id);
  const result = job.result;
  $("result").hidden = false;
  $("result-title").textContent = `${job.name} — ${job.model_about}`;
  showWords(job.views.words);
  $("download").href = `/api/jobs/${job.id}/result.json`;
  $("curve-source").textContent = `The curve: ${job.views.curve_source}. Click it or move the slider.`;
  drawCurve(job);
  const slider = $("slider");
  slider.max = job.views.numbers.length - 1;
  slider.oninput = () => setFrame(job, Number(slider.value));
  setFrame(job, job.views.numbers.indexOf(result.apex));
  drawBars(result);
  for (const name of ["face", "flow", "input", "attention"]) showPicture(job, name);
}

// ---- wiring ------------------------------------------------------------------------------------

const drop = $("drop");
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  queueFiles(event.dataTransfer.files);
});
$("file").addEventListener("change", (event) => {
  queueFiles(event.target.files);
  event.target.value = "";
});
loadConfig().catch((error) => showMessage(`The server did not answer: ${error.message}`));

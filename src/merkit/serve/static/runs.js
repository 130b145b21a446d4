// The runs page: every run folder under --runs, opened one at a time or compared.
"use strict";

const $ = (id) => document.getElementById(id);
const LEAK_MARK = "⚠ leaks subjects";

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function ticked() {
  return [...document.querySelectorAll("#runs input[type=checkbox]:checked")].map((box) => box.value);
}

function row(run) {
  const tr = document.createElement("tr");
  tr.dataset.run = run.id;
  const tick = cell("", "text");
  const link = document.createElement("a");
  link.href = `/runs/report?run=${encodeURIComponent(run.id)}`;
  link.textContent = run.id;
  const name = cell("", "text");
  name.append(link);
  if (run.error) {
    tr.className = "unfinished";
    const why = cell(run.error, "text");
    why.colSpan = 8;
    tr.append(tick, name, why);
    return tr;
  }
  const box = document.createElement("input");
  box.type = "checkbox";
  box.value = run.id;
  box.setAttribute("aria-label", `compare ${run.id}`);
  box.addEventListener("change", () => { $("compare").disabled = ticked().length < 2; });
  tick.append(box);
  if (run.leaking) tr.className = "leak";
  const figures = run.overall;
  tr.append(tick, name, cell(run.model, "text"), cell(run.dataset, "text"),
            cell(run.protocol + (run.leaking ? ` ${LEAK_MARK}` : ""), "text"), cell(run.date, "text"),
            cell(String(figures.n)), cell(figures.uf1.toFixed(4)), cell(figures.uar.toFixed(4)),
            cell(figures.accuracy.toFixed(4)));
  return tr;
}

async function load() {
  const response = await fetch("/api/runs");
  const body = await response.json();
  if (!body.root) {
    $("where").textContent = "No runs folder: start merkit serve with --runs DIR.";
    return;
  }
  $("where").textContent = `Run folders under ${body.root}`;
  if (!body.runs.length) {
    $("message").textContent = `No run folder (one holding config.yaml) under ${body.root}.`;
    $("message").hidden = false;
    return;
  }
  const tbody = document.querySelector("#runs tbody");
  tbody.replaceChildren(...body.runs.map(row));
  $("runs").hidden = false;
}

$("compare").addEventListener("click", () => {
  const query = ticked().map((id) => `run=${encodeURIComponent(id)}`).join("&");
  window.location.href = `/runs/compare?${query}`;
});
load().catch((error) => {
  $("message").textContent = `The server did not answer: ${error.message}`;
  $("message").hidden = false;
});

// hygie portal: the page's only script (served from the hub; no inline script anywhere).
"use strict";
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

// Live job progress: <span data-poll="/api/v1/jobs/ID" data-field="state"> refreshes until a final state.
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
function poll(el) {
  fetch(el.dataset.poll, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
    .then(r => (r.ok ? r.json() : Promise.reject(r.status)))
    .then(data => {
      const value = String(data[el.dataset.field || "state"]);
      if (el.textContent !== value) { el.textContent = value; el.className = "status " + value; }
      if (FINAL.has(value)) { if (el.dataset.reload !== undefined) location.reload(); return; }
      setTimeout(() => poll(el), 1500);
    })
    .catch(() => setTimeout(() => poll(el), 5000));
}

// Forms that do something irreversible ask first: <form data-confirm="Approve this output?">.
function confirmForms() {
  document.querySelectorAll("form[data-confirm]").forEach(f =>
    f.addEventListener("submit", e => { if (!confirm(f.dataset.confirm)) e.preventDefault(); }));
}

// Interactive plots: legend buttons show or hide a series (<g data-series="name"> in the inline SVG).
function legends() {
  document.querySelectorAll(".plot").forEach(plot => {
    const series = [...plot.querySelectorAll("svg [data-series]")];
    const names = [...new Set(series.map(s => s.dataset.series))];
    if (names.length < 2) return;
    const legend = document.createElement("div");
    legend.className = "legend";
    names.forEach(name => {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = name; b.setAttribute("aria-pressed", "true");
      b.addEventListener("click", () => {
        const on = b.getAttribute("aria-pressed") !== "true";
        b.setAttribute("aria-pressed", String(on));
        series.filter(s => s.dataset.series === name).forEach(s => s.classList.toggle("hidden", !on));
      });
      legend.appendChild(b);
    });
    plot.appendChild(legend);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
  confirmForms();
  legends();
});
window.hygie = {csrf};

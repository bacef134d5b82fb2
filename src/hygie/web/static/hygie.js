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

// Interactive plots: the report's inline SVG marks each series by its colour and lists it in a legend
// (a 10x10 swatch and a label). One button per series shows or hides its lines, bands and points.
function legends() {
  document.querySelectorAll(".plot svg").forEach(svg => {
    const swatches = [...svg.querySelectorAll('rect[width="10"][height="10"]')];
    if (swatches.length < 2) return;
    const legend = document.createElement("div");
    legend.className = "legend";
    swatches.forEach(swatch => {
      const colour = swatch.getAttribute("fill");
      const label = swatch.nextElementSibling ? swatch.nextElementSibling.textContent : colour;
      const marks = [...svg.querySelectorAll("polyline, polygon, circle, path")].filter(
        m => m.getAttribute("stroke") === colour || m.getAttribute("fill") === colour);
      const b = document.createElement("button");
      b.type = "button"; b.textContent = label; b.setAttribute("aria-pressed", "true");
      b.addEventListener("click", () => {
        const on = b.getAttribute("aria-pressed") !== "true";
        b.setAttribute("aria-pressed", String(on));
        marks.forEach(m => m.classList.toggle("hidden", !on));
      });
      legend.appendChild(b);
    });
    svg.parentElement.appendChild(legend);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
  confirmForms();
  legends();
});
window.hygie = {csrf};

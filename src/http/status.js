// The status page's reloads and its "Run now" buttons. It reloads the page as the <noscript>
// refresh does without it, but not while an evidence view is open (a reload would fold it
// while someone reads it) or a run's result is new. Each button posts to /checks/<name>/run
// and shows the rounds beside it; without this script the forms still post, and the browser
// shows the JSON.
"use strict";

const refreshMs = 1000 * Number(document.currentScript.dataset.refreshSeconds || 10);
const holdResultMs = 30000;
let refreshAt = Date.now() + refreshMs;
setInterval(() => {
  if (document.querySelector("details[open]")) {
    refreshAt = Date.now() + refreshMs;
  } else if (Date.now() >= refreshAt) {
    location.reload();
  }
}, 1000);

function describe(report) {
  return report.runs
    .map((run) => `${run.netns}: ${run.ok ? "ok" : "FAIL"} ${run.result} ` +
      `in ${run.duration_seconds.toFixed(3)} s: ${run.detail}`)
    .join("\n");
}

async function run(form) {
  const button = form.querySelector("button");
  const output = form.querySelector("output");
  button.disabled = true;
  output.className = "run-result";
  output.textContent = "running…";
  refreshAt = Infinity;
  try {
    const response = await fetch(form.action, { method: "POST" });
    const body = await response.text();
    if (response.ok) {
      const report = JSON.parse(body);
      output.textContent = describe(report);
      output.classList.add(report.runs.every((r) => r.ok) ? "ok" : "fail");
    } else {
      // 403 off, 404 unknown, 429 too soon: the agent's answer says which and what to do.
      output.textContent = `HTTP ${response.status}: ${body.trim()}`;
      output.classList.add("refused");
    }
  } catch (error) {
    output.textContent = `the request failed: ${error}`;
    output.classList.add("refused");
  }
  button.disabled = false;
  refreshAt = Date.now() + holdResultMs;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.classList.contains("run")) return;
  event.preventDefault();
  run(form);
});

// xtasks manager page: action buttons over the JSON API, live updates over server-sent
// events. Plain DOM, no framework, no innerHTML with data (every value goes through
// textContent). The prefix comes from <body data-prefix>, never from inline script.
"use strict";

(function () {
  const body = document.body;
  const prefix = body.dataset.prefix || "";
  const csrfHeader = body.dataset.csrfHeader || "X-Xtasks-Request";
  const canWrite = body.dataset.canWrite === "true";
  const pageTask = body.dataset.task; // set on a task's page only

  const STATUS_CLASS = {
    succeeded: "ok", failed: "bad", lost: "bad", running: "run", queued: "wait",
    waiting: "wait", cancelled: "warn", skipped: "dim", missed: "dim",
  };
  const FINAL = new Set(["succeeded", "failed", "cancelled", "skipped", "missed", "lost"]);
  const FITS = {
    active: ["run", "pause", "cancel"],
    paused: ["resume", "cancel"],
    cancelled: ["resume"],
  };
  const ACTIONS = {
    run: { method: "POST", suffix: "/run", done: "Run requested" },
    pause: { method: "POST", suffix: "/pause", done: "Paused" },
    resume: { method: "POST", suffix: "/resume", done: "Resumed" },
    cancel: { method: "DELETE", suffix: "", done: "Cancelled" },
  };

  function taskUrl(name) {
    return prefix + "/tasks/" + encodeURIComponent(name);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // The server renders times in UTC as "YYYY-MM-DD HH:MM:SS"; do the same.
  function timeNode(iso) {
    if (!iso) return el("span", "none", "—");
    const d = new Date(iso);
    const text = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    const node = el("time", null, text);
    node.setAttribute("datetime", iso);
    return node;
  }

  function badge(text, cls) {
    return el("span", "badge " + cls, text);
  }

  function statusBadge(status) {
    return badge(status, STATUS_CLASS[status] || "dim");
  }

  function duration(started, finished) {
    if (!started || !finished) return "";
    const s = Math.max((new Date(finished) - new Date(started)) / 1000, 0);
    if (s < 10) return s.toFixed(2) + " s";
    if (s < 60) return s.toFixed(1) + " s";
    const r = Math.round(s);
    return Math.floor(r / 60) + " min " + (r % 60) + " s";
  }

  function replace(parent, ...children) {
    if (!parent) return;
    parent.replaceChildren(...children);
  }

  // --- flash messages --------------------------------------------------------------------

  const flash = document.getElementById("flash");
  let flashTimer = null;

  function say(text, ok) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = "flash " + (ok ? "ok" : "bad");
    flash.hidden = false;
    clearTimeout(flashTimer);
    if (ok) flashTimer = setTimeout(() => { flash.hidden = true; }, 8000);
  }

  // --- task state ------------------------------------------------------------------------

  // The elements that show a task: its row on the list, or the whole task page.
  function tasksNamed(name) {
    return Array.from(document.querySelectorAll("tr[data-task], body[data-task]"))
      .filter((node) => node.dataset.task === name);
  }

  function applyState(name, state) {
    for (const holder of tasksNamed(name)) {
      holder.dataset.state = state;
      replace(holder.querySelector(".state"), badge(state, "state-" + state));
    }
    const fits = FITS[state] || [];
    for (const button of document.querySelectorAll("button[data-action]")) {
      if (button.dataset.task !== name) continue;
      button.hidden = !fits.includes(button.dataset.action);
    }
  }

  // Refresh the summary fields of a task (next fire, failures, last run) from the API.
  const refreshing = new Map();
  function refreshTask(name) {
    if (refreshing.has(name)) return;
    refreshing.set(name, true);
    fetch(taskUrl(name) + "?limit=1", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((task) => {
        if (!task) return;
        applyState(name, task.state);
        for (const holder of tasksNamed(name)) {
          replace(holder.querySelector(".next"), timeNode(task.next_fire));
          const failures = holder.querySelector(".failures");
          if (failures) {
            failures.textContent = String(task.consecutive_failures);
            failures.classList.toggle("bad-text", task.consecutive_failures > 0);
          }
        }
      })
      .catch(() => {})
      .finally(() => refreshing.delete(name));
  }

  // --- runs ------------------------------------------------------------------------------

  function updateTaskRow(run) {
    for (const row of document.querySelectorAll("#tasks tr[data-task]")) {
      if (row.dataset.task !== run.task) continue;
      replace(row.querySelector(".last-status"), statusBadge(run.status));
      replace(row.querySelector(".last-when"), timeNode(run.finished_at || run.started_at || run.scheduled_at));
      row.classList.remove("fresh");
      void row.offsetWidth; // restart the highlight
      row.classList.add("fresh");
    }
  }

  function outcomeNodes(run) {
    const nodes = [];
    if (run.error) {
      const line = el("div", "error-text");
      line.append(el("span", "etype", run.error.type), ": ", el("span", "emsg", run.error.message));
      nodes.push(line);
      if (run.error.traceback) {
        const details = el("details");
        const lines = run.error.traceback.replace(/\s+$/, "").split("\n");
        const excerpt = lines.length > 40 ? ["…"].concat(lines.slice(-40)) : lines;
        details.append(el("summary", null, "traceback"), el("pre", null, excerpt.join("\n")));
        nodes.push(details);
      }
    } else if (run.reason) {
      nodes.push(el("div", "sub", run.reason));
    }
    return nodes;
  }

  function runRow(run) {
    const row = el("tr");
    row.dataset.run = run.id;
    const id = el("td", "mono", run.id.slice(0, 10));
    id.title = run.id;
    const cells = [
      id,
      el("td", "status"),
      el("td", "cause", run.cause),
      el("td", "scheduled"),
      el("td", "started"),
      el("td", "finished"),
      el("td", "duration num", duration(run.started_at, run.finished_at)),
      el("td", "attempts num", run.attempts),
      el("td", "outcome"),
    ];
    cells[1].append(statusBadge(run.status));
    cells[3].append(timeNode(run.scheduled_at));
    cells[4].append(timeNode(run.started_at));
    cells[5].append(timeNode(run.finished_at));
    cells[8].append(...outcomeNodes(run));
    row.append(...cells);
    return row;
  }

  function showRun(run) {
    const table = document.getElementById("runs");
    if (!table || run.task !== pageTask) return;
    const tbody = table.tBodies[0];
    const fresh = runRow(run);
    const existing = Array.from(tbody.rows).find((r) => r.dataset.run === run.id);
    if (existing) {
      const open = existing.querySelector("details[open]");
      if (open && !run.error) return;
      existing.replaceWith(fresh);
    } else if (table.dataset.offset === "0") {
      tbody.prepend(fresh);
      const empty = document.getElementById("no-runs");
      if (empty) empty.remove();
    } else {
      return;
    }
    fresh.classList.add("fresh");
  }

  // A final failed run: fetch the full record for its traceback.
  function completeRun(run) {
    fetch(prefix + "/runs/" + encodeURIComponent(run.id), {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    })
      .then((r) => (r.ok ? r.json() : null))
      .then((full) => { if (full) showRun(full); })
      .catch(() => {});
  }

  function onRun(run) {
    updateTaskRow(run);
    showRun(run);
    if (FINAL.has(run.status)) {
      refreshTask(run.task);
      if (run.error && run.task === pageTask) completeRun(run);
    }
  }

  // --- actions ---------------------------------------------------------------------------

  async function act(button) {
    const name = button.dataset.task;
    const action = ACTIONS[button.dataset.action];
    if (!action || !name) return;
    if (button.dataset.action === "cancel" &&
        !window.confirm("Cancel " + name + "? Its queued and running runs are cancelled and it stops firing until resumed.")) {
      return;
    }
    button.disabled = true;
    try {
      const headers = { Accept: "application/json" };
      headers[csrfHeader] = "1";
      const response = await fetch(taskUrl(name) + action.suffix, {
        method: action.method, headers, credentials: "same-origin",
      });
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        const detail = data && typeof data.detail === "string" ? data.detail : response.statusText;
        let text = "Could not " + button.dataset.action + " " + name + ": " + detail + " (HTTP " + response.status + ")";
        if (response.status === 401) text += " — reload the page to sign in again";
        say(text, false);
        return;
      }
      if (data && data.state) applyState(name, data.state);
      const extra = data && data.run_id ? " (run " + data.run_id.slice(0, 10) + ")" : "";
      say(action.done + ": " + name + extra, true);
    } catch (e) {
      say("Could not reach the manager: " + e, false);
    } finally {
      button.disabled = false;
    }
  }

  if (canWrite) {
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) act(button);
    });
  }

  // --- live updates ----------------------------------------------------------------------

  const live = document.getElementById("live");
  function liveState(text, cls) {
    if (!live) return;
    live.textContent = text;
    live.className = "live " + cls;
  }

  if (window.EventSource) {
    const source = new EventSource(prefix + "/events");
    source.addEventListener("open", () => liveState("live", "on"));
    source.addEventListener("error", () => liveState("reconnecting…", "off"));
    source.addEventListener("run", (event) => {
      try { onRun(JSON.parse(event.data)); } catch (e) { /* a malformed event is ignored */ }
    });
    source.addEventListener("task", (event) => {
      try {
        const data = JSON.parse(event.data);
        applyState(data.name, data.state);
        refreshTask(data.name);
      } catch (e) { /* ignored */ }
    });
    window.addEventListener("beforeunload", () => source.close());
  }
})();

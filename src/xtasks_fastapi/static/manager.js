// xtasks manager page: action buttons over the JSON API, charts drawn as inline SVG,
// live updates over server-sent events. Plain DOM, no framework, no innerHTML with data
// (every value goes through textContent or setAttribute). The prefix comes from
// <body data-prefix>, never from inline script.
"use strict";

(function () {
  const body = document.body;
  const prefix = body.dataset.prefix || "";
  const csrfHeader = body.dataset.csrfHeader || "X-Xtasks-Request";
  const canWrite = body.dataset.canWrite === "true";
  const pageTask = body.dataset.task; // set on a task's page only
  const view = body.dataset.view || ""; // tasks, task, run, runs
  const SVG_NS = "http://www.w3.org/2000/svg";

  const STATUS_CLASS = {
    succeeded: "ok", failed: "bad", lost: "bad", running: "run", queued: "wait",
    waiting: "wait", cancelled: "warn", skipped: "dim", missed: "dim",
  };
  // The bar colours of the charts, by status class (the CSS badge colours, stronger).
  const STATUS_FILL = {
    ok: "#2f9e5b", bad: "#d23c3c", run: "#3b6fd8", wait: "#9aa3b2", warn: "#d99a1b", dim: "#c3c8d1",
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

  function runPageUrl(id) {
    return prefix + "/run/" + encodeURIComponent(id);
  }

  function getJson(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => {
        if (!r.ok) throw new Error("HTTP " + r.status + " from " + url);
        return r.json();
      });
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function svgTitle(node, text) {
    const title = svgEl("title");
    title.textContent = text;
    node.append(title);
    return node;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // --- times: the browser's zone, UTC on hover -------------------------------------------

  function localText(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
      " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function utcText(d) {
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }

  function shortTime(d) {
    return pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "local time";

  function timeNode(iso) {
    if (!iso) return el("span", "none", "—");
    const d = new Date(iso);
    const node = el("time", null, localText(d));
    node.setAttribute("datetime", iso);
    node.title = utcText(d);
    return node;
  }

  // The server writes times in UTC; show each in the browser's zone, UTC on hover.
  function localizeTimes(root) {
    for (const node of root.querySelectorAll("time[datetime]")) {
      if (node.dataset.local) continue;
      const d = new Date(node.getAttribute("datetime"));
      if (isNaN(d)) continue;
      node.textContent = localText(d);
      node.title = utcText(d);
      node.dataset.local = "1";
    }
    for (const hint of root.querySelectorAll(".tz-hint")) {
      hint.textContent = "times in " + zone + " (UTC on hover)";
    }
  }

  function seconds(s) {
    const a = Math.abs(s);
    const sign = s < 0 ? "-" : "";
    if (a < 10) return s.toFixed(2) + " s";
    if (a < 60) return s.toFixed(1) + " s";
    const r = Math.round(a);
    const minutes = Math.floor(r / 60);
    if (minutes < 60) return sign + minutes + " min " + (r % 60) + " s";
    return sign + Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function duration(started, finished) {
    if (!started || !finished) return "";
    return seconds(Math.max((new Date(finished) - new Date(started)) / 1000, 0));
  }

  function lateness(run) {
    if (!run.started_at) return "";
    const late = (new Date(run.started_at) - new Date(run.scheduled_at)) / 1000;
    return late >= 0 ? seconds(late) + " late" : seconds(-late) + " early";
  }

  function badge(text, cls) {
    return el("span", "badge " + cls, text);
  }

  function statusBadge(status) {
    return badge(status, STATUS_CLASS[status] || "dim");
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

  function applySummary(task) {
    applyState(task.name, task.state);
    for (const holder of tasksNamed(task.name)) {
      replace(holder.querySelector(".next"), timeNode(task.next_fire));
      const failures = holder.querySelector(".failures");
      if (failures) {
        failures.textContent = String(task.consecutive_failures);
        failures.classList.toggle("bad-text", task.consecutive_failures > 0);
      }
    }
  }

  // Refresh the summary fields of a task (next fire, failures, last run) from the API.
  const refreshing = new Map();
  function refreshTask(name) {
    if (refreshing.has(name)) return;
    refreshing.set(name, true);
    getJson(taskUrl(name) + "?limit=1")
      .then(applySummary)
      .catch(() => {})
      .finally(() => refreshing.delete(name));
  }

  // --- runs tables -----------------------------------------------------------------------

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

  function errorNodes(error) {
    const nodes = [];
    const line = el("div", "error-text");
    line.append(el("span", "etype", error.type), ": ", el("span", "emsg", error.message));
    nodes.push(line);
    if (error.traceback) {
      const details = el("details");
      const lines = error.traceback.replace(/\s+$/, "").split("\n");
      const excerpt = lines.length > 40 ? ["…"].concat(lines.slice(-40)) : lines;
      details.append(el("summary", null, "traceback"), el("pre", null, excerpt.join("\n")));
      nodes.push(details);
    }
    return nodes;
  }

  function outcomeNodes(run) {
    const nodes = [];
    const earlier = run.earlier_attempts || [];
    if (earlier.length) {
      const list = el("ol", "attempts-list");
      for (const attempt of earlier) {
        const item = el("li");
        item.dataset.attempt = attempt.number;
        item.append(el("span", "anum", "attempt " + attempt.number), " ",
          el("span", "etype", attempt.error.type), ": ", el("span", "emsg", attempt.error.message));
        list.append(item);
      }
      nodes.push(list);
    }
    if (run.error) {
      nodes.push(...errorNodes(run.error));
    } else if (run.reason) {
      nodes.push(el("div", "sub", run.reason));
    }
    return nodes;
  }

  // Where a run ran, on hover: the replica (process) that ran it, the executor's worker.
  function whereTitle(run) {
    const parts = [];
    if (run.replica) parts.push("replica " + run.replica);
    if (run.worker) parts.push("worker " + run.worker);
    return parts.join(" · ");
  }

  function cell(cls, label, ...children) {
    const td = el("td", cls);
    td.dataset.label = label;
    td.append(...children);
    return td;
  }

  function runRow(run) {
    const row = el("tr");
    row.dataset.run = run.id;
    row.dataset.status = run.status;
    if (run.replica) row.dataset.replica = run.replica;
    const link = el("a", "mono", run.id);
    link.href = runPageUrl(run.id);
    const idBox = el("div");
    idBox.append(link);
    if (view === "runs") {
      const task = el("a", "task-link", run.task);
      task.href = prefix + "/view/" + encodeURIComponent(run.task);
      idBox.append(el("div", "sub"));
      idBox.lastChild.append(task, " · " + run.cause);
    } else {
      idBox.append(el("div", "sub cause", run.cause));
    }
    const started = el("div");
    started.append(timeNode(run.started_at), el("div", "sub late", lateness(run)));
    const status = el("div");
    status.append(statusBadge(run.status));
    if (run.executor) {
      const where = el("div", "sub executor", run.executor);
      const hover = whereTitle(run);
      if (hover) where.title = hover;
      status.append(where);
    }
    row.append(
      cell("run-id", "Run", idBox),
      cell("status", "Status", status),
      cell("scheduled", "Scheduled", timeNode(run.scheduled_at)),
      cell("started", "Started", started),
      cell("duration num", "Duration", duration(run.started_at, run.finished_at)),
      cell("attempts num", "Attempts", String(run.attempts)),
      cell("outcome", "Outcome", ...outcomeNodes(run)),
    );
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
      const limit = Number(table.dataset.limit || 25);
      while (tbody.rows.length > limit) tbody.lastElementChild.remove();
      const empty = document.getElementById("no-runs");
      if (empty) empty.remove();
    } else {
      return;
    }
    fresh.classList.add("fresh");
  }

  // A final failed run: fetch the full record for its traceback.
  function completeRun(run) {
    getJson(prefix + "/runs/" + encodeURIComponent(run.id))
      .then((full) => { showRun(full); })
      .catch(() => {});
  }

  // --- the strip: a task's last runs, colour by status, height by duration -----------------

  const strip = document.getElementById("strip");
  let stripRuns = []; // oldest first

  // Whether a run read from the API is newer than the same run heard from the stream.
  // The stream starts before the page reads (data-changes-after), so every change after
  // a read comes by the stream too: a read can only be newer by having ended since.
  function fresher(read, streamed) {
    return FINAL.has(read.status) && !FINAL.has(streamed.status);
  }

  function runSeconds(run) {
    if (!run.started_at) return null;
    const end = run.finished_at ? new Date(run.finished_at) : new Date();
    return Math.max((end - new Date(run.started_at)) / 1000, 0);
  }

  function runTooltip(run) {
    const lines = [run.id, run.status + " · " + run.cause,
      "scheduled " + localText(new Date(run.scheduled_at))];
    const secs = runSeconds(run);
    if (secs !== null) lines.push((run.finished_at ? "took " : "running for ") + seconds(secs));
    const late = lateness(run);
    if (late) lines.push("started " + late);
    if (run.attempts > 1) lines.push(run.attempts + " attempts");
    if (run.replica) lines.push("on replica " + run.replica);
    if (run.error) lines.push(run.error.type + ": " + run.error.message);
    else if (run.reason) lines.push(run.reason);
    return lines.join("\n");
  }

  function drawStrip() {
    if (!strip) return;
    const max = Number(strip.dataset.runs || 100);
    const runs = stripRuns.slice(-max);
    const width = Math.max(strip.clientWidth, 200);
    const height = 72;
    const slot = width / max;
    const barWidth = Math.max(slot - 2, 1);
    const durations = runs.map(runSeconds).filter((s) => s !== null);
    const longest = Math.max(...durations, 0.001);
    const svg = svgEl("svg", {
      width, height: height + 14, viewBox: "0 0 " + width + " " + (height + 14),
      role: "img", "aria-label": runs.length + " runs, oldest to newest",
      class: "strip-chart",
    });
    svg.append(svgEl("line", { x1: 0, x2: width, y1: height + 0.5, y2: height + 0.5, class: "axis" }));
    const first = max - runs.length; // the newest run sits at the right edge
    runs.forEach((run, n) => {
      const i = first + n;
      const secs = runSeconds(run);
      const h = secs === null ? 6 : Math.max(4, (secs / longest) * (height - 4));
      const link = svgEl("a", { href: runPageUrl(run.id), class: "bar-link" });
      // a full-height hit area, so short bars are easy to point at
      link.append(svgEl("rect", {
        x: (i * slot).toFixed(2), y: 0, width: slot.toFixed(2), height, class: "hit",
      }));
      const bar = svgEl("rect", {
        x: (i * slot + (slot - barWidth) / 2).toFixed(2), y: (height - h).toFixed(2),
        width: barWidth.toFixed(2), height: h.toFixed(2), rx: Math.min(2, barWidth / 3),
        fill: STATUS_FILL[STATUS_CLASS[run.status] || "dim"], class: "bar",
        "data-run": run.id, "data-status": run.status,
      });
      if (run.replica) bar.setAttribute("data-replica", run.replica);
      link.append(bar);
      svgTitle(link, runTooltip(run));
      svg.append(link);
    });
    const legend = svgEl("text", { x: 0, y: height + 12, class: "legend" });
    legend.textContent = runs.length
      ? "longest " + seconds(longest === 0.001 ? 0 : longest)
      : "no runs yet";
    svg.append(legend);
    strip.replaceChildren(svg);
  }

  function loadStrip() {
    if (!strip) return Promise.resolve();
    const max = Number(strip.dataset.runs || 100);
    return getJson(taskUrl(strip.dataset.task) + "?limit=" + max)
      .then((task) => {
        // The stream may have brought runs while this was read: keep them (see fresher).
        const streamed = new Map(stripRuns.map((run) => [run.id, run]));
        const read = task.history.slice().reverse().map((run) => {
          const seen = streamed.get(run.id);
          streamed.delete(run.id);
          return seen && !fresher(run, seen) ? seen : run;
        });
        stripRuns = read.concat(Array.from(streamed.values()));
        stripRuns.sort((a, b) => new Date(a.scheduled_at) - new Date(b.scheduled_at));
        stripRuns = stripRuns.slice(-max);
        drawStrip();
      })
      .catch((e) => { strip.replaceChildren(el("p", "error-text", "Could not load the runs: " + e.message)); });
  }

  function stripRun(run) {
    if (!strip || run.task !== strip.dataset.task) return;
    const index = stripRuns.findIndex((r) => r.id === run.id);
    if (index >= 0) stripRuns[index] = Object.assign({}, stripRuns[index], run);
    else {
      stripRuns.push(run);
      stripRuns.sort((a, b) => new Date(a.scheduled_at) - new Date(b.scheduled_at));
    }
    const max = Number(strip.dataset.runs || 100);
    if (stripRuns.length > max) stripRuns = stripRuns.slice(-max);
    drawStrip();
  }

  // --- the overview: per task the last 24 h, and the coming fires -------------------------

  const HORIZON_HOURS = 6;
  let overviewTimer = null;
  let overviewAt = 0;

  function drawDay(holder, task) {
    const width = 120;
    const height = 26;
    const slot = width / task.hours.length;
    const most = Math.max(...task.hours.map((h) => h.runs), 1);
    const svg = svgEl("svg", {
      width, height, viewBox: "0 0 " + width + " " + height, class: "day-svg", role: "img",
      "aria-label": task.runs_24h + " runs, " + task.failed_24h + " failed in the last 24 hours",
    });
    svg.append(svgEl("line", { x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, class: "axis" }));
    task.hours.forEach((hour, i) => {
      const start = new Date(hour.start);
      const end = new Date(start.getTime() + 3600 * 1000);
      const group = svgEl("g", { class: "hour", "data-runs": hour.runs, "data-failed": hour.failed });
      group.append(svgEl("rect", { x: i * slot, y: 0, width: slot, height, class: "hit" }));
      if (hour.runs > 0) {
        const h = Math.max(2, (hour.runs / most) * (height - 2));
        const bad = hour.failed ? Math.max(1.5, (hour.failed / hour.runs) * h) : 0;
        group.append(svgEl("rect", {
          x: i * slot + 0.5, y: height - h, width: Math.max(slot - 1, 1), height: h - bad,
          fill: STATUS_FILL.ok, class: "bar ok-bar",
        }));
        if (bad) {
          group.append(svgEl("rect", {
            x: i * slot + 0.5, y: height - bad, width: Math.max(slot - 1, 1), height: bad,
            fill: STATUS_FILL.bad, class: "bar bad-bar",
          }));
        }
      }
      svgTitle(group, shortTime(start) + "–" + shortTime(end) + ": " + hour.runs + " runs" +
        (hour.failed ? ", " + hour.failed + " failed" : ""));
      svg.append(group);
    });
    const rate = task.runs_24h ? Math.round((100 * task.failed_24h) / task.runs_24h) : 0;
    const caption = el("div", "day-caption" + (task.failed_24h ? " bad-text" : ""),
      task.runs_24h + (task.complete ? "" : "+") + " runs" +
      (task.runs_24h ? " · " + rate + "% failed" : ""));
    holder.replaceChildren(svg, caption);
  }

  function drawTimeline(data) {
    const holder = document.getElementById("timeline");
    if (!holder) return;
    const now = new Date(data.now);
    const hours = data.horizon_hours;
    const end = new Date(now.getTime() + hours * 3600 * 1000);
    const tasks = data.tasks.filter((t) => t.next_fires.length);
    const hint = document.getElementById("timeline-hint");
    if (hint) hint.textContent = "the next " + hours + " hours, by task; " + zone;
    if (!tasks.length) {
      holder.replaceChildren(el("p", "none", "Nothing fires in the next " + hours + " hours."));
      return;
    }
    const width = Math.max(holder.clientWidth, 280);
    const labelWidth = Math.min(170, Math.round(width * 0.32));
    const rowHeight = 22;
    const top = 18;
    const height = top + rowHeight * tasks.length + 4;
    const plot = width - labelWidth - 8;
    const x = (d) => labelWidth + ((d - now) / (end - now)) * plot;
    const svg = svgEl("svg", {
      width, height, viewBox: "0 0 " + width + " " + height, class: "timeline-svg", role: "img",
      "aria-label": "fires in the next " + hours + " hours",
    });
    // hour ticks, labelled in the browser's zone
    const step = hours > 12 ? 3 : 1;
    const tick = new Date(now);
    tick.setMinutes(0, 0, 0);
    let lastLabel = labelWidth + 22; // right of "now"
    const every = Math.max(1, Math.ceil(36 / (plot / hours))); // label every n-th hour if tight
    let n = 0;
    for (tick.setHours(tick.getHours() + 1); tick <= end; tick.setHours(tick.getHours() + step)) {
      const tx = x(tick);
      svg.append(svgEl("line", { x1: tx, x2: tx, y1: top - 4, y2: height, class: "grid" }));
      if (n++ % every === 0 && tx - 16 > lastLabel) {
        const label = svgEl("text", { x: tx, y: 11, class: "tick", "text-anchor": "middle" });
        label.textContent = shortTime(tick);
        svg.append(label);
        lastLabel = tx + 16;
      }
    }
    const nowLabel = svgEl("text", { x: labelWidth, y: 11, class: "tick now" });
    nowLabel.textContent = "now";
    svg.append(nowLabel);
    tasks.forEach((task, row) => {
      const y = top + row * rowHeight + rowHeight / 2;
      const line = svgEl("g", { class: "fires", "data-task": task.name, "data-fires": task.next_fires.length });
      const name = svgEl("text", { x: 0, y: y + 4, class: "task-label" });
      name.textContent = task.name.length > 24 ? task.name.slice(0, 23) + "…" : task.name;
      svgTitle(name, task.name);
      line.append(name, svgEl("line", { x1: labelWidth, x2: width - 8, y1: y, y2: y, class: "lane" }));
      for (const fire of task.next_fires) {
        const d = new Date(fire);
        const dot = svgEl("circle", { cx: x(d).toFixed(1), cy: y, r: 4.5, class: "fire" });
        svgTitle(dot, task.name + " fires at " + localText(d) + " (" + utcText(d) + ")");
        line.append(dot);
      }
      svg.append(line);
    });
    holder.replaceChildren(svg);
  }

  function loadOverview() {
    if (view !== "tasks") return Promise.resolve();
    overviewAt = Date.now();
    return getJson(prefix + "/overview?hours=" + HORIZON_HOURS)
      .then((data) => {
        for (const task of data.tasks) {
          for (const holder of document.querySelectorAll(".day-chart[data-task]")) {
            if (holder.dataset.task === task.name) drawDay(holder, task);
          }
        }
        drawTimeline(data);
      })
      .catch((e) => {
        const holder = document.getElementById("timeline");
        if (holder) holder.replaceChildren(el("p", "error-text", "Could not load the charts: " + e.message));
      });
  }

  // After a run ends, redraw the overview: at most every few seconds.
  function overviewSoon() {
    if (view !== "tasks" || overviewTimer) return;
    const wait = Math.max(0, 3000 - (Date.now() - overviewAt));
    overviewTimer = setTimeout(() => { overviewTimer = null; loadOverview(); }, wait);
  }

  // --- one run's page: its timeline ----------------------------------------------------------

  function drawRunTimeline() {
    const holder = document.getElementById("run-timeline");
    if (!holder) return;
    const scheduled = new Date(holder.dataset.scheduled);
    const started = holder.dataset.started ? new Date(holder.dataset.started) : null;
    const finished = holder.dataset.finished ? new Date(holder.dataset.finished) : null;
    const end = finished || (started ? new Date() : scheduled);
    const t0 = Math.min(scheduled, started || scheduled);
    const span = Math.max(end - t0, 1);
    const width = Math.max(holder.clientWidth, 260);
    const height = 46;
    const x = (d) => 4 + ((d - t0) / span) * (width - 8);
    const svg = svgEl("svg", { width, height, viewBox: "0 0 " + width + " " + height, class: "run-svg", role: "img" });
    svg.append(svgEl("line", { x1: 4, x2: width - 4, y1: 20, y2: 20, class: "lane" }));
    if (started) {
      const wait = svgEl("rect", { x: x(scheduled), y: 14, width: Math.max(x(started) - x(scheduled), 1), height: 12, class: "wait-seg" });
      svgTitle(wait, "waited " + seconds((started - scheduled) / 1000) + " after its scheduled time");
      const cls = STATUS_CLASS[holder.dataset.status] || "dim";
      const ran = svgEl("rect", { x: x(started), y: 10, width: Math.max(x(end) - x(started), 2), height: 20, fill: STATUS_FILL[cls], class: "run-seg" });
      svgTitle(ran, (finished ? "ran " : "running for ") + seconds((end - started) / 1000));
      svg.append(wait, ran);
    }
    const marks = [["scheduled", scheduled, "start"], ["started", started, "middle"], ["finished", finished, "end"]];
    for (const [name, when, anchor] of marks) {
      if (!when) continue;
      const mark = svgEl("text", { x: anchor === "start" ? 4 : anchor === "end" ? width - 4 : x(when), y: 42, class: "tick", "text-anchor": anchor });
      mark.textContent = name + " " + shortTime(when) + ":" + pad(when.getSeconds());
      svgTitle(mark, name + " " + localText(when) + " (" + utcText(when) + ")");
      svg.append(mark);
    }
    holder.replaceChildren(svg);
  }

  // --- the runs view: a filter over GET /runs --------------------------------------------------

  const filterForm = document.getElementById("run-filter");
  const runList = document.getElementById("run-list");
  const more = document.getElementById("more-runs");
  const RUNS_SHOWN = 50;
  const RUNS_READ = 200;
  let filter = null;

  function readFilter() {
    const params = new URLSearchParams(location.search);
    const local = (value) => (value ? new Date(value) : null); // datetime-local: the browser's zone
    const f = {
      task: params.get("task") || "",
      statuses: params.getAll("status"),
      since: local(params.get("since")),
      until: local(params.get("until")),
      offset: 0,
      done: false,
    };
    if (filterForm) {
      filterForm.elements.task.value = f.task;
      filterForm.elements.since.value = params.get("since") || "";
      filterForm.elements.until.value = params.get("until") || "";
      for (const box of filterForm.querySelectorAll('input[name="status"]')) {
        box.checked = f.statuses.includes(box.value);
      }
    }
    return f;
  }

  function matches(run) {
    if (!filter) return false;
    if (filter.task && run.task !== filter.task) return false;
    if (filter.statuses.length && !filter.statuses.includes(run.status)) return false;
    const when = new Date(run.scheduled_at);
    if (filter.since && when < filter.since) return false;
    if (filter.until && when > filter.until) return false;
    return true;
  }

  // Read pages of GET /runs (newest first by scheduled time) until RUNS_SHOWN match or the
  // runs are older than the range.
  async function loadRuns() {
    if (!runList || !filter || filter.done) return;
    const found = document.getElementById("runs-found");
    const tbody = runList.tBodies[0];
    let shown = 0;
    more.hidden = true;
    try {
      while (shown < RUNS_SHOWN && !filter.done) {
        const params = new URLSearchParams();
        if (filter.task) params.set("task", filter.task);
        for (const s of filter.statuses) params.append("status", s);
        params.set("limit", String(RUNS_READ));
        params.set("offset", String(filter.offset));
        const page = await getJson(prefix + "/runs?" + params);
        filter.offset += page.runs.length;
        if (page.runs.length < RUNS_READ) filter.done = true;
        for (const run of page.runs) {
          const when = new Date(run.scheduled_at);
          if (filter.since && when < filter.since) { filter.done = true; break; }
          if (!matches(run)) continue;
          // the stream may have shown it already, from this page's start
          const existing = Array.from(tbody.rows).find((r) => r.dataset.run === run.id);
          if (existing && existing.dataset.status && !fresher(run, existing.dataset)) continue;
          if (existing) existing.replaceWith(runRow(run));
          else tbody.append(runRow(run));
          shown += 1;
        }
      }
      const total = tbody.rows.length;
      if (found) found.textContent = total ? total + " runs shown" + (filter.done ? "" : "; more below") : "No run matches.";
      more.hidden = filter.done;
    } catch (e) {
      if (found) found.textContent = "Could not read the runs: " + e.message;
    }
  }

  function liveRunInList(run) {
    if (!runList || !matches(run)) return;
    const tbody = runList.tBodies[0];
    const existing = Array.from(tbody.rows).find((r) => r.dataset.run === run.id);
    const fresh = runRow(run);
    if (existing) existing.replaceWith(fresh);
    else if (!filter.until) tbody.prepend(fresh);
    else return;
    fresh.classList.add("fresh");
  }

  // --- live updates ------------------------------------------------------------------------

  function onRun(run) {
    updateTaskRow(run);
    showRun(run);
    stripRun(run);
    liveRunInList(run);
    const timeline = document.getElementById("run-timeline");
    if (timeline && timeline.dataset.run === run.id && timeline.dataset.status !== run.status) {
      location.reload();
      return;
    }
    if (FINAL.has(run.status)) {
      refreshTask(run.task);
      overviewSoon();
      if (run.error && run.task === pageTask) completeRun(run);
    }
  }

  // What happened while the stream was down: read it again.
  function catchUp() {
    if (view === "tasks") {
      getJson(prefix + "/tasks").then((tasks) => {
        for (const task of tasks) {
          applySummary(task);
          for (const row of document.querySelectorAll("#tasks tr[data-task]")) {
            if (row.dataset.task !== task.name || !task.last_run_id) continue;
            getJson(prefix + "/runs/" + encodeURIComponent(task.last_run_id)).then(updateTaskRow).catch(() => {});
          }
        }
      }).catch(() => {});
      loadOverview();
    } else if (view === "task" && pageTask) {
      loadStrip();
      const table = document.getElementById("runs");
      const limit = table ? Number(table.dataset.limit || 25) : 25;
      getJson(taskUrl(pageTask) + "?limit=" + limit).then((task) => {
        applySummary(task);
        for (const run of task.history.slice().reverse()) showRun(run);
      }).catch(() => {});
    } else if (view === "run") {
      const timeline = document.getElementById("run-timeline");
      if (timeline && !FINAL.has(timeline.dataset.status)) location.reload();
    }
  }

  const live = document.getElementById("live");
  function liveState(text, cls) {
    if (!live) return;
    live.textContent = text;
    live.className = "live " + cls;
  }

  let source = null;
  let opened = false;
  let retryMs = 1000;
  let retryTimer = null;
  // The store's number of the latest run change seen. The browser resends it by itself
  // (Last-Event-ID) when it reconnects a dropped stream; a new EventSource made here
  // after an error answer passes it as ?after=, so the stream resumes after it too.
  // It starts as the latest before the server read what the page shows
  // (<body data-changes-after>): a run changed between those reads and the stream's
  // start (a stream slow to connect) still comes.
  let lastChange = body.dataset.changesAfter || "";

  function connect() {
    retryTimer = null;
    const resume = lastChange ? "?after=" + encodeURIComponent(lastChange) : "";
    source = new EventSource(prefix + "/events" + resume);
    source.addEventListener("open", () => {
      liveState("live", "on");
      retryMs = 1000;
      // Runs resume after lastChange; task states (and runs, when none was seen yet)
      // are read again.
      if (opened) catchUp();
      opened = true;
    });
    source.addEventListener("error", () => {
      liveState("live updates lost: reconnecting…", "down");
      if (live) live.title = "the event stream " + prefix + "/events dropped; the page reconnects by itself and catches up";
      // The browser retries by itself after a dropped stream, but gives up on an error
      // answer (a 503, a 401): then retry here, waiting longer each time.
      if (source.readyState === EventSource.CLOSED && !retryTimer) {
        source.close();
        retryTimer = setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 8000);
      }
    });
    source.addEventListener("run", (event) => {
      if (event.lastEventId) lastChange = event.lastEventId;
      try { onRun(JSON.parse(event.data)); } catch (e) { /* a malformed event is ignored */ }
    });
    // The store no longer keeps every change since the last one seen (retention pruned
    // runs meanwhile): read what the page shows again.
    source.addEventListener("reload", (event) => {
      if (event.lastEventId) lastChange = event.lastEventId;
      catchUp();
    });
    source.addEventListener("task", (event) => {
      try {
        const data = JSON.parse(event.data);
        applyState(data.name, data.state);
        refreshTask(data.name);
      } catch (e) { /* ignored */ }
    });
  }

  // --- actions -----------------------------------------------------------------------------

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
      const extra = data && data.run_id ? " (run " + data.run_id + ")" : "";
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

  // --- start -------------------------------------------------------------------------------

  localizeTimes(document);
  loadOverview();
  if (view === "tasks") setInterval(overviewSoon, 60000); // the coming fires move with the clock
  loadStrip();
  drawRunTimeline();
  if (runList) {
    filter = readFilter();
    loadRuns();
    more.addEventListener("click", () => loadRuns());
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { drawStrip(); drawRunTimeline(); if (view === "tasks") loadOverview(); }, 200);
  });
  if (window.EventSource) {
    connect();
    window.addEventListener("beforeunload", () => { if (source) source.close(); clearTimeout(retryTimer); });
  }
})();

// The actorflow dashboard: each page asks /api/events for the views it shows (the same JSON as
// the command line's --format json) and redraws them when they change. No framework, no build.
"use strict";

(function () {
  const page = document.body.dataset.view;
  const content = document.getElementById("content");
  const live = document.getElementById("live");

  // -- small helpers ----------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function table(columns, rows, rowAttrs) {
    const head = el("tr", {}, columns.map((c) => el("th", { text: c[0] })));
    const body = rows.map((row) =>
      el(
        "tr",
        rowAttrs ? rowAttrs(row) : {},
        columns.map((c) => {
          const value = c[1](row);
          const empty = value === "" || value === null || value === undefined;
          return el("td", { class: (c[2] || "") + (empty ? " empty" : "") }, empty ? "–" : value);
        })
      )
    );
    if (!rows.length) {
      body.push(el("tr", {}, el("td", { colspan: columns.length, class: "muted", text: "none" })));
    }
    return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
  }

  function bytes(n) {
    if (n === null || n === undefined) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = Number(n);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit ? value.toFixed(1) + " " + units[unit] : value + " B";
  }

  function number(v) {
    return Number.isInteger(v) ? String(v) : Number(v).toFixed(2).replace(/\.?0+$/, "");
  }

  function when(ms) {
    if (!ms) return "";
    return new Date(ms).toLocaleString();
  }

  function short(id) {
    return id ? String(id).slice(0, 12) : "";
  }

  function badge(state) {
    const text = String(state || "?");
    return el("span", { class: "badge " + text.toLowerCase(), text: text });
  }

  function bar(fraction) {
    const fill = el("span");
    fill.style.width = Math.max(0, Math.min(1, fraction || 0)) * 100 + "%";
    return el("div", { class: "bar" }, fill);
  }

  function card(label, value, sub) {
    return el(
      "div",
      { class: "card" },
      el("div", { class: "label", text: label }),
      el("div", { class: "value", text: value }),
      sub ? el("div", { class: "sub", text: sub }) : null
    );
  }

  function link(href, text) {
    return el("a", { href: href, text: text });
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== "" && value !== null && value !== undefined) q.append(key, value);
    }
    return q.toString();
  }

  function show(...nodes) {
    content.replaceChildren(...nodes);
  }

  function setLive(on, text) {
    live.textContent = text;
    live.className = "live " + (on ? "on" : "off");
  }

  // Follow views with server-sent events; render(data) gets {view: value} once all have come.
  let source = null;
  function follow(views, params, render) {
    if (source) source.close();
    const latest = {};
    const q = query(params || {});
    const url = "/api/events?" + views.map((v) => "view=" + v).join("&") + (q ? "&" + q : "");
    source = new EventSource(url);
    source.onopen = () => setLive(true, "live");
    source.onerror = () => {
      setLive(false, "reconnecting…");
      // The browser retries by itself unless the answer was not a stream (logged out: 401,
      // or the server was away): then ask again now and then (a 401 goes to the login page).
      if (source.readyState === EventSource.CLOSED) {
        const retry = () =>
          getJSON("/api/nodes")
            .then(() => follow(views, params, render))
            .catch(() => setTimeout(retry, 3000));
        setTimeout(retry, 1000);
      }
    };
    source.onmessage = (event) => {
      const message = JSON.parse(event.data);
      latest[message.view] = message.error ? { error: message.error } : { data: message.data };
      if (views.every((v) => v in latest)) {
        const errors = views.filter((v) => latest[v].error).map((v) => latest[v].error);
        if (errors.length) {
          show(el("p", { class: "error", text: "The cluster did not answer: " + errors[0] }));
          return;
        }
        const data = {};
        for (const v of views) data[v] = latest[v].data;
        render(data);
      }
    };
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 401) {
      window.location = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("not logged in");
    }
    const value = await response.json();
    if (!response.ok) throw new Error(value.error || response.statusText);
    return value;
  }

  // -- pages ------------------------------------------------------------------------------------

  function resources(row) {
    const total = row.resources_total || {};
    const used = row.resources_used || {};
    return Object.keys(total)
      .sort()
      .map((name) => {
        const isBytes = name === "memory" || name.endsWith("_memory");
        const fmt = isBytes ? bytes : number;
        return el(
          "div",
          { class: "res" },
          el("span", { class: "name", text: name }),
          " " + fmt(used[name] || 0) + " / " + fmt(total[name]),
          bar(total[name] ? (used[name] || 0) / total[name] : 0)
        );
      });
  }

  function overview(data) {
    const status = data.status;
    const store = data.object_store;
    const nodes = status.nodes;
    const alive = nodes.filter((n) => n.alive).length;
    const actors = Object.entries(status.actors)
      .filter(([, n]) => n)
      .map(([s, n]) => n + " " + s.toLowerCase())
      .join(", ");
    const total = status.resources.total;
    const used = status.resources.used;
    show(
      el(
        "div",
        { class: "cards" },
        card("Nodes", alive + " alive", nodes.length - alive + " dead"),
        card("CPUs used", number(used.CPU || 0) + " / " + number(total.CPU || 0)),
        card("Actors", String(Object.values(status.actors).reduce((a, b) => a + b, 0)), actors),
        card(
          "Tasks",
          status.tasks.task_leases + " leased",
          status.tasks.queued_lease_requests + " queued, " + status.tasks.workers + " workers"
        ),
        card("Jobs", status.jobs.alive + " running", status.jobs.finished + " finished"),
        card(
          "Object store",
          bytes(store.used) + " / " + bytes(store.capacity),
          store.objects + " objects, " + store.spilled_objects + " spilled"
        )
      ),
      el("h2", { text: "Nodes" }),
      table(
        [
          ["Node ID", (r) => short(r.node_id), "id"],
          ["Address", (r) => r.address.replace("tcp://", "")],
          ["Head", (r) => (r.is_head ? "yes" : "")],
          ["State", (r) => badge(r.state)],
          ["Resources used / total", resources],
          ["Object store", (r) => bytes(r.object_store_memory), "num"],
          ["Workers", (r) => r.workers, "num"],
          ["Leases", (r) => r.leases, "num"],
          ["Queued", (r) => r.queued_lease_requests, "num"],
          ["Death cause", (r) => r.death_cause, "cause"],
        ],
        nodes,
        (r) => ({ "data-node-id": r.node_id })
      ),
      el("h2", { text: "Object store" }),
      el(
        "div",
        { class: "res" },
        bytes(store.used) + " used of " + bytes(store.capacity) + " (" + bytes(store.in_use) +
          " in use, " + bytes(store.pooled) + " pooled, " + bytes(store.spilled_bytes) +
          " spilled)",
        bar(store.capacity ? store.used / store.capacity : 0)
      )
    );
  }

  function actors(data) {
    show(
      table(
        [
          ["Class", (r) => r.class_name],
          ["Name", (r) => r.name],
          ["State", (r) => badge(r.state), "state"],
          ["Restarts", (r) => r.restarts, "num"],
          ["Death cause", (r) => r.death_cause, "cause"],
          ["Node", (r) => short(r.node_id), "id"],
          ["PID", (r) => r.pid, "num"],
          ["Actor ID", (r) => short(r.actor_id), "id"],
          ["Log", (r) => link("/logs?actor=" + encodeURIComponent(r.actor_id), "log")],
        ],
        data.actors,
        (r) => ({ "data-actor-id": r.actor_id })
      )
    );
  }

  const TASK_STATES = [
    "", "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING",
    "FINISHED", "FAILED",
  ];

  function tasksPage() {
    const params = new URLSearchParams(location.search);
    const state = el("select", { name: "state" },
      TASK_STATES.map((s) => el("option", { value: s, text: s || "any", selected: s === params.get("state") })));
    const name = el("input", { name: "name", placeholder: "function or Class.method", value: params.get("name") || "" });
    const job = el("input", { name: "job", placeholder: "job id", value: params.get("job") || "" });
    const form = el("form", { class: "filters" },
      el("label", {}, "State", state), el("label", {}, "Name", name), el("label", {}, "Job", job),
      el("button", { type: "submit", text: "Filter" }));
    const frame = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    content.replaceChildren(form, frame);
    function start() {
      const filters = { state: state.value, name: name.value.trim(), job: job.value.trim(), limit: 500 };
      history.replaceState(null, "", "/tasks?" + query({ state: filters.state, name: filters.name, job: filters.job }));
      follow(["tasks"], filters, (data) => {
        frame.replaceChildren(
          table(
            [
              ["Task ID", (r) => short(r.task_id), "id"],
              ["Attempt", (r) => r.attempt_number, "num"],
              ["Name", (r) => r.name],
              ["State", (r) => badge(r.state), "state"],
              ["Type", (r) => r.type],
              ["Job", (r) => r.job_id, "id"],
              ["Actor", (r) => short(r.actor_id), "id"],
              ["Node", (r) => short(r.node_id), "id"],
              ["Worker PID", (r) => r.worker_pid, "num"],
              ["Error", (r) => r.error_type || ""],
              ["Log", (r) => (r.worker_id ? link("/logs?task=" + encodeURIComponent(r.task_id), "log") : "")],
            ],
            data.tasks.slice().reverse(),
            (r) => ({ "data-task-id": r.task_id })
          ),
          el("p", { class: "muted", text: data.tasks.length + " attempt(s), newest first" })
        );
      });
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      start();
    });
    start();
  }

  function jobs(data) {
    show(
      table(
        [
          ["Job ID", (r) => r.job_id, "id"],
          ["Status", (r) => badge(r.status)],
          ["Type", (r) => r.type],
          ["Started", (r) => when(r.start_time)],
          ["Ended", (r) => when(r.end_time)],
          ["Driver", (r) => (r.driver_info || {}).node_ip_address || ""],
        ],
        data.jobs,
        (r) => ({ "data-job-id": r.job_id })
      )
    );
  }

  function objects(data) {
    const rows = data.objects;
    const sum = rows.reduce((a, r) => a + (r.size || 0), 0);
    show(
      table(
        [
          ["Object ID", (r) => short(r.object_id), "id"],
          ["Size", (r) => bytes(r.size), "num"],
          ["Where", (r) => r.where + (r.error ? " (error)" : "")],
          ["Owner PID", (r) => r.owner_pid, "num"],
          ["Local refs", (r) => r.local_refs, "num"],
          ["Borrowers", (r) => r.borrowers, "num"],
          ["Pinned", (r) => r.pinned_by_tasks, "num"],
          ["Readers", (r) => r.readers, "num"],
          ["Contains", (r) => r.contained_refs, "num"],
          ["Owner", (r) => r.owner.replace("tcp://", "")],
        ],
        rows,
        (r) => ({ "data-object-id": r.object_id })
      ),
      el("p", { class: "muted", text: rows.length + " object(s), " + bytes(sum) })
    );
  }

  function logsPage() {
    const params = new URLSearchParams(location.search);
    const target = {};
    for (const key of ["actor", "task", "pid", "node", "filename"]) {
      if (params.get(key)) target[key] = params.get(key);
    }
    const viewer = el("div");
    const files = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    content.replaceChildren(viewer, el("h2", { text: "Log files" }), files);
    if (target.actor || target.task || target.pid || target.filename) {
      const what = target.actor ? "actor " + target.actor : target.task ? "task " + target.task
        : target.pid ? "pid " + target.pid : target.filename + " on node " + short(target.node);
      const text = el("pre", { class: "log", id: "log-text", text: "Loading…" });
      const status = el("p", { class: "muted" });
      viewer.replaceChildren(el("h2", { text: "Log of " + what }), text, status);
      const refresh = async () => {
        try {
          const response = await fetch("/api/log?" + query({ ...target, tail: 1000 }));
          const body = await response.text();
          if (!response.ok) {
            text.textContent = JSON.parse(body).error;
            return;
          }
          const atEnd = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
          text.textContent = body || "(empty)";
          if (atEnd) text.scrollTop = text.scrollHeight;
          status.textContent = "The last 1000 lines, followed live (updated " +
            new Date().toLocaleTimeString() + ")";
        } catch (error) {
          status.textContent = String(error);
        }
      };
      refresh();
      setInterval(refresh, 2000);
    }
    follow(["logs"], {}, (data) => {
      files.replaceChildren(
        table(
          [
            ["Node", (r) => short(r.node_id), "id"],
            ["File", (r) => link("/logs?" + query({ node: r.node_id, filename: r.filename }), r.filename)],
            ["Kind", (r) => r.kind],
            ["PID", (r) => r.pid, "num"],
            ["Running", (r) => (r.alive ? "yes" : "no")],
            ["Size", (r) => bytes(r.size), "num"],
            ["Modified", (r) => when(r.modified * 1000)],
          ],
          data.logs.slice().sort((a, b) => b.modified - a.modified)
        )
      );
    });
  }

  function supervision(data) {
    const rows = data.supervisors;
    if (!rows.length) {
      show(el("p", { class: "muted", text: "No supervisors (actorflow.supervision) in this cluster." }));
      return;
    }
    show(
      ...rows.map((s) => {
        const box = el(
          "section",
          { class: "supervisor", "data-supervisor-id": s.actor_id },
          el("h2", {}, (s.depth ? "↳ " : "") + s.label + " ", badge(s.state || "?")),
          el("div", {
            class: "meta",
            text: s.strategy + ", at most " + s.intensity + " restarts in " + s.period + " s" +
              (s.death_cause ? " — " + s.death_cause : ""),
          }),
          table(
            [
              ["Child", (c) => c.name],
              ["Restart", (c) => c.restart],
              ["State", (c) => badge(c.state), "state"],
              ["Restarts", (c) => c.restarts, "num"],
              ["Actor", (c) => short(c.actor_id), "id"],
              ["Actor state", (c) => (c.actor_state ? badge(c.actor_state) : "")],
              ["Log", (c) => (c.actor_id ? link("/logs?actor=" + encodeURIComponent(c.actor_id), "log") : "")],
            ],
            s.children,
            (c) => ({ "data-child": c.name })
          ),
          el(
            "ol",
            { class: "history", reversed: "" },
            s.events.slice(-10).reverse().map((e) =>
              el("li", {},
                el("span", { class: "when", text: new Date(e.time * 1000).toLocaleTimeString() }),
                e.kind + (e.child ? " " + e.child : "") + (e.detail ? ": " + e.detail : ""))
            )
          )
        );
        box.style.marginLeft = s.depth * 28 + "px";
        return box;
      })
    );
  }

  async function timeline() {
    setLive(true, "snapshot");
    const download = el("a", { href: "/api/timeline?download=1", download: "actorflow-timeline.json",
      text: "Download the Chrome trace (JSON)" });
    const again = el("button", { type: "button", text: "Refresh" });
    const frame = el("div", { class: "timeline" }, el("p", { class: "muted", text: "Loading…" }));
    content.replaceChildren(
      el("p", {}, download, " — open it in chrome://tracing or ui.perfetto.dev. ", again),
      frame
    );
    async function draw() {
      let events;
      try {
        events = await getJSON("/api/timeline");
      } catch (error) {
        frame.replaceChildren(el("p", { class: "error", text: String(error) }));
        return;
      }
      const names = {};
      for (const e of events.filter((e) => e.ph === "M")) names[e.pid + "|" + (e.tid || "")] = e.args.name;
      const spans = events.filter((e) => e.ph === "X");
      if (!spans.length) {
        frame.replaceChildren(el("p", { class: "muted", text: "No task has run yet." }));
        return;
      }
      const start = Math.min(...spans.map((e) => e.ts));
      const end = Math.max(...spans.map((e) => e.ts + e.dur));
      const width = Math.max(end - start, 1);
      const nodes = {};
      for (const e of spans) ((nodes[e.pid] ||= {})[e.tid] ||= []).push(e);
      const parts = [];
      for (const [pid, workers] of Object.entries(nodes)) {
        parts.push(el("div", { class: "tl-node", text: names[pid + "|"] || pid }));
        for (const [tid, list] of Object.entries(workers)) {
          const track = el("div", { class: "tl-track" });
          for (const e of list) {
            const span = el("span", {
              class: e.args.state === "FAILED" ? "failed" : "",
              title: e.name + " — " + (e.dur / 1000).toFixed(2) + " ms (" + e.args.state + ")",
            });
            span.style.left = ((e.ts - start) / width) * 100 + "%";
            span.style.width = (e.dur / width) * 100 + "%";
            track.append(span);
          }
          parts.push(el("div", { class: "tl-row" },
            el("div", { class: "tl-label", text: names[pid + "|" + tid] || tid }), track));
        }
      }
      parts.push(el("div", { class: "tl-axis" }, el("span", { text: "0 s" }),
        el("span", { text: (width / 1e6).toFixed(3) + " s" })));
      frame.replaceChildren(...parts, el("p", { class: "muted",
        text: spans.length + " task attempt(s) over " + (width / 1e6).toFixed(3) + " s" }));
    }
    again.addEventListener("click", draw);
    draw();
  }

  const PAGES = {
    overview: () => follow(["status", "object_store"], {}, overview),
    actors: () => follow(["actors"], {}, actors),
    tasks: tasksPage,
    jobs: () => follow(["jobs"], {}, jobs),
    objects: () => follow(["objects"], {}, objects),
    logs: logsPage,
    supervision: () => follow(["supervisors"], {}, supervision),
    timeline: timeline,
  };
  (PAGES[page] || (() => show(el("p", { text: "Unknown page" }))))();
})();

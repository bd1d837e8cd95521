// The operator dashboard: asks for the admin token once, keeps it in this
// tab's sessionStorage (no cookie, gone with the tab), and calls the admin
// JSON API with it. Text only goes in through textContent (no markup from
// app names or event details). Served same-origin under a strict CSP.
"use strict";
(function () {
  var KEY = "paastis-admin-token";
  var REFRESH_MS = 5000;
  var timer = null;
  var refreshFailed = false;

  function $(id) { return document.getElementById(id); }
  function token() { return sessionStorage.getItem(KEY); }
  function setState(s) { document.body.setAttribute("data-state", s); }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { e.textContent = attrs[k]; } else { e.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) {
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  // 90 -> "1 min 30 s", 7200 -> "2 h 0 min".
  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) { return seconds + " s"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s"; }
    if (seconds < 86400) { return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min"; }
    return Math.floor(seconds / 86400) + " d " + Math.floor((seconds % 86400) / 3600) + " h";
  }

  function when(value) {
    if (value === null || value === undefined || value === "") { return "—"; }
    var d = typeof value === "number" ? new Date(value) : new Date(String(value));
    return isNaN(d.getTime()) ? String(value) : d.toLocaleString();
  }

  function hours(h) { return (typeof h === "number" ? h : 0).toFixed(2); }

  // What the operator cares about, from Scalingo's status and the log.
  function appState(a, now) {
    if (a.ignored) { return "ignored"; }
    var s = a.provider_status;
    var sleeping = typeof a.asleep_since_ms === "number";
    if (s === "stopped" || s === "new") { return "asleep"; }
    // Scalingo's list may leave the status out: the log then decides.
    if (s === null || s === undefined || s === "unknown") { return sleeping ? "asleep" : "unknown"; }
    // Paused a moment ago and Scalingo still scaling down.
    if (sleeping && now - a.asleep_since_ms < 120000) { return "pausing"; }
    if (s === "running") { return "running"; }
    return sleeping ? "asleep" : "waking";
  }

  function api(method, path) {
    return fetch(path, {
      method: method,
      cache: "no-store",
      credentials: "omit",
      headers: { "Authorization": "Bearer " + token(), "Accept": "application/json" }
    }).then(function (r) {
      if (r.status === 401) {
        sessionStorage.removeItem(KEY);
        showLogin("The admin API refused this token.");
        throw new Error("unauthorized");
      }
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) { throw new Error(body.message || (method + " " + path + ": " + r.status)); }
        return body;
      });
    });
  }

  function showLogin(message) {
    clearTimeout(timer);
    setState("login");
    $("login").hidden = false;
    $("apps-section").hidden = true;
    $("events-section").hidden = true;
    $("sign-out").hidden = true;
    $("summary").textContent = "";
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function keepAwake(a) {
    var w = a.next_keep_awake;
    if (w === undefined) { return el("span", { "class": "muted", text: "—" }); }
    if (w === null) { return el("span", { text: "none" }); }
    if (typeof w === "string") { return el("span", { text: w }); }
    return el("span", { text: when(w.start) + " → " + when(w.end) });
  }

  function lastWakes(a) {
    var list = a.last_wakes || a.recent_wakes || a.wakes;
    if (!Array.isArray(list) || list.length === 0) { return el("span", { "class": "muted", text: "—" }); }
    return el("ul", { "class": "wakes" }, list.slice(0, 5).map(function (w) {
      if (typeof w === "number") { return el("li", { text: (w / 1000).toFixed(1) + " s" }); }
      var ms = w.duration_ms !== undefined ? w.duration_ms : w.duration;
      var text = (typeof ms === "number" ? (ms / 1000).toFixed(1) + " s" : "?");
      var at = w.at_ms !== undefined ? w.at_ms : w.at;
      return el("li", { text: text + (at !== undefined ? " (" + when(at) + ")" : "") });
    }));
  }

  function actionButton(action, app, disabled) {
    var label = action === "wake" ? "Wake" : "Pause";
    var b = el("button", {
      type: "button",
      "data-action": action,
      "data-app": app,
      "aria-label": label + " " + app,
      text: label
    });
    b.disabled = disabled;
    return b;
  }

  function renderApps(body) {
    var now = Date.now();
    var tbody = $("apps-body");
    var focused = document.activeElement;
    var refocus = focused && focused.getAttribute && focused.getAttribute("data-action")
      ? [focused.getAttribute("data-action"), focused.getAttribute("data-app")] : null;
    var rows = (body.apps || []).map(function (a) {
      var state = appState(a, now);
      var pauseIn = typeof a.pause_at_ms === "number" ? duration((a.pause_at_ms - now) / 1000) : "never";
      var idle = typeof a.idle_seconds === "number" ? duration(a.idle_seconds) : "—";
      var asleep = state === "asleep" || state === "pausing";
      return el("tr", { "data-app": a.app, "data-state": state }, [
        el("th", { scope: "row", text: a.app }),
        el("td", { "class": "state-cell" }, [el("span", { "class": "state state-" + state, text: state })]),
        el("td", { text: a.region || "—" }),
        el("td", { "class": "num", text: idle }),
        el("td", { "class": "num", text: asleep ? "—" : pauseIn }),
        el("td", { text: (a.linked_apps || []).join(", ") || "—" }),
        el("td", {}, [keepAwake(a)]),
        el("td", {}, [lastWakes(a)]),
        el("td", { "class": "num saved", text: hours(a.container_hours_saved) }),
        el("td", {}, [el("div", { "class": "actions" }, [
          actionButton("wake", a.app, a.ignored || state === "running"),
          actionButton("pause", a.app, a.ignored || asleep)
        ])])
      ]);
    });
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    rows.forEach(function (r) { tbody.appendChild(r); });
    if (rows.length === 0) {
      tbody.appendChild(el("tr", {}, [el("td", { colspan: "10", text: "No app yet." })]));
    }
    if (refocus) {
      var again = tbody.querySelector('button[data-action="' + refocus[0] + '"][data-app="' + CSS.escape(refocus[1]) + '"]');
      if (again && !again.disabled) { again.focus(); }
    }
    var total = body.saved ? body.saved.total_container_hours : 0;
    var summary = $("summary");
    while (summary.firstChild) { summary.removeChild(summary.firstChild); }
    summary.appendChild(el("strong", { id: "total-saved", text: hours(total) }));
    summary.appendChild(document.createTextNode(" container-hours saved over " + (body.apps || []).length + " apps"));
    if (body.provider_error) {
      $("status").textContent = "Scalingo could not be listed: " + body.provider_error;
    }
  }

  // [["web", 2], ["worker", 1]] -> "web=2 worker=1"; other values as JSON.
  function detail(v) {
    if (Array.isArray(v) && v.every(function (p) { return Array.isArray(p) && p.length === 2; })) {
      return v.map(function (p) { return p[0] + "=" + p[1]; }).join(" ") || "none";
    }
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function renderEvents(body) {
    var list = $("events");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    (body.events || []).forEach(function (e) {
      var details = Object.keys(e).filter(function (k) {
        return ["at_ms", "app", "instance", "event"].indexOf(k) < 0;
      }).map(function (k) { return k + " " + detail(e[k]); }).join(", ");
      list.appendChild(el("li", { "data-event": e.event, "data-app": e.app }, [
        el("time", { datetime: new Date(e.at_ms).toISOString(), text: new Date(e.at_ms).toLocaleTimeString() }),
        el("strong", { text: e.app }),
        " " + String(e.event).replace(/_/g, " ") + (details ? " (" + details + ")" : "") + " on " + e.instance
      ]));
    });
    if (!list.firstChild) { list.appendChild(el("li", { text: "No event yet." })); }
  }

  function refresh() {
    clearTimeout(timer);
    if (!token()) { showLogin(); return Promise.resolve(); }
    return Promise.all([api("GET", "/admin/v1/apps"), api("GET", "/admin/v1/events?limit=20")])
      .then(function (answers) {
        $("login").hidden = true;
        $("login-error").textContent = "";
        $("apps-section").hidden = false;
        $("events-section").hidden = false;
        $("sign-out").hidden = false;
        renderApps(answers[0]);
        renderEvents(answers[1]);
        if (refreshFailed && !answers[0].provider_error) { $("status").textContent = ""; }
        refreshFailed = false;
        setState("ready");
      })
      .catch(function (e) {
        if (e.message !== "unauthorized") {
          $("status").textContent = "Refresh failed: " + e.message;
          refreshFailed = true;
          setState("error");
        }
      })
      .then(function () {
        if (token()) { timer = setTimeout(refresh, REFRESH_MS); }
      });
  }

  function act(button) {
    var action = button.getAttribute("data-action");
    var app = button.getAttribute("data-app");
    button.disabled = true;
    $("status").textContent = (action === "wake" ? "Waking " : "Pausing ") + app + "…";
    api("POST", "/admin/v1/apps/" + encodeURIComponent(app) + "/" + action)
      .then(function () {
        $("status").textContent = app + (action === "wake" ? " woken." : " paused.");
      })
      .catch(function (e) {
        if (e.message !== "unauthorized") { $("status").textContent = "Could not " + action + " " + app + ": " + e.message; }
      })
      .then(refresh);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = $("token").value.trim();
      if (!value) { return; }
      sessionStorage.setItem(KEY, value);
      $("token").value = "";
      setState("loading");
      refresh().then(function () {
        var first = document.querySelector("#apps-body button:not([disabled])");
        if (first && document.body.getAttribute("data-state") === "ready") { first.focus(); }
      });
    });
    $("sign-out").addEventListener("click", function () {
      sessionStorage.removeItem(KEY);
      showLogin();
    });
    $("apps-body").addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-action]");
      if (b && !b.disabled) { act(b); }
    });
    refresh();
  });
})();

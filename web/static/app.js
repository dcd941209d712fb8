// Shopfloor command center: CSRF on every htmx request, JSON calls to the API, and the live event stream.
(function () {
  "use strict";
  const token = document.querySelector('meta[name="csrf-token"]')?.content || "";

  function flash(text, kind) {
    const box = document.getElementById("flash");
    if (!box) return;
    const p = document.createElement("p");
    p.className = "flash " + (kind || "info");
    p.textContent = text;
    box.replaceChildren(p);
    setTimeout(() => { if (p.parentNode) p.remove(); }, 8000);
  }

  document.addEventListener("htmx:configRequest", (e) => { e.detail.headers["X-CSRFToken"] = token; });

  // hx-ext="json-api": the form's fields go to an /api/ route as JSON (numbers, "now" and local times converted)
  document.addEventListener("DOMContentLoaded", () => {
    htmx.defineExtension("json-api", {
      onEvent(name, evt) {
        if (name === "htmx:configRequest") evt.detail.headers["Content-Type"] = "application/json";
        return true;
      },
      encodeParameters(xhr, parameters, elt) {
        const form = elt.closest("form") || elt;
        const out = {};
        for (const [k, v] of parameters.entries()) {
          const field = form.querySelector ? form.querySelector(`[name="${k}"]`) : null;
          if (field && field.hasAttribute("data-number")) out[k] = Number(v);
          else if (field && field.hasAttribute("data-now")) out[k] = new Date().toISOString();
          else if (field && field.hasAttribute("data-local-time")) { if (v) out[k] = new Date(v).toISOString(); }
          else out[k] = v;
        }
        xhr.overrideMimeType("application/json");
        return JSON.stringify(out);
      },
    });
  });

  document.addEventListener("htmx:afterRequest", (e) => {
    const xhr = e.detail.xhr;
    if (!e.detail.requestConfig || !String(e.detail.requestConfig.path || "").startsWith("/api/")) return;
    if (xhr.status >= 200 && xhr.status < 300) {
      flash("Done.", "ok");
      htmx.trigger(document.body, "sf-acted");
    } else {
      let detail = xhr.statusText;
      try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (_) { /* not JSON */ }
      flash(`Refused (${xhr.status}): ${detail}`, "error");
    }
  });
  // an answered error is shown by afterRequest; htmx must not also log it as a failure to swap
  document.addEventListener("htmx:responseError", (e) => { e.preventDefault(); });

  // inspection overlay: the image with its mask or boxes, in a dialog
  document.addEventListener("click", (e) => {
    const b = e.target.closest(".open-overlay");
    if (!b) return;
    const dialog = document.getElementById("overlay");
    document.getElementById("overlay-img").src = b.dataset.src;
    document.getElementById("overlay-caption").textContent = b.dataset.caption;
    dialog.showModal();
  });

  // state timeline: segments placed by their times
  function placeTimeline() {
    const tl = document.getElementById("timeline");
    if (!tl) return;
    const t0 = Date.parse(tl.dataset.start), t1 = Date.parse(tl.dataset.end), span = Math.max(1, t1 - t0);
    for (const s of tl.querySelectorAll(".seg")) {
      const a = Math.max(t0, Date.parse(s.dataset.from)), b = Math.min(t1, Date.parse(s.dataset.to));
      s.style.left = ((a - t0) / span * 100) + "%";
      s.style.width = Math.max(0.2, (b - a) / span * 100) + "%";
    }
  }
  document.addEventListener("DOMContentLoaded", placeTimeline);

  // live: one EventSource; the browser resumes from Last-Event-ID by itself after a drop
  const live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  const source = new EventSource("/api/v1/stream");
  window.shopfloorStream = source;
  const setLive = (on) => { live.textContent = on ? "live" : "reconnecting"; live.className = "live " + (on ? "on" : "off"); };
  source.onopen = () => setLive(true);
  source.onerror = () => setLive(false);
  source.addEventListener("reset", () => location.reload());
  source.addEventListener("machine", (e) => {
    const d = JSON.parse(e.data);
    for (const tile of document.querySelectorAll(`[data-machine="${CSS.escape(d.machine)}"]`)) {
      tile.className = tile.className.replace(/state-\S+/, "state-" + d.state);
      tile.dataset.state = d.state;
      tile.dataset.event = e.lastEventId;
      const st = tile.querySelector(".state"); if (st) st.textContent = d.state.replace(/_/g, " ");
      const g = tile.querySelector(".good"); if (g) g.textContent = d.good_total;
      const s = tile.querySelector(".scrap"); if (s) s.textContent = d.scrap_total;
    }
    for (const b of document.querySelectorAll(`[data-machine-state="${CSS.escape(d.machine)}"]`)) {
      b.className = "badge state-" + d.state; b.textContent = d.state.replace(/_/g, " ");
    }
    if (d.changed === "state") htmx.trigger(document.body, "sf-machines");
  });
  source.addEventListener("alarm", () => htmx.trigger(document.body, "sf-alarms"));
  source.addEventListener("inspection", () => htmx.trigger(document.body, "sf-inspections"));
  source.addEventListener("schedule", () => htmx.trigger(document.body, "sf-schedule"));
  window.addEventListener("pagehide", () => source.close());
})();

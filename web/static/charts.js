// Machine page charts (uPlot): tag trends from the historian's rollups, zoomable, and the SPC individuals chart.
(function () {
  "use strict";
  const BUCKETS = [["1m", 60], ["5m", 300], ["15m", 900], ["1h", 3600], ["6h", 21600], ["1d", 86400]];
  const POINTS = 600;  // about one point per two pixels of a wide chart

  function bucketFor(seconds) {
    for (const [name, s] of BUCKETS) if (seconds / s <= POINTS) return name;
    return "1d";
  }
  function width(el) { return Math.max(260, el.clientWidth - 4); }

  async function series(tag, start, end) {
    const q = new URLSearchParams({ start: start.toISOString(), end: end.toISOString(),
                                    bucket: bucketFor((end - start) / 1000), agg: "avg" });
    const r = await fetch(`/api/v1/tags/${encodeURIComponent(tag)}/samples?${q}`, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`${tag}: ${r.status}`);
    const body = await r.json();
    const pts = (body.buckets || body.points || []).filter((p) => typeof p.value === "number");
    return [pts.map((p) => Date.parse(p.ts) / 1000), pts.map((p) => p.value)];
  }

  async function trend(el) {
    const tag = el.dataset.tag;
    const start = new Date(el.dataset.start), end = new Date(el.dataset.end);
    let data;
    try { data = await series(tag, start, end); } catch (e) { el.append(document.createTextNode(String(e.message))); return; }
    const plot = new uPlot({
      width: width(el), height: 180, cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      series: [{}, { label: tag + (el.dataset.unit ? ` (${el.dataset.unit})` : ""), stroke: "#2b6cb0", width: 1.5 }],
      hooks: {
        setSelect: [async (u) => {
          if (u.select.width < 5) return;
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0 }, false);
          try { u.setData(await series(tag, new Date(a * 1000), new Date(b * 1000))); } catch (_) { /* keep */ }
        }],
      },
    }, data, el);
    plot.over.addEventListener("dblclick", async () => plot.setData(await series(tag, start, end)));
    new ResizeObserver(() => plot.setSize({ width: width(el), height: 180 })).observe(el);
  }

  async function spc(el) {
    const q = new URLSearchParams({ chart: "imr", start: el.dataset.start, end: el.dataset.end });
    const r = await fetch(`/api/v1/spc/${encodeURIComponent(el.dataset.tag)}?${q}`, { credentials: "same-origin" });
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail || detail; } catch (_) { /* not JSON */ }
      const p = document.createElement("p"); p.className = "muted"; p.textContent = `No chart: ${detail}`; el.append(p);
      return;
    }
    const c = await r.json();
    const panel = c.panels[0];
    const xs = panel.points.map((p) => Date.parse(p.ts) / 1000);
    const ys = panel.points.map((p) => p.value);
    const bad = panel.points.map((p) => (p.rules.length ? p.value : null));
    const flat = (v) => xs.map(() => v);
    new uPlot({
      width: width(el), height: 200, scales: { x: { time: true } },
      series: [{}, { label: panel.stat, stroke: "#2d3748", width: 1 },
               { label: "UCL", stroke: "#c53030", dash: [6, 4] }, { label: "CL", stroke: "#38a169" },
               { label: "LCL", stroke: "#c53030", dash: [6, 4] },
               { label: "violation", stroke: "transparent", points: { show: true, size: 7, fill: "#c53030", stroke: "#c53030" } }],
    }, [xs, ys, flat(panel.ucl), flat(panel.cl), flat(panel.lcl), bad], el);
    const list = document.createElement("p"); list.className = "muted";
    const v = c.violations.slice(-10).map((x) => `${x.ts.slice(11, 19)} ${x.rules.join(",")}`);
    list.textContent = c.violations.length ? `${c.violations.length} violations; latest: ${v.join("; ")}` : "No rule broken.";
    el.append(list);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".chart[data-tag]").forEach(trend);
    document.querySelectorAll(".spc[data-tag]").forEach(spc);
  });
})();

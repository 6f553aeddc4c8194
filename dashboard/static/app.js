// The live dashboard: one EventSource per page; every message is the whole
// dashboard (every metric's panels), rendered in place. Charts by Chart.js
// (vendored, see scripts/vendor.sh).
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const charts = new Map();
let source = null;

function params() {
  const p = new URLSearchParams(location.search);
  return { from: p.get("from") || "", to: p.get("to") || "", listing: p.get("listing") || "" };
}

function fmt(v, digits = 2) {
  return v === null || v === undefined ? "—" : Number(v).toFixed(digits);
}

function setError(text) {
  const box = $("#error");
  box.hidden = !text;
  box.textContent = text || "";
}

function card(metric) {
  let el = document.querySelector(`section.card[data-metric="${CSS.escape(metric)}"]`);
  if (!el) {
    el = $("#card").content.firstElementChild.cloneNode(true);
    el.dataset.metric = metric;
    $(".metric", el).textContent = metric;
    $("#cards").appendChild(el);
  }
  return el;
}

function lineChart(canvas, key, labels, values, label) {
  let chart = charts.get(key);
  if (!chart) {
    chart = new Chart(canvas, {
      type: "line",
      data: { labels: [], datasets: [{ label, data: [], borderColor: "#1f6feb",
        backgroundColor: "rgba(31,111,235,0.15)", fill: true, tension: 0.2, pointRadius: 3 }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, title: { display: true, text: label } } } },
    });
    charts.set(key, chart);
  }
  chart.data.labels = labels;
  chart.data.datasets[0].data = values;
  chart.update();
}

function fillTable(tbody, rows, wilson) {
  tbody.replaceChildren();
  for (const r of rows || []) {
    const tr = document.createElement("tr");
    const cells = wilson
      ? [r.listing, fmt(r.bound), fmt(r.value), `${r.numerator} / ${r.denominator}`]
      : [r.listing, fmt(r.value), `${r.numerator} / ${r.denominator}`];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

function render(snap) {
  setError(snap.error || "");
  $("#status").textContent = snap.error ? "server unavailable, retrying"
    : `live · ${snap.server} · ${snap.from} … ${snap.to}` + (snap.listing ? ` · listing ${snap.listing}` : " · every listing");
  const listings = new Set();
  for (const m of snap.metrics || []) {
    const el = card(m.metric);
    const errors = Object.entries(m.errors || {}).map(([k, v]) => `${k}: ${v}`);
    $(".panel-error", el).hidden = errors.length === 0;
    $(".panel-error", el).textContent = errors.join(" · ");
    const t = m.total;
    const total = $(".total", el);
    $(".empty", el).hidden = !t || t.numerator > 0 || t.denominator > 0;
    if (t) {
      total.dataset.numerator = t.numerator;
      total.dataset.denominator = t.denominator;
      $(".value", total).textContent = fmt(t.value);
      $(".counts", total).textContent = `${t.numerator} / ${t.denominator}`;
      const ch = $(".change", total);
      if (t.change === null || t.change === undefined) {
        const none = !t.previous || (t.previous.numerator === 0 && t.previous.denominator === 0);
        ch.textContent = none ? "no events in the previous period" : "vs previous period: —";
        ch.className = "change";
      } else {
        const pct = t.change * 100;
        ch.textContent = `${pct >= 0 ? "▲" : "▼"} ${Math.abs(pct).toFixed(1)}% vs previous period (${fmt(t.previous.value)})`;
        ch.className = "change " + (pct >= 0 ? "up" : "down");
      }
    }
    if (m.days) {
      lineChart($(".days", el), m.metric + "/days", m.days.map(r => r.date),
        m.days.map(r => r.value), "value");
    }
    const hourly = $(".hourly", el);
    hourly.hidden = !snap.hours;
    $(".charts", el).classList.toggle("one", !snap.hours);
    if (snap.hours && m.hours) {
      // The hours of the range's last day, in the module's zone.
      $(".hours-caption", el).textContent = m.hours.length
        ? `Per hour, ${m.hours[0].hour.slice(0, 10)}` : "Per hour (no events yet)";
      lineChart($(".hours", el), m.metric + "/hours", m.hours.map(r => r.hour.slice(11, 16)),
        m.hours.map(r => r.value), "value");
    }
    fillTable($(".top tbody", el), m.top, false);
    fillTable($(".wilson tbody", el), m.wilson, true);
    for (const r of (m.top || []).concat(m.wilson || [])) listings.add(r.listing);
  }
  for (const el of document.querySelectorAll("section.card")) {
    if (!(snap.metrics || []).some(m => m.metric === el.dataset.metric)) el.remove();
  }
  const dl = $("#listings");
  dl.replaceChildren(...[...listings].sort().map(l => Object.assign(document.createElement("option"), { value: l })));
  document.body.dataset.updated = String(Date.now());
}

function connect() {
  const p = params();
  $("#from").value = p.from;
  $("#to").value = p.to;
  $("#listing").value = p.listing;
  if (source) source.close();
  const q = new URLSearchParams(Object.entries(p).filter(([, v]) => v));
  source = new EventSource("/api/stream?" + q.toString());
  source.onmessage = e => render(JSON.parse(e.data));
  source.onerror = async () => {
    // A refused request (a bad range) closes the stream: say why.
    const r = await fetch("/api/dashboard?" + q.toString()).catch(() => null);
    if (r && r.status === 400) {
      setError((await r.json()).error);
      source.close();
    } else {
      $("#status").textContent = "reconnecting…";
    }
  };
}

$("#controls").addEventListener("submit", e => {
  e.preventDefault();
  const q = new URLSearchParams();
  for (const k of ["from", "to", "listing"]) {
    const v = $("#" + k).value.trim();
    if (v) q.set(k, v);
  }
  history.pushState(null, "", "?" + q.toString());
  for (const c of charts.values()) c.destroy();
  charts.clear();
  $("#cards").replaceChildren();
  connect();
});
$("#all").addEventListener("click", () => {
  $("#listing").value = "";
  $("#controls").requestSubmit();
});
window.addEventListener("popstate", connect);
connect();

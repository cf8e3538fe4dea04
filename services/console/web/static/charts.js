// The console's charts: each page embeds its data as JSON (a script element of type
// application/json, which the content security policy allows since nothing in it runs) and
// this file draws it with the vendored Chart.js. No other script runs on the pages.
"use strict";

function pageData(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

const palette = ["#2f6fde", "#1e7d3a", "#c77700", "#8a3ffc", "#b3261e", "#007d79", "#6f6f6f", "#d02670"];

function drawFunnel(data) {
  new Chart(document.getElementById("funnel-chart"), {
    type: "bar",
    data: {
      labels: data.stages,
      datasets: [{ label: "Leads of the cohort that reached the stage", data: data.reached, backgroundColor: "#2f6fde" }],
    },
    options: { indexAxis: "y", maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } } },
  });
  const datasets = [];
  data.stages.forEach((stage, i) => {
    const entered = data.entered[stage];
    if (entered.some((n) => n > 0)) {
      datasets.push({ label: `into ${stage}`, data: entered, backgroundColor: palette[i % palette.length], stack: "in" });
    }
  });
  new Chart(document.getElementById("flows-chart"), {
    type: "bar",
    data: { labels: data.weeks, datasets: datasets },
    options: {
      maintainAspectRatio: false, animation: false,
      scales: { x: { stacked: true, title: { display: true, text: "week of" } }, y: { stacked: true, title: { display: true, text: "leads entering" } } },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

function drawSpeed(data) {
  const seconds = (values) => values.map((v) => (v === null ? null : v / 1000));
  // Bars per day (a day or a quarter reads the same), darker for the higher percentiles.
  const series = [
    ["to decision p50", data.decision.p50, "#9ab8ef"],
    ["to decision p90", data.decision.p90, "#2f6fde"],
    ["to decision p99", data.decision.p99, "#163f8a"],
    ["to acceptance p50", data.acceptance.p50, "#f0c27a"],
    ["to acceptance p90", data.acceptance.p90, "#c77700"],
    ["to acceptance p99", data.acceptance.p99, "#7a4900"],
  ];
  new Chart(document.getElementById("speed-chart"), {
    type: "bar",
    data: {
      labels: data.days,
      datasets: series.map(([label, values, color]) => ({ label, data: seconds(values), backgroundColor: color })),
    },
    options: {
      maintainAspectRatio: false, animation: false,
      scales: { y: { type: "logarithmic", title: { display: true, text: "seconds (log scale)" } } },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

document.addEventListener("DOMContentLoaded", () => {
  if (typeof Chart === "undefined") return;
  const funnel = pageData("funnel-data");
  if (funnel) drawFunnel(funnel);
  const speed = pageData("speed-data");
  if (speed) drawSpeed(speed);
  if (funnel || speed) document.body.dataset.chartsDrawn = "yes"; // tests wait for it
});

// Draws the figures page's charts with Chart.js (vendored, see vendor/chartjs/README) from the
// page's JSON block. The table below the charts holds the same figures: the charts add nothing
// a screen reader would miss. No animation: the figures are read, not watched.
(function () {
  "use strict";
  var block = document.getElementById("stats-data");
  if (!block || typeof Chart === "undefined") {
    return;
  }
  var data = JSON.parse(block.textContent);
  var chart = data.chart;
  var names = data.names;
  var labels = chart.labels.map(function (label) {
    return label === null ? names.none : label;
  });
  var colours = {
    approved: "#1b7f3b",
    edited: "#6fbf73",
    revised: "#e0a526",
    rejected: "#b3261e",
    pending: "#9aa7bd",
    approval: "#1f5fbf",
    edit: "#8fb4ff",
    median: "#1f5fbf",
    p90: "#14233c",
    overdue: "#b3261e",
    escalated: "#e0a526",
    recalled: "#7a3fb3",
  };

  Chart.defaults.font.family = window.getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 13;
  Chart.defaults.color = "#1d2430";
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.position = "bottom";

  function series(keys, values) {
    return keys.map(function (key) {
      return {
        label: names[key],
        data: values[key],
        backgroundColor: colours[key],
        borderWidth: 0,
        maxBarThickness: 28,
      };
    });
  }

  // Horizontal bars: group names of any length stay readable. A box grows with its groups.
  function draw(id, datasets, axis, stacked) {
    var canvas = document.getElementById(id);
    if (!canvas) {
      return;
    }
    canvas.parentNode.style.height = Math.max(200, 90 + labels.length * (stacked ? 30 : 44)) + "px";
    new Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        indexAxis: "y",
        scales: {
          x: {
            stacked: stacked,
            beginAtZero: true,
            title: { display: true, text: axis },
            ticks: { precision: 0 },
          },
          y: { stacked: stacked },
        },
      },
    });
  }

  draw("chart-outcomes", series(["approved", "edited", "revised", "rejected", "pending"], chart.outcomes),
       names.count, true);
  var rates = series(["approval", "edit"], chart.rates);
  draw("chart-rates", rates, names.percent, false);
  draw("chart-time", series(["median", "p90"], chart.time), names[chart.time.unit], false);
  draw("chart-follow-up", series(["overdue", "escalated", "recalled"], chart.follow_up), names.count, false);
})();

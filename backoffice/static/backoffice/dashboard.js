/* Charts of the dashboards' daily series (Chart.js, vendored): the data and its labels
   come translated from the server in the #dashboard-data JSON. */
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof window.Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var colours = ["#417690", "#e08e0b", "#5b9a68", "#ba2121"];
  var style = getComputedStyle(document.documentElement);
  var text = style.getPropertyValue("--body-quiet-color").trim() || "#666";
  window.Chart.defaults.color = text;
  data.charts.forEach(function (chart) {
    var canvas = document.getElementById(chart.id);
    if (!canvas) return;
    new window.Chart(canvas, {
      type: chart.kind,
      data: {
        labels: data.labels,
        datasets: chart.datasets.map(function (set, i) {
          return {
            label: set.label, data: set.data, borderColor: colours[i % colours.length],
            backgroundColor: colours[i % colours.length], borderWidth: chart.kind === "bar" ? 0 : 2, pointRadius: 0,
            tension: 0.2,
            // A year of days in a card's width: bars fill their day, so they read as one band.
            barPercentage: 1, categoryPercentage: 1
          };
        })
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: { y: { beginAtZero: true } }
      }
    });
    canvas.setAttribute("data-drawn", "1");
  });
})();

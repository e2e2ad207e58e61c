// The console's glue: the YAML editor (CodeMirror) with the check results at their lines, and the
// funnel charts (Chart.js). Pages work without it: a textarea, and the funnel as a table.
(function () {
  "use strict";
  var editor = null;

  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  function setUpEditor() {
    var area = document.getElementById("source");
    if (!area || !window.CodeMirror) return;
    editor = window.CodeMirror.fromTextArea(area, {
      mode: "yaml", lineNumbers: true, indentUnit: 2, tabSize: 2, indentWithTabs: false,
      gutters: ["diag-gutter", "CodeMirror-linenumbers"], viewportMargin: Infinity,
      extraKeys: { Tab: false, "Shift-Tab": false }, // Tab moves focus on: no keyboard trap
      screenReaderLabel: "The flow's YAML"
    });
    var check = debounce(function () {
      var button = document.getElementById("check-button");
      if (button && window.htmx) window.htmx.trigger(button, "click");
    }, 700);
    editor.on("change", function () { editor.save(); check(); });
    markDiagnostics();
  }

  function markDiagnostics() {
    if (!editor) return;
    editor.clearGutter("diag-gutter");
    for (var i = 0; i < editor.lineCount(); i++) {
      editor.removeLineClass(i, "background", "line-error");
      editor.removeLineClass(i, "background", "line-warning");
    }
    var items = document.querySelectorAll("#diagnostics li[data-line]");
    items.forEach(function (item) {
      var line = parseInt(item.getAttribute("data-line"), 10) - 1;
      if (isNaN(line) || line < 0) return;
      line = Math.min(line, editor.lineCount() - 1); // "unexpected end of file" is one past the last line
      var severity = item.getAttribute("data-severity") === "error" ? "error" : "warning";
      editor.addLineClass(line, "background", "line-" + severity);
      var marker = document.createElement("span");
      marker.className = "diag-marker diag-" + severity;
      marker.textContent = severity === "error" ? "!" : "?";
      marker.title = item.textContent.trim();
      editor.setGutterMarker(line, "diag-gutter", marker);
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element) || !target.classList.contains("goto")) return;
    var line = parseInt(target.getAttribute("data-line"), 10) - 1;
    if (editor) line = Math.min(line, editor.lineCount() - 1);
    var col = parseInt(target.getAttribute("data-col"), 10) - 1;
    if (editor) {
      editor.focus();
      editor.setCursor({ line: line, ch: col > 0 ? col : 0 });
      editor.scrollIntoView(null, 80);
    } else {
      var area = document.getElementById("source");
      if (!area) return;
      var lines = area.value.split("\n");
      var at = 0;
      for (var i = 0; i < line && i < lines.length; i++) at += lines[i].length + 1;
      area.focus();
      area.setSelectionRange(at, at + (lines[line] || "").length);
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "report") markDiagnostics();
  });

  var palette = ["#2563eb", "#dc2626", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#4b5563"];

  function setUpCharts() {
    var holder = document.getElementById("funnel-data");
    if (!holder || !window.Chart) return;
    var data = JSON.parse(holder.textContent);
    var Chart = window.Chart;
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    new Chart(document.getElementById("funnel-chart"), {
      type: "bar",
      data: { labels: data.states, datasets: [
        { label: "entered", data: data.reached, backgroundColor: palette[0] },
        { label: "dropped", data: data.dropped, backgroundColor: palette[1] },
        { label: "waiting", data: data.waiting, backgroundColor: palette[2] }
      ] },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
    var channels = Object.keys(data.channels);
    var kinds = [];
    channels.forEach(function (c) {
      Object.keys(data.channels[c]).forEach(function (k) { if (kinds.indexOf(k) < 0) kinds.push(k); });
    });
    new Chart(document.getElementById("channel-chart"), {
      type: "bar",
      data: { labels: channels, datasets: kinds.map(function (k, i) {
        return { label: k, data: channels.map(function (c) { return data.channels[c][k] || 0; }),
                 backgroundColor: palette[i % palette.length] };
      }) },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
    var series = Object.keys(data.time.series);
    new Chart(document.getElementById("time-chart"), {
      type: "bar",
      data: { labels: data.time.days, datasets: series.map(function (k, i) {
        return { label: k, data: data.time.series[k], backgroundColor: palette[i % palette.length] };
      }) },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
    });
    document.body.setAttribute("data-charts", "ready");
  }

  document.addEventListener("DOMContentLoaded", function () { setUpEditor(); setUpCharts(); });
})();

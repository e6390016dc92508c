// Live validation for the editor: the same validator as publishing, through the API.
// No framework, no build step. Without JavaScript the "Review changes" button does the same.
(function () {
  "use strict";
  var text = document.getElementById("text");
  var panel = document.getElementById("validation");
  if (!text || !panel) { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var timer = null;
  var seq = 0;

  function item(issue) {
    var li = document.createElement("li");
    li.className = issue.severity;
    var strong = document.createElement("strong");
    strong.textContent = issue.severity;
    li.appendChild(strong);
    li.appendChild(document.createTextNode(
      " line " + issue.line + ", column " + issue.column + ": " + issue.message + " "));
    var code = document.createElement("code");
    code.textContent = issue.code;
    li.appendChild(code);
    return li;
  }

  function show(report) {
    panel.textContent = "";
    var p = document.createElement("p");
    if (report.ok && report.warnings === 0) {
      p.className = "ok";
      p.textContent = "Valid: no errors, no warnings.";
      panel.appendChild(p);
      return;
    }
    p.className = report.ok ? "ok" : "bad";
    p.textContent = report.errors + " error(s), " + report.warnings + " warning(s).";
    panel.appendChild(p);
    var ul = document.createElement("ul");
    ul.className = "issues";
    report.issues.forEach(function (issue) { ul.appendChild(item(issue)); });
    panel.appendChild(ul);
  }

  function validate() {
    var mine = ++seq;
    fetch("/api/v1/prompts/validate", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify({ text: text.value })
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (report) {
      if (mine === seq) { show(report); }
    }).catch(function (err) {
      if (mine === seq) { panel.textContent = "Validation unavailable: " + err.message; }
    });
  }

  text.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(validate, 250);
  });
})();

/* Fetches the next member code just after the shown one expires (and when the page
   comes back into view), so the code at the till is always current. */
(function () {
  "use strict";
  var box = document.getElementById("member-code");
  if (!box) return;
  var due = Date.now() + parseFloat(box.getAttribute("data-refresh-in")) * 1000;
  var timer = null;

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(refresh, Math.max(ms, 250));
  }

  function show(data) {
    box.querySelector(".barcode").innerHTML = data.barcode_svg;
    box.querySelector(".qr").innerHTML = data.qr_svg;
    box.querySelector(".digits").textContent = data.code_display;
    box.setAttribute("data-code", data.code);
    due = Date.now() + data.refresh_in * 1000;
    schedule(data.refresh_in * 1000 + 300);
  }

  function refresh() {
    if (!window.fetch || !window.JSON) { location.reload(); return; }
    fetch(box.getAttribute("data-refresh-url"), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) { location.reload(); return null; }
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (data) { if (data) show(data); })
      .catch(function () { schedule(5000); });
  }

  schedule(due - Date.now() + 300);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && Date.now() >= due) refresh();
  });
})();

// 오늘, live: the server says on /console/events (SSE) when the queue moved; the page then
// fetches itself and swaps the #live part, without a reload (the form being typed into
// elsewhere, the scroll position and the focus stay). Without script, a <noscript> refresh
// reloads the page every 30 s instead.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource || !window.fetch) return;
  var source = new EventSource("/console/events");
  function refresh() {
    fetch("/console", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected || !r.ok) { window.location.reload(); return null; }
        return r.text();
      })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (!fresh) return;
        live.replaceWith(fresh);
        live = fresh;
        live.dataset.updates = String(Number(document.body.dataset.updates || "0") + 1);
        document.body.dataset.updates = live.dataset.updates;
      });
  }
  source.addEventListener("queue", refresh);
  source.addEventListener("logout", function () {
    source.close();
    window.location.href = "/console/login";
  });
})();

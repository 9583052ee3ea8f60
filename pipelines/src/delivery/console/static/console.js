// The delivery console's only script, served from the console's own origin (CSP script-src 'self').
// A page whose <main> carries data-refresh="N" re-fetches its own URL every N seconds and swaps
// <main> in place; it stops once the fresh page no longer asks to be refreshed (the delivery ended).
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  if (!main) return;
  var every = Math.max(1, Number(main.getAttribute("data-refresh"))) * 1000;
  function tick() {
    fetch(window.location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (text) {
        if (text === null) return true;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.querySelector("main");
        if (!fresh) return true;
        main.innerHTML = fresh.innerHTML;
        document.title = doc.title;
        if (!fresh.hasAttribute("data-refresh")) {
          main.removeAttribute("data-refresh");
          return false;
        }
        return true;
      })
      .catch(function () { return true; })
      .then(function (again) { if (again) window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
})();

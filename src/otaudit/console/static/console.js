// The console's small helpers (no inline script: the CSP forbids it).
// Settings: pin the verifier key the in-browser verifier (verify.js) trusts, in
// localStorage["otaudit.verifierKey"]. SQL: the example button fills the editor.
"use strict";
(function () {
  var KEY = "otaudit.verifierKey";
  var KEY_RE = /^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+\/]+=*$/;

  function text(id, value, cls) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value; if (cls !== undefined) { el.className = cls; } }
  }

  function showPinned() {
    var pinned = null;
    try { pinned = window.localStorage.getItem(KEY); } catch (e) { pinned = null; }
    text("pinned-now", pinned || "(none)");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var pin = document.getElementById("pin-key");
    if (pin) {
      showPinned();
      pin.addEventListener("click", function () {
        var value = document.getElementById("pinned-key").value.trim();
        if (!KEY_RE.test(value)) {
          text("pin-status", "Not a verifier key: expected name+8 hex digits+base64.", "bad");
          return;
        }
        window.localStorage.setItem(KEY, value);
        text("pin-status", "Pinned.", "ok");
        showPinned();
      });
      var unpin = document.getElementById("unpin-key");
      if (unpin) {
        unpin.addEventListener("click", function () {
          window.localStorage.removeItem(KEY);
          text("pin-status", "No key pinned.", "bad");
          showPinned();
        });
      }
    }
    var example = document.getElementById("example");
    if (example) {
      example.addEventListener("click", function () {
        document.getElementById("q").value = example.getAttribute("data-example");
      });
    }
    var range = document.getElementById("range");
    var since = document.getElementById("since");
    if (range && since) {
      since.addEventListener("input", function () {
        if (since.value.trim()) { range.value = "custom"; }
      });
    }
  });
})();

// sessiond dashboard: progressive enhancement only. Every page works without this file;
// with it, the memory list answers as you type, "select all" works, and the stack page
// refreshes itself. All HTML it inserts was rendered (and escaped) by the server.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function queryOf(form) {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) {
      const field = form.elements.namedItem(key);
      const fallback = field && field.dataset ? field.dataset.default : undefined;
      if (typeof value === "string" && value.trim() !== "" && value !== fallback) {
        params.append(key, value);
      }
    }
    return params.toString();
  }

  // ------------------------------------------------------------ search as you type
  // Each keystroke asks at once; an answer still awaited for an older text is abandoned (its
  // request aborted), so the page shows the results of the latest text as soon as they come.
  const form = document.getElementById("filters");
  const results = document.getElementById("results");
  if (form && results) {
    let controller = null;
    const refresh = function () {
      const qs = queryOf(form);
      const here = "/memories" + (qs ? "?" + qs : "");
      if (controller) controller.abort();
      const mine = controller = new AbortController();
      results.dataset.state = "loading";
      fetch("/memories?" + (qs ? qs + "&" : "") + "partial=1",
            { signal: mine.signal, credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          if (mine !== controller) return;
          results.innerHTML = html;
          history.replaceState(null, "", here);
          const next = document.getElementById("next");
          if (next) next.value = here;
          const exp = document.getElementById("export");
          if (exp) exp.href = "/memories/export" + (qs ? "?" + qs : "");
          results.dataset.state = "ready";
          results.dataset.shown = qs;
        })
        .catch(function (e) {
          if (e.name !== "AbortError" && mine === controller) results.dataset.state = "error";
        });
    };
    form.addEventListener("input", refresh);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      refresh();
    });
  }

  // ------------------------------------------------------------ select all
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll('#results input[name="id"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  // ------------------------------------------------------------ live stack
  const live = document.getElementById("stack-live");
  if (live) {
    const every = Math.max(1, parseInt(live.dataset.refresh || "2", 10)) * 1000;
    let busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch("/stack?partial=1", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error(String(r.status))); })
        .then(function (html) {
          const open = live.querySelector("details.counters[open]") !== null;
          live.innerHTML = html;
          if (open) {
            const d = live.querySelector("details.counters");
            if (d) d.open = true;
          }
          live.dataset.state = "live";
        })
        .catch(function () { live.dataset.state = "stale"; })
        .finally(function () { busy = false; });
    }, every);
  }
})();

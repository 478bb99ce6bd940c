// The web view's only script. Every page works without it; it adds a name filter to
// directory listings, a notice on the overview when a new revision is published (from the
// JSON API, /api/...), highlighting between the catalog map and its table, and submits
// the diff and revision forms when a revision is picked. Text from the server is only ever set with
// textContent, never parsed as HTML.
"use strict";

(function () {
  const filter = document.getElementById("filter");
  const listing = document.getElementById("listing");
  if (filter && listing) {
    filter.hidden = false;
    filter.addEventListener("input", function () {
      const needle = filter.value.toLowerCase();
      for (const row of listing.tBodies[0].rows) {
        const name = row.dataset.name;
        if (name !== undefined) {
          row.hidden = needle !== "" && !name.toLowerCase().includes(needle);
        }
      }
    });
  }

  const current = document.getElementById("current-revision");
  const api = document.body.dataset.api;
  const banner = document.getElementById("live-update");
  if (current && api && banner) {
    const shown = current.textContent.trim();
    const poll = function () {
      fetch(api, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (doc) {
          if (doc && String(doc.revision) !== shown) {
            banner.textContent = "Revision " + doc.revision + " was published at " +
              doc.published_utc + "; reload the page to see it.";
            banner.hidden = false;
          }
        })
        .catch(function () { /* the server is gone for a moment: try again later */ });
    };
    window.setInterval(poll, 30000);
  }

  const map = document.getElementById("sunburst");
  if (map) {
    const mark = function (event, on) {
      const link = event.target.closest("a[data-index]");
      if (!link) return;
      const row = document.getElementById("catalog-" + link.dataset.index);
      if (row) row.classList.toggle("highlight", on);
    };
    map.addEventListener("mouseover", function (e) { mark(e, true); });
    map.addEventListener("mouseout", function (e) { mark(e, false); });
  }

  for (const select of document.querySelectorAll(".diff-form select, .rev-form select")) {
    select.addEventListener("change", function () { select.form.submit(); });
  }
})();

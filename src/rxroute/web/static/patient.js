// The prescription page: type-ahead pharmacy search and the live status timeline.
// Without this script the page still works (form round trips); with it, nothing here ever
// builds HTML from strings: every value from the server goes in through textContent.
"use strict";
(function () {
  const rx = window.rxroute;
  document.documentElement.classList.add("js");

  // ---- pharmacy search ------------------------------------------------------------------
  // The send form, or the change form once it is on its way: the same region choice and
  // search, marked data-pharmacy-picker (at most one of them is on the page).
  const form = document.querySelector("form[data-pharmacy-picker]");
  if (form) {
    const input = document.getElementById("pharmacy-search");
    const list = document.getElementById("pharmacy-results");
    const count = document.getElementById("results-count");
    const hidden = document.getElementById("pharmacy-id");
    const chosen = document.getElementById("chosen");
    const chosenName = document.getElementById("chosen-name");
    const chosenAddress = document.getElementById("chosen-address");
    let timer = null;
    let latest = 0;

    const region = () => {
      const checked = form.querySelector('input[name="region"]:checked');
      return checked ? checked.value : "";
    };
    const options = () => Array.from(list.querySelectorAll('button[role="option"]'));

    function choose(button) {
      hidden.value = button.dataset.id;
      chosenName.textContent = button.dataset.name;
      chosenAddress.textContent = button.dataset.address;
      chosen.hidden = false;
      for (const other of options()) {
        other.setAttribute("aria-selected", other === button ? "true" : "false");
      }
    }

    function clearChoice() {
      hidden.value = "";
      chosen.hidden = true;
      chosenName.textContent = "";
      chosenAddress.textContent = "";
    }

    function show(results, query) {
      list.replaceChildren();
      list.dataset.query = query;
      list.setAttribute("aria-busy", "false");
      for (const ph of results) {
        const button = rx.el("button", {
          type: "button", role: "option", "data-id": ph.id,
          "aria-selected": ph.id === hidden.value ? "true" : "false",
        }, rx.el("strong", {}, ph.name), rx.el("br"), rx.el("span", { class: "small" }, ph.full_address));
        button.dataset.name = ph.name;
        button.dataset.address = ph.full_address;
        list.append(rx.el("li", { role: "presentation" }, button));
      }
      input.setAttribute("aria-expanded", results.length ? "true" : "false");
      const n = results.length;
      count.textContent = n === 1 ? "1 pharmacy found" : `${n} pharmacies found`;
    }

    async function search() {
      const mine = ++latest;
      const query = input.value.slice(0, 100);
      const url = `/api/v1/pharmacies?region=${encodeURIComponent(region())}&q=${encodeURIComponent(query)}`;
      list.setAttribute("aria-busy", "true");
      count.textContent = "Searching…";
      let answer;
      try {
        answer = await rx.api("GET", url);
      } catch (e) {
        answer = { ok: false };
      }
      if (mine !== latest) return; // a newer search is on its way: drop this answer
      if (!answer.ok || !answer.data) {
        count.textContent = "Search is not working right now; try again in a moment.";
        return;
      }
      show(answer.data.results, query);
    }

    function soon() {
      clearTimeout(timer);
      list.setAttribute("aria-busy", "true");
      timer = setTimeout(search, 200);
    }

    input.addEventListener("input", soon);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault(); // Enter searches now instead of submitting the form
        clearTimeout(timer);
        search();
      } else if (event.key === "ArrowDown") {
        const first = options()[0];
        if (first) { event.preventDefault(); first.focus(); }
      }
    });
    list.addEventListener("click", (event) => {
      const button = event.target.closest('button[role="option"]');
      if (!button) return;
      event.preventDefault(); // the no-JS "choose" submit is not needed
      choose(button);
    });
    list.addEventListener("keydown", (event) => {
      const all = options();
      const index = all.indexOf(document.activeElement);
      if (index < 0) return;
      if (event.key === "ArrowDown" && index < all.length - 1) { event.preventDefault(); all[index + 1].focus(); }
      if (event.key === "ArrowUp") { event.preventDefault(); (index > 0 ? all[index - 1] : input).focus(); }
      if (event.key === "Escape") { event.preventDefault(); input.focus(); }
    });
    for (const radio of form.querySelectorAll('input[name="region"]')) {
      radio.addEventListener("change", () => { clearChoice(); search(); });
    }
    // Show the region's list at once, so a patient can also just scroll and pick.
    if (!options().length) search();
  }

  // ---- live status ------------------------------------------------------------------------
  const panel = document.getElementById("status-panel");
  if (!panel || panel.dataset.poll !== "yes") return;
  const statusEl = document.getElementById("status");
  const timeline = document.getElementById("timeline");
  const failure = document.getElementById("failure");
  const reason = document.getElementById("failure-reason");
  const retry = document.getElementById("failure-retry");
  // Times come formatted by the server (occurred_at_display: the configured zone, named), so
  // the page and this script follow one rule; the exact UTC moment goes in datetime/title.

  // Delivery id -> pharmacy name, when the prescription has been to more than one pharmacy:
  // each step then says which pharmacy it was about, as the server-rendered list does.
  let pharmacies = {};
  try { pharmacies = JSON.parse(timeline.dataset.pharmacies || "{}"); } catch (e) { pharmacies = {}; }

  function render(data) {
    if (statusEl.textContent !== data.status_label) statusEl.textContent = data.status_label;
    statusEl.className = `status status-${data.status}`;
    const items = data.history.map((event) => {
      const where = event.delivery_id ? pharmacies[event.delivery_id] : "";
      const item = rx.el("li", {},
        rx.el("span", { class: "tl-label" }, event.label),
        ...(where ? [rx.el("span", { class: "tl-where small" }, ` \u00b7 ${where}`)] : []), " ",
        rx.el("time", { class: "small muted", datetime: event.occurred_at, title: event.occurred_at },
          event.occurred_at_display));
      return { at: Date.parse(event.occurred_at), item };
    });
    // Each email to the patient goes after the last step that happened before it was sent.
    for (const email of data.patient_emails || []) {
      const at = Date.parse(email.sent_at);
      let index = items.length;
      while (index > 0 && items[index - 1].at > at) index -= 1;
      items.splice(index, 0, { at, item: rx.el("li", { class: "tl-email" },
        rx.el("span", { class: "tl-label" }, email.label), " ",
        rx.el("time", { class: "small muted", datetime: email.sent_at, title: email.sent_at },
          email.sent_at_display)) });
    }
    timeline.replaceChildren(...items.map((entry) => entry.item));
    const failed = data.status === "failed";
    failure.hidden = !failed;
    if (failed) {
      reason.textContent = data.failure_reason || "";
      retry.hidden = false;
    }
    return data.is_final || failed;
  }

  // The session ended (signed out, elsewhere or by an admin, or expired): say so, rather than
  // leave a page that silently stopped updating.
  function signedOut() {
    if (document.getElementById("signed-out")) return;
    const back = `/login?next=${encodeURIComponent(window.location.pathname)}&notice=ended`;
    panel.prepend(rx.el("p", { id: "signed-out", class: "error", role: "alert" },
      "You were signed out \u2014 ", rx.el("a", { href: back }, "sign in again"),
      " to see new updates."));
  }

  let misses = 0;
  async function poll() {
    let answer;
    try {
      answer = await rx.api("GET", panel.dataset.statusUrl);
    } catch (e) {
      answer = { ok: false };
    }
    if (answer.ok && answer.data) {
      misses = 0;
      if (render(answer.data)) return; // final (or failed): nothing more will change by itself
    } else if (answer.status === 401) {
      signedOut();
      return;
    } else if (answer.status === 404 || ++misses > 30) {
      return;
    }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 1000);
})();

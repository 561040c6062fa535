// The prescription page: type-ahead pharmacy search and the live status timeline.
// Without this script the page still works (form round trips); with it, nothing here ever
// builds HTML from strings: every value from the server goes in through textContent.
"use strict";
(function () {
  const rx = window.rxroute;
  document.documentElement.classList.add("js");
  const PAGE = 20;
  const MAX_LIMIT = 49; // the pharmacy API answers at most 50 (one extra says "more")

  // ---- pharmacy search ------------------------------------------------------------------
  // The send form, or the change form once it is on its way: the same region choice and
  // search, marked data-pharmacy-picker (at most one of them is on the page).
  function initPicker() {
    const form = document.querySelector("form[data-pharmacy-picker]");
    if (!form) return;
    const input = document.getElementById("pharmacy-search");
    const list = document.getElementById("pharmacy-results");
    const count = document.getElementById("results-count");
    const hidden = document.getElementById("pharmacy-id");
    const chosen = document.getElementById("chosen");
    const chosenName = document.getElementById("chosen-name");
    const chosenAddress = document.getElementById("chosen-address");
    let timer = null;
    let latest = 0;
    let limit = PAGE; // "Show more" raises it for the same query

    const region = () => {
      const checked = form.querySelector('input[name="region"]:checked');
      return checked ? checked.value : "";
    };
    const options = () => Array.from(list.querySelectorAll('button[role="option"]'));

    // The server-rendered choice may carry the pharmacy's phone and hours: not another's.
    const dropContact = () => { for (const el of chosen.querySelectorAll(".pharmacy-contact")) el.remove(); };
    const chosenTitle = document.getElementById("chosen-title");

    function choose(button) {
      if (hidden.value !== button.dataset.id) {
        dropContact();
        if (chosenTitle) chosenTitle.textContent = "Chosen pharmacy";
      }
      hidden.value = button.dataset.id;
      chosenName.textContent = button.dataset.name;
      chosenAddress.textContent = button.dataset.address;
      chosen.hidden = false;
      for (const other of options()) {
        other.setAttribute("aria-selected", other === button ? "true" : "false");
      }
    }

    function clearChoice() {
      dropContact();
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
        // Phone and opening hours when known, as the server-rendered list shows them.
        const contact = [ph.phone, ph.opening_hours].filter(Boolean).join(" \u00b7 ");
        if (contact) button.append(rx.el("br"), rx.el("small", { class: "muted pharmacy-contact" }, contact));
        button.dataset.name = ph.name;
        button.dataset.address = ph.full_address;
        list.append(rx.el("li", { role: "presentation" }, button));
      }
      input.setAttribute("aria-expanded", results.length ? "true" : "false");
      const more = results.length > limit;
      if (more) list.lastChild.remove(); // asked one extra only to know there are more
      const n = Math.min(results.length, limit);
      if (more) {
        count.replaceChildren(`Showing the first ${n} matches. Type more of the name, town or postcode to narrow the list`);
        if (limit < MAX_LIMIT) {
          const button = rx.el("button", { type: "button", class: "link", id: "show-more-js" }, "show more");
          button.addEventListener("click", () => { limit = MAX_LIMIT; search(true); });
          count.append(", or ", button);
        }
        count.append(".");
      } else {
        count.textContent = n === 1 ? "1 pharmacy found" : `${n} pharmacies found`;
      }
    }

    async function search(keepLimit) {
      const mine = ++latest;
      const query = input.value.slice(0, 100);
      if (!keepLimit) limit = PAGE;
      if (!region()) {
        count.textContent = "Choose where your pharmacy is first.";
        list.setAttribute("aria-busy", "false");
        return;
      }
      const url = `/api/v1/pharmacies?region=${encodeURIComponent(region())}&q=${encodeURIComponent(query)}&limit=${limit + 1}`;
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
    const more = document.getElementById("show-more");
    if (more) more.hidden = true; // the script's own "show more" replaces the no-JS button
    // Show the region's list at once, so a patient can also just scroll and pick.
    if (!options().length) search();
  }
  initPicker();

  // After a server-side validation error, start at the summary of what to fix.
  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();

  // ---- live status ------------------------------------------------------------------------
  // The JSON status is polled (cheap); when it changes, the page itself is fetched and its
  // server-rendered status panel swapped in, so the words are the server's, written once.
  // If what the page offers changed too (the send form after a failure), the whole page
  // body is swapped and the search re-attached. Parsed HTML is the server's own page.
  const statusUrl = () => {
    const panel = document.getElementById("status-panel");
    return panel && panel.dataset.poll === "yes" ? panel.dataset.statusUrl : null;
  };
  if (!statusUrl()) return;
  const SECTIONS = ["send-form", "change-form", "cancel", "ending"];
  const shape = (doc) => SECTIONS.map((id) => (doc.getElementById(id) ? "1" : "0")).join("");

  // The session ended (signed out, elsewhere or by an admin, or expired): say so, rather than
  // leave a page that silently stopped updating.
  function signedOut() {
    if (document.getElementById("signed-out")) return;
    const panel = document.getElementById("status-panel");
    const back = `/login?next=${encodeURIComponent(window.location.pathname)}&notice=ended`;
    panel.prepend(rx.el("p", { id: "signed-out", class: "error", role: "alert" },
      "You were signed out \u2014 ", rx.el("a", { href: back }, "sign in again"),
      " to see new updates."));
  }

  async function refresh() {
    let response;
    try {
      response = await fetch(window.location.pathname + window.location.search, {
        credentials: "same-origin", redirect: "manual", headers: { Accept: "text/html" },
      });
    } catch (e) {
      return false;
    }
    if (response.type === "opaqueredirect") { signedOut(); return true; }
    if (!response.ok) return false;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("status-panel");
    if (!fresh) return false;
    if (shape(doc) !== shape(document)) {
      const main = document.getElementById("main");
      main.replaceChildren(...Array.from(doc.getElementById("main").childNodes, (node) => document.importNode(node, true)));
      initPicker();
    } else {
      const current = document.getElementById("status-panel");
      // Unchanged (a retry in progress often is): keep it, so nothing is announced again.
      if (current.outerHTML !== fresh.outerHTML) current.replaceWith(document.importNode(fresh, true));
      // The reference becomes the platform's own ID once the prescription is issued there.
      const ref = document.getElementById("rx-ref");
      const freshRef = doc.getElementById("rx-ref");
      if (ref && freshRef && ref.textContent !== freshRef.textContent) ref.textContent = freshRef.textContent;
    }
    return false;
  }

  let seen = null;
  let misses = 0;
  async function poll() {
    let answer;
    try {
      answer = await rx.api("GET", statusUrl() || "");
    } catch (e) {
      answer = { ok: false };
    }
    if (answer.ok && answer.data) {
      misses = 0;
      const data = answer.data;
      const now = [data.status, data.history.length, (data.patient_emails || []).length].join("|");
      // The first answer refreshes too: the page may have been rendered a moment earlier.
      // While it is being sent, retries change nothing in the JSON: ask the page each time.
      const busy = data.status === "queued" || data.status === "sending";
      if (now !== seen || busy) {
        seen = now;
        if (await refresh()) return;
      }
      if (!statusUrl()) return; // final, or failed: nothing more changes by itself
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

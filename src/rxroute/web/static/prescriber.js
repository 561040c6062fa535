// The write form: picking a medicine fills in its formulary defaults (quantity, directions).
// Without this script the form still works: "Add another medicine" and "Write prescription"
// fill the defaults in on the server. A value the prescriber typed is never overwritten:
// only an empty field, or one still holding the previous medicine's default, is replaced.
"use strict";
(function () {
  const form = document.getElementById("write-form");
  if (!form) return;

  function defaults(select) {
    const option = select.selectedOptions[0];
    return {
      quantity: option ? option.dataset.quantity || "" : "",
      directions: option ? option.dataset.directions || "" : "",
    };
  }

  for (const line of form.querySelectorAll("[data-line]")) {
    const select = line.querySelector("select[data-formulary]");
    const quantity = line.querySelector('input[name="quantity"]');
    const directions = line.querySelector('textarea[name="directions"]');
    if (!select || !quantity || !directions) continue;
    let previous = { quantity: "", directions: "" };
    const follow = () => {
      const next = defaults(select);
      if (!quantity.value.trim() || quantity.value === previous.quantity) {
        quantity.value = next.quantity;
      }
      if (!directions.value.trim() || directions.value === previous.directions) {
        directions.value = next.directions;
      }
      previous = next;
    };
    // A medicine picked while this deferred script was still loading raised its "change"
    // before the listener existed: fill its defaults now, into empty fields only.
    follow();
    select.addEventListener("change", follow);
  }
})();

// Support pages: a "Copy" button beside each ID (<code data-copy-text="...">).
// Without this script there is no button and the ID stays plain, selectable text.
"use strict";
(function () {
  for (const code of document.querySelectorAll("code[data-copy-text]")) {
    const label = code.dataset.copyLabel || "ID";
    const button = window.rxroute.el(
      "button",
      { type: "button", class: "copy-button", "aria-label": "Copy the " + label },
      "Copy"
    );
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(code.dataset.copyText);
        button.textContent = "Copied";
      } catch (e) {
        // No clipboard (insecure origin, permission refused): select it for Ctrl+C instead.
        const range = document.createRange();
        range.selectNodeContents(code);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl+C (⌘C)";
      }
    });
    code.after(button);
  }
})();

// After a search the server refused, focus moves to the summary of what to fix.
(function () {
  const summary = document.getElementById("search-errors");
  if (summary) summary.focus();
})();

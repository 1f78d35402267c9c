// The dashboard's only script: refresh the overview every few seconds, confirm destructive actions.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (seconds > 0) {
    setTimeout(() => { if (!document.hidden) location.reload(); }, seconds * 1000);
  }
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
});

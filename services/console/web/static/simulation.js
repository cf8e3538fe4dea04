// A draft's simulation runs in the owning service's background: while it runs, this polls
// its state (the console's /api/<kind>/simulations/<id>) and shows the progress; once it has
// ended, the page is loaded again to show the result.
"use strict";

(function () {
  const box = document.querySelector("[data-simulation]");
  if (!box || box.dataset.status !== "running") {
    return;
  }
  const url = `/api/${box.dataset.kind}/simulations/${encodeURIComponent(box.dataset.simulation)}`;
  const status = box.querySelector("[data-test=simulation-status]");
  const progress = box.querySelector("[data-test=simulation-progress]");
  const bar = box.querySelector("progress");
  async function poll() {
    try {
      const answer = await fetch(url, { headers: { Accept: "application/json" } });
      if (answer.ok) {
        const state = await answer.json();
        status.textContent = state.status;
        const total = state.progress.total;
        progress.textContent = `${state.progress.done} of ${total === null ? "?" : total}`;
        bar.max = total || 1;
        bar.value = state.progress.done;
        if (state.status !== "running") {
          window.location.reload();
          return;
        }
      }
    } catch (error) {
      // the console or the service restarting: try again
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 500);
})();

// loading.js - while the server loads the model: say so, show how long it has taken, and return
// once /health answers ready. A failed load or a dead engine is shown as an error, and polling
// goes on (an operator may restart the engine behind the same address).

const POLL_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `view`: {panel, detail} elements. Resolves when the server is ready. */
export async function waitUntilReady(api, view, t) {
  const started = Date.now();
  view.panel.hidden = false;
  for (;;) {
    let health;
    try {
      health = await api.health();
    } catch (e) {
      health = { ok: false, status: 0, body: {} };
    }
    if (health.ok) break;
    const body = health.body || {};
    const seconds = Math.round((Date.now() - started) / 1000);
    if (body.status === "failed" || body.status === "dead") {
      view.panel.dataset.failed = "true";
      view.detail.textContent = t(body.status === "failed" ? "loadFailed" : "engineDead", { detail: body.error || "" });
    } else {
      delete view.panel.dataset.failed;
      view.detail.textContent = t("loadingElapsed", { model: body.model || "", seconds });
      view.progress.setAttribute("aria-valuetext", view.detail.textContent);
    }
    await sleep(POLL_MS);
  }
  view.panel.hidden = true;
}

// Live issuance page: one websocket per session; the server sends the stored state on every
// (re)connect and each change after it, so the page never reloads and never misses a step.
(() => {
  "use strict";
  const root = document.getElementById("issuance");
  if (!root || !root.dataset.session) return;
  const sessionId = root.dataset.session;
  const csrf = root.dataset.csrf;
  const liveStatus = document.getElementById("live-status");
  const FINAL = new Set(["accepted", "declined", "expired", "failed"]);
  let version = Number(root.dataset.version || 0);
  let state = root.dataset.state;
  let retryDelay = 500;
  // A page that started its session has the state the server just stored: its first socket
  // asks the server not to read the agent's record back (reconnects and reloads do).
  let fresh = root.dataset.fresh === "1";

  function show(step) {
    state = step;
    root.dataset.state = step;
    for (const section of root.querySelectorAll("section[data-step]")) {
      section.hidden = section.dataset.step !== step;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = fresh ? "?fresh=1" : "";
    fresh = false;
    const socket = new WebSocket(`${scheme}//${location.host}/ws/issuance/${sessionId}${query}`);
    socket.addEventListener("open", () => { liveStatus.hidden = true; retryDelay = 500; });
    socket.addEventListener("message", (event) => {
      const snapshot = JSON.parse(event.data);
      if (snapshot.version < version) return;
      version = snapshot.version;
      show(snapshot.state);
    });
    socket.addEventListener("close", () => {
      if (FINAL.has(state)) return;
      liveStatus.hidden = false;
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    });
  }

  const form = document.getElementById("name-form");
  const formError = document.getElementById("form-error");
  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch("/name", {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
        credentials: "same-origin",
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.message || response.statusText);
      if (body.version >= version) { version = body.version; show(body.state); }
    } catch (error) {
      formError.textContent = error.message;
      formError.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById("test-wallet")?.addEventListener("click", async (event) => {
    event.target.disabled = true;
    const response = await fetch("/dev/test-wallet", {
      method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
    });
    if (!response.ok) event.target.disabled = false;
  });

  if (!FINAL.has(state)) connect();
})();

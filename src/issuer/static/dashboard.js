// End a session from the dashboard: DELETE /sessions/<id> with the CSRF token.
(() => {
  "use strict";
  const list = document.getElementById("sessions");
  if (!list) return;
  list.addEventListener("click", async (event) => {
    const button = event.target.closest("button.end-session");
    if (!button) return;
    button.disabled = true;
    const response = await fetch(`/sessions/${encodeURIComponent(button.dataset.session)}`, {
      method: "DELETE",
      headers: { "X-CSRF-Token": list.dataset.csrf },
      credentials: "same-origin",
    });
    if (button.dataset.current === "true") { location.assign("/login"); return; }
    if (response.ok) button.closest("li").remove(); else button.disabled = false;
  });
})();

// The login and register forms: post as the browser would, follow the redirect on success,
// and show the server's JSON error message next to the form otherwise (no page reload).
(() => {
  "use strict";
  const form = document.querySelector("form.page-form");
  const error = document.getElementById("error");
  if (!form || !error) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    error.hidden = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.redirected) { location.assign(response.url); return; }
      const body = await response.json();
      error.textContent = body.message || response.statusText;
    } catch (failure) {
      error.textContent = failure.message;
    }
    error.hidden = false;
    button.disabled = false;
  });
})();

// Pages opened from email links: post the form as JSON to the page's endpoint, show the answer.
(() => {
  "use strict";
  const form = document.querySelector("form.json-form");
  const result = document.getElementById("result");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    const body = Object.fromEntries(new FormData(form).entries());
    try {
      const response = await fetch(form.dataset.action, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(Object.keys(body).length ? body : { confirm: true }),
        credentials: "same-origin",
      });
      const answer = await response.json();
      result.textContent = answer.message;
      result.className = response.ok ? "result success" : "result failure";
      if (response.ok) form.hidden = true;
    } catch (error) {
      result.textContent = error.message;
      result.className = "result failure";
    } finally {
      result.hidden = false;
      button.disabled = false;
    }
  });
})();

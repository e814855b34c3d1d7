// The login and register forms: post as the browser would, follow the redirect on success,
// and show the server's JSON error message next to the form otherwise (no page reload).
// A login whose account has two-factor authentication answers with its challenge instead
// (the server keeps it in an HttpOnly cookie): the page then asks for the second factor,
// a code, a recovery code or a passkey. A passkey alone can also log in (passwordless).
(() => {
  "use strict";
  const form = document.querySelector("form.page-form");
  const error = document.getElementById("error");
  if (!form || !error) return;
  const webauthn = window.issuerWebAuthn;

  const show = (message) => { error.textContent = message; error.hidden = false; };
  const failed = async (response) => {
    try { return (await response.json()).message || response.statusText; }
    catch { return response.statusText; }
  };
  // A JSON post (no body at all when there is nothing to send).
  const postJSON = (path, body) =>
    fetch(path, {
      method: "POST",
      ...(body === undefined
        ? { headers: { Accept: "application/json" } }
        : { body: JSON.stringify(body), headers: { "Content-Type": "application/json", Accept: "application/json" } }),
      credentials: "same-origin",
    });
  // Runs one step with its button disabled; a completed login goes where the server says.
  const step = async (button, action) => {
    button.disabled = true;
    error.hidden = true;
    try {
      const response = await action();
      if (response.redirected) { location.assign(response.url); return; }
      if (!response.ok) { show(await failed(response)); return; }
      const body = await response.json();
      if (body.mfa_token) secondStep(body.mfa_methods || ["totp"]);
      else location.assign(body.next || "/dashboard");
    } catch (failure) {
      show(failure.name === "NotAllowedError" ? "The passkey was not used." : failure.message);
    } finally {
      button.disabled = false;
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    step(form.querySelector("button"), () =>
      fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      }),
    );
  });

  const passkeyLogin = document.getElementById("passkey-login");
  if (passkeyLogin && webauthn && webauthn.supported) {
    passkeyLogin.closest(".passkey-only").hidden = false;
    passkeyLogin.addEventListener("click", () =>
      step(passkeyLogin, async () => {
        const started = await postJSON("/login/passkey/options");
        if (!started.ok) return started;
        const { ceremony, options } = await started.json();
        return postJSON("/login/passkey", { ceremony, credential: await webauthn.get(options) });
      }),
    );
  }

  // --- the second step -------------------------------------------------------------------
  const second = document.getElementById("second-step");
  if (!second) return;
  const otpForm = document.getElementById("otp-form");
  const recoveryForm = document.getElementById("recovery-form");
  const useRecovery = document.getElementById("use-recovery");
  const useOtp = document.getElementById("use-otp");
  const usePasskey = document.getElementById("use-passkey");

  function secondStep(methods) {
    document.getElementById("first-step").hidden = true;
    second.hidden = false;
    useRecovery.hidden = !methods.includes("recovery_code");
    usePasskey.hidden = !(methods.includes("passkey") && webauthn && webauthn.supported);
    document.getElementById("otp").focus();
  }
  const choose = (recovery) => {
    otpForm.hidden = recovery;
    recoveryForm.hidden = !recovery;
    useRecovery.hidden = recovery;
    useOtp.hidden = !recovery;
    (recovery ? document.getElementById("recovery-code") : document.getElementById("otp")).focus();
  };
  // A social login that needs its second factor comes back to this page at that step.
  if (second.dataset.methods) secondStep(second.dataset.methods.split(","));
  useRecovery.addEventListener("click", () => choose(true));
  useOtp.addEventListener("click", () => choose(false));

  otpForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const otp = document.getElementById("otp").value.trim();
    step(otpForm.querySelector("button"), () => postJSON("/login_mfa", { otp }));
  });
  recoveryForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const code = document.getElementById("recovery-code").value.trim();
    step(recoveryForm.querySelector("button"), () =>
      postJSON("/verify_recovery_code", { recovery_code: code }),
    );
  });
  usePasskey.addEventListener("click", () =>
    step(usePasskey, async () => {
      const started = await postJSON("/login_mfa/passkey/options", {});
      if (!started.ok) return started;
      const { ceremony, options } = await started.json();
      return postJSON("/login_mfa/passkey", { ceremony, credential: await webauthn.get(options) });
    }),
  );
})();

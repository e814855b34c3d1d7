// The dashboard: end sessions, two-factor authentication (an authenticator app, recovery
// codes), passkeys and login methods (linked providers, the password), through the JSON API with the page's CSRF token (X-CSRF-Token).
(() => {
  "use strict";
  const root = document.getElementById("account");
  const error = document.getElementById("error");
  if (!root || !error) return;
  const webauthn = window.issuerWebAuthn;
  const $ = (id) => document.getElementById(id);

  const call = async (method, path, body) => {
    const headers = { "X-CSRF-Token": root.dataset.csrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let answer = {};
    try { answer = await response.json(); } catch { /* an empty answer */ }
    if (!response.ok) throw new Error(answer.message || response.statusText);
    return answer;
  };
  // Runs one action with its button disabled and shows what went wrong.
  const act = async (button, action) => {
    button.disabled = true;
    error.hidden = true;
    try {
      await action();
    } catch (failure) {
      error.textContent = failure.name === "NotAllowedError" ? "The passkey was not created." : failure.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  };

  // --- sessions --------------------------------------------------------------------------
  $("sessions").addEventListener("click", (event) => {
    const button = event.target.closest("button.end-session");
    if (!button) return;
    act(button, async () => {
      const current = button.dataset.current === "true";
      try {
        await call("DELETE", `/sessions/${encodeURIComponent(button.dataset.session)}`);
      } finally {
        if (current) location.assign("/login");
      }
      button.closest("li").remove();
    });
  });

  // --- recovery codes: shown once, with a download -----------------------------------------
  let download = null;
  const showCodes = (codes) => {
    const list = $("codes-list");
    list.replaceChildren(...codes.map((code) => {
      const item = document.createElement("li");
      item.textContent = code;
      item.className = "code";
      return item;
    }));
    if (download) URL.revokeObjectURL(download);
    download = URL.createObjectURL(new Blob([codes.join("\n") + "\n"], { type: "text/plain" }));
    $("codes-download").href = download;
    $("codes").hidden = false;
    if ($("codes-left")) $("codes-left").textContent = String(codes.length);
  };
  $("codes-done").addEventListener("click", () => location.reload());

  // --- an authenticator app ---------------------------------------------------------------
  const start = $("totp-start");
  if (start) {
    start.addEventListener("submit", (event) => {
      event.preventDefault();
      act(start.querySelector("button"), async () => {
        const password = $("totp-password");
        const body = password ? { password: password.value } : { login_type: "social" };
        const { image } = await call("POST", "/qrcode", body);
        $("totp-qr").src = `data:image/png;base64,${image}`;
        start.hidden = true;
        $("totp-enrol").hidden = false;
        $("totp-code").focus();
      });
    });
    const confirm = $("totp-confirm");
    confirm.addEventListener("submit", (event) => {
      event.preventDefault();
      act(confirm.querySelector("button"), async () => {
        const otp = $("totp-code").value.trim();
        const { data } = await call("POST", "/verify_otp", { otp });
        await call("POST", "/setup_mfa", { mfa_enabled: true, otp });
        $("totp-enrol").hidden = true;
        $("mfa").dataset.enabled = "true";
        $("mfa-status").querySelector("strong").textContent = "on";
        showCodes(data.codes);
      });
    });
  }
  const show = $("codes-show");
  if (show) {
    show.addEventListener("click", () =>
      act(show, async () => showCodes((await call("GET", "/recovery_codes")).data || [])),
    );
  }
  const regenerate = $("codes-regenerate");
  if (regenerate) {
    regenerate.addEventListener("click", () =>
      act(regenerate, async () => showCodes((await call("POST", "/recovery_codes")).data)),
    );
  }
  const off = $("mfa-off");
  if (off) {
    off.addEventListener("submit", (event) => {
      event.preventDefault();
      act(off.querySelector("button"), async () => {
        const proof = $("mfa-off-code").value.trim();
        const body = /^[0-9]{6}$/.test(proof)
          ? { mfa_enabled: false, otp: proof }
          : { mfa_enabled: false, recovery_code: proof };
        await call("POST", "/setup_mfa", body);
        location.reload();
      });
    });
  }

  // --- passkeys ---------------------------------------------------------------------------
  const add = $("passkey-add");
  if (webauthn && webauthn.supported) add.hidden = false;
  add.addEventListener("submit", (event) => {
    event.preventDefault();
    act(add.querySelector("button"), async () => {
      const { ceremony, options } = await call("POST", "/passkeys/options");
      const credential = await webauthn.create(options);
      await call("POST", "/passkeys", { ceremony, credential, name: $("passkey-name").value.trim() });
      location.reload();
    });
  });
  $("passkeys").addEventListener("click", (event) => {
    const button = event.target.closest("button.remove-passkey");
    if (!button) return;
    act(button, async () => {
      await call("DELETE", `/passkeys/${encodeURIComponent(button.dataset.passkey)}`);
      button.closest("li").remove();
    });
  });

  // --- login methods ----------------------------------------------------------------------
  $("methods").addEventListener("click", (event) => {
    const button = event.target.closest("button.unlink");
    if (!button) return;
    act(button, async () => {
      await call("DELETE", `/social/${encodeURIComponent(button.dataset.method)}`);
      location.reload();
    });
  });
  // Linking starts at the provider: the server answers where to go.
  document.querySelectorAll("button.link-provider").forEach((button) =>
    button.addEventListener("click", () =>
      act(button, async () => {
        const started = await call("POST", `/login/${encodeURIComponent(button.dataset.provider)}`);
        location.assign(started.location);
      }),
    ),
  );
})();

// WebAuthn ceremonies against the server's JSON: options in (PublicKeyCredential*OptionsJSON,
// base64url fields), the credential out as its JSON form (WebAuthn Level 3 §5.1 toJSON()).
// The JSON helpers of newer browsers are used when present; the conversion below otherwise.
(() => {
  "use strict";
  const toBytes = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };
  const toText = (buffer) => {
    if (buffer === null || buffer === undefined) return null;
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const descriptors = (list) => (list || []).map((d) => ({ ...d, id: toBytes(d.id) }));
  const PKC = window.PublicKeyCredential;

  const creationOptions = (json) =>
    PKC.parseCreationOptionsFromJSON
      ? PKC.parseCreationOptionsFromJSON(json)
      : {
          ...json,
          challenge: toBytes(json.challenge),
          user: { ...json.user, id: toBytes(json.user.id) },
          excludeCredentials: descriptors(json.excludeCredentials),
        };
  const requestOptions = (json) =>
    PKC.parseRequestOptionsFromJSON
      ? PKC.parseRequestOptionsFromJSON(json)
      : { ...json, challenge: toBytes(json.challenge), allowCredentials: descriptors(json.allowCredentials) };

  const asJSON = (credential) => {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const response = credential.response;
    const out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toText(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      out.response.userHandle = toText(response.userHandle);
    }
    return out;
  };

  window.issuerWebAuthn = {
    supported: Boolean(PKC && navigator.credentials),
    // A new passkey for these PublicKeyCredentialCreationOptionsJSON.
    async create(options) {
      return asJSON(await navigator.credentials.create({ publicKey: creationOptions(options) }));
    },
    // An assertion for these PublicKeyCredentialRequestOptionsJSON.
    async get(options) {
      return asJSON(await navigator.credentials.get({ publicKey: requestOptions(options) }));
    },
  };
})();

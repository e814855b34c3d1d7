// The dashboard's live events: pusher-js (served from our static files) on this server's own
// websocket, subscribed to the user's private entity channels through /pusher/auth (the
// browser's session cookie and the page's CSRF token). Each event is listed as it happens; a
// session ended elsewhere leaves the list, and this browser's own ending says so.
(() => {
  "use strict";
  const root = document.getElementById("account");
  const list = document.getElementById("live-events");
  const status = document.getElementById("live-status");
  if (!root || !list || !window.Pusher) return;
  const user = root.dataset.user;
  const secure = location.protocol === "https:";
  const port = Number(location.port) || (secure ? 443 : 80);
  const pusher = new window.Pusher(root.dataset.pusherKey, {
    cluster: "mt1", // required by pusher-js 8; unused with wsHost
    wsHost: location.hostname,
    wsPort: port,
    wssPort: port,
    forceTLS: secure,
    enabledTransports: ["ws", "wss"],
    enableStats: false,
    channelAuthorization: {
      endpoint: "/pusher/auth",
      transport: "ajax",
      headers: { "X-CSRF-Token": root.dataset.csrf },
    },
  });
  const entities = ["person", "session", "login_method", "otp_method", "recovery_code", "passkey"];
  const ready = new Set(); // channels subscribed on the current connection
  const states = { connecting: "Connecting…", unavailable: "Offline; retrying…" };
  const report = (text, state) => {
    if (status.dataset.state === "ended") return;
    status.textContent = text;
    status.dataset.state = state;
  };
  pusher.connection.bind("state_change", ({ current }) => {
    if (current !== "connected") ready.clear();
    if (current === "connected" && ready.size < entities.length) report("Connecting…", "subscribing");
    else if (current !== "connected") report(states[current] || current, current);
  });
  // Events are numbered per user; the page was rendered at number `since`. After every
  // (re)subscription a channel asks for the events after the number its last replay reached
  // (`issuer:replayed`), not after the highest it saw live: the server retries a failed
  // delivery after later events went out, so a lower number may still be on its way when the
  // connection drops. What a replay repeats was seen already and is skipped by number.
  const since = Number(root.dataset.since) || 0;
  const through = new Map(); // channel -> every event up to this number reached the page
  const shown = new Set(); // event numbers shown (numbered per user, so one set serves all)

  const show = (body) => {
    const item = document.createElement("li");
    item.dataset.type = body.type;
    item.textContent = `${body.entity} ${body.action}: ${body.type}`;
    list.prepend(item);
  };
  const sessionEnded = (body) => {
    for (const id of body.data.sessions || []) {
      const row = document.querySelector(`#sessions li[data-session="${CSS.escape(id)}"]`);
      if (row) row.remove();
      if (id === root.dataset.session) {
        status.textContent = "This session was ended elsewhere.";
        status.dataset.state = "ended";
      }
    }
  };
  const sessionOpened = (body) => {
    const rows = document.getElementById("sessions");
    const session = body.data.session;
    if (!rows || !session || rows.querySelector(`li[data-session="${CSS.escape(session.id)}"]`)) return;
    const row = document.createElement("li");
    row.dataset.session = session.id;
    row.textContent = `${session.kind} · since ${session.created_at.slice(0, 16).replace("T", " ")} `;
    const end = document.createElement("button");
    end.type = "button";
    end.className = "end-session";
    end.dataset.session = session.id;
    end.dataset.current = "false";
    end.textContent = "End";
    row.append(end);
    rows.append(row);
  };
  for (const entity of entities) {
    const name = `private-${entity}-${user}`;
    const channel = pusher.subscribe(name);
    through.set(name, since);
    channel.bind("pusher:subscription_succeeded", () => {
      ready.add(name);
      pusher.send_event("issuer:replay", { since: through.get(name) }, name);
      if (ready.size === entities.length) report("Live.", "live");
    });
    channel.bind("issuer:replayed", (data) => {
      const reached = Number(data && data.through);
      if (reached > through.get(name)) through.set(name, reached);
      if (data && data.more) pusher.send_event("issuer:replay", { since: through.get(name) }, name);
    });
    channel.bind_global((event, body) => {
      // Only the server's entity events (create, update, delete), never client events.
      if (!["create", "update", "delete"].includes(event) || !body || !body.type) return;
      if (shown.has(body.id) || body.id <= since) return; // a replay overlaps
      shown.add(body.id);
      show(body);
      if (body.type === "session.ended") sessionEnded(body);
      if (body.type === "session.opened") sessionOpened(body);
    });
  }
})();

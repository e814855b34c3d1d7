// One real pusher-js client (the npm package, pinned in package-lock.json), driven by the tests
// through tests/support/pusher_js.py.
//
// stdin: one JSON command a line, each with an "id"; every command is answered on stdout with
// {"ok": true, "id": ...} (plus "result" where the command returns something) or
// {"ok": false, "id": ..., "error": "..."}. Everything else on stdout is a report, one JSON
// object a line, with a "type": state, connecting_in, error, subscribed, subscription_error,
// event, member_added, member_removed. pusher-js's own logging goes to stderr.
//
// Commands:
//   {"id":1,"op":"connect","key":K,"host":H,"port":P,"authEndpoint":URL,"headers":{...},
//    "options":{...}}        missing fields fall back to PUSHER_KEY, PUSHER_HOST, PUSHER_PORT,
//                            PUSHER_AUTH_ENDPOINT, PUSHER_HEADERS (JSON); "options" is merged
//                            into the Pusher options last (e.g. activityTimeout, pongTimeout)
//   {"id":2,"op":"subscribe","channel":C}
//   {"id":3,"op":"trigger","channel":C,"event":"client-x","data":D}   result: channel.trigger's
//   {"id":4,"op":"send_event","event":E,"data":D,"channel":C?}      result: pusher.send_event's
//   {"id":5,"op":"unsubscribe","channel":C}
//   {"id":6,"op":"status"}   result: {state, socket_id, channels: {name: {subscribed, pending}}}
//   {"id":7,"op":"disconnect"}   answers, pusher.disconnect(), then exits 0 once the socket has
//                                closed (at most 1 s later), as it does when stdin ends

import readline from 'node:readline';

import Pusher from 'pusher-js';

// Nothing but the protocol lines may reach stdout.
console.log = console.error;
console.info = console.error;
console.debug = console.error;
// Copied onto the base class by the constructor: all of pusher-js's logging, debug included.
Pusher.log = (message) => process.stderr.write(`[pusher-js] ${message}\n`);

let pusher = null;
let exiting = false;
const watched = new WeakSet(); // channel objects whose events are reported

function plain(value, depth = 8) {
  // A JSON-safe copy: Error objects become {name, message}, functions are left out, and so is
  // whatever lies deeper than `depth` (which also cuts cycles, as in some transport errors).
  if (value === undefined || typeof value === 'function') return null;
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (value === null || typeof value !== 'object') return value;
  if (depth === 0) return '[…]';
  if (Array.isArray(value)) return value.map((item) => plain(item, depth - 1));
  const copy = {};
  for (const [key, item] of Object.entries(value)) {
    if (item !== undefined && typeof item !== 'function') copy[key] = plain(item, depth - 1);
  }
  return copy;
}

function emit(object) {
  process.stdout.write(`${JSON.stringify(plain(object))}\n`);
}

function errorCode(error) {
  // pusher:error messages: {type: 'PusherError', data: {code, message}}; close codes of 4000 and
  // up: the same object, and again wrapped as {type: 'WebSocketError', error: {...}}.
  for (const candidate of [error?.data, error?.error?.data, error?.error, error]) {
    if (candidate && typeof candidate === 'object' && candidate.code != null) return candidate.code;
  }
  return null;
}

function errorMessage(error) {
  for (const candidate of [error?.data, error?.error?.data, error?.error, error]) {
    if (candidate && typeof candidate === 'object' && typeof candidate.message === 'string') {
      return candidate.message;
    }
  }
  return typeof error?.error === 'string' ? error.error : null;
}

function members(channel) {
  const list = [];
  channel.members.each((member) => list.push({ id: member.id, info: member.info ?? null }));
  return { me: channel.members.me, count: channel.members.count, list };
}

function config(command) {
  const key = command.key ?? process.env.PUSHER_KEY;
  const host = command.host ?? process.env.PUSHER_HOST ?? '127.0.0.1';
  const port = Number(command.port ?? process.env.PUSHER_PORT);
  if (!key) throw new Error('connect needs "key" (or PUSHER_KEY)');
  if (!Number.isInteger(port) || port <= 0) throw new Error('connect needs "port" (or PUSHER_PORT)');
  const endpoint =
    command.authEndpoint ?? process.env.PUSHER_AUTH_ENDPOINT ?? `http://${host}:${port}/pusher/auth`;
  const headers =
    command.headers ?? (process.env.PUSHER_HEADERS ? JSON.parse(process.env.PUSHER_HEADERS) : {});
  return {
    key,
    options: {
      cluster: 'mt1', // required by pusher-js 8; unused once wsHost is set
      wsHost: host,
      wsPort: port,
      forceTLS: false,
      enabledTransports: ['ws'],
      enableStats: false, // the default; disableStats: true is deprecated (and logs so)
      // The Node build's 'ajax' transport is the bundled node-XMLHttpRequest (http.request
      // underneath), which refuses to set Cookie and the other "unsafe" headers: authenticate
      // with Authorization.
      channelAuthorization: { endpoint, transport: 'ajax', headers },
      ...(command.options ?? {}),
    },
  };
}

function watch(channel) {
  // The raw event (its user_id, and the subscription data before pusher-js turns it into a
  // Members object) is only seen by handleEvent: remember it while bind_global runs.
  let current = null;
  const handleEvent = channel.handleEvent.bind(channel);
  channel.handleEvent = (event) => {
    current = event;
    try {
      handleEvent(event);
    } finally {
      current = null;
    }
  };
  channel.bind_global((eventName, data) => {
    const name = channel.name;
    switch (eventName) {
      case 'pusher:subscription_succeeded': {
        const report = { type: 'subscribed', channel: name, data: current ? current.data : data };
        if (channel.members) report.members = members(channel);
        emit(report);
        break;
      }
      case 'pusher:subscription_error':
        emit({
          type: 'subscription_error',
          channel: name,
          status: data?.status ?? null,
          error: data?.error ?? data ?? null,
          error_type: data?.type ?? null,
        });
        break;
      case 'pusher:member_added':
      case 'pusher:member_removed':
        emit({
          type: eventName.slice('pusher:'.length),
          channel: name,
          member: { id: data.id, info: data.info ?? null },
          count: channel.members.count,
        });
        break;
      default: {
        const report = { type: 'event', channel: name, event: eventName, data };
        if (current && current.user_id !== undefined) report.user_id = current.user_id;
        emit(report);
      }
    }
  });
}

function connect(command) {
  if (pusher) throw new Error('already connected (one client per process)');
  const { key, options } = config(command);
  // The constructor connects at once when Pusher.isReady (always, under Node): hold that back
  // until the listeners are bound, so that the first state change (to connecting) is reported.
  const base = Object.getPrototypeOf(Pusher); // Pusher is the PusherWithEncryption subclass
  const ready = base.isReady;
  base.isReady = false;
  try {
    pusher = new Pusher(key, options);
  } finally {
    base.isReady = ready;
  }
  pusher.connection.bind('state_change', ({ previous, current }) => {
    const report = { type: 'state', state: current, previous };
    if (current === 'connected') report.socket_id = pusher.connection.socket_id;
    emit(report);
  });
  pusher.connection.bind('connecting_in', (delay) => emit({ type: 'connecting_in', delay }));
  pusher.connection.bind('error', (error) =>
    emit({
      type: 'error',
      error_type: error?.type ?? null,
      code: errorCode(error),
      message: errorMessage(error),
      error,
    }),
  );
  pusher.connect();
}

function channelNamed(name) {
  const channel = pusher.channel(name);
  if (!channel) throw new Error(`not subscribed to ${JSON.stringify(name)}`);
  return channel;
}

function needPusher() {
  if (!pusher) throw new Error('send "connect" first');
}

function exit() {
  if (exiting) return;
  exiting = true;
  if (pusher) pusher.disconnect();
  rl.close();
  process.stdin.destroy();
  // Let the websocket's close handshake finish; exit anyway if it does not within a second.
  process.exitCode = 0;
  setTimeout(() => process.exit(0), 1000).unref();
}

const ops = {
  connect,
  subscribe(command) {
    needPusher();
    const existing = pusher.channel(command.channel);
    if (existing && existing.subscribed && !existing.subscriptionCancelled) {
      throw new Error(`already subscribed to ${JSON.stringify(command.channel)}`);
    }
    const channel = pusher.subscribe(command.channel);
    if (!watched.has(channel)) {
      watched.add(channel);
      watch(channel);
    }
  },
  unsubscribe(command) {
    needPusher();
    pusher.unsubscribe(command.channel);
  },
  trigger(command) {
    needPusher();
    return channelNamed(command.channel).trigger(command.event, command.data);
  },
  send_event(command) {
    needPusher();
    return pusher.send_event(command.event, command.data, command.channel ?? undefined);
  },
  status() {
    const channels = {};
    for (const channel of pusher ? pusher.allChannels() : []) {
      channels[channel.name] = {
        subscribed: channel.subscribed,
        pending: channel.subscriptionPending,
      };
    }
    return {
      state: pusher ? pusher.connection.state : null,
      socket_id: pusher ? (pusher.connection.socket_id ?? null) : null,
      channels,
    };
  },
  disconnect() {
    // exit() after the answer is written.
  },
};

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (line) => {
  if (!line.trim() || exiting) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    emit({ ok: false, id: null, error: `not JSON: ${error.message}` });
    return;
  }
  const id = command.id ?? null;
  const op = ops[command.op];
  if (!op) {
    emit({ ok: false, id, error: `unknown op ${JSON.stringify(command.op)}` });
    return;
  }
  try {
    const result = op(command);
    emit(result === undefined ? { ok: true, id } : { ok: true, id, result });
  } catch (error) {
    emit({ ok: false, id, error: `${error?.name ?? 'Error'}: ${error?.message ?? error}` });
  }
  if (command.op === 'disconnect') exit();
});
rl.on('close', exit);

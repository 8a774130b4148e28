// Client helpers: pusher-js (browser-side client, Node build) and the
// official `pusher` Node server SDK, both pointed at a running revurb.
// laravel-echo helpers are in lib/echo.mjs.

import http from 'node:http';
import PusherClient from 'pusher-js';
import PusherServer from 'pusher';
import { APP_ID, APP_KEY, APP_SECRET, waitFor, waitForEvent } from './server.mjs';

/**
 * Tracks clients so a test can always disconnect them (pusher-js keeps
 * timers alive and retries otherwise, which would keep node running).
 */
export class ClientPool {
  constructor() {
    this.clients = [];
  }

  /** A pusher-js client for `server` (not yet waited for). */
  pusher(server, { key = APP_KEY, ...options } = {}) {
    const client = new PusherClient(key, {
      wsHost: server.host,
      wsPort: server.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      cluster: 'mt1',
      enableStats: false,
      ...options,
    });
    this.clients.push(client);
    return client;
  }

  /** A pusher-js client that reached state `connected`. */
  async connected(server, options = {}, { timeoutMs = 5000 } = {}) {
    const client = this.pusher(server, options);
    await waitForState(client, 'connected', { timeoutMs });
    return client;
  }

  disconnectAll() {
    for (const c of this.clients.splice(0)) {
      try {
        c.disconnect();
      } catch {
        // already gone
      }
    }
  }
}

/** Resolves once `client.connection.state === state`. */
export async function waitForState(client, state, { timeoutMs = 5000 } = {}) {
  if (client.connection.state === state) return;
  await waitForEvent(client.connection, 'state_change', {
    timeoutMs,
    predicate: (s) => s.current === state,
    what: () => `pusher-js state "${state}" (currently "${client.connection.state}")`,
  });
}

/** Subscribes and resolves with the channel once subscription succeeded. */
export async function subscribe(client, channelName, { timeoutMs = 5000 } = {}) {
  const channel = client.subscribe(channelName);
  if (channel.subscribed) return channel;
  let onError;
  const failed = new Promise((_, reject) => {
    onError = (status) =>
      reject(new Error(`subscription to ${channelName} failed: ${JSON.stringify(status)}`));
    channel.bind('pusher:subscription_error', onError);
  });
  try {
    await Promise.race([
      waitForEvent(channel, 'pusher:subscription_succeeded', {
        timeoutMs,
        what: `pusher:subscription_succeeded on ${channelName}`,
      }),
      failed,
    ]);
  } finally {
    channel.unbind('pusher:subscription_error', onError);
  }
  return channel;
}

/**
 * Gives `seen` (an array filled by an event callback) a non-enumerable
 * `waitForCount(n)`, so assert.deepEqual(seen, [...]) compares only the
 * events. `describe(n)` names what is awaited in the timeout message.
 */
function withWaitForCount(seen, describe) {
  Object.defineProperty(seen, 'waitForCount', {
    enumerable: false,
    value: (n, { timeoutMs = 5000 } = {}) =>
      waitFor(() => seen.length >= n, {
        timeoutMs,
        what: () => `${describe(n)} (got ${JSON.stringify(seen)})`,
      }),
  });
  return seen;
}

/**
 * Records every `event` received on `channel` into an array; returns the
 * array with a `waitForCount(n)` helper attached.
 */
export function record(channel, event) {
  const seen = [];
  channel.bind(event, (data) => seen.push(data));
  return withWaitForCount(seen, (n) => `${n} "${event}" event(s) on ${channel.name}`);
}

/** Records `(data, metadata)` pairs of `event` on a pusher-js channel (as `record`). */
export function recordWithMeta(channel, event) {
  const seen = [];
  channel.bind(event, (data, metadata) => seen.push({ data, metadata }));
  return withWaitForCount(seen, (n) => `${n} "${event}" event(s) on ${channel.name}`);
}

/** Records events bound on `client.user` (server-to-user events; as `record`). */
export function recordUser(client, event) {
  const seen = [];
  client.user.bind(event, (data) => seen.push(data));
  return withWaitForCount(seen, (n) => `${n} user event(s) "${event}"`);
}

/** Calls `client.signin()` and resolves once pusher:signin_success arrived. */
export async function signin(client) {
  const success = waitForEvent(client.connection, 'message', {
    predicate: (m) => m.event === 'pusher:signin_success',
    what: 'pusher:signin_success',
  });
  client.signin();
  const msg = await success;
  await waitFor(() => client.user.user_data, { what: 'pusher-js user_data after signin' });
  return msg;
}

/**
 * The official server SDK configured for `server`. Its HTTP agent does not
 * keep connections alive (an idle keep-alive socket would keep the test
 * process running after the last test); pass `agent` to override.
 */
export function sdk(server, overrides = {}) {
  return new PusherServer({
    appId: APP_ID,
    key: APP_KEY,
    secret: APP_SECRET,
    host: server.host,
    port: String(server.port),
    useTLS: false,
    timeout: 5000,
    agent: new http.Agent({ keepAlive: false }),
    ...overrides,
  });
}

/** Extracts a Pusher error code from any of pusher-js's error shapes. */
export function errorCode(err) {
  return err?.data?.code ?? err?.error?.data?.code ?? err?.error?.code ?? err?.code;
}

let nameCounter = 0;
/**
 * A name (channel, room) not used by any other test of this test file:
 * `prefix`, the process id, then a counter (`private-chat-1234-7`).
 */
export function freshName(prefix) {
  return `${prefix}${process.pid}-${++nameCounter}`;
}

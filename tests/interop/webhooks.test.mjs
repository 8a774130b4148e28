// Webhooks (issue 12) checked by code we did not write: revurb posts to a
// receiver in this test, and the official Node SDK (`pusher.webhook(request)`,
// `isValid()`, `getEvents()`, `getTime()`) and the official Python SDK
// (`Pusher.validate_webhook`) must accept every request and read the same
// events from it. Clients are pusher-js, authorized by lib/authserver.mjs.
//
// The app gets every event type through REVERB_APP_WEBHOOKS (one webhook,
// no batching) and a 1 s webhook delay, so vacated and removed arrive 1 s
// after the fact.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, afterEach } from 'node:test';
import PusherServer from 'pusher';
import { ClientPool, freshName as fresh, sdk, subscribe } from './lib/clients.mjs';
import { startAuthServer } from './lib/authserver.mjs';
import { pythonSkipReason, startPythonSdk } from './lib/python.mjs';
import { APP_KEY, APP_SECRET, useServer, waitFor, withTimeout } from './lib/server.mjs';

const USERS = {
  alice: { id: 1, info: { name: 'Alice' } },
  bob: { id: 2, info: { name: 'Bob' } },
};

// ---- the receiver -----------------------------------------------------------

/** Every request received: {url, headers, rawBody}. */
const received = [];
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    received.push({ url: req.url, method: req.method, headers: req.headers, rawBody: Buffer.concat(chunks).toString('utf8') });
    res.writeHead(200, { 'content-length': '0' });
    res.end();
  });
});
await withTimeout(
  new Promise((resolve, reject) => {
    receiver.once('error', reject);
    receiver.listen(0, '127.0.0.1', resolve);
  }),
  5000,
  'the webhook receiver to listen',
);
const hookUrl = `http://127.0.0.1:${receiver.address().port}/pusher/webhooks`;

const ALL_TYPES = [
  'channel_occupied',
  'channel_vacated',
  'member_added',
  'member_removed',
  'client_event',
  'cache_miss',
];

const { server, test } = useServer({
  env: {
    REVERB_APP_WEBHOOKS: JSON.stringify([{ url: hookUrl, event_types: ALL_TYPES, headers: { 'X-Test': 'interop' } }]),
    REVERB_APP_WEBHOOK_DELAY: '1',
  },
});

// ---- SDKs ---------------------------------------------------------------------

/** The Node SDK as the app would configure it to check webhooks. */
const nodeSdk = new PusherServer({ appId: 'app-id', key: APP_KEY, secret: APP_SECRET });
const wrongSecret = new PusherServer({ appId: 'app-id', key: APP_KEY, secret: 'not-the-secret' });

let auth;
let py;
let starting;
const pySkip = pythonSkipReason();
function ensureStarted() {
  starting ??= (async () => {
    auth = await startAuthServer({ signer: sdk(server()), users: USERS });
    if (!pySkip) py = await startPythonSdk(server(), { appId: '1', key: APP_KEY, secret: APP_SECRET });
  })();
  return starting;
}
after(async () => {
  await auth?.close();
  await py?.close();
  await withTimeout(
    new Promise((resolve) => {
      receiver.close(() => resolve());
      receiver.closeAllConnections?.();
    }),
    5000,
    'the webhook receiver to close',
  );
});

const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

async function clientAs(user) {
  await ensureStarted();
  return pool.connected(server(), {
    channelAuthorization: auth.channelAuth(user),
    userAuthentication: auth.userAuth(user),
  });
}

/**
 * Every event of every request so far that is about `channel`, each request
 * checked by the Node SDK first: valid signature and key, a time, and no
 * request that a wrong secret would accept.
 */
function eventsFor(channel) {
  const out = [];
  for (const r of received) {
    const hook = nodeSdk.webhook({ headers: r.headers, rawBody: r.rawBody });
    assert.ok(hook.isValid(), `the Node SDK refused a webhook: ${JSON.stringify(r)}`);
    assert.ok(!wrongSecret.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid());
    assert.ok(hook.getTime() instanceof Date && Math.abs(hook.getTime() - Date.now()) < 60_000);
    for (const e of hook.getEvents()) if (e.channel === channel) out.push(e);
  }
  return out;
}

async function waitForEvents(channel, n, what) {
  return waitFor(() => eventsFor(channel).length >= n && eventsFor(channel), { timeoutMs: 8000, what });
}

// ---- tests ----------------------------------------------------------------------

test('every request is a POST with the content type, the app key and the extra headers', async () => {
  const name = fresh('hook-head-');
  const client = await clientAs('alice');
  await subscribe(client, name);
  await waitForEvents(name, 1, 'channel_occupied');
  const r = received.find((x) => x.rawBody.includes(name));
  assert.equal(r.method, 'POST');
  assert.equal(r.url, '/pusher/webhooks');
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers['x-pusher-key'], APP_KEY);
  assert.match(r.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
  assert.equal(r.headers['x-test'], 'interop');
  const body = JSON.parse(r.rawBody);
  assert.equal(typeof body.time_ms, 'number');
});

test('channel_occupied at the first subscriber, channel_vacated after the delay', async () => {
  const name = fresh('hook-occupied-');
  const a = await clientAs('alice');
  const b = await clientAs('bob');
  await subscribe(a, name);
  await subscribe(b, name);
  await waitForEvents(name, 1, 'channel_occupied');
  a.unsubscribe(name);
  b.unsubscribe(name);
  const events = await waitForEvents(name, 2, 'channel_vacated');
  assert.deepEqual(events, [
    { name: 'channel_occupied', channel: name },
    { name: 'channel_vacated', channel: name },
  ]);
});

test('a page reload within the delay sends nothing', async () => {
  const name = fresh('hook-reload-');
  const a = await clientAs('alice');
  await subscribe(a, name);
  await waitForEvents(name, 1, 'channel_occupied');
  a.disconnect();
  const again = await clientAs('alice');
  await subscribe(again, name);
  // longer than the delay: a vacate would have been sent by now
  await new Promise((r) => setTimeout(r, 1600));
  assert.deepEqual(eventsFor(name), [{ name: 'channel_occupied', channel: name }]);
});

test('member_added and member_removed carry the user id', async () => {
  const name = fresh('presence-hook-');
  const alice = await clientAs('alice');
  const bob = await clientAs('bob');
  await subscribe(alice, name);
  await subscribe(bob, name);
  await waitForEvents(name, 3, 'occupied and two member_added');
  bob.unsubscribe(name);
  const events = await waitForEvents(name, 4, 'member_removed');
  assert.deepEqual(events.slice(0, 4).map((e) => [e.name, e.user_id]).sort(), [
    ['channel_occupied', undefined],
    ['member_added', '1'],
    ['member_added', '2'],
    ['member_removed', '2'],
  ].sort());
});

test('client_event carries the event, its data and the sender', async () => {
  const name = fresh('private-hook-');
  const alice = await clientAs('alice');
  const bob = await clientAs('bob');
  const channel = await subscribe(alice, name);
  await subscribe(bob, name);
  assert.ok(channel.trigger('client-typing', { who: 'alice' }));
  const events = await waitFor(() => {
    const e = eventsFor(name).filter((x) => x.name === 'client_event');
    return e.length > 0 && e;
  }, { timeoutMs: 5000, what: 'the client_event webhook' });
  assert.deepEqual(events, [
    {
      name: 'client_event',
      channel: name,
      event: 'client-typing',
      data: JSON.stringify({ who: 'alice' }),
      socket_id: alice.connection.socket_id,
    },
  ]);
});

test('cache_miss when a cache channel has nothing cached', async () => {
  const name = fresh('cache-hook-');
  const alice = await clientAs('alice');
  await subscribe(alice, name);
  const events = await waitFor(() => {
    const e = eventsFor(name).filter((x) => x.name === 'cache_miss');
    return e.length > 0 && e;
  }, { timeoutMs: 5000, what: 'the cache_miss webhook' });
  assert.deepEqual(events, [{ name: 'cache_miss', channel: name }]);
});

test('the Python SDK validates every webhook and reads the same events', { skip: pySkip || false }, async () => {
  await ensureStarted();
  const name = fresh('hook-python-');
  const a = await clientAs('alice');
  await subscribe(a, name);
  await waitForEvents(name, 1, 'channel_occupied');
  assert.ok(received.length > 0);
  for (const r of received) {
    const body = await py.call('validate_webhook', [r.headers['x-pusher-key'], r.headers['x-pusher-signature'], r.rawBody]);
    assert.deepEqual(body, JSON.parse(r.rawBody), 'the Python SDK refused or misread a webhook');
    const forged = await py.call('validate_webhook', [APP_KEY, '0'.repeat(64), r.rawBody]);
    assert.equal(forged, null);
  }
});

// Two apps from one `revurb start --config FILE`: channels, events, the HTTP
// API and signatures are separate per app.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach } from 'node:test';
import { ClientPool, freshName as fresh, record, sdk, subscribe } from './lib/clients.mjs';
import { pollJsonUntil, sdkGetJson } from './lib/poll.mjs';
import { RawWebSocket, pusherData } from './lib/rawws.mjs';
import { useServer } from './lib/server.mjs';

const APP_A = { app_id: 'app-a', key: 'key-a', secret: 'secret-a' };
const APP_B = { app_id: 'app-b', key: 'key-b', secret: 'secret-b', accept_client_events_from: 'all' };
const APP_C = { app_id: 'app-c', key: 'key-c', secret: 'secret-c', accept_client_events_from: 'none' };

// The config file must exist before useServer's before() hook runs.
const dir = mkdtempSync(path.join(tmpdir(), 'revurb-apps-'));
const configFile = path.join(dir, 'revurb.json');
writeFileSync(configFile, JSON.stringify({ apps: { apps: [APP_A, APP_B, APP_C] } }, null, 2));
after(() => rmSync(dir, { recursive: true, force: true }));

// REVERB_METRICS_PORT=0: see channels.test.mjs. The REVERB_APP_* variables
// useServer sets are overridden by the file's apps (apps come whole from
// the highest source).
const { server, test } = useServer({ args: ['--config', configFile], env: { REVERB_METRICS_PORT: '0' } });
const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

/** The server SDK for one app (or a deliberately mixed-up identity). */
const apiFor = (app, overrides = {}) =>
  sdk(server(), { appId: app.app_id, key: app.key, secret: app.secret, ...overrides });

test('the same channel name on two apps: events stay inside their app', async () => {
  const name = 'news';
  const clientA = await pool.connected(server(), { key: APP_A.key });
  const clientB = await pool.connected(server(), { key: APP_B.key });
  const seenA = record(await subscribe(clientA, name), 'headline');
  const seenB = record(await subscribe(clientB, name), 'headline');

  // B's event reaches B only ...
  await apiFor(APP_B).trigger(name, 'headline', { from: 'B', seq: 1 });
  await seenB.waitForCount(1);
  // ... proven by A's later event being the first A gets.
  await apiFor(APP_A).trigger(name, 'headline', { from: 'A', seq: 2 });
  await seenA.waitForCount(1);
  // And vice versa: A's event did not reach B; B's next event is B's second.
  await apiFor(APP_B).trigger(name, 'headline', { from: 'B', seq: 3 });
  await seenB.waitForCount(2);

  assert.deepEqual(seenA, [{ from: 'A', seq: 2 }]);
  assert.deepEqual(seenB, [
    { from: 'B', seq: 1 },
    { from: 'B', seq: 3 },
  ]);
});

test('each app\'s HTTP API sees only its own channels and connections', async () => {
  const onlyA = fresh('only-a-');
  const onlyB = fresh('only-b-');
  const clientA = await pool.connected(server(), { key: APP_A.key });
  const clientB1 = await pool.connected(server(), { key: APP_B.key });
  const clientB2 = await pool.connected(server(), { key: APP_B.key });
  await subscribe(clientA, onlyA);
  await subscribe(clientB1, onlyB);
  await subscribe(clientB2, onlyB);

  assert.deepEqual(await sdkGetJson(apiFor(APP_A), '/channels', { filter_by_prefix: 'only-' }), {
    channels: { [onlyA]: {} },
  });
  assert.deepEqual(await sdkGetJson(apiFor(APP_B), '/channels', { filter_by_prefix: 'only-' }), {
    channels: { [onlyB]: {} },
  });
  assert.deepEqual(await sdkGetJson(apiFor(APP_A), `/channels/${onlyB}`), { occupied: false });
  assert.deepEqual(await sdkGetJson(apiFor(APP_B), `/channels/${onlyB}`, { info: 'subscription_count' }), {
    occupied: true,
    subscription_count: 2,
  });
  // Earlier tests' clients may still be closing: poll for exact counts.
  await pollJsonUntil(() => sdkGetJson(apiFor(APP_A), '/connections'), { connections: 1 }, { what: 'app A /connections' });
  await pollJsonUntil(() => sdkGetJson(apiFor(APP_B), '/connections'), { connections: 2 }, { what: 'app B /connections' });
});

test('app B\'s key with app A\'s secret gets 401', async () => {
  const mixed = apiFor(APP_B, { secret: APP_A.secret });
  await assert.rejects(mixed.trigger('news', 'nope', { x: 1 }), (err) => {
    assert.equal(err.status, 401, `expected 401, got ${err.status} (${err.message}, body ${err.body})`);
    assert.match(String(err.body), /Authentication signature invalid/);
    return true;
  });
  await assert.rejects(mixed.get({ path: '/channels' }), (err) => {
    assert.equal(err.status, 401, `expected 401, got ${err.status} (body ${err.body})`);
    return true;
  });
});

test('app A\'s id signed with app B\'s key and secret gets 401', async () => {
  // Correct signature for B's secret, but sent to app A: A's secret does not match.
  const wrongApp = apiFor(APP_A, { key: APP_B.key, secret: APP_B.secret });
  await assert.rejects(wrongApp.trigger('news', 'nope', { x: 1 }), (err) => {
    assert.equal(err.status, 401, `expected 401, got ${err.status} (${err.message}, body ${err.body})`);
    return true;
  });
});

test('a channel signature made with app A\'s secret is refused on an app B connection', async () => {
  const name = fresh('private-cross-');
  const ws = await RawWebSocket.connect(`ws://${server().host}:${server().port}/app/${APP_B.key}`);
  try {
    const est = await ws.waitForEvent('pusher:connection_established');
    const socketId = pusherData(est).socket_id;
    // A's SDK signs (key-a:hmac with secret-a): wrong key prefix and wrong secret for B.
    const signedByA = apiFor(APP_A).authorizeChannel(socketId, name);
    ws.send({ event: 'pusher:subscribe', data: { channel: name, ...signedByA } });
    const err = await ws.waitForEvent('pusher:error');
    assert.deepEqual(pusherData(err), { code: 4009, message: 'Connection is unauthorized' });

    // B's own signature works on the same connection.
    const signedByB = apiFor(APP_B).authorizeChannel(socketId, name);
    ws.send({ event: 'pusher:subscribe', data: { channel: name, ...signedByB } });
    const ok = await ws.waitForMessage((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name);
    assert.equal(ok.channel, name);
  } finally {
    ws.terminate();
  }
});

test('per-app settings: client events allowed from all on B, members-only default on A', async () => {
  // On B (accept_client_events_from: all) a client event on a private
  // channel reaches a subscriber even from a non-subscribed sender.
  const name = fresh('private-whisper-');
  const recvB = await RawWebSocket.connect(`ws://${server().host}:${server().port}/app/${APP_B.key}`);
  const sendB = await RawWebSocket.connect(`ws://${server().host}:${server().port}/app/${APP_B.key}`);
  const recvA = await RawWebSocket.connect(`ws://${server().host}:${server().port}/app/${APP_A.key}`);
  const sendA = await RawWebSocket.connect(`ws://${server().host}:${server().port}/app/${APP_A.key}`);
  try {
    for (const [ws, app] of [
      [recvB, APP_B],
      [recvA, APP_A],
    ]) {
      const est = await ws.waitForEvent('pusher:connection_established');
      const signed = apiFor(app).authorizeChannel(pusherData(est).socket_id, name);
      ws.send({ event: 'pusher:subscribe', data: { channel: name, ...signed } });
      await ws.waitForMessage((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name);
    }
    await sendB.waitForEvent('pusher:connection_established');
    await sendA.waitForEvent('pusher:connection_established');

    sendB.send({ event: 'client-hello', channel: name, data: { app: 'B' } });
    const got = await recvB.waitForMessage((m) => m.event === 'client-hello');
    assert.deepEqual(got.data, { app: 'B' });
    assert.equal(got.channel, name);

    // A (default members): the unsubscribed sender is refused with 4009.
    sendA.send({ event: 'client-hello', channel: name, data: { app: 'A' } });
    const err = await sendA.waitForEvent('pusher:error');
    assert.deepEqual(pusherData(err), { code: 4009, message: 'The client is not a member of the specified channel.' });
    // And B's whisper never leaked to A's same-named channel: a later API
    // event on A arrives, and A's receiver has had no client event at all.
    await apiFor(APP_A).trigger(name, 'marker', { later: true });
    await recvA.waitForEvent('marker');
    assert.deepEqual(
      recvA.messages.filter((m) => m.event === 'client-hello'),
      [],
    );
  } finally {
    for (const ws of [recvB, sendB, recvA, sendA]) ws.terminate();
  }
});

test('per-app settings: accept_client_events_from none on C refuses client events with 4301', async () => {
  const name = fresh('private-none-');
  const ws = await RawWebSocket.connect(`ws://${server().host}:${server().port}/app/${APP_C.key}`);
  try {
    const est = await ws.waitForEvent('pusher:connection_established');
    const signed = apiFor(APP_C).authorizeChannel(pusherData(est).socket_id, name);
    ws.send({ event: 'pusher:subscribe', data: { channel: name, ...signed } });
    await ws.waitForMessage((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name);
    ws.send({ event: 'client-hello', channel: name, data: { app: 'C' } });
    const err = await ws.waitForEvent('pusher:error');
    assert.deepEqual(pusherData(err), { code: 4301, message: 'The app does not have client messaging enabled.' });
  } finally {
    ws.terminate();
  }
});

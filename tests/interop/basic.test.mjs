// Basic interop: pusher-js (client) and the official `pusher` Node SDK
// (server side HTTP API) against one revurb server for this file.

import assert from 'node:assert/strict';
import { afterEach } from 'node:test';
import { ClientPool, errorCode, freshName, record, sdk, subscribe } from './lib/clients.mjs';
import { RawWebSocket } from './lib/rawws.mjs';
import { useServer, waitFor, waitForEvent } from './lib/server.mjs';

const { server, test } = useServer();
const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

/** A channel name not used by any other test in this file (`public-<pid>-<n>`). */
const freshChannel = (prefix = 'public') => freshName(`${prefix}-`);

test('pusher-js connects and gets a socket id', async () => {
  const client = pool.pusher(server());
  const change = await waitForEvent(client.connection, 'state_change', {
    predicate: (s) => s.current === 'connected',
    what: 'pusher-js to reach "connected"',
  });
  assert.equal(change.current, 'connected');
  assert.equal(client.connection.state, 'connected');
  assert.match(client.connection.socket_id, /^\d+\.\d+$/);
});

test('two connections get distinct socket ids', async () => {
  const a = await pool.connected(server());
  const b = await pool.connected(server());
  assert.match(a.connection.socket_id, /^\d+\.\d+$/);
  assert.match(b.connection.socket_id, /^\d+\.\d+$/);
  assert.notEqual(a.connection.socket_id, b.connection.socket_id);
});

test('subscribing to a public channel succeeds', async () => {
  const client = await pool.connected(server());
  const name = freshChannel();
  const channel = client.subscribe(name);
  await waitForEvent(channel, 'pusher:subscription_succeeded', {
    what: `pusher:subscription_succeeded on ${name}`,
  });
  assert.equal(channel.subscribed, true);
});

test('SDK trigger reaches a subscriber with the data intact', async () => {
  const client = await pool.connected(server());
  const name = freshChannel();
  const channel = await subscribe(client, name);
  const seen = record(channel, 'order-shipped');
  const payload = { id: 42, items: ['a', 'b'], nested: { ok: true, n: null }, text: 'héllo "wörld"' };
  const res = await sdk(server()).trigger(name, 'order-shipped', payload);
  assert.equal(res.status, 200);
  assert.equal(typeof (await res.json()), 'object');
  await seen.waitForCount(1);
  assert.deepEqual(seen[0], payload);
});

test('SDK trigger reaches two subscribers on two connections', async () => {
  const name = freshChannel();
  const a = await pool.connected(server());
  const b = await pool.connected(server());
  const seenA = record(await subscribe(a, name), 'ping-all');
  const seenB = record(await subscribe(b, name), 'ping-all');
  await sdk(server()).trigger(name, 'ping-all', { n: 1 });
  await seenA.waitForCount(1);
  await seenB.waitForCount(1);
  assert.deepEqual(seenA, [{ n: 1 }]);
  assert.deepEqual(seenB, [{ n: 1 }]);
});

test('trigger with socket_id excludes that connection only', async () => {
  const name = freshChannel();
  const excluded = await pool.connected(server());
  const other = await pool.connected(server());
  const seenExcluded = record(await subscribe(excluded, name), 'update');
  const seenOther = record(await subscribe(other, name), 'update');
  const api = sdk(server());

  await api.trigger(name, 'update', { seq: 1 }, { socket_id: excluded.connection.socket_id });
  await seenOther.waitForCount(1);
  assert.deepEqual(seenOther[0], { seq: 1 });

  // Prove the negative: a later, non-excluded event reaches the excluded
  // client; messages on one connection are ordered, so had seq 1 been sent
  // to it, it would have arrived before seq 2.
  await api.trigger(name, 'update', { seq: 2 });
  await seenExcluded.waitForCount(1);
  await seenOther.waitForCount(2);
  assert.deepEqual(seenExcluded, [{ seq: 2 }]);
  assert.deepEqual(seenOther, [{ seq: 1 }, { seq: 2 }]);
});

test('triggerBatch delivers two events on two channels', async () => {
  const c1 = freshChannel();
  const c2 = freshChannel();
  const client = await pool.connected(server());
  const seen1 = record(await subscribe(client, c1), 'batch-one');
  const seen2 = record(await subscribe(client, c2), 'batch-two');
  const res = await sdk(server()).triggerBatch([
    { channel: c1, name: 'batch-one', data: { which: 1 } },
    { channel: c2, name: 'batch-two', data: { which: 2 } },
  ]);
  assert.equal(res.status, 200);
  assert.equal(typeof (await res.json()), 'object');
  await seen1.waitForCount(1);
  await seen2.waitForCount(1);
  assert.deepEqual(seen1, [{ which: 1 }]);
  assert.deepEqual(seen2, [{ which: 2 }]);
});

test('trigger to several channels at once', async () => {
  const c1 = freshChannel();
  const c2 = freshChannel();
  const a = await pool.connected(server());
  const b = await pool.connected(server());
  const seenA = record(await subscribe(a, c1), 'multi');
  const seenB = record(await subscribe(b, c2), 'multi');
  const res = await sdk(server()).trigger([c1, c2], 'multi', { to: 'both' });
  assert.equal(res.status, 200);
  await seenA.waitForCount(1);
  await seenB.waitForCount(1);
  assert.deepEqual(seenA, [{ to: 'both' }]);
  assert.deepEqual(seenB, [{ to: 'both' }]);
});

test('a bad secret is rejected with 401', async () => {
  const bad = sdk(server(), { secret: 'not-the-secret' });
  await assert.rejects(bad.trigger(freshChannel(), 'nope', { x: 1 }), (err) => {
    assert.equal(err.status, 401, `expected status 401, got ${err.status} (${err.message}, body ${err.body})`);
    assert.match(String(err.body), /Authentication signature invalid/);
    return true;
  });
});

test('GET /up reports health OK', async () => {
  const res = await fetch(`${server().httpUrl}/up`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { health: 'OK' });
});

test('an unknown app key gets error 4001 and is not connected', async () => {
  const client = pool.pusher(server(), { key: 'nope' });
  const errors = [];
  client.connection.bind('error', (e) => errors.push(e));
  await waitFor(() => errors.some((e) => errorCode(e) === 4001), {
    what: () => `an error event with code 4001 (got ${JSON.stringify(errors)})`,
  });
  const err = errors.find((e) => errorCode(e) === 4001);
  const message = err?.error?.data?.message ?? err?.data?.message;
  assert.match(String(message), /Application does not exist/);
  // 4000-4099: pusher-js must not reconnect; it ends up not connected.
  await waitFor(() => ['unavailable', 'failed', 'disconnected'].includes(client.connection.state), {
    what: () => `pusher-js to give up (state is "${client.connection.state}")`,
  });
  assert.notEqual(client.connection.state, 'connected');
  assert.equal(client.connection.socket_id, undefined);
});

test('an unknown app key: raw pusher:error 4001 then close frame 4001', async () => {
  const ws = await RawWebSocket.connect(`ws://${server().host}:${server().port}/app/nope`);
  try {
    const msg = await ws.waitForEvent('pusher:error');
    const data = typeof msg.data === 'string' ? JSON.parse(msg.data) : msg.data;
    assert.equal(data.code, 4001);
    assert.equal(data.message, 'Application does not exist');
    const close = await ws.waitForClose();
    assert.ok(close, 'expected a close frame before the TCP connection ended');
    assert.equal(close.code, 4001);
  } finally {
    ws.terminate();
  }
});

// Must stay last: it stops the server of this file.
test('SIGTERM closes connections with 4200 and exits 0', async () => {
  const srv = server();
  const client = await pool.connected(srv);
  const errors = [];
  client.connection.bind('error', (e) => errors.push(e));

  const raw = await RawWebSocket.connect(srv.wsUrl);
  try {
    const established = await raw.waitForEvent('pusher:connection_established');
    const data = typeof established.data === 'string' ? JSON.parse(established.data) : established.data;
    assert.match(data.socket_id, /^\d+\.\d+$/);

    const leftConnected = waitForEvent(client.connection, 'state_change', {
      predicate: (s) => s.previous === 'connected' && s.current !== 'connected',
      what: 'pusher-js to leave "connected"',
    });
    const code = await srv.stop();
    assert.equal(code, 0, `server exit code\n${srv.stderr}`);

    const close = await raw.waitForClose();
    assert.ok(close, 'raw client: expected a close frame before the TCP connection ended');
    assert.equal(close.code, 4200);

    await leftConnected;
    await waitFor(() => errors.some((e) => errorCode(e) === 4200), {
      what: () => `pusher-js error event with code 4200 (got ${JSON.stringify(errors)})`,
    });
  } finally {
    raw.terminate();
  }
});

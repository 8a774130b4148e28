// laravel-echo (broadcaster 'reverb', as Laravel's `php artisan
// install:broadcasting` configures it) over pusher-js, against revurb.
// Channel authorization goes through Echo's `authEndpoint` + `auth.headers`
// to an in-test endpoint signing with the `pusher` SDK (lib/authserver.mjs),
// which pusher-js calls with its `ajax` transport.

import assert from 'node:assert/strict';
import { after, afterEach, beforeEach } from 'node:test';
import { ClientPool, freshName as fresh, sdk } from './lib/clients.mjs';
import { startAuthServer } from './lib/authserver.mjs';
import { connectEcho, echoSubscribed } from './lib/echo.mjs';
import { useServer, waitFor } from './lib/server.mjs';

// REVERB_METRICS_PORT=0: see channels.test.mjs.
const { server, test } = useServer({ env: { REVERB_METRICS_PORT: '0' } });
const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

// Laravel's presence callbacks usually return ['id' => ..., 'name' => ...].
const USERS = {
  alice: { id: 1, info: { id: 1, name: 'Alice' } },
  bob: { id: 2, info: { id: 2, name: 'Bob' } },
};

let auth;
let authStarting;
beforeEach(() => {
  // Lazily: node 20 does not order a second root before() after useServer's.
  authStarting ??= startAuthServer({ signer: sdk(server()), users: USERS }).then((a) => {
    auth = a;
  });
  return authStarting;
});
after(async () => {
  await auth?.close();
});

/** An Echo instance (logged in as `user`, if given) whose pusher-js client is connected. */
const echoAs = (user) => connectEcho({ pool, server: server(), auth, user });

/** An array with a waitForCount helper, filled by a callback. */
function collector(what) {
  const seen = [];
  const push = (x) => seen.push(x);
  const waitForCount = (n) =>
    waitFor(() => seen.length >= n, { what: () => `${n} ${what} (got ${JSON.stringify(seen)})` });
  return { seen, push, waitForCount };
}

test('Echo.channel(...).listen(".OrderShipped") receives an SDK-triggered event', async () => {
  const name = fresh('orders-');
  const echo = await echoAs();
  const got = collector('OrderShipped events');
  const channel = echo.channel(name).listen('.OrderShipped', got.push);
  await echoSubscribed(channel, name);

  const res = await sdk(server()).trigger(name, 'OrderShipped', { order: { id: 5 } });
  assert.equal(res.status, 200);
  await got.waitForCount(1);
  assert.deepEqual(got.seen, [{ order: { id: 5 } }]);
});

test('Echo namespaced listen("OrderShipped") receives Laravel\'s App\\Events\\OrderShipped', async () => {
  const name = fresh('orders-ns-');
  const echo = await echoAs();
  const got = collector('App\\Events\\OrderShipped events');
  const channel = echo.channel(name).listen('OrderShipped', got.push);
  await echoSubscribed(channel, name);

  await sdk(server()).trigger(name, 'App\\Events\\OrderShipped', { order: { id: 6 }, socket: null });
  await got.waitForCount(1);
  assert.deepEqual(got.seen, [{ order: { id: 6 }, socket: null }]);
});

test('Echo.private(...).whisper reaches another client\'s listenForWhisper, not the sender', async () => {
  const room = fresh('chat-');
  const alice = await echoAs('alice');
  const bob = await echoAs('bob');
  const aliceGot = collector('whispers to alice');
  const bobGot = collector('whispers to bob');
  const aliceChannel = alice.private(room).listenForWhisper('typing', aliceGot.push);
  const bobChannel = bob.private(room).listenForWhisper('typing', bobGot.push);
  await echoSubscribed(aliceChannel, `private-${room}`);
  await echoSubscribed(bobChannel, `private-${room}`);

  aliceChannel.whisper('typing', { name: 'Alice', typing: true });
  await bobGot.waitForCount(1);
  assert.deepEqual(bobGot.seen, [{ name: 'Alice', typing: true }]);

  // Bob's reply is alice's first whisper: hers was not echoed to her.
  bobChannel.whisper('typing', { name: 'Bob', typing: false });
  await aliceGot.waitForCount(1);
  assert.deepEqual(aliceGot.seen, [{ name: 'Bob', typing: false }]);
  assert.equal(bobGot.seen.length, 1);
});

test('Echo.join(...) here/joining/leaving for two users', async () => {
  const room = fresh('room-');
  const alice = await echoAs('alice');
  const aliceHere = collector('here() calls for alice');
  const joining = collector('joining() calls');
  const leaving = collector('leaving() calls');
  const aliceChannel = alice
    .join(room)
    .here(aliceHere.push)
    .joining(joining.push)
    .leaving(leaving.push);
  await aliceHere.waitForCount(1);
  assert.deepEqual(aliceHere.seen, [[{ id: 1, name: 'Alice' }]]);

  const bob = await echoAs('bob');
  const bobHere = collector('here() calls for bob');
  bob.join(room).here(bobHere.push);
  await bobHere.waitForCount(1);
  const byId = (a, b) => a.id - b.id;
  assert.deepEqual([...bobHere.seen[0]].sort(byId), [
    { id: 1, name: 'Alice' },
    { id: 2, name: 'Bob' },
  ]);
  await joining.waitForCount(1);
  assert.deepEqual(joining.seen, [{ id: 2, name: 'Bob' }]);

  bob.leave(room);
  await leaving.waitForCount(1);
  assert.deepEqual(leaving.seen, [{ id: 2, name: 'Bob' }]);
  assert.equal(aliceChannel.subscription.members.count, 1);
});

test('Echo.join: a user who disconnects is reported by leaving()', async () => {
  const room = fresh('room-dc-');
  const alice = await echoAs('alice');
  const joining = collector('joining() calls');
  const leaving = collector('leaving() calls');
  const aliceHere = collector('here()');
  alice.join(room).here(aliceHere.push).joining(joining.push).leaving(leaving.push);
  await aliceHere.waitForCount(1);

  const bob = await echoAs('bob');
  const bobHere = collector('here() for bob');
  bob.join(room).here(bobHere.push);
  await joining.waitForCount(1);
  bob.disconnect();
  await leaving.waitForCount(1);
  assert.deepEqual(leaving.seen, [{ id: 2, name: 'Bob' }]);
});

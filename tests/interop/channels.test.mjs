// Channel types, client events and the HTTP API, driven by pusher-js and the
// official `pusher` server SDK. Private/presence/encrypted subscriptions are
// authorized by a small in-test "Laravel app" (lib/authserver.mjs) that signs
// with the SDK; pusher-js reaches it with its own `ajax` transport (its node
// build bundles an XMLHttpRequest over node:http, so no customHandler is
// needed).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, beforeEach } from 'node:test';
import { ClientPool, freshName as fresh, record, recordWithMeta, sdk, subscribe, waitForState } from './lib/clients.mjs';
import { collectErrors, errorMessage, startAuthServer } from './lib/authserver.mjs';
import { pollJsonUntil, sdkGetJson } from './lib/poll.mjs';
import { RawWebSocket, pusherData } from './lib/rawws.mjs';
import { useServer, waitFor, waitForEvent } from './lib/server.mjs';

// REVERB_METRICS_PORT=0: no metrics listener, so parallel servers do not
// race for the default port 9601 (and the first stdout line stays the plain
// "revurb: listening on HOST:PORT" that lib/server.mjs expects).
const { server, test } = useServer({ env: { REVERB_METRICS_PORT: '0' } });
const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

/** 32 random bytes: the encryption master key shared by the SDKs. */
const masterKey = randomBytes(32).toString('base64');

const USERS = {
  alice: { id: 1, info: { name: 'Alice' } },
  bob: { id: 2, info: { name: 'Bob' } },
  carol: { id: 3, info: { name: 'Carol' } },
};

// The auth endpoints start lazily on first use: node 20 does not order a
// second root-level before() hook after useServer's, so they cannot rely on
// the server being up at hook time.
let auth; // the good signer
let badAuth; // signs with a wrong secret
let authStarting;
function ensureAuth() {
  authStarting ??= (async () => {
    auth = await startAuthServer({ signer: sdk(server(), { encryptionMasterKeyBase64: masterKey }), users: USERS });
    badAuth = await startAuthServer({
      signer: sdk(server(), { secret: 'not-the-secret', encryptionMasterKeyBase64: masterKey }),
      users: USERS,
    });
  })();
  return authStarting;
}
beforeEach(() => ensureAuth());
after(async () => {
  await auth?.close();
  await badAuth?.close();
});

/** A connected pusher-js client authorizing as `user` with `signer`. */
function clientAs(user, signer = auth) {
  return pool.connected(server(), {
    channelAuthorization: signer.channelAuth(user),
    userAuthentication: signer.userAuth(user),
  });
}

/** The API SDK (knows the master key, so it encrypts for private-encrypted-). */
const api = () => sdk(server(), { encryptionMasterKeyBase64: masterKey });

/** A raw client subscribed to `channel` with a valid signature from the good signer. */
async function rawSubscriber(channel, presenceData) {
  const ws = await RawWebSocket.connect(server().wsUrl);
  const established = await ws.waitForEvent('pusher:connection_established');
  const socketId = pusherData(established).socket_id;
  const signed = sdk(server(), { encryptionMasterKeyBase64: masterKey }).authorizeChannel(socketId, channel, presenceData);
  ws.send({ event: 'pusher:subscribe', data: { channel, ...signed } });
  await ws.waitForMessage((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel, {
    what: `pusher_internal:subscription_succeeded on ${channel} (raw)`,
  });
  return ws;
}

// ---------------------------------------------------------------- private

test('private channel: ajax auth endpoint signs, subscription succeeds, SDK trigger arrives', async () => {
  const name = fresh('private-orders-');
  const client = await clientAs('alice');
  const before = auth.requests.length;
  const channel = await subscribe(client, name);
  assert.equal(channel.subscribed, true);

  // pusher-js posted socket_id and channel_name to our endpoint.
  const req = auth.requests.slice(before).find((r) => r.params.channel_name === name);
  assert.ok(req, `auth endpoint saw no request for ${name}: ${JSON.stringify(auth.requests)}`);
  assert.equal(req.path, '/broadcasting/auth');
  assert.equal(req.params.socket_id, client.connection.socket_id);
  assert.equal(req.user, 'alice');

  const seen = record(channel, 'OrderShipped');
  const res = await api().trigger(name, 'OrderShipped', { order: 7, total: 9.5 });
  assert.equal(res.status, 200);
  await seen.waitForCount(1);
  assert.deepEqual(seen, [{ order: 7, total: 9.5 }]);
});

test('private channel with a signature from the wrong secret: pusher-js gets error 4009, no subscription', async () => {
  const name = fresh('private-denied-');
  const client = await clientAs('alice', badAuth);
  const errors = collectErrors(client);
  const channel = client.subscribe(name);
  const subErrors = [];
  channel.bind('pusher:subscription_error', (e) => subErrors.push(e));
  const succeeded = [];
  channel.bind('pusher:subscription_succeeded', () => succeeded.push(true));

  // The endpoint answered 200 with a bad signature, so pusher-js sends the
  // subscribe; the server refuses with pusher:error 4009 (connection-level,
  // no channel field), which pusher-js reports as a connection `error`.
  const err = await errors.waitForCode(4009);
  assert.equal(errorMessage(err), 'Connection is unauthorized');

  // Prove the negative: a later subscription on the same connection
  // succeeds, so had the private one succeeded it would have been seen.
  const later = await subscribe(client, fresh('public-after-denied-'));
  assert.equal(later.subscribed, true);
  assert.equal(channel.subscribed, false);
  assert.deepEqual(succeeded, []);
  // Reverb/revurb never send pusher:subscription_error; pusher-js only
  // emits it for failures of the auth endpoint itself.
  assert.deepEqual(subErrors, []);
  assert.equal(client.connection.state, 'connected', 'the socket stays open after a refused subscription');
});

test('private channel with a refused auth request (403): pusher:subscription_error from pusher-js', async () => {
  const name = fresh('private-guest-');
  const client = await clientAs('nobody');
  const channel = client.subscribe(name);
  const status = await waitForEvent(channel, 'pusher:subscription_error', { what: 'pusher:subscription_error' });
  assert.equal(status.type, 'AuthError');
  assert.equal(status.status, 403);
  assert.equal(channel.subscribed, false);
  assert.equal(client.connection.state, 'connected');
});

// --------------------------------------------------------------- presence

test('presence: members, me, member_added and member_removed (a user leaves with its last connection)', async () => {
  const name = fresh('presence-room-');
  const alice = await clientAs('alice');
  const aliceChannel = await subscribe(alice, name);
  assert.equal(aliceChannel.members.count, 1);
  assert.equal(String(aliceChannel.members.me.id), '1');
  assert.deepEqual(aliceChannel.members.me.info, { name: 'Alice' });

  const added = record(aliceChannel, 'pusher:member_added');
  const removed = record(aliceChannel, 'pusher:member_removed');

  // Bob joins: alice sees him, bob sees both.
  const bob1 = await clientAs('bob');
  const bobChannel = await subscribe(bob1, name);
  assert.equal(bobChannel.members.count, 2);
  assert.equal(String(bobChannel.members.me.id), '2');
  assert.deepEqual(bobChannel.members.me.info, { name: 'Bob' });
  const bobSees = {};
  bobChannel.members.each((m) => {
    bobSees[String(m.id)] = m.info;
  });
  assert.deepEqual(bobSees, { 1: { name: 'Alice' }, 2: { name: 'Bob' } });
  await added.waitForCount(1);
  assert.equal(String(added[0].id), '2');
  assert.deepEqual(added[0].info, { name: 'Bob' });
  assert.equal(aliceChannel.members.count, 2);

  // Bob's second connection is the same user: no member_added. Proven by
  // carol's later join being the next member_added alice gets.
  const bob2 = await clientAs('bob');
  const bob2Channel = await subscribe(bob2, name);
  assert.equal(bob2Channel.members.count, 2, 'two unique users with three connections');
  const carol = await clientAs('carol');
  await subscribe(carol, name);
  await added.waitForCount(2);
  assert.deepEqual(
    added.map((m) => String(m.id)),
    ['2', '3'],
  );
  assert.equal(aliceChannel.members.count, 3);

  // Bob's first connection leaves: bob is still there (bob2), so no
  // member_removed; carol's leave is the first one alice sees.
  // The server must have processed bob1's close before carol leaves: wait
  // for exactly our four connections, then for three.
  await pollJsonUntil(() => sdkGetJson(api(), '/connections'), { connections: 4 }, { what: 'GET /connections' });
  bob1.disconnect();
  await waitForState(bob1, 'disconnected');
  await pollJsonUntil(() => sdkGetJson(api(), '/connections'), { connections: 3 }, { what: 'GET /connections' });
  carol.disconnect();
  await removed.waitForCount(1);
  assert.deepEqual(
    removed.map((m) => String(m.id)),
    ['3'],
  );

  // Bob's last connection leaves: now he is removed.
  bob2.disconnect();
  await removed.waitForCount(2);
  assert.deepEqual(
    removed.map((m) => String(m.id)),
    ['3', '2'],
  );
  assert.deepEqual(removed[1].info, { name: 'Bob' });
  assert.equal(aliceChannel.members.count, 1);
});

// -------------------------------------------------------------- encrypted

test('private-encrypted: pusher-js decrypts, the server only relays {nonce, ciphertext}', async () => {
  const name = fresh('private-encrypted-vault-');
  const client = await clientAs('alice');
  const channel = await subscribe(client, name);
  const seen = record(channel, 'secret-event');
  const raw = await rawSubscriber(name);
  try {
    const plaintext = { msg: `top secret ${process.pid}`, n: 42 };
    const res = await api().trigger(name, 'secret-event', plaintext);
    assert.equal(res.status, 200);

    await seen.waitForCount(1);
    assert.deepEqual(seen, [plaintext]);

    const msg = await raw.waitForMessage((m) => m.event === 'secret-event' && m.channel === name, {
      what: 'secret-event on the raw subscriber',
    });
    assert.equal(typeof msg.data, 'string', 'server-created event data is a JSON string');
    const payload = JSON.parse(msg.data);
    assert.deepEqual(Object.keys(payload).sort(), ['ciphertext', 'nonce']);
    assert.equal(Buffer.from(payload.nonce, 'base64').length, 24);
    assert.ok(Buffer.from(payload.ciphertext, 'base64').length > 16);
    assert.ok(!raw.texts.some((t) => t.includes('top secret')), 'plaintext must never be on the wire');
    assert.ok(!server().stderr.includes('top secret'), 'plaintext must never reach the server');
  } finally {
    raw.terminate();
  }
});

// ------------------------------------------------------------------ cache

test('cache channel: an event triggered before anyone subscribed arrives right after subscription', async () => {
  const name = fresh('cache-prices-');
  const res = await api().trigger(name, 'PriceChanged', { price: 101 });
  assert.equal(res.status, 200);

  const client = await pool.connected(server());
  const channel = client.subscribe(name);
  const log = [];
  channel.bind('pusher:subscription_succeeded', () => log.push('subscription_succeeded'));
  channel.bind('PriceChanged', (d) => log.push(d));
  channel.bind('pusher:cache_miss', () => log.push('cache_miss'));
  await waitFor(() => log.length >= 2, { what: () => `subscription + cached event (got ${JSON.stringify(log)})` });
  assert.deepEqual(log, ['subscription_succeeded', { price: 101 }]);

  // The cache keeps the last event only.
  await api().trigger(name, 'PriceChanged', { price: 102 });
  await api().trigger(name, 'PriceChanged', { price: 103 });
  await waitFor(() => log.length >= 4, { what: () => `two live events (got ${JSON.stringify(log)})` });
  const late = await pool.connected(server());
  const lateChannel = late.subscribe(name);
  const lateLog = [];
  lateChannel.bind('pusher:subscription_succeeded', () => lateLog.push('subscription_succeeded'));
  lateChannel.bind('PriceChanged', (d) => lateLog.push(d));
  lateChannel.bind('pusher:cache_miss', () => lateLog.push('cache_miss'));
  await waitFor(() => lateLog.length >= 2, { what: () => `late subscription (got ${JSON.stringify(lateLog)})` });
  assert.deepEqual(lateLog, ['subscription_succeeded', { price: 103 }]);
});

test('cache channel with nothing cached: pusher:cache_miss after subscription_succeeded', async () => {
  const name = fresh('cache-empty-');
  const client = await pool.connected(server());
  const channel = client.subscribe(name);
  const log = [];
  channel.bind('pusher:subscription_succeeded', () => log.push('subscription_succeeded'));
  channel.bind('pusher:cache_miss', (d) => log.push('cache_miss'));
  await waitFor(() => log.length >= 2, { what: () => `subscription + cache_miss (got ${JSON.stringify(log)})` });
  assert.deepEqual(log, ['subscription_succeeded', 'cache_miss']);
});

test('private-cache channel: authorized subscription gets the cached event', async () => {
  const name = fresh('private-cache-stock-');
  await api().trigger(name, 'StockLevel', { sku: 'x', left: 3 });
  const client = await clientAs('bob');
  const channel = client.subscribe(name);
  const log = [];
  channel.bind('pusher:subscription_succeeded', () => log.push('subscription_succeeded'));
  channel.bind('StockLevel', (d) => log.push(d));
  channel.bind('pusher:cache_miss', () => log.push('cache_miss'));
  await waitFor(() => log.length >= 2, { what: () => `subscription + cached event (got ${JSON.stringify(log)})` });
  assert.deepEqual(log, ['subscription_succeeded', { sku: 'x', left: 3 }]);
});

// ---------------------------------------------------------- client events

test('client events on a private channel reach the other member, not the sender', async () => {
  const name = fresh('private-chat-');
  const alice = await clientAs('alice');
  const bob = await clientAs('bob');
  const aliceChannel = await subscribe(alice, name);
  const bobChannel = await subscribe(bob, name);
  const aliceSeen = recordWithMeta(aliceChannel, 'client-typing');
  const bobSeen = recordWithMeta(bobChannel, 'client-typing');
  const aliceErrors = collectErrors(alice);

  assert.equal(aliceChannel.trigger('client-typing', { who: 'alice', typing: true }), true);
  await bobSeen.waitForCount(1);
  assert.deepEqual(bobSeen[0].data, { who: 'alice', typing: true });

  // Bob answers; alice's first (and only) client event must be bob's, so
  // her own was not echoed back to her (the server handled hers first).
  assert.equal(bobChannel.trigger('client-typing', { who: 'bob', typing: false }), true);
  await aliceSeen.waitForCount(1);
  assert.deepEqual(
    aliceSeen.map((e) => e.data),
    [{ who: 'bob', typing: false }],
  );
  assert.deepEqual(
    bobSeen.map((e) => e.data),
    [{ who: 'alice', typing: true }],
  );
  assert.deepEqual(aliceErrors, []);
});

test('client events on a presence channel carry the sender user_id in metadata', async () => {
  const name = fresh('presence-chat-');
  const alice = await clientAs('alice');
  const bob = await clientAs('bob');
  const aliceChannel = await subscribe(alice, name);
  const bobChannel = await subscribe(bob, name);
  const aliceSeen = recordWithMeta(aliceChannel, 'client-typing');
  const bobSeen = recordWithMeta(bobChannel, 'client-typing');

  aliceChannel.trigger('client-typing', { typing: true });
  await bobSeen.waitForCount(1);
  assert.deepEqual(bobSeen[0].data, { typing: true });
  assert.equal(String(bobSeen[0].metadata.user_id), '1');

  bobChannel.trigger('client-typing', { typing: false });
  await aliceSeen.waitForCount(1);
  assert.deepEqual(aliceSeen[0].data, { typing: false });
  assert.equal(String(aliceSeen[0].metadata.user_id), '2');
  assert.equal(bobSeen.length, 1);
  assert.equal(aliceSeen.length, 1);
});

test('a client event on a public channel gets error 4301 and is not delivered', async () => {
  const name = fresh('public-chat-');
  const sender = await pool.connected(server());
  const receiver = await pool.connected(server());
  const senderChannel = await subscribe(sender, name);
  const receiverChannel = await subscribe(receiver, name);
  const received = record(receiverChannel, 'client-typing');
  const marker = record(receiverChannel, 'marker');
  const errors = collectErrors(sender);

  senderChannel.trigger('client-typing', { typing: true });
  const err = await errors.waitForCode(4301);
  assert.equal(errorMessage(err), 'Client events are only allowed on private and presence channels.');

  // The refused event was never broadcast: a later API event arrives alone.
  await api().trigger(name, 'marker', { after: true });
  await marker.waitForCount(1);
  assert.deepEqual(received, []);
  assert.equal(sender.connection.state, 'connected', 'the socket stays open after 4301');
});

test('a client event on a private-encrypted channel gets error 4301 (raw client; pusher-js refuses locally)', async () => {
  const name = fresh('private-encrypted-chat-');
  // pusher-js throws "Client events are not currently supported for
  // encrypted channels" before sending, so check that it does, then send
  // the frame with a raw, validly authorized client.
  const client = await clientAs('alice');
  const channel = await subscribe(client, name);
  assert.throws(() => channel.trigger('client-typing', { typing: true }), /not currently supported for encrypted channels/);

  const raw = await rawSubscriber(name);
  try {
    const from = raw.messages.length;
    raw.send({ event: 'client-typing', channel: name, data: { typing: true } });
    const msg = await raw.waitForEvent('pusher:error', { from });
    assert.equal(msg.channel, undefined, 'pusher:error has no channel key');
    assert.deepEqual(pusherData(msg), {
      code: 4301,
      message: 'Client events are only allowed on private and presence channels.',
    });
  } finally {
    raw.terminate();
  }
});

// --------------------------------------------------------------- HTTP API

test('GET /channels with filter_by_prefix=presence- and info=user_count', async () => {
  const room = fresh('presence-lobby-');
  const other = fresh('presence-side-');
  const pub = fresh('public-noise-');
  const alice = await clientAs('alice');
  const bob1 = await clientAs('bob');
  const bob2 = await clientAs('bob');
  await subscribe(alice, room);
  await subscribe(bob1, room);
  await subscribe(bob2, room);
  await subscribe(alice, other);
  await subscribe(alice, pub);

  // Other tests' presence channels may still be emptying: poll until the
  // answer is exactly ours.
  const body = await pollJsonUntil(
    () => sdkGetJson(api(), '/channels', { filter_by_prefix: 'presence-', info: 'user_count' }),
    { channels: { [room]: { user_count: 2 }, [other]: { user_count: 1 } } },
    { what: 'GET /channels?filter_by_prefix=presence-&info=user_count' },
  );
  assert.deepEqual(body.channels[room], { user_count: 2 });

  const all = await sdkGetJson(api(), '/channels', { filter_by_prefix: pub });
  assert.deepEqual(all, { channels: { [pub]: {} } });
  const counted = await sdkGetJson(api(), '/channels', { filter_by_prefix: pub, info: 'subscription_count' });
  assert.deepEqual(counted, { channels: { [pub]: { subscription_count: 1 } } });
});

test('GET /channels/{channel} with info=subscription_count, user_count and an empty channel', async () => {
  const priv = fresh('private-info-');
  const pres = fresh('presence-info-');
  const a = await clientAs('alice');
  const b = await clientAs('bob');
  await subscribe(a, priv);
  await subscribe(b, priv);
  await subscribe(a, pres);
  await subscribe(b, pres);

  assert.deepEqual(await sdkGetJson(api(), `/channels/${priv}`, { info: 'subscription_count' }), {
    occupied: true,
    subscription_count: 2,
  });
  assert.deepEqual(await sdkGetJson(api(), `/channels/${priv}`), { occupied: true });
  assert.deepEqual(await sdkGetJson(api(), `/channels/${pres}`, { info: 'user_count' }), {
    occupied: true,
    user_count: 2,
  });
  assert.deepEqual(await sdkGetJson(api(), `/channels/${fresh('public-nobody-')}`, { info: 'subscription_count' }), {
    occupied: false,
  });
});

test('GET /channels/{cache channel}?info=cache returns the cached event', async () => {
  const name = fresh('cache-info-');
  await api().trigger(name, 'Cached', { v: 1 });
  const body = await sdkGetJson(api(), `/channels/${name}`, { info: 'cache' });
  assert.equal(body.occupied, false);
  assert.equal(body.cache?.event, 'Cached', `body: ${JSON.stringify(body)}`);
  assert.deepEqual(JSON.parse(body.cache.data), { v: 1 });
  assert.equal(typeof body.cache.ttl, 'number');
  assert.ok(body.cache.ttl > 0 && body.cache.ttl <= 1800, `ttl ${body.cache.ttl}`);
});

test('GET /channels/{presence}/users lists unique users', async () => {
  const name = fresh('presence-users-');
  const alice = await clientAs('alice');
  const bob1 = await clientAs('bob');
  const bob2 = await clientAs('bob');
  await subscribe(alice, name);
  await subscribe(bob1, name);
  await subscribe(bob2, name);
  const body = await sdkGetJson(api(), `/channels/${name}/users`);
  assert.deepEqual(
    body.users.map((u) => String(u.id)).sort(),
    ['1', '2'],
  );
  assert.deepEqual(body, { users: [{ id: 1 }, { id: 2 }] });

  // After bob's connections leave, only alice remains.
  bob1.disconnect();
  bob2.disconnect();
  await pollJsonUntil(() => sdkGetJson(api(), `/channels/${name}/users`), { users: [{ id: 1 }] }, {
    what: `GET /channels/${name}/users`,
  });
});

test('GET /connections counts open connections', async () => {
  // Earlier tests' clients may still be closing: wait for a quiet baseline
  // of exactly our own connections.
  const a = await pool.connected(server());
  await subscribe(a, fresh('public-conn-'));
  await pollJsonUntil(() => sdkGetJson(api(), '/connections'), { connections: 1 }, { what: 'GET /connections' });
  const b = await clientAs('bob');
  await subscribe(b, fresh('private-conn-'));
  await pollJsonUntil(() => sdkGetJson(api(), '/connections'), { connections: 2 }, { what: 'GET /connections' });
  b.disconnect();
  await pollJsonUntil(() => sdkGetJson(api(), '/connections'), { connections: 1 }, { what: 'GET /connections' });
});

test('triggerBatch delivers to private and presence channels and returns per-item info', async () => {
  const priv = fresh('private-batch-');
  const pres = fresh('presence-batch-');
  const alice = await clientAs('alice');
  const bob = await clientAs('bob');
  const privSeen = record(await subscribe(alice, priv), 'BatchA');
  await subscribe(bob, priv);
  const presSeen = record(await subscribe(alice, pres), 'BatchB');

  const plain = await api().triggerBatch([
    { channel: priv, name: 'BatchA', data: { n: 1 } },
    { channel: pres, name: 'BatchB', data: { n: 2 } },
  ]);
  assert.equal(plain.status, 200);
  assert.deepEqual(await plain.json(), { batch: {} });
  await privSeen.waitForCount(1);
  await presSeen.waitForCount(1);
  assert.deepEqual(privSeen, [{ n: 1 }]);
  assert.deepEqual(presSeen, [{ n: 2 }]);

  const withInfo = await api().triggerBatch([
    { channel: priv, name: 'BatchA', data: { n: 3 }, info: 'subscription_count' },
    { channel: pres, name: 'BatchB', data: { n: 4 }, info: 'user_count' },
    { channel: priv, name: 'BatchA', data: { n: 5 } },
  ]);
  assert.deepEqual(await withInfo.json(), {
    batch: [{ subscription_count: 2 }, { user_count: 1 }, {}],
  });
  await privSeen.waitForCount(3);
  await presSeen.waitForCount(2);
  assert.deepEqual(privSeen, [{ n: 1 }, { n: 3 }, { n: 5 }]);
  assert.deepEqual(presSeen, [{ n: 2 }, { n: 4 }]);
});

test('trigger with info=subscription_count returns the channels info', async () => {
  const c1 = fresh('public-info-');
  const c2 = fresh('public-info-');
  const empty = fresh('public-info-empty-');
  const a = await pool.connected(server());
  const b = await pool.connected(server());
  const seen = record(await subscribe(a, c1), 'Counted');
  await subscribe(b, c1);
  await subscribe(b, c2);
  const res = await api().trigger([c1, c2, empty], 'Counted', { x: 1 }, { info: 'subscription_count' });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {
    channels: { [c1]: { subscription_count: 2 }, [c2]: { subscription_count: 1 }, [empty]: {} },
  });
  await seen.waitForCount(1);
  assert.deepEqual(seen, [{ x: 1 }]);

  const pres = fresh('presence-info-trigger-');
  await subscribe(await clientAs('carol'), pres);
  const res2 = await api().trigger(pres, 'Counted', { x: 2 }, { info: 'user_count,subscription_count' });
  assert.deepEqual(await res2.json(), { channels: { [pres]: { user_count: 1 } } });
});

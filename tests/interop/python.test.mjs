// The official Python server SDK (`pusher` 3.3.4 from PyPI, what Django and
// Flask apps use) against the revurb binary: every call it makes is checked
// end to end with real pusher-js subscribers. The SDK runs in
// tests/interop/.venv through lib/python.mjs; pusher-js authorizes channels
// and signs in against lib/authserver.mjs with the Python SDK as its signer.
//
// It signs differently from the Node SDK: `body_md5` (of the empty body) on
// every GET, `json.dumps` with spaces for channel_data and user_data, and
// terminate_user_connections posts to /users/{id}/terminate_connections
// without /apps/{app_id}.

import assert from 'node:assert/strict';
import { after, afterEach, beforeEach } from 'node:test';
import {
  ClientPool,
  freshName as fresh,
  record,
  recordUser,
  signin,
  subscribe,
} from './lib/clients.mjs';
import { collectErrors, startAuthServer } from './lib/authserver.mjs';
import { pythonSkipReason, startPythonSdk } from './lib/python.mjs';
import { unrefCloseTimers } from './lib/pusherjs.mjs';
import { APP_KEY, APP_SECRET, useServer, waitForEvent } from './lib/server.mjs';

const USERS = {
  ann: { id: 11, info: { name: 'Ann' } },
  ben: { id: 12, info: { name: 'Ben' } },
};

// Started lazily on first use (node 20 does not order a second root before()
// hook after useServer's): the SDK, the auth endpoint signing with it, and
// one signing with a wrong secret.
let py;
let badPy;
let auth;
let badAuth;
let starting;

// Registered before useServer's hook so that it runs first: the SDK's idle
// keep-alive connections are gone before the server stops (it would wait
// for them for its shutdown grace period).
after(async () => {
  await auth?.close();
  await badAuth?.close();
  await py?.close();
  await badPy?.close();
});

// The Python SDK accepts only numeric app ids.
const APP_ID = '424242';
const { server, test: serverTest } = useServer({ env: { REVERB_APP_ID: APP_ID } });
const skip = pythonSkipReason();
const test = (name, fn) => serverTest(name, skip ? { skip } : {}, fn);
const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

function ensureStarted() {
  starting ??= (async () => {
    py = await startPythonSdk(server(), { appId: APP_ID, key: APP_KEY, secret: APP_SECRET });
    badPy = await startPythonSdk(server(), { appId: APP_ID, key: APP_KEY, secret: 'not-the-secret' });
    auth = await startAuthServer({ signer: py.signer(), users: USERS });
    badAuth = await startAuthServer({ signer: badPy.signer(), users: USERS });
  })();
  return starting;
}
beforeEach(() => (skip ? undefined : ensureStarted()));

/** A connected pusher-js client that authorizes as `user` through `signer`. */
async function clientAs(user, signer = auth) {
  const client = await pool.connected(server(), {
    channelAuthorization: signer.channelAuth(user),
    userAuthentication: signer.userAuth(user),
  });
  // a 4009 close would otherwise keep the test process alive for 30 s
  return unrefCloseTimers(client);
}

test('the pinned SDK is the one under test', async () => {
  assert.equal(py.version, '3.3.4');
});

test('trigger reaches every subscriber of every channel but the excluded socket_id', async () => {
  const [one, two] = [fresh('py-trigger-'), fresh('py-trigger-')];
  const sender = await clientAs('ann');
  const other = await clientAs('ben');
  const senderSeen = record(await subscribe(sender, one), 'Greeting');
  const otherSeen = record(await subscribe(other, one), 'Greeting');
  const twoSeen = record(await subscribe(other, two), 'Greeting');

  assert.deepEqual(await py.call('trigger', [[one, two], 'Greeting', { text: 'hi' }]), {});
  await senderSeen.waitForCount(1);
  await otherSeen.waitForCount(1);
  await twoSeen.waitForCount(1);
  assert.deepEqual([senderSeen, otherSeen, twoSeen], [[{ text: 'hi' }], [{ text: 'hi' }], [{ text: 'hi' }]]);

  // socket_id leaves the sender out; the next event shows it got nothing
  await py.call('trigger', [one, 'Greeting', { text: 'not to you' }, sender.connection.socket_id]);
  await otherSeen.waitForCount(2);
  await py.call('trigger', [one, 'Greeting', { text: 'again' }]);
  await senderSeen.waitForCount(2);
  assert.deepEqual(senderSeen, [{ text: 'hi' }, { text: 'again' }]);
});

test('trigger_batch delivers each event on its own channel', async () => {
  const [one, two] = [fresh('py-batch-'), fresh('py-batch-')];
  const client = await clientAs('ann');
  const oneSeen = record(await subscribe(client, one), 'Batched');
  const twoSeen = record(await subscribe(client, two), 'Batched');
  const batch = [
    { channel: one, name: 'Batched', data: { n: 1 } },
    { channel: two, name: 'Batched', data: { n: 2 } },
  ];
  assert.deepEqual(await py.call('trigger_batch', [batch]), { batch: {} });
  await oneSeen.waitForCount(1);
  await twoSeen.waitForCount(1);
  assert.deepEqual([oneSeen, twoSeen], [[{ n: 1 }], [{ n: 2 }]]);
});

test('authenticate: a private channel signed by the SDK is joined; a wrong secret is refused', async () => {
  const name = fresh('private-py-');
  const client = await clientAs('ann');
  const seen = record(await subscribe(client, name), 'Secret');
  await py.call('trigger', [name, 'Secret', { s: 1 }]);
  await seen.waitForCount(1);
  assert.deepEqual(seen, [{ s: 1 }]);

  const refused = await clientAs('ann', badAuth);
  const errors = collectErrors(refused);
  refused.subscribe(name);
  await errors.waitForCode(4009);
});

test('authenticate: presence channel_data as the SDK encodes it; members, channel_info and users_info', async () => {
  const name = fresh('presence-py-');
  const ann = await clientAs('ann');
  const ben = await clientAs('ben');
  const annChannel = await subscribe(ann, name);
  const added = waitForEvent(annChannel, 'pusher:member_added', { what: 'member_added for Ben' });
  const benChannel = await subscribe(ben, name);
  const member = await added;
  assert.deepEqual([String(member.id), member.info], ['12', { name: 'Ben' }]);
  assert.deepEqual([String(benChannel.members.me.id), benChannel.members.me.info], ['12', { name: 'Ben' }]);
  assert.equal(benChannel.members.count, 2);

  assert.deepEqual(await py.call('channel_info', [name, ['user_count']]), { occupied: true, user_count: 2 });
  const users = await py.call('users_info', [name]);
  assert.deepEqual(users.users.map((u) => String(u.id)).sort(), ['11', '12']);
  const list = await py.call('channels_info', [], { prefix_filter: name, attributes: ['user_count'] });
  assert.deepEqual(list, { channels: { [name]: { user_count: 2 } } });
});

test('channel_info and channels_info count the subscriptions of a public channel', async () => {
  const name = fresh('py-info-');
  const a = await clientAs('ann');
  const b = await clientAs('ben');
  await subscribe(a, name);
  await subscribe(b, name);
  const info = await py.call('channel_info', [name, ['subscription_count']]);
  assert.deepEqual(info, { occupied: true, subscription_count: 2 });
  const list = await py.call('channels_info', [], { prefix_filter: name });
  assert.deepEqual(list, { channels: { [name]: {} } });
  const empty = await py.call('channel_info', [fresh('py-nobody-')]);
  assert.deepEqual(empty, { occupied: false });
});

test('authenticate_user signs pusher-js in; send_to_user reaches that user only', async () => {
  const ann = await clientAs('ann');
  const ben = await clientAs('ben');
  await signin(ann);
  await signin(ben);
  assert.deepEqual(ann.user.user_data, { id: '11', user_info: { name: 'Ann' } });
  const annSeen = recordUser(ann, 'Note');
  const benSeen = recordUser(ben, 'Note');
  assert.deepEqual(await py.call('send_to_user', ['11', 'Note', { to: 'ann' }]), {});
  await annSeen.waitForCount(1);
  await py.call('send_to_user', ['12', 'Note', { to: 'ben' }]);
  await benSeen.waitForCount(1);
  assert.deepEqual([annSeen, benSeen], [[{ to: 'ann' }], [{ to: 'ben' }]]);

  const refused = await clientAs('ann', badAuth);
  const errors = collectErrors(refused);
  refused.signin();
  await errors.waitForCode(4009);
});

test('terminate_user_connections closes that user\'s connections with 4009 and no other', async () => {
  const ann = await clientAs('ann');
  const ben = await clientAs('ben');
  await signin(ann);
  await signin(ben);
  const annErrors = collectErrors(ann);
  const benErrors = collectErrors(ben);
  const left = waitForEvent(ann.connection, 'state_change', {
    predicate: (s) => s.previous === 'connected' && s.current !== 'connected',
    what: 'Ann\'s connection to leave "connected"',
  });
  assert.deepEqual(await py.call('terminate_user_connections', ['11']), {});
  await annErrors.waitForCode(4009);
  await left;

  const benSeen = recordUser(ben, 'StillHere');
  await py.call('send_to_user', ['12', 'StillHere', { ok: true }]);
  await benSeen.waitForCount(1);
  assert.equal(ben.connection.state, 'connected');
  assert.deepEqual(benErrors, []);
});

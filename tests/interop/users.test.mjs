// User authentication (pusher:signin), server-to-user delivery (SDK
// sendToUser) and POST /users/{id}/terminate_connections (SDK
// terminateUserConnections), with pusher-js signing in through its `ajax`
// transport against an in-test endpoint that signs with the SDK's
// authenticateUser, exactly as Laravel's PusherBroadcaster does.

import assert from 'node:assert/strict';
import { after, afterEach, beforeEach } from 'node:test';
import {
  ClientPool,
  errorCode,
  freshName as fresh,
  recordUser,
  sdk,
  signin,
  subscribe,
  waitForState,
} from './lib/clients.mjs';
import { collectErrors, errorMessage, startAuthServer } from './lib/authserver.mjs';
import { unrefCloseTimers } from './lib/pusherjs.mjs';
import { RawWebSocket, pusherData } from './lib/rawws.mjs';
import { useServer, waitForEvent } from './lib/server.mjs';

// REVERB_METRICS_PORT=0: no metrics listener, so parallel servers do not
// race for the default port 9601 (and the first stdout line stays the plain
// "revurb: listening on HOST:PORT" that lib/server.mjs expects).
const { server, test } = useServer({ env: { REVERB_METRICS_PORT: '0' } });
const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

const USERS = {
  u1: { id: 1, info: { name: 'One' } },
  u2: { id: 2, info: { name: 'Two' } },
  u3: { id: 3, info: { name: 'Three' } },
};

// Started lazily (node 20 does not order a second root before() hook after
// useServer's).
let auth;
let badAuth;
let authStarting;
function ensureAuth() {
  authStarting ??= (async () => {
    auth = await startAuthServer({ signer: sdk(server()), users: USERS });
    badAuth = await startAuthServer({ signer: sdk(server(), { secret: 'not-the-secret' }), users: USERS });
  })();
  return authStarting;
}
beforeEach(() => ensureAuth());
after(async () => {
  await auth?.close();
  await badAuth?.close();
});

/** A connected pusher-js client that will authenticate as `user`. */
async function clientAs(user, signer = auth) {
  const client = await pool.connected(server(), {
    channelAuthorization: signer.channelAuth(user),
    userAuthentication: signer.userAuth(user),
  });
  return unrefCloseTimers(client);
}

test('signin through the ajax user-auth endpoint, then sendToUser arrives on pusher.user', async () => {
  const client = await clientAs('u1');
  const errors = collectErrors(client);
  const before = auth.requests.length;
  const msg = await signin(client);

  const req = auth.requests.slice(before).find((r) => r.path === '/broadcasting/user-auth');
  assert.ok(req, `no user-auth request: ${JSON.stringify(auth.requests)}`);
  assert.equal(req.params.socket_id, client.connection.socket_id);
  // The server echoes the signed user_data back.
  assert.equal(JSON.parse(pusherData(msg).user_data).id, '1');
  assert.deepEqual(client.user.user_data, { id: '1', user_info: { name: 'One' } });

  const seen = recordUser(client, 'Notified');
  const res = await sdk(server()).sendToUser('1', 'Notified', { text: 'hello user 1' });
  assert.equal(res.status, 200);
  await seen.waitForCount(1);
  assert.deepEqual(seen, [{ text: 'hello user 1' }]);

  // pusher-js subscribes to its own #server-to-user-<id> channel after
  // signin (as Pusher allows); that must not produce a connection error.
  assert.deepEqual(errors, [], `pusher-js connection errors after signin: ${JSON.stringify(errors)}`);
});

test('sendToUser reaches every connection of that user and no other user', async () => {
  const a1 = await clientAs('u1');
  const a2 = await clientAs('u1');
  const b = await clientAs('u2');
  await signin(a1);
  await signin(a2);
  await signin(b);
  const seenA1 = recordUser(a1, 'Ping');
  const seenA2 = recordUser(a2, 'Ping');
  const seenB = recordUser(b, 'Ping');
  const api = sdk(server());

  await api.sendToUser('1', 'Ping', { to: 1 });
  await seenA1.waitForCount(1);
  await seenA2.waitForCount(1);
  // Prove user 2 did not get user 1's event: its own later event is first.
  await api.sendToUser('2', 'Ping', { to: 2 });
  await seenB.waitForCount(1);
  assert.deepEqual(seenB, [{ to: 2 }]);
  assert.deepEqual(seenA1, [{ to: 1 }]);
  assert.deepEqual(seenA2, [{ to: 1 }]);
});

test('a signin signed with the wrong secret: pusher-js gets error 4009 and the connection closes', async () => {
  const client = await clientAs('u1', badAuth);
  const errors = collectErrors(client);
  const left = waitForEvent(client.connection, 'state_change', {
    predicate: (s) => s.previous === 'connected' && s.current !== 'connected',
    what: 'pusher-js to leave "connected"',
  });
  client.signin();
  const err = await errors.waitForCode(4009);
  assert.equal(errorMessage(err), 'Connection is unauthorized');
  await left;
  assert.equal(client.user.user_data, null);
});

test('a raw signin with a bad signature: pusher:error 4009 then close frame 4009', async () => {
  const ws = await RawWebSocket.connect(server().wsUrl);
  try {
    await ws.waitForEvent('pusher:connection_established');
    ws.send({
      event: 'pusher:signin',
      data: { auth: `app-key:${'0'.repeat(64)}`, user_data: JSON.stringify({ id: '1' }) },
    });
    const msg = await ws.waitForEvent('pusher:error');
    assert.deepEqual(pusherData(msg), { code: 4009, message: 'Connection is unauthorized' });
    const close = await ws.waitForClose();
    assert.ok(close, 'expected a close frame');
    assert.equal(close.code, 4009);
  } finally {
    ws.terminate();
  }
});

test('terminateUserConnections closes all of that user\'s connections and no other', async () => {
  const a1 = await clientAs('u1');
  const a2 = await clientAs('u1');
  const b = await clientAs('u2');
  await signin(a1);
  await signin(a2);
  await signin(b);
  const errorsA1 = collectErrors(a1);
  const errorsA2 = collectErrors(a2);
  const errorsB = collectErrors(b);
  const leftA1 = waitForEvent(a1.connection, 'state_change', {
    predicate: (s) => s.previous === 'connected' && s.current !== 'connected',
    what: 'user 1 connection #1 to leave "connected"',
  });
  const leftA2 = waitForEvent(a2.connection, 'state_change', {
    predicate: (s) => s.previous === 'connected' && s.current !== 'connected',
    what: 'user 1 connection #2 to leave "connected"',
  });
  const bStates = [];
  b.connection.bind('state_change', (s) => bStates.push(s.current));

  const res = await sdk(server()).terminateUserConnections('1');
  assert.equal(res.status, 200);

  await errorsA1.waitForCode(4009);
  await errorsA2.waitForCode(4009);
  await leftA1;
  await leftA2;

  // User 2 is untouched: a later event to it arrives, it never left
  // "connected" and saw no error.
  const seenB = recordUser(b, 'StillHere');
  await sdk(server()).sendToUser('2', 'StillHere', { ok: true });
  await seenB.waitForCount(1);
  assert.deepEqual(seenB, [{ ok: true }]);
  assert.equal(b.connection.state, 'connected');
  assert.deepEqual(bStates, []);
  // No error at all: the server confirms pusher-js's own subscription to
  // #server-to-user-<id> after a signin.
  assert.deepEqual(errorsB, []);
  // pusher-js must not reconnect after a 4009 (4000-4099: do not retry).
  assert.notEqual(a1.connection.state, 'connected');
  assert.notEqual(a2.connection.state, 'connected');
});

test('terminate_connections: a raw signed-in socket gets pusher:error 4009 and close frame 4009', async () => {
  const ws = await RawWebSocket.connect(server().wsUrl);
  try {
    const est = await ws.waitForEvent('pusher:connection_established');
    const socketId = pusherData(est).socket_id;
    const signed = sdk(server()).authenticateUser(socketId, { id: '7' });
    ws.send({ event: 'pusher:signin', data: signed });
    await ws.waitForEvent('pusher:signin_success');
    const res = await sdk(server()).terminateUserConnections('7');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    const msg = await ws.waitForEvent('pusher:error');
    assert.equal(pusherData(msg).code, 4009);
    const close = await ws.waitForClose();
    assert.ok(close, 'expected a close frame');
    assert.equal(close.code, 4009);
  } finally {
    ws.terminate();
  }
});

test('terminateUserConnections also closes a presence member with that user_id (no signin)', async () => {
  const name = fresh('presence-term-');
  const c = await clientAs('u3');
  const other = await clientAs('u2');
  await subscribe(c, name);
  const otherChannel = await subscribe(other, name);
  const errors = collectErrors(c);
  const removed = waitForEvent(otherChannel, 'pusher:member_removed', { what: 'member_removed for user 3' });
  await sdk(server()).terminateUserConnections('3');
  await errors.waitForCode(4009);
  const member = await removed;
  assert.equal(String(member.id), '3');
  assert.equal(other.connection.state, 'connected');
  await waitForState(other, 'connected');
  assert.ok(errors.every((e) => errorCode(e) === 4009), JSON.stringify(errors));
});

// Horizontal scaling (README "Scaling", issue 6): three revurb nodes share
// one throw-away redis-server, and the official clients see one cluster.
// pusher-js and laravel-echo connect to one node while the `pusher` SDK
// talks to another: events, socket_id exclusion, presence, client events,
// terminate_connections and sendToUser all cross nodes.
//
// Needs `redis-server` on PATH: without it the tests are skipped, or fail
// under CI (CI=true).
//
// "Exactly once" and "not delivered" are proven without sleeps: events that
// enter the cluster through one node reach every other node in the order
// they were sent (README "What is guaranteed"), so a later marker event
// through the same node arrives after any duplicate would have.

import assert from 'node:assert/strict';
import { after, afterEach, before, test as nodeTest } from 'node:test';
import {
  ClientPool,
  errorCode,
  freshName as fresh,
  record,
  recordUser,
  recordWithMeta,
  sdk,
  signin,
  subscribe,
} from './lib/clients.mjs';
import { collectErrors, errorMessage, startAuthServer } from './lib/authserver.mjs';
import { connectEcho, echoSubscribed } from './lib/echo.mjs';
import { pollJsonUntil, sdkGetJson } from './lib/poll.mjs';
import { unrefCloseTimers } from './lib/pusherjs.mjs';
import { redisAvailability, startRedis } from './lib/redis.mjs';
import { startServer, waitFor, waitForEvent } from './lib/server.mjs';

const NODE_NAMES = ['A', 'B', 'C'];
/** How long fresh nodes may take to find each other over Redis. */
const FORM_DEADLINE_MS = 10000;

const missing = redisAvailability();
if (missing?.fail) {
  // Under CI a missing redis-server fails the file instead of skipping it.
  throw new Error(missing.fail);
}
const skip = missing?.skip ?? false;
if (skip) console.error(`cluster.test.mjs: SKIP: ${skip}`);

const USERS = {
  u1: { id: 1, info: { name: 'One' } },
  u2: { id: 2, info: { name: 'Two' } },
  u3: { id: 3, info: { name: 'Three' } },
};

let redis = null;
/** name -> running node (lib/server.mjs startServer) */
const nodes = {};
let auth = null;
let anyFailed = false;

/** The running node called `name` ('A', 'B' or 'C'). */
function node(name) {
  const n = nodes[name];
  if (!n) throw new Error(`node ${name} not started (did the before hook fail?)`);
  return n;
}

/** Environment of a cluster node: scaling on, this file's Redis, nothing inherited. */
function nodeEnv() {
  const env = {
    REVERB_SCALING_ENABLED: 'true',
    REDIS_HOST: '127.0.0.1',
    REDIS_PORT: String(redis.port),
    REVERB_SCALING_NODE_TIMEOUT: '2',
  };
  // An inherited REDIS_URL would win over REDIS_HOST/PORT; spawn drops
  // variables whose value is undefined.
  for (const key of Object.keys(process.env)) {
    if ((key.startsWith('REDIS_') || key.startsWith('REVERB_SCALING_')) && !(key in env)) env[key] = undefined;
  }
  return env;
}

const probes = new ClientPool();

before(async () => {
  if (skip) return;
  try {
    redis = await startRedis();
    // allSettled: every node that did start is known to after(), even if
    // another failed.
    const started = await Promise.allSettled(
      NODE_NAMES.map(async (name) => {
        nodes[name] = await startServer({ env: nodeEnv() });
      }),
    );
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    // The nodes find each other through Redis after start: one connection
    // per node, then every node must count all of them.
    for (const name of NODE_NAMES) await probes.connected(node(name));
    for (const name of NODE_NAMES) {
      await pollJsonUntil(() => sdkGetJson(sdk(node(name)), '/connections'), { connections: NODE_NAMES.length }, {
        timeoutMs: FORM_DEADLINE_MS,
        what: `GET /connections on node ${name} (the cluster to form)`,
      });
    }
    probes.disconnectAll();
    // Channel and user authorization; any node's SDK signs the same (one app).
    auth = await startAuthServer({ signer: sdk(node('A')), users: USERS });
  } catch (e) {
    anyFailed = true; // after() prints the nodes' and Redis's logs
    throw e;
  }
}, { timeout: 30000 });

after(async () => {
  probes.disconnectAll();
  await auth?.close();
  const problems = [];
  const stopped = await Promise.allSettled(
    NODE_NAMES.filter((name) => nodes[name]).map(async (name) => {
      const code = await node(name).stop();
      if (code !== 0) problems.push(`node ${name} exited with code ${code} (expected 0)\n${node(name).describe()}`);
    }),
  );
  for (const s of stopped) if (s.status === 'rejected') problems.push(s.reason.message);
  if (anyFailed || problems.length > 0) {
    for (const name of NODE_NAMES.filter((n) => nodes[n])) {
      console.error(`--- revurb node ${name} stderr (port ${node(name).port}) ---\n${node(name).stderr}\n--- end ---`);
    }
    if (redis) console.error(`--- redis-server log (port ${redis.port}) ---\n${redis.log}\n--- end ---`);
  }
  await redis?.stop();
  if (problems.length > 0) throw new Error(problems.join('\n'));
}, { timeout: 30000 });

const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

/** node:test's `test`, skipped without redis-server; failures print the nodes' logs. */
function test(name, fn) {
  return nodeTest(name, { timeout: 30000, skip }, async (t) => {
    try {
      return await fn(t);
    } catch (e) {
      anyFailed = true;
      throw e;
    }
  });
}

/** A connected pusher-js client on node `name`, authenticating as `user`. */
async function clientAs(name, user) {
  const client = await pool.connected(node(name), {
    channelAuthorization: auth.channelAuth(user),
    userAuthentication: auth.userAuth(user),
  });
  return unrefCloseTimers(client);
}

/** Member ids and infos of a pusher-js presence channel, via Members.each. */
function membersOf(channel) {
  const seen = {};
  channel.members.each((m) => {
    seen[String(m.id)] = m.info;
  });
  return seen;
}

/** GET /channels/{name}/users on node `name`, users sorted by id. */
async function usersOn(nodeName, channel) {
  const body = await sdkGetJson(sdk(node(nodeName)), `/channels/${channel}/users`);
  if (Array.isArray(body?.users)) body.users.sort((a, b) => String(a.id).localeCompare(String(b.id)));
  return body;
}

// ------------------------------------------------------------------ events

test('SDK trigger on node A reaches subscribers on B (and A, C) exactly once; socket_id excludes a B client', async () => {
  const name = fresh('cluster-news-');
  const b1 = await pool.connected(node('B'));
  const b2 = await pool.connected(node('B'));
  const a1 = await pool.connected(node('A'));
  const c1 = await pool.connected(node('C'));
  const channels = {
    b1: await subscribe(b1, name),
    b2: await subscribe(b2, name),
    a1: await subscribe(a1, name),
    c1: await subscribe(c1, name),
  };
  const news = {};
  const excluded = {};
  const markers = {};
  for (const [who, ch] of Object.entries(channels)) {
    news[who] = record(ch, 'news');
    excluded[who] = record(ch, 'excluded');
    markers[who] = record(ch, 'marker');
  }
  const apiA = sdk(node('A'));

  const payload = { id: 42, items: ['a', 'b'], nested: { ok: true, n: null }, text: 'héllo "wörld" \u2603' };
  const res = await apiA.trigger(name, 'news', payload);
  assert.equal(res.status, 200);
  for (const seen of Object.values(news)) await seen.waitForCount(1);

  // A later event through A arrives after any duplicate of the first would.
  await apiA.trigger(name, 'marker', { n: 1 });
  for (const seen of Object.values(markers)) await seen.waitForCount(1);
  for (const [who, seen] of Object.entries(news)) assert.deepEqual(seen, [payload], `news events on ${who}`);

  // socket_id of b1 (on node B) given to node A: b1 is left out, its
  // neighbour b2 on the same node gets the event, and so do A and C.
  const res2 = await apiA.trigger(name, 'excluded', { skip: 'b1' }, { socket_id: b1.connection.socket_id });
  assert.equal(res2.status, 200);
  await excluded.b2.waitForCount(1);
  await excluded.a1.waitForCount(1);
  await excluded.c1.waitForCount(1);
  await apiA.trigger(name, 'marker', { n: 2 });
  for (const seen of Object.values(markers)) await seen.waitForCount(2);
  assert.deepEqual(excluded.b1, [], 'the excluded socket on node B got the event');
  for (const who of ['b2', 'a1', 'c1']) assert.deepEqual(excluded[who], [{ skip: 'b1' }], `excluded events on ${who}`);
  for (const [who, seen] of Object.entries(markers)) assert.deepEqual(seen, [{ n: 1 }, { n: 2 }], `markers on ${who}`);
});

// ---------------------------------------------------------------- presence

test('presence across nodes: members on B list both users, member_added / member_removed once on A, /users on every node', async () => {
  const name = fresh('presence-cluster-');
  const one = await clientAs('A', 'u1');
  const oneChannel = await subscribe(one, name);
  assert.equal(oneChannel.members.count, 1);
  assert.equal(String(oneChannel.members.me.id), '1');
  const added = record(oneChannel, 'pusher:member_added');
  const removed = record(oneChannel, 'pusher:member_removed');
  const markers = record(oneChannel, 'marker');

  // Node B knows user 1 once A's join message arrived (README: other nodes'
  // members are as fresh as the last message).
  await pollJsonUntil(() => usersOn('B', name), { users: [{ id: 1 }] }, { what: `GET /channels/${name}/users on node B` });

  const two = await clientAs('B', 'u2');
  const twoChannel = await subscribe(two, name);
  assert.equal(twoChannel.members.count, 2);
  assert.equal(String(twoChannel.members.me.id), '2');
  assert.deepEqual(twoChannel.members.me.info, { name: 'Two' });
  assert.deepEqual(membersOf(twoChannel), { 1: { name: 'One' }, 2: { name: 'Two' } });

  await added.waitForCount(1);
  assert.equal(String(added[0].id), '2');
  assert.deepEqual(added[0].info, { name: 'Two' });
  // Everything B sent before this marker (its join) has reached A.
  await sdk(node('B')).trigger(name, 'marker', { n: 1 });
  await markers.waitForCount(1);
  assert.equal(added.length, 1, `member_added events on A: ${JSON.stringify(added)}`);
  assert.equal(oneChannel.members.count, 2);
  assert.deepEqual(membersOf(oneChannel), { 1: { name: 'One' }, 2: { name: 'Two' } });

  // Every node lists both users, each once (C has no subscriber at all).
  for (const n of NODE_NAMES) {
    assert.deepEqual(await usersOn(n, name), { users: [{ id: 1 }, { id: 2 }] }, `GET /channels/${name}/users on node ${n}`);
  }

  // User 2's only connection (on B) goes away: A gets member_removed once.
  two.disconnect();
  await removed.waitForCount(1);
  assert.equal(String(removed[0].id), '2');
  assert.deepEqual(removed[0].info, { name: 'Two' });
  await sdk(node('B')).trigger(name, 'marker', { n: 2 });
  await markers.waitForCount(2);
  assert.equal(removed.length, 1, `member_removed events on A: ${JSON.stringify(removed)}`);
  assert.equal(added.length, 1);
  assert.equal(oneChannel.members.count, 1);
  assert.deepEqual(membersOf(oneChannel), { 1: { name: 'One' } });
  for (const n of NODE_NAMES) {
    assert.deepEqual(await usersOn(n, name), { users: [{ id: 1 }] }, `GET /channels/${name}/users on node ${n} after user 2 left`);
  }
});

// ----------------------------------------------------------- client events

test('client events on a private channel cross nodes: the others get client-typing, the sender does not', async () => {
  const name = fresh('private-cluster-chat-');
  const alice = await clientAs('A', 'u1');
  const bob = await clientAs('B', 'u2');
  const carol = await clientAs('C', 'u3');
  const aliceChannel = await subscribe(alice, name);
  const bobChannel = await subscribe(bob, name);
  const carolChannel = await subscribe(carol, name);
  const aliceSeen = recordWithMeta(aliceChannel, 'client-typing');
  const bobSeen = recordWithMeta(bobChannel, 'client-typing');
  const carolSeen = recordWithMeta(carolChannel, 'client-typing');
  const errors = [collectErrors(alice), collectErrors(bob), collectErrors(carol)];

  assert.equal(aliceChannel.trigger('client-typing', { who: 'alice', typing: true }), true);
  await bobSeen.waitForCount(1);
  assert.deepEqual(bobSeen[0].data, { who: 'alice', typing: true });

  // Bob (node B) answers; alice's first client event must be bob's, so hers
  // did not come back to her through Redis.
  assert.equal(bobChannel.trigger('client-typing', { who: 'bob', typing: false }), true);
  await aliceSeen.waitForCount(1);
  await carolSeen.waitForCount(2);
  assert.deepEqual(
    aliceSeen.map((e) => e.data),
    [{ who: 'bob', typing: false }],
  );
  // Carol (node C) got each once. A marker through A then B arrives after
  // any duplicate from either node would.
  const markers = record(carolChannel, 'marker');
  await sdk(node('A')).trigger(name, 'marker', { n: 1 });
  await sdk(node('B')).trigger(name, 'marker', { n: 2 });
  await markers.waitForCount(2);
  assert.deepEqual(
    carolSeen.map((e) => e.data).sort((x, y) => x.who.localeCompare(y.who)),
    [
      { who: 'alice', typing: true },
      { who: 'bob', typing: false },
    ],
  );
  assert.deepEqual(
    bobSeen.map((e) => e.data),
    [{ who: 'alice', typing: true }],
  );
  assert.deepEqual(
    aliceSeen.map((e) => e.data),
    [{ who: 'bob', typing: false }],
  );
  for (const e of errors) assert.deepEqual(e, [], 'pusher-js connection errors');
});

// ------------------------------------------------------------ laravel-echo

/** An Echo instance on node `name` (logged in as `user`, if given) whose pusher-js client is connected. */
const echoOn = (name, user) => connectEcho({ pool, server: node(name), auth, user });

test('laravel-echo on node B: Echo.private(...).listen and Echo.channel(...).listen get events triggered on node A', async () => {
  const room = fresh('orders-');
  const feed = fresh('feed-');
  const echo = await echoOn('B', 'u1');
  const privateGot = [];
  const publicGot = [];
  const privateChannel = echo.private(room).listen('.OrderShipped', (e) => privateGot.push(e));
  const publicChannel = echo.channel(feed).listen('OrderShipped', (e) => publicGot.push(e));
  // Both callbacks are registered before either subscription can succeed.
  await Promise.all([echoSubscribed(privateChannel, `private-${room}`), echoSubscribed(publicChannel, feed)]);

  const apiA = sdk(node('A'));
  const res = await apiA.trigger(`private-${room}`, 'OrderShipped', { order: { id: 5 } });
  assert.equal(res.status, 200);
  // Echo's namespaced listen('OrderShipped') is App\Events\OrderShipped.
  const res2 = await apiA.trigger(feed, 'App\\Events\\OrderShipped', { order: { id: 6 }, socket: null });
  assert.equal(res2.status, 200);
  await waitFor(() => privateGot.length >= 1 && publicGot.length >= 1, {
    what: () => `both Echo listeners (private: ${JSON.stringify(privateGot)}, public: ${JSON.stringify(publicGot)})`,
  });

  // A marker on each channel through A arrives after any duplicate would.
  const markers = [];
  privateChannel.listen('.Marker', (e) => markers.push(e));
  publicChannel.listen('.Marker', (e) => markers.push(e));
  await apiA.trigger([`private-${room}`, feed], 'Marker', { n: 1 });
  await waitFor(() => markers.length >= 2, { what: () => `two Marker events (got ${JSON.stringify(markers)})` });
  assert.deepEqual(privateGot, [{ order: { id: 5 } }]);
  assert.deepEqual(publicGot, [{ order: { id: 6 }, socket: null }]);
});

// ------------------------------------------------------------------- users

test('terminateUserConnections on node A closes a user signed in on node B, and no other user', async () => {
  const target = await clientAs('B', 'u1');
  const bystander = await clientAs('B', 'u2');
  const targetErrors = collectErrors(target);
  const bystanderErrors = collectErrors(bystander);
  await signin(target);
  await signin(bystander);
  const left = waitForEvent(target.connection, 'state_change', {
    predicate: (s) => s.previous === 'connected' && s.current !== 'connected',
    what: 'user 1 (node B) to leave "connected"',
  });
  const bystanderStates = [];
  bystander.connection.bind('state_change', (s) => bystanderStates.push(s.current));

  const res = await sdk(node('A')).terminateUserConnections('1');
  assert.equal(res.status, 200);
  // The same pusher:error as a terminate on the user's own node.
  const err = await targetErrors.waitForCode(4009);
  assert.equal(errorMessage(err), 'Connection terminated');
  await left;

  // User 2 on the same node is untouched: a later event to it (through A,
  // so after the terminate) arrives, and it never left "connected".
  const seen = recordUser(bystander, 'StillHere');
  await sdk(node('A')).sendToUser('2', 'StillHere', { ok: true });
  await seen.waitForCount(1);
  assert.deepEqual(seen, [{ ok: true }]);
  assert.equal(bystander.connection.state, 'connected');
  assert.deepEqual(bystanderStates, []);
  // Not even an error for pusher-js's own #server-to-user-2 subscription.
  assert.deepEqual(bystanderErrors, [], 'pusher-js connection errors of user 2');
  // pusher-js does not reconnect after 4009 (4000-4099: do not retry).
  assert.notEqual(target.connection.state, 'connected');
  assert.ok(targetErrors.every((e) => errorCode(e) === 4009), JSON.stringify(targetErrors));
});

test('sendToUser on node A reaches the user signed in on node B, and no other user', async () => {
  const one = await clientAs('B', 'u1');
  const two = await clientAs('C', 'u2');
  const errors = [collectErrors(one), collectErrors(two)];
  await signin(one);
  await signin(two);
  const seenOne = recordUser(one, 'Notified');
  const seenTwo = recordUser(two, 'Notified');
  const apiA = sdk(node('A'));

  const payload = { text: 'hello user 1', n: [1, 2, 3], nested: { ok: true } };
  const res = await apiA.sendToUser('1', 'Notified', payload);
  assert.equal(res.status, 200);
  await seenOne.waitForCount(1);
  assert.deepEqual(seenOne, [payload]);

  // User 2 (node C) did not get user 1's event: its own later one is first.
  // Then another to user 1 proves the first was not delivered twice.
  await apiA.sendToUser('2', 'Notified', { to: 2 });
  await seenTwo.waitForCount(1);
  await apiA.sendToUser('1', 'Notified', { to: 1 });
  await seenOne.waitForCount(2);
  assert.deepEqual(seenTwo, [{ to: 2 }]);
  assert.deepEqual(seenOne, [payload, { to: 1 }]);
  for (const e of errors) assert.deepEqual(e, [], 'pusher-js connection errors');
});

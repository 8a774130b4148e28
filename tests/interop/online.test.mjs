// Issue 13 with pusher-js 8.6: watchlist events on `pusher.user.watchlist`
// ('online' / 'offline') and `pusher:subscription_count` on channels, on one
// node and across a three-node cluster over a throw-away redis-server (the
// cluster tests are skipped without redis-server, failed under CI=true, as
// cluster.test.mjs).
//
// Every server here gets REVERB_APP_WEBHOOK_DELAY=1 (going offline is
// reported after that delay, the delay of member_removed webhooks) and
// REVERB_APP_ENABLE_SUBSCRIPTION_COUNT=true.

import assert from 'node:assert/strict';
import { after, afterEach, before, test as nodeTest } from 'node:test';
import { ClientPool, freshName as fresh, sdk, signin, subscribe } from './lib/clients.mjs';
import { startAuthServer } from './lib/authserver.mjs';
import { pollJsonUntil, sdkGetJson } from './lib/poll.mjs';
import { unrefCloseTimers } from './lib/pusherjs.mjs';
import { redisAvailability, startRedis } from './lib/redis.mjs';
import { startServer, waitFor } from './lib/server.mjs';

const NODE_NAMES = ['A', 'B', 'C'];
const FORM_DEADLINE_MS = 10000;

const missing = redisAvailability();
if (missing?.fail) throw new Error(missing.fail);
const noRedis = missing?.skip ?? false;
if (noRedis) console.error(`online.test.mjs: the cluster tests SKIP: ${noRedis}`);

const USERS = {
  watcher: { id: 'watcher', watchlist: ['ann', 'bob', 'nobody'] },
  ann: { id: 'ann' },
  bob: { id: 'bob' },
  watcher2: { id: 'watcher2', watchlist: ['cid'] },
  cid: { id: 'cid' },
};

/** The settings of every server of this file. */
const ENV = { REVERB_APP_WEBHOOK_DELAY: '1', REVERB_APP_ENABLE_SUBSCRIPTION_COUNT: 'true' };

let single = null;
let redis = null;
const nodes = {};
let auth = null;
let anyFailed = false;

function node(name) {
  const n = name === 'single' ? single : nodes[name];
  if (!n) throw new Error(`server ${name} not started (did the before hook fail?)`);
  return n;
}

function clusterEnv() {
  const env = {
    ...ENV,
    REVERB_SCALING_ENABLED: 'true',
    REDIS_HOST: '127.0.0.1',
    REDIS_PORT: String(redis.port),
    REVERB_SCALING_NODE_TIMEOUT: '2',
  };
  for (const key of Object.keys(process.env)) {
    if ((key.startsWith('REDIS_') || key.startsWith('REVERB_SCALING_')) && !(key in env)) env[key] = undefined;
  }
  return env;
}

const pool = new ClientPool();
afterEach(() => pool.disconnectAll());

before(async () => {
  try {
    single = await startServer({ env: ENV });
    auth = await startAuthServer({ signer: sdk(single), users: USERS });
    if (noRedis) return;
    redis = await startRedis();
    const started = await Promise.allSettled(
      NODE_NAMES.map(async (name) => {
        nodes[name] = await startServer({ env: clusterEnv() });
      }),
    );
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    const probes = new ClientPool();
    for (const name of NODE_NAMES) await probes.connected(node(name));
    for (const name of NODE_NAMES) {
      await pollJsonUntil(() => sdkGetJson(sdk(node(name)), '/connections'), { connections: NODE_NAMES.length }, {
        timeoutMs: FORM_DEADLINE_MS,
        what: `GET /connections on node ${name} (the cluster to form)`,
      });
    }
    probes.disconnectAll();
  } catch (e) {
    anyFailed = true;
    throw e;
  }
}, { timeout: 30000 });

after(async () => {
  pool.disconnectAll();
  await auth?.close();
  const servers = [['single', single], ...NODE_NAMES.map((n) => [n, nodes[n]])].filter(([, s]) => s);
  const problems = [];
  await Promise.allSettled(
    servers.map(async ([name, s]) => {
      const code = await s.stop();
      if (code !== 0) problems.push(`${name} exited with code ${code}\n${s.describe()}`);
    }),
  );
  if (anyFailed || problems.length > 0) {
    for (const [name, s] of servers) console.error(`--- revurb ${name} stderr (port ${s.port}) ---\n${s.stderr}\n--- end ---`);
    if (redis) console.error(`--- redis-server log ---\n${redis.log}\n--- end ---`);
  }
  await redis?.stop();
  if (problems.length > 0) throw new Error(problems.join('\n'));
}, { timeout: 30000 });

function test(name, { cluster = false } = {}, fn) {
  return nodeTest(name, { timeout: 30000, skip: cluster && noRedis }, async (t) => {
    try {
      return await fn(t);
    } catch (e) {
      anyFailed = true;
      throw e;
    }
  });
}

/** A connected pusher-js client on `where` ('single', 'A', 'B', 'C') that signs in as `user`. */
async function clientAs(where, user) {
  const client = await pool.connected(node(where), {
    channelAuthorization: auth.channelAuth(user),
    userAuthentication: auth.userAuth(user),
  });
  return unrefCloseTimers(client);
}

/** Every watchlist event pusher-js raises on `client.user.watchlist`, as `name:ids`. */
function recordWatchlist(client) {
  const seen = [];
  for (const name of ['online', 'offline']) {
    client.user.watchlist.bind(name, (event) => {
      assert.equal(event.name, name);
      seen.push(`${name}:${[...event.user_ids].join(',')}`);
    });
  }
  // waitFor(entry): until `entry` is the last event seen, with nothing after it
  Object.defineProperty(seen, 'waitFor', {
    enumerable: false,
    value: (entry, what) =>
      waitFor(() => seen.at(-1) === entry, { timeoutMs: 8000, what: () => `${what} (got ${JSON.stringify(seen)})` }),
  });
  return seen;
}

test('watchlist: online users first, then changes; offline after the delay (one node)', {}, async () => {
  const bob = await clientAs('single', 'bob');
  await signin(bob);
  const watcher = await clientAs('single', 'watcher');
  const seen = recordWatchlist(watcher);
  await signin(watcher);
  await seen.waitFor('offline:ann,nobody', 'the initial state');
  assert.deepEqual(seen, ['online:bob', 'offline:ann,nobody']);

  const ann = await clientAs('single', 'ann');
  await signin(ann);
  await seen.waitFor('online:ann', 'ann online');
  const wentAt = Date.now();
  ann.disconnect();
  await seen.waitFor('offline:ann', 'ann offline');
  assert.ok(Date.now() - wentAt >= 900, 'offline waits the delay');
  assert.deepEqual(seen, ['online:bob', 'offline:ann,nobody', 'online:ann', 'offline:ann']);
});

test('watchlist across the cluster: a user signed in on B is online for a watcher on A', { cluster: true }, async () => {
  const watcher = await clientAs('A', 'watcher2');
  const seen = recordWatchlist(watcher);
  await signin(watcher);
  await seen.waitFor('offline:cid', 'the initial state');
  assert.deepEqual(seen, ['offline:cid']);
  const onB = await clientAs('B', 'cid');
  await signin(onB);
  await seen.waitFor('online:cid', 'cid online through B');
  // a second tab on C, the first closes: still online
  const onC = await clientAs('C', 'cid');
  await signin(onC);
  onB.disconnect();
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(seen, ['offline:cid', 'online:cid']);
  onC.disconnect();
  await seen.waitFor('offline:cid', 'cid offline once the last tab is gone');
  assert.deepEqual(seen, ['offline:cid', 'online:cid', 'offline:cid']);
});

/** The subscription counts pusher-js raises on `channel`, in order. */
function recordCounts(channel) {
  const seen = [];
  channel.bind('pusher:subscription_count', (data) => seen.push(data.subscription_count));
  return seen;
}

/** Until every channel's pusher-js `subscriptionCount` is `n`. */
function countsReach(channels, n, what) {
  return waitFor(() => channels.every((ch) => ch.subscriptionCount === n), {
    timeoutMs: 8000,
    what: () => `${what}: subscriptionCount ${JSON.stringify(channels.map((ch) => ch.subscriptionCount))}`,
  });
}

test('pusher:subscription_count on a public and a private channel (one node)', {}, async () => {
  for (const name of [fresh('count-'), fresh('private-count-')]) {
    const a = await clientAs('single', 'ann');
    const chA = a.subscribe(name);
    const seenA = recordCounts(chA);
    await countsReach([chA], 1, `${name}, one subscriber`);
    const b = await clientAs('single', 'bob');
    const chB = await subscribe(b, name);
    await countsReach([chA, chB], 2, `${name}, two subscribers`);
    b.disconnect();
    await countsReach([chA], 1, `${name}, one left`);
    assert.deepEqual(seenA, [1, 2, 1]);
  }
});

test('pusher:subscription_count counts the subscribers of every node', { cluster: true }, async () => {
  const name = fresh('cluster-count-');
  const channels = [];
  for (const where of NODE_NAMES) {
    const client = await clientAs(where, 'ann');
    channels.push(await subscribe(client, name));
  }
  await countsReach(channels, 3, 'three subscribers on three nodes');
  const seen = recordCounts(channels[0]);
  const fourth = await clientAs('C', 'bob');
  channels.push(await subscribe(fourth, name));
  await countsReach(channels, 4, 'a fourth on C');
  assert.deepEqual(seen, [4]);
});

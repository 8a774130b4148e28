// `revurb upgrade` (issue 14) seen by the official clients: pusher-js and
// laravel-echo stay connected across an upgrade in place, with the same
// socket id, hear no member leave or join, and get the events published
// just before and just after it, once each. The server runs from a copy of
// the binary in a temporary directory, replaced by renaming another copy
// over it, as a deploy does.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before } from 'node:test';
import { ClientPool, freshName as fresh, sdk, subscribe, record } from './lib/clients.mjs';
import { startAuthServer } from './lib/authserver.mjs';
import { connectEcho } from './lib/echo.mjs';
import { binaryPath, startServer, waitFor } from './lib/server.mjs';
import { test } from 'node:test';

const dir = mkdtempSync(path.join(tmpdir(), 'revurb-interop-upgrade-'));
const exe = path.join(dir, 'revurb');
const pidFile = path.join(dir, 'revurb.pid');
const original = binaryPath();
copyFileSync(original, exe);

let server;
let auth;
const pool = new ClientPool();
const USERS = {
  alice: { id: 1, info: { id: 1, name: 'Alice' } },
  bob: { id: 2, info: { id: 2, name: 'Bob' } },
};

before(async () => {
  process.env.REVURB_BIN = exe;
  server = await startServer({ args: ['--pid-file', pidFile] });
  auth = await startAuthServer({ signer: sdk(server), users: USERS });
});
afterEach(() => pool.disconnectAll());
after(async () => {
  await auth?.close();
  const code = await server?.stop();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 0, server?.describe());
});

/** Deploy a fresh copy of the binary and run `revurb upgrade`. */
function upgrade() {
  const next = path.join(dir, 'revurb.new');
  copyFileSync(original, next);
  renameSync(next, exe);
  return new Promise((resolve, reject) => {
    execFile(original, ['upgrade', '--pid-file', pidFile], { timeout: 30000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`revurb upgrade failed: ${err.message}\n${stdout}\n${stderr}\n${server.stderr}`));
      else resolve(stdout);
    });
  });
}

test('pusher-js and laravel-echo see no disconnect across an upgrade', { timeout: 60000 }, async () => {
  const channel = fresh('orders-');
  const client = await pool.connected(server);
  const states = [];
  client.connection.bind('state_change', (s) => states.push(s.current));
  const socketId = client.connection.socket_id;
  const sub = await subscribe(client, channel);
  const got = record(sub, 'shipped');

  const room = fresh('room-');
  const alice = await connectEcho({ pool, server, auth, user: 'alice' });
  const bob = await connectEcho({ pool, server, auth, user: 'bob' });
  const aliceStates = [];
  alice.connector.pusher.connection.bind('state_change', (s) => aliceStates.push(s.current));
  const joining = [];
  const leaving = [];
  const here = [];
  alice.join(room).here((m) => here.push(m)).joining((m) => joining.push(m)).leaving((m) => leaving.push(m));
  await waitFor(() => here.length === 1, { what: 'here() for alice' });
  const bobHere = [];
  bob.join(room).here((m) => bobHere.push(m));
  await waitFor(() => bobHere.length === 1 && joining.length === 1, { what: 'bob joined' });
  const roomEvents = [];
  alice.join(room).listen('.news', (e) => roomEvents.push(e));

  await sdk(server).trigger(channel, 'shipped', { n: 'before' });
  await sdk(server).trigger(`presence-${room}`, 'news', { n: 'before' });
  const out = await upgrade();
  assert.match(out, /Upgraded/);
  await sdk(server).trigger(channel, 'shipped', { n: 'after' });
  await sdk(server).trigger(`presence-${room}`, 'news', { n: 'after' });

  await waitFor(() => got.length >= 2 && roomEvents.length >= 2, {
    what: () => `both events (pusher-js ${JSON.stringify(got)}, echo ${JSON.stringify(roomEvents)})`,
  });
  // a round trip on each connection proves nothing else is on its way
  await sdk(server).trigger(channel, 'shipped', { n: 'last' });
  await waitFor(() => got.length >= 3, { what: 'the last event' });
  assert.deepEqual(
    got.map((e) => e.n),
    ['before', 'after', 'last'],
  );
  assert.deepEqual(
    roomEvents.map((e) => e.n),
    ['before', 'after'],
  );
  assert.deepEqual(states, [], 'pusher-js never left "connected"');
  assert.deepEqual(aliceStates, [], 'echo never left "connected"');
  assert.equal(client.connection.socket_id, socketId);
  assert.equal(client.connection.state, 'connected');
  assert.deepEqual(leaving, [], 'no member left');
  assert.equal(joining.length, 1, 'no member joined again');
});

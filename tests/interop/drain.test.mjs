// The gentle stop (issue 14) seen by pusher-js 8.6: a server stopped with
// SIGTERM drains, so its clients are told 4200 one after another over
// drain_window rather than all at once; pusher-js takes the 503 that a
// draining server gives its immediate reconnect as one more failed attempt
// and keeps retrying, and once the next server listens on the same port
// every client is connected again with its subscription restored.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClientPool, freshName as fresh, sdk, subscribe, record, waitForState } from './lib/clients.mjs';
import { startServer, waitFor, waitForEvent } from './lib/server.mjs';

const N = 10;

test('pusher-js clients drained over 2 s reconnect to the next server and resubscribe', { timeout: 60000 }, async () => {
  const pool = new ClientPool();
  const first = await startServer({ env: { REVERB_DRAIN_WINDOW: '2' } });
  let next = null;
  try {
    const channel = fresh('drain-');
    const clients = [];
    for (let i = 0; i < N; i++) {
      const c = await pool.connected(first);
      await subscribe(c, channel);
      clients.push(c);
    }
    const left = clients.map((c) =>
      waitForEvent(c.connection, 'state_change', {
        timeoutMs: 10000,
        predicate: (s) => s.previous === 'connected' && s.current !== 'connected',
        what: 'pusher-js to leave "connected"',
      }).then(() => Date.now()),
    );
    const stopped = first.stop({ timeoutMs: 15000 });

    // while it drains: not healthy
    await waitFor(
      async () => (await fetch(`${first.httpUrl}/up`).catch(() => null))?.status === 503,
      { timeoutMs: 2000, what: '/up to answer 503 while draining' },
    );
    const times = (await Promise.all(left)).sort((a, b) => a - b);
    assert.equal(await stopped, 0, `exit code\n${first.stderr}`);
    const spread = times[N - 1] - times[0];
    // one every 200 ms: 1.8 s from the first to the last
    assert.ok(spread >= 1300 && spread <= 3000, `disconnects spread over ${spread} ms`);

    next = await startServer({ args: ['--port', String(first.port)] });
    const started = Date.now();
    await Promise.all(clients.map((c) => waitForState(c, 'connected', { timeoutMs: 30000 })));
    console.error(
      `drain.test.mjs: ${N} disconnects over ${spread} ms; all reconnected ${Date.now() - started} ms after the next server listened`,
    );
    const seen = clients.map((c) => record(c.channel(channel), 'after-restart'));
    // pusher-js resubscribes on its own once connected; wait until the new
    // server counts every subscriber before publishing
    const api = sdk(next);
    await waitFor(
      async () => {
        const r = await api.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } });
        return (await r.json()).subscription_count === N;
      },
      { timeoutMs: 10000, what: `${N} subscribers of ${channel} on the next server` },
    );
    await api.trigger(channel, 'after-restart', { n: 1 });
    for (const s of seen) await s.waitForCount(1);
    assert.deepEqual(seen.map((s) => s.length), Array(N).fill(1));
  } finally {
    pool.disconnectAll();
    first.kill();
    if (next) assert.equal(await next.stop(), 0, `next server exit code\n${next.stderr}`);
  }
});

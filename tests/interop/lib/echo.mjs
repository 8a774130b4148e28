// laravel-echo helpers (broadcaster 'reverb', as Laravel's `php artisan
// install:broadcasting` configures it) over pusher-js. Kept apart from
// lib/clients.mjs so that files without Echo do not load laravel-echo.

import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { waitForState } from './clients.mjs';
import { unrefCloseTimers } from './pusherjs.mjs';
import { APP_KEY, withTimeout } from './server.mjs';

/**
 * An Echo instance for `server` (anything with `host` and `port`, e.g. a
 * lib/server.mjs server), logged in as `user` if given, whose pusher-js
 * client is connected. Channel authorization goes to `auth.channelEndpoint`
 * (lib/authserver.mjs) with the `X-User` header. The client is added to
 * `pool` (a ClientPool), so `pool.disconnectAll()` disconnects it.
 */
export async function connectEcho({ pool, server, auth, user }) {
  const echo = new Echo({
    broadcaster: 'reverb',
    key: APP_KEY,
    wsHost: server.host,
    wsPort: server.port,
    wssPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    Pusher,
    authEndpoint: auth.channelEndpoint,
    auth: { headers: user ? { 'X-User': user } : {} },
    withoutInterceptors: true,
  });
  const client = echo.connector.pusher;
  pool.clients.push(client); // disconnected after each test
  await waitForState(client, 'connected');
  unrefCloseTimers(client);
  return echo;
}

/** Resolves once an Echo channel's subscription succeeded (rejects on error). */
export function echoSubscribed(channel, name) {
  return withTimeout(
    new Promise((resolve, reject) => {
      channel.subscribed(resolve);
      channel.error((e) => reject(new Error(`subscription to ${name} failed: ${JSON.stringify(e)}`)));
    }),
    5000,
    `Echo subscription to ${name}`,
  );
}

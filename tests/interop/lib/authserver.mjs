// A tiny "Laravel app" for the interop tests: an HTTP server with the two
// endpoints pusher-js calls (channel authorization and user authentication),
// signing with the official `pusher` server SDK exactly as Laravel's
// PusherBroadcaster does (`authorizeChannel` / `authenticateUser`), or with
// anything that has those two methods (they may return promises: the Python
// SDK's signer in lib/python.mjs does).
//
// pusher-js's node build posts to these with its `ajax` transport (a bundled
// node XMLHttpRequest), `application/x-www-form-urlencoded` bodies
// `socket_id=...&channel_name=...` (channel) or `socket_id=...` (user).
//
// The "logged-in user" is chosen per client with the `X-User` request header
// (set through pusher-js's `channelAuthorization.headers` /
// `userAuthentication.headers`, or Echo's `auth.headers`), standing in for a
// Laravel session cookie. Users not in the table are refused with 403, as
// Laravel does for a guest.

import http from 'node:http';
import { errorCode } from './clients.mjs';
import { waitFor, withTimeout } from './server.mjs';

/**
 * Starts the auth endpoint.
 *
 * @param {object} opts
 * @param {import('pusher')} opts.signer  SDK instance used to sign (its
 *   secret may deliberately be wrong in a test)
 * @param {Record<string, {id: number|string, info?: object, watchlist?: string[]}>} [opts.users]
 *   header value -> user; `id` is the presence `user_id`, `info` the
 *   presence `user_info`, `watchlist` the user ids signed into `user_data`
 * @returns {Promise<{url: string, channelEndpoint: string, userEndpoint: string,
 *   requests: object[], close: () => Promise<void>,
 *   channelAuth: (user: string) => object, userAuth: (user: string) => object}>}
 */
export async function startAuthServer({ signer, users = {} }) {
  const requests = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', async () => {
      const params = new URLSearchParams(body);
      const userKey = req.headers['x-user'];
      const record = { path: req.url, method: req.method, user: userKey, params: Object.fromEntries(params) };
      requests.push(record);
      const reply = (status, obj) => {
        const text = JSON.stringify(obj);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      try {
        if (req.method !== 'POST') return reply(405, { message: 'Method not allowed' });
        const user = userKey !== undefined ? users[userKey] : undefined;
        if (!user) return reply(403, { message: 'Unauthorized' });
        const socketId = params.get('socket_id');
        if (req.url === '/broadcasting/auth') {
          const channel = params.get('channel_name');
          // Laravel: presence channels get {user_id, user_info}; private ones
          // just the signature.
          const presenceData = channel.startsWith('presence-')
            ? { user_id: user.id, user_info: user.info ?? {} }
            : undefined;
          const signed = await signer.authorizeChannel(socketId, channel, presenceData);
          record.response = signed;
          return reply(200, signed);
        }
        if (req.url === '/broadcasting/user-auth') {
          // pusher-js requires user_data.id to be a non-empty string.
          const userData = { id: String(user.id), user_info: user.info ?? {} };
          if (user.watchlist) userData.watchlist = user.watchlist;
          const signed = await signer.authenticateUser(socketId, userData);
          record.response = signed;
          return reply(200, signed);
        }
        return reply(404, { message: 'Not found' });
      } catch (e) {
        record.error = String(e?.message ?? e);
        return reply(500, { message: record.error });
      }
    });
  });
  await withTimeout(
    new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', resolve);
    }),
    5000,
    'the auth endpoint to listen',
  );
  // Do not let idle keep-alive sockets hold the test process open.
  srv.keepAliveTimeout = 100;
  const { port } = srv.address();
  const url = `http://127.0.0.1:${port}`;
  const channelEndpoint = `${url}/broadcasting/auth`;
  const userEndpoint = `${url}/broadcasting/user-auth`;
  return {
    url,
    channelEndpoint,
    userEndpoint,
    requests,
    /** pusher-js `channelAuthorization` options for `user`. */
    channelAuth: (user) => ({ endpoint: channelEndpoint, transport: 'ajax', headers: { 'X-User': String(user) } }),
    /** pusher-js `userAuthentication` options for `user`. */
    userAuth: (user) => ({ endpoint: userEndpoint, transport: 'ajax', headers: { 'X-User': String(user) } }),
    close: () =>
      withTimeout(
        new Promise((resolve) => {
          srv.close(() => resolve());
          srv.closeAllConnections?.();
        }),
        5000,
        'the auth endpoint to close',
      ),
  };
}

/**
 * Collects a pusher-js client's connection `error` events. The array gets
 * `codes()` (the Pusher codes seen) and `waitForCode(code)` (resolves with
 * the first error carrying that code).
 */
export function collectErrors(client) {
  const errors = [];
  client.connection.bind('error', (e) => errors.push(e));
  Object.defineProperties(errors, {
    codes: { enumerable: false, value: () => errors.map((e) => errorCode(e)) },
    waitForCode: {
      enumerable: false,
      value: (code, { timeoutMs = 5000 } = {}) =>
        waitFor(() => errors.find((e) => errorCode(e) === code), {
          timeoutMs,
          what: () => `a pusher-js error event with code ${code} (got ${JSON.stringify(errors)})`,
        }),
    },
  });
  return errors;
}

/** The `message` of a pusher-js error event, whatever its shape. */
export function errorMessage(err) {
  return err?.data?.message ?? err?.error?.data?.message ?? err?.error?.message ?? err?.message;
}

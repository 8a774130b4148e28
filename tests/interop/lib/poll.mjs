// Polling helpers for HTTP API answers that settle asynchronously (e.g. a
// channel list while earlier tests' clients are still being disconnected).

import { isDeepStrictEqual } from 'node:util';
import { waitFor } from './server.mjs';

/**
 * Calls `fetchJson()` (async, returns parsed JSON) until its result deep-
 * equals `expected`; resolves with it. On timeout the error shows the last
 * answer.
 */
export async function pollJsonUntil(fetchJson, expected, { timeoutMs = 5000, what = 'JSON answer' } = {}) {
  let last;
  await waitFor(
    async () => {
      last = await fetchJson();
      return isDeepStrictEqual(last, expected);
    },
    {
      timeoutMs,
      intervalMs: 50,
      what: () => `${what} to equal ${JSON.stringify(expected)} (last answer: ${JSON.stringify(last)})`,
    },
  );
  return last;
}

/** GET through the server SDK and parse the JSON body. */
export async function sdkGetJson(api, path, params) {
  const res = await api.get({ path, params });
  return res.json();
}

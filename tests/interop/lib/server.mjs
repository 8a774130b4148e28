// Helpers for the interop tests: start/stop the revurb binary, and wait for
// conditions with deadlines. No bare sleeps are used as synchronisation.

import { spawn } from 'node:child_process';
import { after, before, test as nodeTest } from 'node:test';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root (tests/interop/lib -> ../../..). */
export const repoRoot = path.resolve(here, '..', '..', '..');

export const APP_ID = 'app-id';
export const APP_KEY = 'app-key';
export const APP_SECRET = 'app-secret';

/** Path of the binary under test: $REVURB_BIN, else target/debug/revurb. */
export function binaryPath() {
  const fromEnv = process.env.REVURB_BIN;
  if (fromEnv && fromEnv.length > 0) {
    return path.resolve(repoRoot, fromEnv);
  }
  return path.join(repoRoot, 'target', 'debug', 'revurb');
}

/** `what` may be a string or a function computing it lazily (at timeout). */
function describeWhat(what) {
  return typeof what === 'function' ? what() : what;
}

/**
 * Resolves with the value of `fn()` once it is truthy; rejects after
 * `timeoutMs` with a message naming `what`.
 */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const suffix = lastError ? ` (last error: ${lastError.message ?? lastError})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${describeWhat(what)}${suffix}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Races `promise` against a deadline. Rejects with a clear message on timeout.
 */
export function withTimeout(promise, timeoutMs, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describeWhat(what)}`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Waits for `emitter` (anything with bind/unbind like pusher-js objects, or
 * on/off like node EventEmitters) to emit `event`, optionally one that
 * satisfies `predicate(...args)`. Resolves with the first argument.
 */
export function waitForEvent(emitter, event, { timeoutMs = 5000, predicate = () => true, what } = {}) {
  const on = (emitter.bind ?? emitter.on).bind(emitter);
  const off = (emitter.unbind ?? emitter.off).bind(emitter);
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => {
      if (predicate(...args)) resolve(args[0]);
    };
    on(event, handler);
  });
  return withTimeout(p, timeoutMs, what ?? `event "${event}"`).finally(() => off(event, handler));
}

/**
 * Starts the server binary. Resolves once it printed its
 * `revurb: listening on HOST:PORT` line.
 *
 * @param {object} [opts]
 * @param {object} [opts.env]   extra environment (merged over the app defaults)
 * @param {string[]} [opts.args] extra arguments after `start --host 127.0.0.1 --port 0`
 *   (`--debug` is added when REVURB_INTEROP_DEBUG is set)
 * @param {number} [opts.timeoutMs] deadline for the listening line
 */
export async function startServer({ env = {}, args = [], timeoutMs = 10000 } = {}) {
  const bin = binaryPath();
  if (!existsSync(bin)) {
    throw new Error(`revurb binary not found at ${bin} (build it with cargo build, or set REVURB_BIN)`);
  }
  const fullEnv = {
    ...process.env,
    // parallel servers would fight over the default metrics port
    REVERB_METRICS_PORT: '0',
    REVERB_APP_ID: APP_ID,
    REVERB_APP_KEY: APP_KEY,
    REVERB_APP_SECRET: APP_SECRET,
    ...env,
  };
  const argv = ['start', '--host', '127.0.0.1', '--port', '0', ...args];
  // REVURB_INTEROP_DEBUG=1 makes the server log its message stream on
  // stderr, which is printed when a test of the file fails.
  if (process.env.REVURB_INTEROP_DEBUG && !argv.includes('--debug')) argv.push('--debug');
  const child = spawn(bin, argv, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });

  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  child.stdout.setEncoding('utf8');

  let exitCode = null;
  let exitSignal = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitCode = code;
      exitSignal = signal;
      resolve({ code, signal });
    });
  });

  const describe = () =>
    `command: ${bin} ${argv.join(' ')}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;

  let listening;
  try {
    listening = await withTimeout(
      new Promise((resolve, reject) => {
        child.on('error', (e) => reject(new Error(`failed to spawn ${bin}: ${e.message}`)));
        child.stdout.on('data', (d) => {
          stdout += d;
          const nl = stdout.indexOf('\n');
          if (nl === -1) return;
          const first = stdout.slice(0, nl).trim();
          const m = /^revurb: listening on (\S+):(\d+)(?: \(.*\))?$/.exec(first);
          if (m) resolve({ host: m[1], port: Number(m[2]) });
          else reject(new Error(`first stdout line is not "revurb: listening on HOST:PORT": ${JSON.stringify(first)}`));
        });
        exited.then(({ code, signal }) =>
          reject(new Error(`server exited (code ${code}, signal ${signal}) before printing the listening line`)),
        );
      }),
      timeoutMs,
      'the "revurb: listening on" line',
    );
  } catch (e) {
    if (exitCode === null && exitSignal === null) {
      child.kill('SIGKILL');
      await withTimeout(exited, 5000, 'server exit after SIGKILL').catch(() => {});
    }
    throw new Error(`${e.message}\n${describe()}`);
  }
  // The data handler above stays attached: it keeps draining stdout (so the
  // child never blocks on a full pipe) and keeps collecting it.

  const { host, port } = listening;
  let stopped = null;

  return {
    host,
    port,
    wsUrl: `ws://${host}:${port}/app/${APP_KEY}`,
    httpUrl: `http://${host}:${port}`,
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    get exited() {
      return exitCode !== null || exitSignal !== null;
    },
    describe,
    /**
     * Sends SIGTERM and waits (up to timeoutMs) for the exit. Resolves with
     * the exit code (null if killed by a signal). On timeout the process is
     * SIGKILLed and the promise rejects.
     */
    stop({ timeoutMs = 10000 } = {}) {
      if (stopped) return stopped;
      stopped = (async () => {
        if (exitCode === null && exitSignal === null) child.kill('SIGTERM');
        try {
          const { code } = await withTimeout(exited, timeoutMs, 'server exit after SIGTERM');
          return code;
        } catch (e) {
          child.kill('SIGKILL');
          await withTimeout(exited, 5000, 'server exit after SIGKILL').catch(() => {});
          throw new Error(`${e.message}\n${describe()}`);
        }
      })();
      return stopped;
    },
    /** Kills the process without waiting gracefully (for cleanup only). */
    kill() {
      if (exitCode === null && exitSignal === null) child.kill('SIGKILL');
    },
  };
}

/**
 * Registers node:test hooks that start one server for the test file and
 * stop it at the end, asserting exit code 0. Returns `{ server, test }`:
 * `server()` is the running server; `test(name, [options], fn)` is
 * node:test's `test` whose failures also print the server's stderr.
 */
export function useServer(opts = {}) {
  let server = null;
  let anyFailed = false;
  before(async () => {
    server = await startServer(opts);
  }, { timeout: 20000 });
  after(async () => {
    if (!server) return;
    let code;
    try {
      code = await server.stop();
    } catch (e) {
      anyFailed = true;
      throw e;
    } finally {
      if (anyFailed) {
        console.error(`--- revurb stderr (port ${server.port}) ---\n${server.stderr}\n--- end of revurb stderr ---`);
      }
    }
    if (code !== 0) {
      throw new Error(`server exited with code ${code} (expected 0)\n${server.describe()}`);
    }
  }, { timeout: 20000 });
  const getServer = () => {
    if (!server) throw new Error('server not started (did the before hook fail?)');
    return server;
  };
  const wrappedTest = (name, options, fn) => {
    if (typeof options === 'function') {
      fn = options;
      options = {};
    }
    return nodeTest(name, { timeout: 30000, ...options }, async (t) => {
      try {
        return await fn(t);
      } catch (e) {
        anyFailed = true;
        throw e;
      }
    });
  };
  return { server: getServer, test: wrappedTest };
}

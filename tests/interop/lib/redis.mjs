// A throw-away `redis-server` for the cluster tests (horizontal scaling over
// Redis pub/sub): started as a child process on 127.0.0.1 and a free port,
// persistence off, ready once it answers PING (spoken in RESP over a raw TCP
// socket, so no Redis client dependency), stopped on teardown.

import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { waitFor, withTimeout } from './server.mjs';

/** The `redis-server` executable on PATH, or null. */
export function redisServerPath() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * What to do when `redis-server` is missing: `{ fail: message }` under CI
 * (`CI=true`), `{ skip: reason }` otherwise, or null when it is installed.
 */
export function redisAvailability() {
  if (redisServerPath()) return null;
  if (process.env.CI === 'true') {
    return {
      fail:
        'redis-server is required under CI (CI=true): the cluster tests need it on PATH ' +
        '(apt-get install redis-server)',
    };
  }
  return { skip: 'redis-server not found on PATH (apt-get install redis-server); cluster tests skipped' };
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return withTimeout(
    new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address();
        srv.close(() => resolve(port));
      });
    }),
    5000,
    'a free TCP port',
  );
}

/**
 * Sends one RESP `PING` to 127.0.0.1:`port` on a fresh TCP connection.
 * Resolves true on `+PONG`, false on anything else (refused, an error reply
 * such as `-LOADING`, a closed socket, or no answer within `timeoutMs`).
 */
export function ping(port, { timeoutMs = 1000 } = {}) {
  return new Promise((resolve) => {
    let reply = '';
    let done = false;
    const socket = net.connect({ host: '127.0.0.1', port });
    const finish = (ok) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (d) => {
      reply += d;
      if (reply.includes('\r\n')) finish(reply === '+PONG\r\n');
    });
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(false));
  });
}

/**
 * Starts `redis-server --port <free port> --bind 127.0.0.1 --save ""
 * --appendonly no` (in a temporary working directory) and resolves once it
 * answers PING. Tries a few ports, in case another process took the chosen
 * one between choosing and binding.
 *
 * @returns {Promise<{host: string, port: number, url: string, log: string,
 *   stop: () => Promise<void>, kill: () => void}>}
 */
export async function startRedis({ timeoutMs = 10000, attempts = 5 } = {}) {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server not found on PATH');
  const dir = mkdtempSync(path.join(tmpdir(), 'revurb-redis-'));
  const failures = [];
  try {
    for (let i = 0; i < attempts; i++) {
      const port = await freePort();
      const redis = spawnRedis(bin, port, dir);
      try {
        await waitFor(
          async () => {
            if (redis.exited) throw new Error(`redis-server exited (${redis.exitStatus})`);
            return ping(port);
          },
          { timeoutMs, intervalMs: 20, what: `redis-server on port ${port} to answer PING` },
        );
      } catch (e) {
        redis.kill();
        await redis.waitExit(5000).catch(() => {});
        failures.push(`port ${port}: ${e.message}\n--- redis-server log ---\n${redis.log}`);
        continue;
      }
      const stop = redis.stop;
      redis.stop = async () => {
        try {
          await stop();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      };
      return redis;
    }
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`redis-server did not come up after ${attempts} attempts:\n${failures.join('\n')}`);
}

function spawnRedis(bin, port, dir) {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  for (const pipe of [child.stdout, child.stderr]) {
    pipe.setEncoding('utf8');
    pipe.on('data', (d) => {
      log += d;
    });
  }
  let exitStatus = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exitStatus = signal ? `signal ${signal}` : `code ${code}`;
      resolve(exitStatus);
    });
    child.once('error', (e) => {
      log += `\nspawn error: ${e.message}`;
      exitStatus = `spawn error: ${e.message}`;
      resolve(exitStatus);
    });
  });
  let stopping = null;
  const redis = {
    host: '127.0.0.1',
    port,
    url: `redis://127.0.0.1:${port}/0`,
    child,
    get log() {
      return log;
    },
    get exited() {
      return exitStatus !== null;
    },
    get exitStatus() {
      return exitStatus;
    },
    waitExit: (ms) => withTimeout(exited, ms, `redis-server (port ${port}) to exit`),
    /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
    stop() {
      stopping ??= (async () => {
        if (exitStatus !== null) return;
        child.kill('SIGTERM');
        try {
          await redis.waitExit(5000);
        } catch (e) {
          child.kill('SIGKILL');
          await redis.waitExit(5000).catch(() => {});
          throw new Error(`${e.message}; killed it\n--- redis-server log ---\n${log}`);
        }
      })();
      return stopping;
    },
    kill() {
      if (exitStatus === null) child.kill('SIGKILL');
    },
  };
  return redis;
}

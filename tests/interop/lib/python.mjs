// The official Pusher Python server SDK (`pusher` on PyPI, pinned in
// python/requirements.txt), driven from the node tests: python/bridge.py runs
// in tests/interop/.venv and answers one JSON line per SDK call.
//
// `pythonSkipReason()` says why python.test.mjs cannot run (no venv) outside
// CI; with CI=true it returns null, so the tests run and fail on the missing
// venv with a message saying what makes it.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { repoRoot, withTimeout } from './server.mjs';

const interop = path.join(repoRoot, 'tests', 'interop');
/** The venv's interpreter. */
export const VENV_PYTHON = path.join(interop, '.venv', 'bin', 'python');
/** Written by setup.sh once the venv is complete. */
const VENV_STAMP = path.join(interop, '.venv', 'installed-requirements.txt');
const BRIDGE = path.join(interop, 'python', 'bridge.py');

const HOW_TO_INSTALL = 'tests/interop/setup.sh python (run.sh and .ci/run do it)';

/** Null when the venv is there (or under CI=true); otherwise why the tests skip. */
export function pythonSkipReason() {
  if (process.env.CI === 'true') return null;
  if (existsSync(VENV_PYTHON) && existsSync(VENV_STAMP)) return null;
  return `no Python SDK venv at tests/interop/.venv; make it with ${HOW_TO_INSTALL}`;
}

/**
 * Starts the bridge for `server` (plain HTTP) and resolves once the SDK is
 * imported. `call(method, args, kwargs)` resolves with the SDK's return value
 * or rejects with the exception it raised (`err.pythonType`, e.g.
 * `PusherBadAuth`). `close()` ends the bridge.
 */
export async function startPythonSdk(server, { appId, key, secret, timeoutMs = 15000 } = {}) {
  if (!existsSync(VENV_PYTHON) || !existsSync(VENV_STAMP)) {
    throw new Error(`the Python SDK venv is missing or incomplete (${VENV_PYTHON}); make it with ${HOW_TO_INSTALL}`);
  }
  const config = { app_id: appId, key, secret, host: server.host, port: server.port };
  const child = spawn(VENV_PYTHON, [BRIDGE, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const pending = new Map();
  let ready;
  const readyLine = new Promise((resolve, reject) => {
    ready = { resolve, reject };
  });
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.ready) return ready.resolve(msg);
    const waiter = pending.get(msg.id);
    pending.delete(msg.id);
    if (!waiter) return;
    if (msg.error) {
      const err = new Error(`python ${waiter.method} raised ${msg.error.type}: ${msg.error.message}`);
      err.pythonType = msg.error.type;
      waiter.reject(err);
    } else {
      waiter.resolve(msg.result);
    }
  });
  exited.then(({ code, signal }) => {
    const err = new Error(`the Python SDK bridge exited (code ${code}, signal ${signal}); stderr:\n${stderr}`);
    ready.reject(err);
    for (const waiter of pending.values()) waiter.reject(err);
    pending.clear();
  });
  child.on('error', (e) => ready.reject(new Error(`cannot start ${VENV_PYTHON}: ${e.message}`)));
  const hello = await withTimeout(readyLine, timeoutMs, 'the Python SDK bridge to start');

  let nextId = 0;
  return {
    /** The SDK version the bridge imported. */
    version: hello.version,
    call(method, args = [], kwargs = {}, { timeoutMs: callTimeout = 10000 } = {}) {
      const id = ++nextId;
      const answer = new Promise((resolve, reject) => pending.set(id, { method, resolve, reject }));
      child.stdin.write(`${JSON.stringify({ id, method, args, kwargs })}\n`);
      return withTimeout(answer, callTimeout, `python pusher.${method}`);
    },
    /**
     * The two signing calls of lib/authserver.mjs, made by the Python SDK:
     * `authenticate` (channel authorization) and `authenticate_user`.
     */
    signer() {
      return {
        authorizeChannel: (socketId, channel, presenceData) =>
          this.call('authenticate', [channel, socketId, presenceData ?? null]),
        authenticateUser: (socketId, userData) => this.call('authenticate_user', [socketId, userData]),
      };
    },
    async close() {
      child.stdin.end();
      await withTimeout(exited, 5000, 'the Python SDK bridge to exit').catch(() => child.kill('SIGKILL'));
    },
  };
}

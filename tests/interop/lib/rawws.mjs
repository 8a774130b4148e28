// A minimal RFC 6455 WebSocket client over node:net, with no dependency.
// Node 20 has no global WebSocket without a flag, and pusher-js bundles its
// own client internally, so protocol-level tests (close codes, raw frames)
// use this. Text frames only (plus ping/pong/close); enough for Pusher.

import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { withTimeout } from './server.mjs';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export class RawWebSocket extends EventEmitter {
  /** Use RawWebSocket.connect(url) instead. */
  constructor(socket) {
    super();
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    this.fragments = null;
    /** Every text message received, in order (raw strings). */
    this.texts = [];
    /** Every message received that parsed as JSON, in order. */
    this.messages = [];
    /** {code, reason} of the close frame received, or null. */
    this.closeFrame = null;
    this.closed = false;
    this.closeSent = false;
    this.closedPromise = new Promise((resolve) => {
      this.once('end', resolve);
    });
  }

  /**
   * Opens a WebSocket to `url` (ws://host:port/path). Resolves once the
   * upgrade handshake succeeded; rejects on a non-101 answer.
   */
  static connect(url, { timeoutMs = 5000, headers = {} } = {}) {
    const u = new URL(url);
    if (u.protocol !== 'ws:') throw new Error(`only ws: URLs are supported, got ${url}`);
    const key = randomBytes(16).toString('base64');
    const expectedAccept = createHash('sha1').update(key + GUID).digest('base64');
    const socket = net.connect({ host: u.hostname, port: Number(u.port || 80) });
    const p = new Promise((resolve, reject) => {
      let head = Buffer.alloc(0);
      const onError = (e) => reject(e);
      const onClose = () => reject(new Error('connection closed during the WebSocket handshake'));
      const onData = (chunk) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        const status = lines[0];
        const hdrs = {};
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':');
          if (i > 0) hdrs[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
        if (!/^HTTP\/1\.1 101\b/.test(status)) {
          socket.destroy();
          reject(new Error(`WebSocket upgrade refused: ${status}`));
          return;
        }
        if (hdrs['sec-websocket-accept'] !== expectedAccept) {
          socket.destroy();
          reject(new Error(`bad Sec-WebSocket-Accept: ${hdrs['sec-websocket-accept']}`));
          return;
        }
        const ws = new RawWebSocket(socket);
        ws.responseHeaders = hdrs;
        ws._attach(head.subarray(end + 4));
        resolve(ws);
      };
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
      socket.on('connect', () => {
        const extra = Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
        socket.write(
          `GET ${u.pathname}${u.search} HTTP/1.1\r\n` +
            `Host: ${u.host}\r\n` +
            'Upgrade: websocket\r\n' +
            'Connection: Upgrade\r\n' +
            `Sec-WebSocket-Key: ${key}\r\n` +
            'Sec-WebSocket-Version: 13\r\n' +
            extra +
            '\r\n',
        );
      });
    });
    return withTimeout(p, timeoutMs, `WebSocket handshake with ${url}`).catch((e) => {
      socket.destroy();
      throw e;
    });
  }

  _attach(rest) {
    this.socket.on('data', (chunk) => this._onData(chunk));
    this.socket.on('error', (e) => this.emit('socket-error', e));
    this.socket.on('close', () => {
      this.closed = true;
      this.emit('end', this.closeFrame);
    });
    if (rest.length > 0) this._onData(rest);
  }

  _onData(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      let mask = null;
      if (masked) {
        if (b.length < off + 4) return;
        mask = b.subarray(off, off + 4);
        off += 4;
      }
      if (b.length < off + len) return;
      let payload = Buffer.from(b.subarray(off, off + len));
      this.buffer = b.subarray(off + len);
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      this._onFrame(fin, opcode, payload);
    }
  }

  _onFrame(fin, opcode, payload) {
    if (opcode === 0x0 || opcode === 0x1 || opcode === 0x2) {
      if (opcode !== 0x0) this.fragments = { opcode, parts: [] };
      if (!this.fragments) return; // stray continuation
      this.fragments.parts.push(payload);
      if (!fin) return;
      const data = Buffer.concat(this.fragments.parts);
      const op = this.fragments.opcode;
      this.fragments = null;
      if (op === 0x1) {
        const text = data.toString('utf8');
        this.texts.push(text);
        let parsed;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        if (parsed !== undefined) this.messages.push(parsed);
        this.emit('text', text);
        this.emit('message', parsed);
      } else {
        this.emit('binary', data);
      }
    } else if (opcode === 0x8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.length > 2 ? payload.subarray(2).toString('utf8') : '';
      this.closeFrame = { code, reason };
      this.emit('close-frame', this.closeFrame);
      if (!this.closeSent) {
        this._sendFrame(0x8, payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0));
        this.closeSent = true;
      }
      this.socket.end();
    } else if (opcode === 0x9) {
      this.emit('ping', payload);
      this._sendFrame(0xa, payload);
    } else if (opcode === 0xa) {
      this.emit('pong', payload);
    }
  }

  _sendFrame(opcode, payload) {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const mask = randomBytes(4);
    const len = payload.length;
    let header;
    if (len < 126) {
      header = Buffer.alloc(2);
      header[1] = 0x80 | len;
    } else if (len < 65536) {
      header = Buffer.alloc(4);
      header[1] = 0x80 | 126;
      header.writeUInt16BE(len, 2);
    } else {
      header = Buffer.alloc(10);
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(len), 2);
    }
    header[0] = 0x80 | opcode;
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
    this.socket.write(Buffer.concat([header, mask, body]));
  }

  /** Sends a text frame; objects are JSON-encoded. */
  send(data) {
    const text = typeof data === 'string' ? data : JSON.stringify(data);
    this._sendFrame(0x1, Buffer.from(text, 'utf8'));
  }

  /** Sends a ping control frame. */
  ping(payload = Buffer.alloc(0)) {
    this._sendFrame(0x9, Buffer.from(payload));
  }

  /** Starts the closing handshake (or just drops the socket if it's gone). */
  close(code = 1000, reason = '') {
    if (!this.closeSent) {
      const r = Buffer.from(reason, 'utf8');
      const p = Buffer.alloc(2 + r.length);
      p.writeUInt16BE(code, 0);
      r.copy(p, 2);
      this._sendFrame(0x8, p);
      this.closeSent = true;
    }
  }

  /** Destroys the TCP socket at once (cleanup). */
  terminate() {
    this.socket.destroy();
  }

  /**
   * Resolves with the first received JSON message (already received ones
   * included, from index `from`) satisfying `predicate`.
   */
  waitForMessage(predicate, { timeoutMs = 5000, from = 0, what = 'a matching message' } = {}) {
    const found = this.messages.slice(from).find(predicate);
    if (found) return Promise.resolve(found);
    let handler;
    let endHandler;
    const p = new Promise((resolve, reject) => {
      handler = (m) => {
        if (m !== undefined && predicate(m)) resolve(m);
      };
      endHandler = () => reject(new Error(`connection closed while waiting for ${what}`));
      this.on('message', handler);
      this.once('end', endHandler);
    });
    return withTimeout(p, timeoutMs, what).finally(() => {
      this.off('message', handler);
      this.off('end', endHandler);
    });
  }

  /** Resolves with the next JSON message with `event` === name. */
  waitForEvent(name, opts = {}) {
    return this.waitForMessage((m) => m && m.event === name, { what: `event ${name}`, ...opts });
  }

  /** Resolves with {code, reason} of the close frame, or null if none came. */
  waitForClose({ timeoutMs = 5000 } = {}) {
    if (this.closed) return Promise.resolve(this.closeFrame);
    return withTimeout(this.closedPromise, timeoutMs, 'the WebSocket to close');
  }
}

/** Parses the JSON-encoded `data` field of a Pusher protocol message. */
export function pusherData(message) {
  return typeof message.data === 'string' ? JSON.parse(message.data) : message.data;
}

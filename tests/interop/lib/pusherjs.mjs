// pusher-js workarounds for the test process (not for the server under test).

/**
 * When the server closes a pusher-js connection with a 4000-4099 code (e.g.
 * 4009 from terminate_connections or a failed signin), pusher-js "refuses"
 * and calls close() on its already-closed WebSocket; the bundled
 * faye-websocket client then arms a 30 s close timer that nothing clears,
 * keeping the test process alive for 30 s after the last test. This unrefs
 * that timer (behaviour is unchanged otherwise). Call it on a client; it
 * patches each socket as the client connects.
 */
export function unrefCloseTimers(client) {
  const patch = () => {
    const socket = client.connection.connection?.transport?.socket;
    if (!socket || socket.__revurbUnrefPatched || typeof socket.close !== 'function') return;
    const original = socket.close;
    socket.close = function patchedClose(...args) {
      const result = original.apply(this, args);
      this._closeTimer?.unref?.();
      return result;
    };
    socket.__revurbUnrefPatched = true;
  };
  client.connection.bind('connected', patch);
  patch();
  return client;
}

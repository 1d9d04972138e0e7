// A loopback TCP relay in front of the gateway that a test can cut, for "the gateway cannot be
// reached". Playwright's routes are no such cut: a keepalive fetch sent while a page unloads
// bypasses them, and whether the SDK sends one then depends on `navigator.onLine`, which the
// test does not control to the millisecond. While cut, every connection (open or new) is reset,
// whatever kind of request rides on it.
import { createServer, connect } from 'node:net';

export async function startLink(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let cut = false;
  const track = (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  const server = createServer((client) => {
    if (cut) return client.resetAndDestroy();
    const upstream = connect(Number(port), hostname);
    track(client);
    track(upstream);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Resets every open connection and every new one until `restore`. */
    cut() {
      cut = true;
      for (const socket of sockets) socket.resetAndDestroy();
    },
    restore() {
      cut = false;
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(resolve);
      }),
  };
}

// A real `inlet` gateway for the browser tests: started on a free loopback port with a local
// lake, read back through its metrics while running and through `inlet wal dump` once stopped.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function waitFor(what, check, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts `inlet`. `options.sources` replaces the one source `web` (a TOML array); `options.env`
 * adds settings; `options.lakeDir` puts the lake in a local directory.
 */
export async function startGateway(bin, writeKey, options = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'inlet-browser-'));
  const port = await freePort();
  const adminPort = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const env = {
    ...process.env,
    INLET_DATA_DIR: join(dir, 'data'),
    INLET_SERVER__LISTEN: `127.0.0.1:${port}`,
    INLET_ADMIN__LISTEN: `127.0.0.1:${adminPort}`,
    INLET_LOG_LEVEL: 'warn',
    INLET_SOURCES: options.sources ?? `[{name = "web", write_key = "${writeKey}"}]`,
    // Every event is read back from the WAL after the stop. With spare segments the first
    // segment is closed early and deleted once the final lake flush has it; without them it
    // keeps everything this test sends.
    INLET_WAL__PREALLOCATE: 'false',
    ...(options.lakeDir ? { INLET_LAKE__URL: options.lakeDir } : {}),
    ...options.env,
  };
  const stderr = join(dir, 'gateway.err');
  const child = spawn(bin, [], { env, stdio: ['ignore', 'ignore', openSync(stderr, 'w')] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await waitFor('the gateway to answer /healthz', () =>
    fetch(`${url}/healthz`).then((r) => r.ok, () => false),
  );

  return {
    url,
    adminUrl,
    dir,
    /** The admin listener's metrics, as text. */
    metrics: async () => (await fetch(`${adminUrl}/metrics`)).text(),
    /** Events stored so far (duplicates by messageId are not counted). */
    async accepted() {
      const text = await (await fetch(`${adminUrl}/metrics`)).text();
      return text
        .split('\n')
        .filter((line) => line.startsWith('inlet_ingest_events_accepted_total'))
        .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    },
    /** Stops the gateway (SIGTERM, a clean shutdown) and returns every stored event. */
    async stopAndDump() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`gateway exited with ${code}:\n${readFileSync(stderr, 'utf8')}`);
      const dump = execFileSync(bin, ['wal', 'dump'], { env, maxBuffer: 64 << 20 }).toString();
      return dump
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line));
    },
    stderr: () => readFileSync(stderr, 'utf8'),
    cleanup() {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

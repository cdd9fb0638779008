// Start-up errors of mcpmesh-node, as a new user meets them: every configuration error is
// caught before anything binds and names the flag (exit 2); a bind failure names the address
// and the flag that sets it (exit 1); a host name works where an address does.
//
// env MCPMESH_NODE = path to the mcpmesh-node binary (required)
// Only Node built-ins (node:test, node:assert, node:child_process, node:fs, node:net, node:os,
// node:path) and tests/lib/util.mjs.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { withDeadline } from '../lib/util.mjs';

const RUN_DEADLINE_MS = 15_000;
const bin = process.env.MCPMESH_NODE;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmesh-startup-'));
const secret = path.join(dir, 'cluster.secret');
fs.writeFileSync(secret, 'startup-test-secret-0123456789abcdef\n', { mode: 0o600 });

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs the node to its exit (or until it prints `until`, then stops it): { code, stderr }. */
function runNode(args, { until } = {}) {
  if (!bin) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  return withDeadline(new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      stderr += d;
      if (until && until.test(stderr)) proc.kill('SIGTERM');
    });
    proc.on('error', reject);
    proc.on('exit', (code) => resolve({ code, stderr }));
  }), RUN_DEADLINE_MS, `mcpmesh-node ${args.join(' ')}`);
}

/** A listening socket holding a loopback port: { port, close() }. */
async function holdPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

/** Whether `port` can be bound now (the node left nothing bound behind). */
function free(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

describe('mcpmesh-node start-up errors', () => {
  it('a bad --log-level is refused, naming the levels (not silently turned off)', async () => {
    const r = await runNode(['--log-level', 'verbose', '--http', '127.0.0.1:0']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--log-level 'verbose' is not one of trace \| debug/);
    assert.doesNotMatch(r.stderr, /listening on/);
  });

  it('a bad --cluster-profile is refused before the HTTP port is bound', async () => {
    const held = await holdPort();
    const port = held.port;
    await held.close();
    const r = await runNode(['--http', `127.0.0.1:${port}`, '--cluster', '127.0.0.1:0',
      '--cluster-secret-file', secret, '--cluster-profile', 'bogus']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--cluster-profile 'bogus' is not lan \| fast/);
    assert.doesNotMatch(r.stderr, /listening on/);
    assert.ok(await free(port), 'the HTTP port was never taken');
  });

  it('a missing cluster secret file is refused before anything binds, naming the flag', async () => {
    const r = await runNode(['--http', '127.0.0.1:0', '--cluster', '127.0.0.1:0',
      '--cluster-secret-file', path.join(dir, 'missing')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--cluster-secret-file: cannot read cluster secret file/);
    assert.doesNotMatch(r.stderr, /listening on/);
  });

  it('a taken --http port: exit 1, naming the address and the flag', async () => {
    const held = await holdPort();
    try {
      const r = await runNode(['--http', `127.0.0.1:${held.port}`]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${held.port} \\(--http\\): Address already in use`));
      assert.doesNotMatch(r.stderr, /\.hpp|\.cpp|\[system:/, 'no source locations');
    } finally {
      await held.close();
    }
  });

  it('a taken --cluster port: exit 1, naming it, and the HTTP port was never bound', async () => {
    const held = await holdPort();
    const httpHeld = await holdPort();
    const httpPort = httpHeld.port;
    await httpHeld.close();
    try {
      const r = await runNode(['--http', `127.0.0.1:${httpPort}`, '--cluster', `127.0.0.1:${held.port}`,
        '--cluster-secret-file', secret]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${held.port} \\(--cluster\\): Address already in use`));
      assert.doesNotMatch(r.stderr, /listening on http/);
      assert.ok(await free(httpPort), 'the HTTP port was never taken');
    } finally {
      await held.close();
    }
  });

  it('--http localhost:0 listens (a host name, resolved)', async () => {
    // Stopped (SIGTERM) once it listens: its exit status is not the point here.
    const r = await runNode(['--http', 'localhost:0'], { until: /listening on http:\/\/127\.0\.0\.1:\d+\/mcp/ });
    assert.match(r.stderr, /listening on http:\/\/127\.0\.0\.1:\d+\/mcp/);
    assert.doesNotMatch(r.stderr, /cannot/);
  });
});

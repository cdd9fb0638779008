// mcpmesh-bench against a real mcpmesh-node (`--app demo`), on loopback: a closed-loop run
// with every operation of the mix, held SSE streams and two source addresses; an open-loop
// run at an asked rate; --processes; --hold until SIGTERM; a closed port; a bad flag; and a
// stand-in server that answers every tools/call with 429 + Retry-After.
// The runs are short (1-2 s): they prove the tool works, their figures mean nothing.
//
// env MCPMESH_NODE, MCPMESH_BENCH = paths to the binaries (required)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { brief, closedPort, runBench, startServer } from './bench_helper.mjs';

let node;

before(async () => {
  const bin = process.env.MCPMESH_NODE;
  if (!bin) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  // Keep-alives every 200 ms, so a held stream has something to count within a short run; no
  // per-client rate limit, which a closed loop from one address exceeds at once.
  node = await startServer(bin, ['--http', '127.0.0.1:0', '--app', 'demo', '--threads', '1',
    '--sse-keepalive-ms', '200', '--client-rate-limit', '0', '--client-session-rate-limit', '0']);
});

after(async () => {
  await node?.stop();
});

describe('mcpmesh-bench against mcpmesh-node', () => {
  it('closed loop: every operation of the mix, held streams, two source addresses', async () => {
    const r = await runBench(['--url', node.url, '--duration', '1.5s', '--warmup', '0.3s',
      '--sessions', '8', '--connections', '4', '--mix', 'tools_call=80,initialize=5,ping=10,notify=5',
      '--sse-streams', '2', '--source-addresses', '127.0.0.2-127.0.0.3', '--timeout', '5s']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.report;
    assert.ok(j, `one JSON object on stdout, got: ${r.stdout}`);
    const why = brief(j);
    assert.equal(j.ok, true, why);
    assert.equal(j.config.mode, 'closed');
    assert.deepEqual(j.config.source_addresses, ['127.0.0.2', '127.0.0.3']);
    assert.ok(j.requests > 0, why);
    assert.equal(j.sessions.requested, 8, why);
    assert.equal(j.sessions.created, 8, why);
    assert.equal(j.sessions.deleted, 8, why);
    for (const op of ['tools_call', 'initialize', 'ping', 'notify']) {
      assert.ok(j.ops[op]?.count > 0, `${op} count: ${why}`);
      assert.equal(j.ops[op].ok, j.ops[op].count, `${op}: every one answered well: ${why}`);
      assert.ok(j.ops[op].latency_ms.p50 > 0, `${op} p50: ${why}`);
      assert.ok(j.ops[op].latency_ms.p99 >= j.ops[op].latency_ms.p50, why);
    }
    assert.equal(j.errors.socket, 0, why);
    assert.equal(j.errors.jsonrpc, 0, why);
    assert.equal(j.errors.timeout, 0, why);
    assert.equal(j.errors.bad_answer, 0, why);
    assert.ok(j.status['200'] > 0 && j.status['202'] > 0, why);
    assert.equal(j.status.other, 0, why);
    assert.equal(j.sse.opened, 2, why);
    assert.equal(j.sse.ended_early, 0, why);
    assert.ok(j.sse.keepalives > 0, `keep-alives counted on the held streams: ${why}`);
    assert.ok(j.cpu.user_s + j.cpu.system_s > 0, why);
    assert.match(r.stderr, /tools_call/, 'a summary on stderr');
  });

  it('open loop: the achieved rate is near the asked one', async () => {
    const rate = 400;
    const r = await runBench(['--url', node.url, '--duration', '2s', '--warmup', '0.2s',
      '--connections', '4', '--rate', String(rate), '--timeout', '5s']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.report;
    const why = brief(j);
    assert.equal(j.config.mode, 'open');
    assert.equal(j.open_loop.asked_rate, rate);
    // Loose: the schedule is exact, but a busy machine may leave a connection late.
    assert.ok(j.open_loop.achieved_rate > rate * 0.75 && j.open_loop.achieved_rate < rate * 1.1, why);
    assert.ok(Math.abs(j.open_loop.intended - rate * 2) <= 8, why);
    assert.equal(j.errors.socket, 0, why);
    assert.equal(j.errors.jsonrpc, 0, why);
  });

  it('--processes 2: the shares are merged into one report', async () => {
    const r = await runBench(['--url', node.url, '--duration', '1s', '--warmup', '0.2s',
      '--sessions', '6', '--connections', '4', '--processes', '2', '--sse-streams', '2',
      '--mix', 'tools_call=90,ping=10', '--source-addresses', '127.0.0.2-5']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.report;
    const why = brief(j);
    assert.equal(j.sessions.created, 6, why);
    assert.equal(j.sessions.deleted, 6, why);
    assert.equal(j.sse.opened, 2, why);
    assert.ok(j.ops.tools_call.count > 0 && j.ops.ping.count > 0, why);
    assert.equal(j.errors.socket + j.errors.jsonrpc, 0, why);
    assert.ok(j.ops.tools_call.latency_ms.p99 > 0, why);
  });

  it('--hold: ready line, then holds until SIGTERM and closes everything', async () => {
    let signalled = false;
    const r = await runBench(['--url', node.url, '--hold', '--duration', '60s', '--sessions', '6',
      '--connections', '2', '--sse-streams', '3'], {
      deadlineMs: 30_000,
      onStderr: (text, proc) => {
        if (!signalled && /^ready 6 3$/m.test(text)) {
          signalled = true;
          proc.kill('SIGTERM');
        }
      },
    });
    assert.ok(signalled, `no ready line: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    const why = brief(r.report);
    assert.equal(r.report.config.mode, 'hold');
    assert.equal(r.report.sessions.created, 6, why);
    assert.equal(r.report.sessions.deleted, 6, why);
    assert.equal(r.report.sse.opened, 3, why);
    assert.equal(r.report.sse.ended_early, 0, why);
    assert.ok(r.report.measured_s < 30, why);
  });

  it('a closed port: a clear error and a non-zero exit', async () => {
    const port = await closedPort();
    const r = await runBench(['--url', `http://127.0.0.1:${port}/mcp`, '--duration', '1s'], { deadlineMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.report?.ok, false, r.stdout);
    assert.match(r.report.error, /no session could be opened.*Connection refused/);
    assert.match(r.stderr, /no session could be opened/);
  });

  it('bad flags: a message and exit 2', async () => {
    for (const args of [['--url', node.url, '--mix', 'bogus=1'], ['--connections', '2'],
      ['--url', 'https://127.0.0.1:1/mcp']]) {
      const r = await runBench(args, { deadlineMs: 10_000 });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^mcpmesh-bench: /);
      assert.equal(r.stdout, '');
    }
  });
});

/** A stand-in MCP server: sessions work, every tools/call gets 429 with Retry-After: 1. */
async function startBusyServer() {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.method === 'DELETE') return res.writeHead(200).end();
      const msg = JSON.parse(body);
      if (msg.method === 'initialize') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Mcp-Session-Id': 'busy-1' });
        return res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id,
          result: { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'busy', version: '1' } } }));
      }
      if (msg.id === undefined) return res.writeHead(202).end();
      res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '1' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32000, message: 'slow down' } }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

describe('mcpmesh-bench against a server that sheds load', () => {
  it('counts 429s, and with --honour-retry-after waits as told', async () => {
    const busy = await startBusyServer();
    try {
      const url = `http://127.0.0.1:${busy.address().port}/mcp`;
      const common = ['--url', url, '--duration', '1.5s', '--warmup', '0s', '--connections', '2', '--quiet'];
      const honouring = await runBench([...common, '--honour-retry-after']);
      assert.equal(honouring.code, 0, honouring.stderr);
      let j = honouring.report;
      let why = brief(j);
      // Each connection: one call at once, one after the 1 s it was told to wait.
      assert.ok(j.ops.tools_call.count >= 2 && j.ops.tools_call.count <= 4, why);
      assert.equal(j.status['429'], j.ops.tools_call.count, why);
      assert.equal(j.ops.tools_call.http_errors, j.ops.tools_call.count, why);
      assert.ok(j.retry_after.honoured >= 2 && j.retry_after.waited_s > 1, why);
      assert.equal(j.errors.socket, 0, why);

      const ignoring = await runBench(common);
      assert.equal(ignoring.code, 0, ignoring.stderr);
      j = ignoring.report;
      why = brief(j);
      assert.ok(j.ops.tools_call.count > 20, why);
      assert.equal(j.status['429'], j.ops.tools_call.count, why);
      assert.equal(j.retry_after.honoured, 0, why);
      assert.equal(j.retry_after.seen, j.ops.tools_call.count, why);
    } finally {
      busy.closeAllConnections();
      await new Promise((r) => busy.close(r));
    }
  });
});

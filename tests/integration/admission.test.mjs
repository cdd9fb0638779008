// Admission under real descriptor limits and a flooding client, against real mcpmesh-node
// processes (`--app demo`):
//   1. `ulimit -n 1024` and the default --max-connections (derived from that limit): 1,100
//      connections from eight loopback addresses each ask /healthz and stay open; every one is
//      answered 200 or 503 (or refused) within its deadline, none hangs, the refusals are
//      counted, and once they close a new client is served at once;
//   2. `ulimit -n 256` with --max-connections 5000 (above what the limit allows: a warning at
//      start): 400 connections run the node out of descriptors; every connection still gets
//      200, 503 or a refusal (never a hang), accept failures are counted and logged at most
//      about once a second, and the node serves again afterwards;
//   3. one client floods `initialize` for 10 s; meanwhile and after, a client from another
//      address gets a session at once, and the flooder is held to its share;
//   4. the worker pool's queue bound: with one worker and a 1 s lag target, CPU-heavy calls
//      (`burn`, 100 ms) past the bound (the worker plus what it serves in 500 ms) are answered
//      503 + Retry-After with a JSON-RPC error naming the request, new sessions already at half
//      the queue, counted; the calls admitted complete; afterwards the node serves again.
//
// env MCPMESH_NODE = path to the mcpmesh-node binary (required)
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';

import { delay, withDeadline } from '../lib/util.mjs';

const PROTOCOL = '2025-11-25';
const START_DEADLINE_MS = 20_000;
const ANSWER_DEADLINE_MS = 10_000;
const SOURCES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);

const nodes = [];

/** Starts mcpmesh-node under `ulimit -n <nofile>` (when given) with `args`. */
async function startNode(args, { nofile } = {}) {
  const bin = process.env.MCPMESH_NODE;
  if (!bin) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  const all = ['--http', '127.0.0.1:0', '--app', 'demo', ...args];
  const proc = nofile
    ? spawn('bash', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, bin, ...all], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(bin, all, { stdio: ['ignore', 'ignore', 'pipe'] });
  const node = { proc, log: '' };
  nodes.push(node);
  proc.stderr.setEncoding('utf8');
  node.port = await withDeadline(new Promise((resolve, reject) => {
    proc.stderr.on('data', (chunk) => {
      node.log += chunk;
      const m = /listening on http:\/\/[^\s]+:(\d+)\/mcp/.exec(node.log);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code, sig) => reject(new Error(`mcpmesh-node exited (${code}/${sig}): ${node.log}`)));
  }), START_DEADLINE_MS, 'mcpmesh-node listening line');
  return node;
}

async function stopNode(node) {
  const { proc } = node;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

after(async () => {
  for (const n of nodes) await stopNode(n);
});

/**
 * Opens a connection from `localAddress`, sends GET /healthz and waits for the status line.
 * Resolves { outcome: 'ok' | 'busy' | 'refused', socket } ('refused': connection refused or
 * reset before an answer); rejects only when nothing happened within ANSWER_DEADLINE_MS.
 */
function healthOnNewConnection(port, localAddress) {
  return withDeadline(new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let data = '';
    let done = false;
    const finish = (outcome) => {
      if (done) return;
      done = true;
      resolve({ outcome, socket });
    };
    socket.setEncoding('latin1');
    socket.on('connect', () => {
      socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    });
    socket.on('data', (chunk) => {
      data += chunk;
      if (!data.includes('\r\n\r\n')) return;
      if (data.startsWith('HTTP/1.1 200 ')) finish('ok');
      else if (data.startsWith('HTTP/1.1 503 ')) finish(/Retry-After: \d+/i.test(data) ? 'busy' : 'busy-without-retry-after');
      else finish(`unexpected: ${data.slice(0, 80)}`);
    });
    socket.on('error', () => finish('refused'));
    socket.on('close', () => finish(data ? `cut: ${data.slice(0, 80)}` : 'refused'));
  }), ANSWER_DEADLINE_MS, `connection from ${localAddress}`);
}

/** `count` connections spread over SOURCES, opened `batch` at a time; outcome counts. */
async function manyConnections(port, count, batch = 50) {
  const sockets = [];
  const outcomes = {};
  for (let i = 0; i < count; i += batch) {
    const results = await Promise.all(Array.from({ length: Math.min(batch, count - i) },
      (_, j) => healthOnNewConnection(port, SOURCES[(i + j) % SOURCES.length])));
    for (const r of results) {
      outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
      sockets.push(r.socket);
    }
  }
  return { outcomes, close: () => sockets.forEach((s) => s.destroy()) };
}

function getText(port, path, localAddress = '127.0.0.1') {
  return withDeadline(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, localAddress, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  }), ANSWER_DEADLINE_MS, `GET ${path}`);
}

function metric(text, name) {
  const m = new RegExp(`^mcpmesh_${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

const initializeBody = (name) => JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name, version: '1' } },
});

/** POST initialize with `agent` (keep-alive) from `localAddress`; resolves { status, ms }. */
function initialize(port, { agent, localAddress, name = 'client' }) {
  const t0 = performance.now();
  return withDeadline(new Promise((resolve, reject) => {
    const body = initializeBody(name);
    const req = http.request({
      host: '127.0.0.1', port, path: '/mcp', method: 'POST', agent, localAddress,
      headers: {
        'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
        'Content-Length': Buffer.byteLength(body),
      },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, session: res.headers['mcp-session-id'], ms: performance.now() - t0 }));
    });
    req.on('error', reject);
    req.end(body);
  }), ANSWER_DEADLINE_MS, `initialize from ${localAddress}`);
}

/** POST `message` on `session` from `localAddress`; resolves { status, headers, rpc } (rpc: the
 * JSON-RPC answer, from a JSON body or the last `data:` line of an SSE one). */
function post(port, session, message, localAddress = '127.0.0.1') {
  return withDeadline(new Promise((resolve, reject) => {
    const body = JSON.stringify(message);
    const req = http.request({
      host: '127.0.0.1', port, path: '/mcp', method: 'POST', agent: false, localAddress,
      headers: {
        'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
        'Content-Length': Buffer.byteLength(body), 'Mcp-Session-Id': session,
        'MCP-Protocol-Version': PROTOCOL,
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        const data = text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5));
        const json = data.length ? data[data.length - 1] : text;
        let rpc;
        try { rpc = json.trim() ? JSON.parse(json) : undefined; } catch { rpc = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, rpc, text });
      });
    });
    req.on('error', reject);
    req.end(body);
  }), ANSWER_DEADLINE_MS, `POST ${message.method ?? 'answer'}`);
}

async function openSession(port, name, localAddress = '127.0.0.1') {
  const r = await initialize(port, { agent: false, localAddress, name });
  assert.equal(r.status, 200, `initialize: ${r.status}`);
  const note = await post(port, r.session, { jsonrpc: '2.0', method: 'notifications/initialized' }, localAddress);
  assert.equal(note.status, 202);
  return r.session;
}

const burn = (id, micros) => ({
  jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'burn', arguments: { micros } },
});

describe('admission under descriptor limits and floods', { timeout: 240_000 }, () => {
  it('ulimit -n 1024: connections past the limit get 503 or a refusal, never a hang', async () => {
    const node = await startNode([], { nofile: 1024 });
    const { outcomes, close } = await manyConnections(node.port, 1100);
    try {
      console.log(`# 1,100 connections under ulimit -n 1024: ${JSON.stringify(outcomes)}`);
      const known = (outcomes.ok ?? 0) + (outcomes.busy ?? 0) + (outcomes.refused ?? 0);
      assert.equal(known, 1100, `every connection answered 200/503 or refused: ${JSON.stringify(outcomes)}`);
      assert.ok(outcomes.ok >= 900, `most connections up to the limit served: ${JSON.stringify(outcomes)}`);
      assert.ok((outcomes.busy ?? 0) + (outcomes.refused ?? 0) >= 100, 'connections past the limit were turned away');
    } finally {
      close();
    }
    // Back to normal once they are gone (the node notices the closes asynchronously).
    let served;
    const end = Date.now() + ANSWER_DEADLINE_MS;
    while (Date.now() < end) {
      const r = await healthOnNewConnection(node.port, '127.0.0.1');
      r.socket.destroy();
      if (r.outcome === 'ok') { served = true; break; }
      await delay(50);
    }
    assert.ok(served, 'a new client is served once the connections closed');
    const m = (await getText(node.port, '/metrics')).body;
    assert.ok(metric(m, 'connections_rejected_total') >= 100, `connections_rejected_total: ${metric(m, 'connections_rejected_total')}`);
    assert.equal(metric(m, 'accept_errors_total'), 0, 'the derived --max-connections kept accept() within the descriptor limit');
    await stopNode(node);
  });

  it('out of descriptors (ulimit -n 256, --max-connections 5000): 503 or refusal, counted, logged at most once a second', async () => {
    const node = await startNode(['--max-connections', '5000'], { nofile: 256 });
    assert.match(node.log, /--max-connections 5000 is more than the open-file limit allows/);
    const t0 = Date.now();
    const { outcomes, close } = await manyConnections(node.port, 400, 25);
    const elapsedS = (Date.now() - t0) / 1000;
    try {
      console.log(`# 400 connections under ulimit -n 256: ${JSON.stringify(outcomes)} in ${elapsedS.toFixed(1)} s`);
      const known = (outcomes.ok ?? 0) + (outcomes.busy ?? 0) + (outcomes.refused ?? 0);
      assert.equal(known, 400, `every connection answered 200/503 or refused: ${JSON.stringify(outcomes)}`);
      assert.ok(outcomes.ok >= 150, `connections within the limit served: ${JSON.stringify(outcomes)}`);
      assert.ok((outcomes.busy ?? 0) >= 1, 'some were answered 503 with the reserved descriptor');
    } finally {
      close();
    }
    let served;
    const end = Date.now() + ANSWER_DEADLINE_MS;
    while (Date.now() < end) {
      const r = await healthOnNewConnection(node.port, '127.0.0.1');
      r.socket.destroy();
      if (r.outcome === 'ok') { served = true; break; }
      await delay(50);
    }
    assert.ok(served, 'a new client is served once descriptors came back');
    const m = (await getText(node.port, '/metrics')).body;
    assert.ok(metric(m, 'accept_errors_total') >= 1, 'accept failures counted');
    const logLines = node.log.split('\n').filter((l) => l.includes('accept failed')).length;
    const windowS = (Date.now() - t0) / 1000;
    assert.ok(logLines >= 1 && logLines <= Math.ceil(windowS) + 1,
      `${logLines} 'accept failed' lines over ${windowS.toFixed(1)} s`);
    await stopNode(node);
  });

  it('one client floods initialize for 10 s; another address still gets a session at once', async () => {
    const node = await startNode(['--threads', '1']);
    const flooder = new http.Agent({ keepAlive: true, maxSockets: 32, localAddress: '127.0.0.2' });
    const counts = {};
    let flooding = true;
    const floodEnd = Date.now() + 10_000;
    const worker = async () => {
      while (flooding && Date.now() < floodEnd) {
        try {
          const r = await initialize(node.port, { agent: flooder, localAddress: '127.0.0.2', name: 'flood' });
          counts[r.status] = (counts[r.status] ?? 0) + 1;
        } catch (e) {
          counts.error = (counts.error ?? 0) + 1;
        }
      }
    };
    const workers = Array.from({ length: 32 }, worker);
    const probes = [];
    try {
      for (const at of [2_000, 5_000, 8_000]) {
        await delay(Math.max(0, at - (10_000 - (floodEnd - Date.now()))));
        const r = await initialize(node.port, { agent: false, localAddress: '127.0.0.3', name: 'polite' });
        probes.push(r);
      }
    } finally {
      await Promise.all(workers);
      flooding = false;
      flooder.destroy();
    }
    console.log(`# flood of initialize from 127.0.0.2 for 10 s: ${JSON.stringify(counts)}; `
      + `another address: ${probes.map((p) => `${p.status} in ${p.ms.toFixed(0)} ms`).join(', ')}`);
    for (const p of probes) {
      assert.equal(p.status, 200, 'the other address gets its session');
      assert.ok(p.session, 'with a session id');
      assert.ok(p.ms < 1_000, `at once: ${p.ms.toFixed(0)} ms`);
    }
    const m = (await getText(node.port, '/metrics')).body;
    const limited = (metric(m, 'session_rate_limited_total') ?? 0) + (metric(m, 'client_sessions_rejected_total') ?? 0);
    assert.ok((counts[429] ?? 0) > 0 && limited > 0, `the flooder was held to its share: ${JSON.stringify(counts)}`);
    assert.ok(metric(m, 'sessions_active') <= 10_000 + 3, `sessions of the flooder capped: ${metric(m, 'sessions_active')}`);
    const after = await initialize(node.port, { agent: false, localAddress: '127.0.0.4', name: 'after' });
    assert.equal(after.status, 200);
    await stopNode(node);
  });

  it('CPU-heavy calls past the worker queue bound get 503 + Retry-After; the admitted complete', async () => {
    // One worker, a 1 s lag target: the lag controller stays out of it (the queue never holds
    // a second of work), and the bound is 1 + 500 ms / 100 ms = 6 jobs for requests, 3.5 for
    // sessions, once a 100 ms job has run.
    const node = await startNode(['--threads', '1', '--worker-threads', '1', '--shed-lag-ms', '1000']);
    const session = await openSession(node.port, 'heavy');
    const healthy = await openSession(node.port, 'healthy', '127.0.0.5');
    const first = await post(node.port, session, burn(1, 100_000));
    assert.equal(first.status, 200, first.text);
    const before = (await getText(node.port, '/metrics')).body;
    const bound = metric(before, 'worker_queue_bound');
    assert.ok(bound >= 2 && bound <= 7, `bound from the mean job time: ${bound}`);
    // Twelve calls 5 ms apart: within the first call's 100 ms the queue fills to the bound.
    const calls = [];
    let sessionWhileFull;
    for (let i = 0; i < 12; i++) {
      calls.push(post(node.port, session, burn(100 + i, 100_000), SOURCES[i % SOURCES.length]));
      await delay(5);
      if (i === 8) sessionWhileFull = initialize(node.port, { agent: false, localAddress: '127.0.0.6', name: 'late' });
    }
    const answers = await Promise.all(calls);
    const late = await sessionWhileFull;
    const byStatus = {};
    for (const a of answers) byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
    console.log(`# 12 calls of 100 ms on one worker, bound ${bound.toFixed(1)}: ${JSON.stringify(byStatus)}; `
      + `initialize while full: ${late.status}`);
    const refused = answers.filter((a) => a.status === 503);
    const admitted = answers.filter((a) => a.status === 200);
    assert.ok(refused.length >= 1, `past the bound calls are refused: ${JSON.stringify(byStatus)}`);
    assert.ok(admitted.length >= 2, `up to the bound calls are taken: ${JSON.stringify(byStatus)}`);
    assert.equal(refused.length + admitted.length, 12, JSON.stringify(byStatus));
    for (const r of refused) {
      assert.equal(r.headers['retry-after'], '1');
      assert.equal(r.rpc?.error?.code, -32000, r.text);
      assert.match(r.rpc.error.message, /overloaded/);
      assert.ok(r.rpc.id >= 100, `the refusal names its request: ${r.text}`);
    }
    for (const a of admitted) {
      assert.equal(a.rpc?.result?.structuredContent?.micros, 100_000, a.text);
    }
    assert.equal(late.status, 503, 'a new session is refused while the queue is past half');
    const m = (await getText(node.port, '/metrics')).body;
    assert.equal(metric(m, 'shed_requests_total') - (metric(before, 'shed_requests_total') ?? 0), refused.length);
    assert.ok(metric(m, 'shed_sessions_total') >= 1);
    assert.equal(metric(m, 'blocking_jobs_rejected_total') ?? 0, 0, 'nothing reached the pool past the bound');
    // The healthy session, from another address, is served once the queue has drained.
    const echo = await post(node.port, healthy, {
      jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'fine' } },
    }, '127.0.0.5');
    assert.equal(echo.status, 200, echo.text);
    assert.equal(echo.rpc?.result?.content?.[0]?.text, 'fine');
    const again = await initialize(node.port, { agent: false, localAddress: '127.0.0.6', name: 'again' });
    assert.equal(again.status, 200);
    await stopNode(node);
  });
});

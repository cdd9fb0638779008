// Bounded stdio output: a node serving stdio (and HTTP) whose stdio client writes a flood of
// pings without reading its stdout. The node stops reading stdin while what waits for stdout
// is at its bounds, so that queue and the node's memory stay bounded, and an HTTP session on
// the same node is served meanwhile; once the client reads, every ping is answered, once and
// in order.
//
// env MCPMESH_NODE = path to the mcpmesh-node binary (required)
// Only Node built-ins (node:test, node:assert, node:http, node:child_process, node:fs) and
// tests/lib/util.mjs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import { delay, pollUntil, withDeadline } from '../lib/util.mjs';

const PROTOCOL = '2025-11-25';
const PINGS = 200_000; // ~9 MB of requests, ~9 MB of answers
const QUEUE_MESSAGES = 512;
const QUEUE_BYTES = 64 * 1024;
const MAX_INFLIGHT_PER_SESSION = 64; // the node's default: answers still owed when reading stops
const START_DEADLINE_MS = 20_000;
const CALL_DEADLINE_MS = 5_000;
const ANSWERS_DEADLINE_MS = 120_000;

let node; // { proc, port }

function request({ method = 'POST', path = '/mcp', headers = {}, body }) {
  return withDeadline(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: node.port, method, path, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  }), CALL_DEADLINE_MS, `${method} ${path}`);
}

async function metrics() {
  const res = await request({ method: 'GET', path: '/metrics' });
  assert.equal(res.status, 200);
  const out = {};
  for (const line of res.body.split('\n')) {
    const m = /^(mcpmesh_[a-z0-9_]+) ([0-9.eE+-]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

function post(sessionId, message) {
  const headers = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': PROTOCOL,
  };
  if (sessionId) headers['Mcp-Session-Id'] = sessionId;
  return request({ headers, body: JSON.stringify(message) });
}

/** The node's resident memory in bytes (Linux). */
function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

describe('stdio backpressure', { timeout: 240_000 }, () => {
  before(async () => {
    const bin = process.env.MCPMESH_NODE;
    if (!bin) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
    const proc = spawn(bin, ['--stdio', '--http', '127.0.0.1:0', '--app', 'demo', '--threads', '2',
      '--stdio-queue-messages', String(QUEUE_MESSAGES), '--stdio-queue-bytes', String(QUEUE_BYTES)],
    { stdio: ['pipe', 'pipe', 'pipe'] });
    proc.stdout.pause(); // the client does not read its stdout (yet)
    proc.stdin.on('error', () => {});
    let stderr = '';
    proc.stderr.setEncoding('utf8');
    const port = await withDeadline(new Promise((resolve, reject) => {
      proc.stderr.on('data', (chunk) => {
        stderr += chunk;
        const m = /listening on http:\/\/[^\s]+:(\d+)\/mcp/.exec(stderr);
        if (m) resolve(Number(m[1]));
      });
      proc.once('exit', (code, sig) => reject(new Error(`mcpmesh-node exited (${code}/${sig}): ${stderr}`)));
    }), START_DEADLINE_MS, 'mcpmesh-node listening line').catch((e) => {
      proc.kill('SIGKILL');
      throw e;
    });
    node = { proc, port };
  });

  after(async () => {
    const proc = node?.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  });

  it('an unread stdout stops stdin being read; memory stays bounded; every answer arrives', async (t) => {
    // A healthy HTTP session on the same node.
    const init = await post(undefined, { jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'A', version: '1' } } });
    const A = init.headers['mcp-session-id'];
    assert.ok(A, init.body);
    assert.equal((await post(A, { jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);
    const echoA = async (text) => {
      const res = await post(A, { jsonrpc: '2.0', id: 2, method: 'tools/call',
        params: { name: 'echo', arguments: { text } } });
      assert.equal(res.status, 200, res.body);
      assert.equal(JSON.parse(res.body).result?.content?.[0]?.text, text, res.body);
    };
    await echoA('before');
    const rssBefore = rssBytes(node.proc.pid);

    // The flood: written without waiting (this process buffers what the pipe does not take).
    const lines = [];
    for (let i = 0; i < PINGS; i++) lines.push(`{"jsonrpc":"2.0","id":${i},"method":"ping"}\n`);
    for (let i = 0; i < PINGS; i += 1000) node.proc.stdin.write(lines.slice(i, i + 1000).join(''));

    await pollUntil(async () => ((await metrics()).mcpmesh_stdio_read_pauses_total ?? 0) >= 1,
      { deadlineMs: 30_000, what: 'stdin reading paused' });
    // Bounded while nobody reads: the queue (plus the answers still owed, at most the session's
    // in-flight bound and one line's), and the node's memory.
    const slack = MAX_INFLIGHT_PER_SESSION + 1;
    let rssMax = 0;
    for (let sample = 0; sample < 10; sample++) {
      const m = await metrics();
      assert.ok(m.mcpmesh_stdio_queued_messages <= QUEUE_MESSAGES + slack,
        `queued messages ${m.mcpmesh_stdio_queued_messages}`);
      assert.ok(m.mcpmesh_stdio_queued_bytes <= QUEUE_BYTES + slack * 64,
        `queued bytes ${m.mcpmesh_stdio_queued_bytes}`);
      rssMax = Math.max(rssMax, rssBytes(node.proc.pid));
      if (sample === 5) await echoA('during the stall'); // HTTP is served meanwhile
      await delay(50);
    }
    assert.ok(rssMax - rssBefore < 64 * 1024 * 1024,
      `RSS grew by ${((rssMax - rssBefore) / 1048576).toFixed(1)} MiB while stdout was unread`);

    // The client reads: every ping is answered, once, in order.
    let next = 0;
    let pending = '';
    const answered = new Promise((resolve, reject) => {
      node.proc.stdout.setEncoding('utf8');
      node.proc.stdout.on('data', (chunk) => {
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const msg = JSON.parse(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
          if (msg.id !== next || !msg.result) {
            reject(new Error(`answer ${next}: got ${JSON.stringify(msg)}`));
            return;
          }
          if (++next === PINGS) resolve();
        }
      });
      node.proc.stdout.resume();
    });
    await withDeadline(answered, ANSWERS_DEADLINE_MS, `${PINGS} answers (got ${next})`);
    const m = await metrics();
    assert.equal(m.mcpmesh_stdio_dropped_total, 0);
    assert.equal(m.mcpmesh_stdio_queued_messages, 0);
    t.diagnostic(`paused ${m.mcpmesh_stdio_read_pauses_total} times; RSS +${((rssMax - rssBefore) / 1048576).toFixed(1)} MiB at most while stalled`);
    await echoA('after');
  });
});

// The bad-input battery: one mcpmesh-node (`--app demo`, small limits) gets malformed,
// oversize, unauthorised and abusive input on raw HTTP (and results JSON cannot carry, wrong
// argument types, bad subscription URIs, abandoned sessions, too much in flight), and after
// each case a healthy session A must still answer, with its standalone GET SSE stream still
// alive at the end.
//
// env MCPMESH_NODE = path to the mcpmesh-node binary (required)
// Only Node built-ins (node:test, node:assert, node:http, node:net, node:child_process) and
// tests/lib/util.mjs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';

import { delay, pollUntil, SseParser, withDeadline } from '../lib/util.mjs';

const PROTOCOL = '2025-11-25';
const READ_TIMEOUT_MS = 1500;
const INIT_TIMEOUT_MS = 1500;
const MAX_URI_BYTES = 50_000; // case 13 subscribes to a ~48 KB URI
const MAX_INFLIGHT_PER_SESSION = 12;
const MAX_INFLIGHT = 16;
const LIMITS = [
  '--max-body-bytes', '65536',
  '--max-json-depth', '32',
  '--read-timeout-ms', String(READ_TIMEOUT_MS),
  '--write-timeout-ms', '2000',
  '--sse-queue-events', '64',
  '--init-timeout-ms', String(INIT_TIMEOUT_MS),
  '--max-uri-bytes', String(MAX_URI_BYTES),
  '--max-inflight-per-session', String(MAX_INFLIGHT_PER_SESSION),
  '--max-inflight', String(MAX_INFLIGHT),
];
const START_DEADLINE_MS = 20_000;
const CALL_DEADLINE_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// small utilities

/** JSON-RPC messages carried by an SSE body (events with non-empty data). */
function sseMessages(text) {
  const out = [];
  const p = new SseParser((ev) => { if (ev.data.trim()) out.push(JSON.parse(ev.data)); });
  p.feed(text.endsWith('\n\n') ? text : `${text}\n\n`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// the server under test

let server; // { proc, port, stderr() }

async function startServer() {
  const bin = process.env.MCPMESH_NODE;
  if (!bin) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  const proc = spawn(bin, ['--http', '127.0.0.1:0', '--app', 'demo', ...LIMITS], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stdout.resume();
  proc.stderr.setEncoding('utf8');
  const port = await withDeadline(new Promise((resolve, reject) => {
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on http:\/\/[^\s]+:(\d+)\/mcp/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code, sig) => reject(new Error(`mcpmesh-node exited (${code}/${sig}): ${stderr}`)));
    proc.once('error', reject);
  }), START_DEADLINE_MS, 'mcpmesh-node listening line').catch((e) => {
    proc.kill('SIGKILL');
    throw e;
  });
  return { proc, port, stderr: () => stderr };
}

async function stopServer() {
  if (!server) return;
  const { proc } = server;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

// ---------------------------------------------------------------------------------------------
// HTTP clients

/**
 * One HTTP request on its own connection (node:http, agent: false, so Host can be set).
 * Resolves { status, headers, body, messages } once the whole response arrived; `messages` are
 * the JSON-RPC messages of a JSON or SSE body.
 */
function request({ method = 'POST', path = '/mcp', headers = {}, body, deadlineMs = CALL_DEADLINE_MS }) {
  const p = new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, method, path, headers, agent: false }, (res) => {
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        const ct = res.headers['content-type'] ?? '';
        let messages = [];
        if (ct.startsWith('application/json') && text) {
          const v = JSON.parse(text);
          messages = Array.isArray(v) ? v : [v];
        } else if (ct.startsWith('text/event-stream')) {
          messages = sseMessages(text);
        }
        resolve({ status: res.statusCode, headers: res.headers, body: text, messages });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(deadlineMs, () => req.destroy(new Error('request timed out')));
    if (body !== undefined) req.write(body);
    req.end();
  });
  return withDeadline(p, deadlineMs + 500, `${method} ${path}`);
}

function mcpHeaders(sessionId, extra = {}) {
  const h = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': PROTOCOL,
  };
  if (sessionId) h['Mcp-Session-Id'] = sessionId;
  return { ...h, ...extra };
}

/** POST `body` (string or object) with the normal headers of `sessionId`. */
function post(sessionId, body, extraHeaders = {}) {
  return request({
    headers: mcpHeaders(sessionId, extraHeaders),
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

let nextId = 1000;
/** A JSON-RPC call on a session; returns { status, msg } with msg the response to this id. */
async function rpc(sessionId, method, params) {
  const id = nextId++;
  const res = await post(sessionId, { jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
  const msg = res.messages.find((m) => m.id === id);
  return { ...res, msg };
}

async function openSession(name) {
  const res = await post(undefined, {
    jsonrpc: '2.0', id: 1, method: 'initialize',
    params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name, version: '1.0.0' } },
  });
  assert.equal(res.status, 200, `initialize ${name}: ${res.body}`);
  const sid = res.headers['mcp-session-id'];
  assert.ok(sid, `initialize ${name}: no Mcp-Session-Id`);
  assert.equal(res.messages[0]?.result?.protocolVersion, PROTOCOL);
  const n = await post(sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
  assert.equal(n.status, 202);
  return sid;
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

/**
 * Raw request over node:net: writes `text` (string or Buffer) and collects whatever comes back
 * until the server closes or `deadlineMs` passes. A reset after the response arrived is fine.
 * Resolves { status, headers, body, raw, closed }.
 */
function rawRequest(text, { deadlineMs = CALL_DEADLINE_MS } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(server.port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(chunks).toString('latin1');
      resolve({ ...parseHttpResponse(raw), raw, closed });
    };
    const timer = setTimeout(() => finish(false), deadlineMs);
    sock.on('connect', () => sock.write(text));
    sock.on('data', (c) => {
      chunks.push(c);
      const r = parseHttpResponse(Buffer.concat(chunks).toString('latin1'));
      if (r.complete) finish(false);
    });
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
  });
}

function parseHttpResponse(raw) {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { status: undefined, headers: {}, body: '', complete: false };
  const lines = raw.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1]);
  const headers = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
  }
  const body = raw.slice(end + 4);
  const len = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined;
  return { status, headers, body: len !== undefined ? body.slice(0, len) : body, complete: len !== undefined && body.length >= len };
}

function rawPost(sessionId, { body, extraHeaderLines = [], contentLength } = {}) {
  const b = Buffer.from(body ?? '');
  const head = [
    'POST /mcp HTTP/1.1',
    `Host: 127.0.0.1:${server.port}`,
    'Content-Type: application/json',
    'Accept: application/json, text/event-stream',
    `MCP-Protocol-Version: ${PROTOCOL}`,
    ...(sessionId ? [`Mcp-Session-Id: ${sessionId}`] : []),
    ...extraHeaderLines,
    `Content-Length: ${contentLength ?? b.length}`,
    'Connection: close',
    '', '',
  ].join('\r\n');
  return Buffer.concat([Buffer.from(head, 'latin1'), b]);
}

/** Standalone GET SSE stream read continuously; collects JSON-RPC messages. */
function openGetStream(sessionId) {
  const stream = { messages: [], ended: false, waiters: new Set() };
  const notify = () => { for (const w of stream.waiters) w(); };
  const opened = new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: server.port, method: 'GET', path: '/mcp', agent: false,
      headers: { Accept: 'text/event-stream', 'Mcp-Session-Id': sessionId, 'MCP-Protocol-Version': PROTOCOL },
    }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`GET stream: HTTP ${res.statusCode}`)); res.resume(); return; }
      res.setEncoding('utf8');
      const parser = new SseParser((ev) => {
        if (ev.data.trim()) { stream.messages.push(JSON.parse(ev.data)); notify(); }
      });
      res.on('data', (c) => parser.feed(c));
      const end = () => { stream.ended = true; notify(); };
      res.on('end', end);
      res.on('close', end);
      res.on('error', end);
      resolve();
    });
    req.on('error', (e) => { stream.ended = true; notify(); reject(e); });
    req.end();
    stream.close = () => req.destroy();
  });
  /** Resolves with the first message matching `pred`, or rejects at the deadline / stream end. */
  stream.waitFor = (pred, deadlineMs = CALL_DEADLINE_MS, what = 'GET stream message') =>
    withDeadline(new Promise((resolve, reject) => {
      const check = () => {
        const m = stream.messages.find(pred);
        if (m) { stream.waiters.delete(check); resolve(m); }
        else if (stream.ended) { stream.waiters.delete(check); reject(new Error(`${what}: stream ended`)); }
      };
      stream.waiters.add(check);
      check();
    }), deadlineMs, what);
  return withDeadline(opened, CALL_DEADLINE_MS, 'open GET stream').then(() => stream);
}

// ---------------------------------------------------------------------------------------------
// the battery

let A; // healthy session id
let aStream; // A's standalone GET stream
let B; // session used by the battery

async function echoA(text) {
  const { status, msg, body } = await rpc(A, 'tools/call', { name: 'echo', arguments: { text } });
  assert.equal(status, 200, body);
  assert.equal(msg?.result?.content?.[0]?.text, text, body);
}

let aliveCount = 0;
async function assertAAlive() {
  await echoA(`still alive ${++aliveCount}`);
  assert.equal(aStream.ended, false, "session A's GET stream ended");
}

function assertError(res, status, code, id) {
  assert.equal(res.status, status, `HTTP status; body: ${res.body}`);
  if (code === undefined) return;
  const msg = res.messages[0] ?? JSON.parse(res.body);
  assert.equal(msg.jsonrpc, '2.0');
  assert.equal(msg.error?.code, code, `error code; body: ${res.body}`);
  if (id !== undefined) assert.deepEqual(msg.id, id);
}

describe('bad-input battery', { timeout: 120_000 }, () => {
  before(async () => {
    server = await startServer();
    A = await openSession('healthy-A');
    aStream = await openGetStream(A);
    await echoA('hello');
    B = await openSession('battery-B');
  });

  after(async () => {
    aStream?.close();
    await stopServer();
  });

  it('1. malformed JSON → 400, -32700, id null', async () => {
    const res = await post(B, '{"jsonrpc":');
    assertError(res, 400, -32700, null);
    await assertAAlive();
  });

  it('2. invalid requests → 400, -32600', async () => {
    assertError(await post(B, '{"jsonrpc":"1.0","id":1,"method":"ping"}'), 400, -32600);
    assertError(await post(B, '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}'), 400, -32600, null);
    await assertAAlive();
  });

  it('3. unknown method → 200 with -32601, id kept', async () => {
    const res = await post(B, '{"jsonrpc":"2.0","id":7,"method":"nope/nope"}');
    assertError(res, 200, -32601, 7);
    await assertAAlive();
  });

  it('4. invalid params → -32602', async () => {
    let r = await rpc(B, 'tools/call', { arguments: { text: 'x' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.msg?.error?.code, -32602, r.body);
    r = await rpc(B, 'logging/setLevel', { level: 'loud' });
    assert.equal(r.msg?.error?.code, -32602, r.body);
    r = await rpc(B, 'prompts/get', { name: 'summarize', arguments: {} });
    assert.equal(r.msg?.error?.code, -32602, r.body);
    await assertAAlive();
  });

  it('5. oversize body → 413', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call',
      params: { name: 'echo', arguments: { text: 'x'.repeat(70_000) } } });
    // The whole body is sent; a reset after the 413 arrived is tolerated.
    const res = await rawRequest(rawPost(B, { body: big }));
    assert.equal(res.status, 413, res.raw.slice(0, 300));
    // Announced only (Content-Length over the limit, no body sent yet): refused at the header.
    const res2 = await rawRequest(rawPost(B, { contentLength: 1_000_000 }));
    assert.equal(res2.status, 413, res2.raw.slice(0, 300));
    await assertAAlive();
  });

  it('6. too-deep JSON → 400, -32600', async () => {
    const deep = `${'['.repeat(200)}${']'.repeat(200)}`;
    const res = await post(B, `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":${deep}}}}`);
    assertError(res, 400, -32600);
    await assertAAlive();
  });

  it('7. wrong Content-Type → 415', async () => {
    const res = await post(B, '{"jsonrpc":"2.0","id":1,"method":"ping"}', { 'Content-Type': 'text/plain' });
    assert.equal(res.status, 415, res.body);
    await assertAAlive();
  });

  it('8. missing or incomplete Accept → 406', async () => {
    const body = '{"jsonrpc":"2.0","id":1,"method":"ping"}';
    const h = mcpHeaders(B);
    delete h.Accept;
    assert.equal((await request({ headers: h, body })).status, 406);
    assert.equal((await post(B, body, { Accept: 'application/json' })).status, 406);
    assert.equal((await post(B, body, { Accept: 'text/event-stream' })).status, 406);
    await assertAAlive();
  });

  it('9. session id: missing → 400, unknown → 404, deleted → 404', async () => {
    const ping = '{"jsonrpc":"2.0","id":9,"method":"ping"}';
    assert.equal((await post(undefined, ping)).status, 400);
    assert.equal((await post('n1.00000000000000000000000000000000', ping)).status, 404);
    assert.equal((await post(B, ping)).status, 200); // B still fine before the DELETE
    const del = await request({ method: 'DELETE', headers: { 'Mcp-Session-Id': B, 'MCP-Protocol-Version': PROTOCOL } });
    assert.equal(del.status, 200);
    assert.equal((await post(B, ping)).status, 404);
    B = await openSession('battery-B2'); // the rest of the battery uses a fresh session
    await assertAAlive();
  });

  it('10. unsupported MCP-Protocol-Version → 400', async () => {
    const res = await post(B, '{"jsonrpc":"2.0","id":10,"method":"ping"}', { 'MCP-Protocol-Version': '1999-01-01' });
    assertError(res, 400, -32600);
    await assertAAlive();
  });

  it('11. bad Origin → 403, bad Host → 403', async () => {
    const ping = '{"jsonrpc":"2.0","id":11,"method":"ping"}';
    const o = await post(B, ping, { Origin: 'http://evil.example.com' });
    assert.equal(o.status, 403, o.body);
    const h = await post(B, ping, { Host: 'evil.example.com' });
    assert.equal(h.status, 403, h.body);
    // and loopback ones are fine
    assert.equal((await post(B, ping, { Origin: `http://localhost:${server.port}` })).status, 200);
    assert.equal((await post(B, ping, { Host: `localhost:${server.port}` })).status, 200);
    await assertAAlive();
  });

  it('12. batch on a 2025-11-25 session → 400, -32600', async () => {
    const res = await post(B, '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]');
    assertError(res, 400, -32600);
    await assertAAlive();
  });

  it('13. a client that stops reading its SSE stream is dropped (slow consumer)', async (t) => {
    const C = await openSession('slow-C');
    // C's GET stream on a raw socket that is never read once the response head arrived.
    const sock = net.connect(server.port, '127.0.0.1');
    let closedByServer = false;
    sock.on('error', () => {});
    sock.on('close', () => { closedByServer = true; });
    await withDeadline(new Promise((resolve, reject) => {
      sock.once('connect', () => sock.write([
        'GET /mcp HTTP/1.1', `Host: 127.0.0.1:${server.port}`, 'Accept: text/event-stream',
        `Mcp-Session-Id: ${C}`, `MCP-Protocol-Version: ${PROTOCOL}`, '', ''].join('\r\n')));
      let head = '';
      const onData = (c) => {
        head += c.toString('latin1');
        if (head.includes('\r\n\r\n')) {
          sock.off('data', onData);
          sock.pause();
          if (/^HTTP\/1\.1 200/.test(head)) resolve(); else reject(new Error(`GET: ${head}`));
        }
      };
      sock.on('data', onData);
      sock.once('error', reject);
    }), CALL_DEADLINE_MS, 'C GET stream head');

    // Large notifications fill the socket buffers fast: the URI carries a ~48 KB note name.
    const name = `flood-${'f'.repeat(48_000)}`;
    const sub = await rpc(C, 'resources/subscribe', { uri: `note://${name}` });
    assert.equal(sub.status, 200, sub.body);
    assert.ok(sub.msg?.result, sub.body);

    const before = (await metrics()).mcpmesh_slow_consumers_total ?? 0;
    const MAX_CALLS = 2000;
    const end = Date.now() + 20_000;
    let calls = 0;
    let dropped = false;
    while (!dropped && calls < MAX_CALLS && Date.now() < end) {
      const batch = [];
      for (let i = 0; i < 10; i++, calls++) {
        batch.push(rpc(C, 'tools/call', { name: 'note_set', arguments: { name, text: String(calls) } }));
      }
      for (const r of await Promise.all(batch)) assert.equal(r.msg?.result?.isError ?? false, false, r.body);
      if (calls % 50 === 0) await echoA(`during flood ${calls}`);
      dropped = ((await metrics()).mcpmesh_slow_consumers_total ?? 0) > before;
    }
    if (!dropped) {
      // The last events may still be waiting in the queue/write: give the write timeout a chance.
      await pollUntil(async () => ((await metrics()).mcpmesh_slow_consumers_total ?? 0) > before,
        { deadlineMs: 5_000, intervalMs: 200, what: `slow consumer after ${calls} notifications` });
    }
    // The server closed C's stream: reading again drains to the end of the connection.
    sock.resume();
    sock.on('data', () => {});
    await pollUntil(async () => closedByServer, { deadlineMs: 10_000, intervalMs: 50, what: "server closing C's stream" });
    t.diagnostic(`slow consumer detected after ${calls} note_set calls`);
    // C itself is still a valid session.
    const ping = await rpc(C, 'ping');
    assert.equal(ping.status, 200, ping.body);
    await assertAAlive();
  });

  it('14. slowloris (1 byte/s) is cut off within the read timeout; A keeps working', async (t) => {
    const text = Buffer.from(rawPost(A, { body: '{"jsonrpc":"2.0","id":14,"method":"ping"}' }));
    const sock = net.connect(server.port, '127.0.0.1');
    let received = '';
    let closed = false;
    sock.on('data', (c) => { received += c.toString('latin1'); });
    sock.on('error', () => {});
    const closedP = new Promise((r) => sock.on('close', () => { closed = true; r(); }));
    await withDeadline(new Promise((r) => sock.once('connect', r)), CALL_DEADLINE_MS, 'slowloris connect');

    const started = Date.now();
    const dribble = (async () => {
      for (let i = 0; i < text.length && !closed && Date.now() - started < READ_TIMEOUT_MS + 10_000; i++) {
        sock.write(text.subarray(i, i + 1));
        await Promise.race([delay(1000), closedP]);
      }
    })();
    // A is served concurrently while the dribble goes on.
    let echoes = 0;
    const concurrent = (async () => {
      while (!closed && Date.now() - started < READ_TIMEOUT_MS + 10_000) {
        await echoA(`during slowloris ${echoes++}`);
        await Promise.race([delay(200), closedP]);
      }
    })();
    await withDeadline(closedP, READ_TIMEOUT_MS + 5_000, 'server closing the slowloris connection');
    const elapsed = Date.now() - started;
    await Promise.all([dribble, concurrent]);
    sock.destroy();
    assert.ok(elapsed >= READ_TIMEOUT_MS - 500, `closed too early: ${elapsed} ms`);
    assert.ok(elapsed <= READ_TIMEOUT_MS + 4_000, `closed too late: ${elapsed} ms`);
    t.diagnostic(`closed after ${elapsed} ms; answer: ${received.split('\r\n')[0] || '(none)'}; ${echoes} echoes on A meanwhile`);
    if (received) assert.match(received, /^HTTP\/1\.1 408 /);
    assert.ok(echoes >= 1, 'A answered during the slowloris');
    await assertAAlive();
  });

  it('15. oversize header block → 431', async () => {
    const res = await rawRequest(rawPost(B, {
      body: '{"jsonrpc":"2.0","id":15,"method":"ping"}',
      extraHeaderLines: [`X-Junk: ${'j'.repeat(20_000)}`],
    }));
    assert.equal(res.status, 431, res.raw.slice(0, 300));
    await assertAAlive();
  });

  it('16. a result JSON cannot carry (1.7e308 + 1.7e308) → -32603, never Infinity on the wire', async () => {
    const before = (await metrics()).mcpmesh_non_finite_numbers_total ?? 0;
    // rpc() parses the body: text with a bare Infinity would already fail here.
    const r = await rpc(B, 'tools/call', { name: 'add', arguments: { a: 1.7e308, b: 1.7e308 } });
    assert.equal(r.status, 200, r.body);
    assert.doesNotMatch(r.body, /[:[,]-?(Infinity|NaN)[,}\]]/);
    assert.equal(r.msg?.error?.code, -32603, r.body);
    assert.match(r.msg.error.message, /infinity or NaN/);
    assert.equal((await metrics()).mcpmesh_non_finite_numbers_total, before + 1);
    // The same tool with a sum JSON can carry still answers.
    const ok = await rpc(B, 'tools/call', { name: 'add', arguments: { a: 1.5, b: 2 } });
    assert.equal(ok.msg?.result?.structuredContent?.sum, 3.5, ok.body);
    await assertAAlive();
  });

  it('17. wrong argument types get clear messages naming no source file', async () => {
    const sourceLocation = /\.(hpp|cpp|ipp|h):\d+|\/usr\/|\[boost/;
    const raw = (id, name, args) =>
      `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"${name}","arguments":${args}}}`;
    const cases = [
      ['add', '{"a":"x","b":1}', /'a' must be of type number/],
      ['add', '{"a":1e400,"b":1}', /'a' must be a finite number/],
      ['slow', '{"seconds":0,"steps":18446744073709551615}', /'steps' must be an integer/],
      ['slow', '{"seconds":"soon","steps":1}', /'seconds' must be of type number/],
      ['echo', '{"text":5}', /'text' must be of type string/],
      ['note_set', '{"name":["n"],"text":"t"}', /'name' must be of type string/],
      ['log', '{"level":3,"message":"m"}', /'level' must be of type string/],
      ['echo', '{}', /missing required argument 'text'/],
    ];
    let id = 1700;
    for (const [name, args, expected] of cases) {
      const res = await post(B, raw(++id, name, args));
      assert.equal(res.status, 200, res.body);
      const msg = res.messages.find((m) => m.id === id);
      const text = msg?.error?.message ?? msg?.result?.content?.[0]?.text ?? '';
      assert.equal(msg?.result?.isError, true, `${name} ${args}: ${res.body}`);
      assert.match(text, expected, `${name} ${args}`);
      assert.doesNotMatch(res.body, sourceLocation, `${name} ${args}`);
    }
    await assertAAlive();
  });

  it('18. subscription URIs are validated and bounded → -32602, counted', async () => {
    const before = (await metrics()).mcpmesh_uris_rejected_total ?? 0;
    const bad = ['no-scheme', 'note://with space', 'note://ctl\u0001x', 'note://del\u007f',
      '1x://digit-first', `note://${'l'.repeat(MAX_URI_BYTES)}`, ''];
    for (const uri of bad) {
      for (const method of ['resources/subscribe', 'resources/unsubscribe']) {
        const r = await rpc(B, method, { uri });
        assert.equal(r.msg?.error?.code, -32602, `${method} ${uri.slice(0, 40)}: ${r.body.slice(0, 300)}`);
        assert.match(r.msg.error.message, /params\.uri/);
      }
    }
    assert.equal((await metrics()).mcpmesh_uris_rejected_total, before + 2 * bad.length);
    const ok = await rpc(B, 'resources/subscribe', { uri: 'note://b-valid' });
    assert.deepEqual(ok.msg?.result, {}, ok.body);
    await assertAAlive();
  });

  it('19. a session that never completes initialization expires; initialized ones stay', async () => {
    const before = (await metrics()).mcpmesh_sessions_init_expired_total ?? 0;
    const res = await post(undefined, {
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'gone', version: '1' } },
    });
    const sid = res.headers['mcp-session-id'];
    assert.ok(sid, res.body);
    // No notifications/initialized and no other request: removed within the timeout and a tick.
    await pollUntil(async () => ((await metrics()).mcpmesh_sessions_init_expired_total ?? 0) > before,
      { deadlineMs: INIT_TIMEOUT_MS + 5_000, intervalMs: 100, what: 'uninitialized session expiry' });
    assert.equal((await post(sid, { jsonrpc: '2.0', id: 2, method: 'ping' })).status, 404);
    // B was initialized long before: still there.
    assert.equal((await post(B, { jsonrpc: '2.0', id: 3, method: 'ping' })).status, 200);
    await assertAAlive();
  });

  it('20. in-flight bounds, per session and per node → -32000 at once, never a hang', async () => {
    const D = await openSession('busy-D');
    const slow = async (sid) => {
      const id = nextId++;
      const res = await request({
        headers: mcpHeaders(sid), deadlineMs: 20_000,
        body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call',
          params: { name: 'slow', arguments: { seconds: 4, steps: 1 } } }),
      });
      return { ...res, msg: res.messages.find((m) => m.id === id) };
    };
    const inflight = async () => (await metrics()).mcpmesh_inflight_requests ?? 0;
    const running = [];
    for (let i = 0; i < MAX_INFLIGHT_PER_SESSION; i++) running.push(slow(D));
    await pollUntil(async () => (await inflight()) >= MAX_INFLIGHT_PER_SESSION,
      { deadlineMs: CALL_DEADLINE_MS, intervalMs: 20, what: "D's slow calls in flight" });
    const perSession = (await metrics()).mcpmesh_inflight_rejected_total ?? 0;
    const p = await rpc(D, 'ping'); // a ping too: every kind of request counts
    assert.equal(p.msg?.error?.code, -32000, p.body);
    assert.match(p.msg.error.message, /this session/);
    assert.equal((await metrics()).mcpmesh_inflight_rejected_total, perSession + 1);
    await echoA('while D is at its bound'); // other sessions are not limited by D's bound

    const E = await openSession('busy-E');
    for (let i = 0; i < MAX_INFLIGHT - MAX_INFLIGHT_PER_SESSION; i++) running.push(slow(E));
    await pollUntil(async () => (await inflight()) >= MAX_INFLIGHT,
      { deadlineMs: CALL_DEADLINE_MS, intervalMs: 20, what: 'the node at its bound' });
    const perNode = (await metrics()).mcpmesh_inflight_node_rejected_total ?? 0;
    const n = await rpc(E, 'ping');
    assert.equal(n.msg?.error?.code, -32000, n.body);
    assert.match(n.msg.error.message, /this node/);
    assert.equal((await metrics()).mcpmesh_inflight_node_rejected_total, perNode + 1);

    // Every slow call still completes, and then everyone is served again.
    for (const r of await Promise.all(running)) {
      assert.match(r.msg?.result?.content?.[0]?.text ?? '', /completed 1 steps/, r.body);
    }
    await pollUntil(async () => (await inflight()) === 0,
      { deadlineMs: CALL_DEADLINE_MS, intervalMs: 20, what: 'nothing in flight' });
    assert.deepEqual((await rpc(E, 'ping')).msg?.result, {});
    await assertAAlive();
  });

  it("finally: A's GET stream still delivers, and /metrics counted every refusal", async () => {
    const uri = 'note://a-check';
    const sub = await rpc(A, 'resources/subscribe', { uri });
    assert.ok(sub.msg?.result, sub.body);
    const set = await rpc(A, 'tools/call', { name: 'note_set', arguments: { name: 'a-check', text: 'hi' } });
    assert.equal(set.msg?.result?.content?.[0]?.text, 'ok', set.body);
    const n = await aStream.waitFor(
      (m) => m.method === 'notifications/resources/updated' && m.params?.uri === uri,
      CALL_DEADLINE_MS, 'resources/updated on A');
    assert.equal(n.jsonrpc, '2.0');

    const m = await metrics();
    for (const k of ['mcpmesh_body_too_large_total', 'mcpmesh_origin_rejected_total',
      'mcpmesh_host_rejected_total', 'mcpmesh_parse_errors_total', 'mcpmesh_json_too_deep_total',
      'mcpmesh_read_timeouts_total', 'mcpmesh_header_too_large_total', 'mcpmesh_slow_consumers_total',
      'mcpmesh_non_finite_numbers_total', 'mcpmesh_uris_rejected_total',
      'mcpmesh_sessions_init_expired_total', 'mcpmesh_inflight_rejected_total',
      'mcpmesh_inflight_node_rejected_total']) {
      assert.ok(m[k] >= 1, `${k} = ${m[k]}`);
    }
  });
});

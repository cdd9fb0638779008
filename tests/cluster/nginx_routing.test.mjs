// nginx in front of a 4-node cluster (DESIGN.md §7): deploy/local/cluster.sh starts the nodes
// and nginx with the config of nginx/gen-nginx-conf.sh; everything below goes through nginx
// over plain HTTP (fetch) unless it names a node.
//   - sessionless requests (initialize) are spread over the nodes;
//   - a request with Mcp-Session-Id reaches the node named by the id's prefix (its owner);
//   - SSE passes unbuffered (the priming event of a POST stream, a live GET stream);
//   - after kill -9 of one node, sessions of the live nodes still work and new sessions never
//     land on the dead node.
// Nothing here depends on forwarding between nodes: the dead node's own sessions are not
// looked at.
//
// env MCPMESH_NODE = path to the mcpmesh-node binary (required); MCPMESH_NGINX (optional).
// Only Node built-ins.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CLUSTER_SH,
  PROTOCOL,
  REPO,
  SseParser,
  delay,
  freePort,
  pollUntil,
  refusesConnections,
  run,
  withDeadline,
} from './cluster_helper.mjs';

const NODES = 4;
const SESSIONS = 20;
const UP_DEADLINE_MS = 90_000; // cluster.sh bounds each of its own waits (20 s) itself
const DOWN_DEADLINE_MS = 60_000;
const CALL_DEADLINE_MS = 10_000;
const DEATH_DEADLINE_MS = 10_000;


// ---------------------------------------------------------------------------------------------
// the cluster under test

let dir; // cluster.sh's state directory
let nginxPort;
let nodes = []; // [{ id, http }] from DIR/nodes
let started = false;

const mcpUrl = () => `http://127.0.0.1:${nginxPort}/mcp`;
const ownerOf = (sid) => sid.slice(0, sid.indexOf('.'));

function clusterEnv() {
  if (!process.env.MCPMESH_NODE) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  return { ...process.env };
}

async function clusterUp() {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmesh-nginx-routing-'));
  nginxPort = await freePort();
  started = true; // from here on `down` runs, whatever happens to `up`
  const r = await run(CLUSTER_SH, ['up', '--nodes', String(NODES), '--port', String(nginxPort),
    '--dir', dir, '--profile', 'fast', '--detach'], { deadlineMs: UP_DEADLINE_MS, env: clusterEnv() });
  assert.equal(r.code, 0, `cluster.sh up failed:\n${r.stdout}\n${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.at(-1), `url ${mcpUrl()}`, `cluster.sh up's last line:\n${r.stdout}`);
  nodes = fs.readFileSync(path.join(dir, 'nodes'), 'utf8').trim().split('\n').map((l) => {
    const [id, http] = l.split(' ');
    return { id, http };
  });
  assert.deepEqual(nodes.map((n) => n.id), ['n1', 'n2', 'n3', 'n4']);
}

async function clusterDown() {
  if (!dir) return;
  try {
    if (started) {
      const r = await run(CLUSTER_SH, ['down', '--dir', dir], { deadlineMs: DOWN_DEADLINE_MS, env: clusterEnv() });
      assert.equal(r.code, 0, `cluster.sh down failed:\n${r.stdout}\n${r.stderr}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP through nginx

function mcpHeaders(sessionId) {
  const h = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': PROTOCOL,
  };
  if (sessionId) h['Mcp-Session-Id'] = sessionId;
  return h;
}

/** One whole exchange; resolves { status, headers, body, messages, events }. */
async function fetchAll(url, init = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(CALL_DEADLINE_MS) });
  const body = await res.text();
  const ct = res.headers.get('content-type') ?? '';
  let messages = [];
  const events = [];
  if (ct.startsWith('application/json') && body) {
    const v = JSON.parse(body);
    messages = Array.isArray(v) ? v : [v];
  } else if (ct.startsWith('text/event-stream')) {
    new SseParser((ev) => {
      events.push(ev);
      if (ev.data.trim()) messages.push(JSON.parse(ev.data));
    }).feed(body.endsWith('\n\n') ? body : `${body}\n\n`);
  }
  return { status: res.status, headers: res.headers, body, messages, events };
}

function post(sessionId, message) {
  return fetchAll(mcpUrl(), { method: 'POST', headers: mcpHeaders(sessionId), body: JSON.stringify(message) });
}

let nextId = 1;
/** A JSON-RPC call on a session through nginx; { ...response, msg } with msg the answer to it. */
async function rpc(sessionId, method, params) {
  const id = nextId++;
  const res = await post(sessionId, { jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
  return { ...res, msg: res.messages.find((m) => m.id === id) };
}

/** initialize + notifications/initialized through nginx; returns the session id. */
async function openSession(name) {
  const res = await post(undefined, {
    jsonrpc: '2.0', id: 0, method: 'initialize',
    params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name, version: '1.0.0' } },
  });
  assert.equal(res.status, 200, `initialize ${name}: ${res.body}`);
  const sid = res.headers.get('mcp-session-id');
  assert.ok(sid, `initialize ${name}: no Mcp-Session-Id`);
  assert.equal(res.messages[0]?.result?.protocolVersion, PROTOCOL, res.body);
  const n = await post(sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
  assert.equal(n.status, 202, `notifications/initialized ${name}: ${n.body}`);
  return sid;
}

/** tools/call whoami through nginx; returns { node_id, session_id } of the node that served it. */
async function whoami(sid) {
  const r = await rpc(sid, 'tools/call', { name: 'whoami', arguments: {} });
  assert.equal(r.status, 200, `whoami on ${sid}: ${r.body}`);
  const who = r.msg?.result?.structuredContent;
  assert.ok(who, `whoami on ${sid}: ${r.body}`);
  return who;
}

/** Standalone GET SSE stream through nginx, read continuously. */
async function openGetStream(sessionId) {
  const ac = new AbortController();
  const stream = { messages: [], ended: false, waiters: new Set(), close: () => ac.abort() };
  const notify = () => { for (const w of stream.waiters) w(); };
  const res = await withDeadline(fetch(mcpUrl(), {
    headers: { Accept: 'text/event-stream', 'Mcp-Session-Id': sessionId, 'MCP-Protocol-Version': PROTOCOL },
    signal: ac.signal,
  }), CALL_DEADLINE_MS, 'open GET stream');
  assert.equal(res.status, 200, 'GET stream status');
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const parser = new SseParser((ev) => {
    if (ev.data.trim()) { stream.messages.push(JSON.parse(ev.data)); notify(); }
  });
  (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) parser.feed(decoder.decode(chunk, { stream: true }));
    } catch { /* aborted or reset: ended below */ }
    stream.ended = true;
    notify();
  })();
  /** Resolves with the first message matching `pred`; rejects at the deadline or stream end. */
  stream.waitFor = (pred, what) => withDeadline(new Promise((resolve, reject) => {
    const check = () => {
      const m = stream.messages.find(pred);
      if (m) { stream.waiters.delete(check); resolve(m); }
      else if (stream.ended) { stream.waiters.delete(check); reject(new Error(`${what}: stream ended`)); }
    };
    stream.waiters.add(check);
    check();
  }), CALL_DEADLINE_MS, what);
  return stream;
}

/**
 * The access log lines nginx wrote from line `from` on, as { upstream, addr, status } (the
 * log_format of nginx/gen-nginx-conf.sh: `upstream=NAME addr=A[, B...] ustatus=...`).
 */
function accessLog(from = 0) {
  const text = fs.readFileSync(path.join(dir, 'nginx', 'access.log'), 'utf8');
  return text.split('\n').filter(Boolean).slice(from).map((line) => ({
    line,
    upstream: /upstream=(\S+)/.exec(line)?.[1],
    addr: /addr=(.*?) ustatus=/.exec(line)?.[1],
  }));
}

/** Subscribes `sid` to a note and sets it; its GET stream must carry resources/updated. */
async function noteUpdateReaches(stream, sid, name) {
  const uri = `note://${name}`;
  const sub = await rpc(sid, 'resources/subscribe', { uri });
  assert.ok(sub.msg?.result, `subscribe: ${sub.body}`);
  const set = await rpc(sid, 'tools/call', { name: 'note_set', arguments: { name, text: 'hi' } });
  assert.ok(set.msg?.result && !set.msg.result.isError, `note_set: ${set.body}`);
  const n = await stream.waitFor(
    (m) => m.method === 'notifications/resources/updated' && m.params?.uri === uri, `resources/updated ${uri}`);
  assert.equal(n.jsonrpc, '2.0');
}

// ---------------------------------------------------------------------------------------------

describe('nginx in front of a 4-node cluster', { timeout: 240_000 }, () => {
  const sessions = []; // session ids opened through nginx
  let stream; // GET stream of streamSid
  let streamSid;
  let victim; // node killed with SIGKILL

  before(clusterUp);

  after(async () => {
    stream?.close();
    await clusterDown();
  });

  it('/nginx-health is answered by nginx, /healthz and /readyz by every node', async () => {
    const h = await fetchAll(`http://127.0.0.1:${nginxPort}/nginx-health`);
    assert.equal(h.status, 200);
    assert.equal(h.body, 'ok\n');
    for (const n of nodes) {
      for (const p of ['/healthz', '/readyz']) {
        const r = await fetchAll(`http://${n.http}${p}`);
        assert.equal(r.status, 200, `${n.id} ${p}: ${r.status} ${r.body}`);
      }
    }
    // A sessionless request through nginx reaches some node.
    const viaNginx = await fetchAll(`http://127.0.0.1:${nginxPort}/healthz`);
    assert.equal(viaNginx.status, 200);
  });

  it(`${SESSIONS} initializes through nginx are spread over the nodes`, async () => {
    for (let i = 0; i < SESSIONS; i++) sessions.push(await openSession(`client-${i}`));
    const ids = new Set(nodes.map((n) => n.id));
    const count = {};
    for (const sid of sessions) {
      const owner = ownerOf(sid);
      assert.ok(ids.has(owner), `session ${sid}: owner '${owner}' is not a node`);
      count[owner] = (count[owner] ?? 0) + 1;
    }
    assert.ok(Object.keys(count).length >= 3, `owners: ${JSON.stringify(count)}`);
  });

  it('a call on each session is sent by nginx straight to the session owner', async () => {
    assert.equal(sessions.length, SESSIONS, 'sessions opened');
    const logFrom = accessLog().length;
    for (const sid of sessions) {
      const who = await whoami(sid);
      assert.equal(who.node_id, ownerOf(sid), `session ${sid} served by ${who.node_id}`);
      assert.equal(who.session_id, sid);
    }
    // The owner answering is not enough once nodes forward: nginx itself must have picked the
    // owner's upstream (mcpmesh_owner_K is the K-th node) and connected to the owner only.
    const lines = await pollUntil(() => {
      const l = accessLog(logFrom);
      return l.length >= sessions.length && l;
    }, { deadlineMs: CALL_DEADLINE_MS, what: 'access log lines of the whoami calls' });
    const owners = sessions.map(ownerOf);
    lines.forEach((l, i) => {
      const k = nodes.findIndex((n) => n.id === owners[i]) + 1;
      assert.equal(l.upstream, `mcpmesh_owner_${k}`, l.line);
      assert.equal(l.addr, nodes[k - 1].http, l.line);
    });
  });

  it('a session id naming no node goes to some node (the spread upstream), not to an error', async () => {
    const r = await post('nosuchnode.1.00000000000000000000000000000000', { jsonrpc: '2.0', id: 7, method: 'ping' });
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/, `${r.status} ${r.body}`);
    assert.equal(JSON.parse(r.body).jsonrpc, '2.0', r.body);
  });

  it('a body larger than nginx buffers by default reaches the owner whole', async () => {
    const text = 'x'.repeat(256 * 1024);
    const sid = sessions[0];
    const r = await rpc(sid, 'tools/call', { name: 'echo', arguments: { text } });
    assert.equal(r.status, 200, r.body.slice(0, 300));
    assert.equal(r.msg?.result?.content?.[0]?.text, text);
  });

  it('an SSE answer passes through nginx, starting with the priming event', async () => {
    const sid = sessions[1];
    const id = nextId++;
    const r = await post(sid, {
      jsonrpc: '2.0', id, method: 'tools/call',
      params: { name: 'slow', arguments: { seconds: 0.2, steps: 2 }, _meta: { progressToken: 'p1' } },
    });
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    const [priming] = r.events;
    assert.ok(priming?.id, `priming event id: ${r.body.slice(0, 200)}`);
    assert.ok(priming.retry, `priming event retry: ${r.body.slice(0, 200)}`);
    assert.equal(priming.data, '');
    const progress = r.messages.filter((m) => m.method === 'notifications/progress');
    assert.equal(progress.length, 2, r.body);
    assert.equal(r.messages.at(-1)?.id, id, r.body);
    assert.ok(r.messages.at(-1)?.result, r.body);
  });

  it('a GET SSE stream through nginx stays open and delivers notifications', async () => {
    // The node to kill later owns the last session; the stream lives on another node.
    victim = ownerOf(sessions.at(-1));
    streamSid = sessions.find((s) => ownerOf(s) !== victim);
    assert.ok(streamSid, 'a session on a node other than the victim');
    stream = await openGetStream(streamSid);
    await noteUpdateReaches(stream, streamSid, 'before-kill');
    assert.equal(stream.ended, false, 'GET stream ended');
  });

  it('after kill -9 of a node: live owners still serve, new sessions avoid the dead node', async () => {
    const pid = Number(fs.readFileSync(path.join(dir, `${victim}.pid`), 'utf8').trim());
    assert.ok(pid > 0, `pid of ${victim}`);
    const { http } = nodes.find((n) => n.id === victim);
    process.kill(pid, 'SIGKILL');
    const [host, port] = [http.slice(0, http.lastIndexOf(':')), Number(http.slice(http.lastIndexOf(':') + 1))];
    await pollUntil(() => refusesConnections(host, port), { deadlineMs: DEATH_DEADLINE_MS, what: `${victim} gone` });

    // Every session of a live node: still answered by its owner, through nginx.
    const live = sessions.filter((s) => ownerOf(s) !== victim);
    assert.ok(live.length >= SESSIONS / 2, `sessions on live nodes: ${live.length}`);
    for (const sid of live) {
      const who = await whoami(sid);
      assert.equal(who.node_id, ownerOf(sid), `session ${sid} served by ${who.node_id}`);
    }

    // New sessions: every initialize succeeds, none is owned by the dead node (round robin
    // passes over it more than once in this many).
    const fresh = [];
    for (let i = 0; i < 3 * NODES; i++) fresh.push(await openSession(`after-kill-${i}`));
    const owners = fresh.map(ownerOf);
    assert.ok(!owners.includes(victim), `new sessions on the dead node: ${owners.join(',')}`);
    assert.ok(new Set(owners).size >= 2, `owners: ${owners.join(',')}`);
    for (const sid of fresh) assert.equal((await whoami(sid)).node_id, ownerOf(sid));

    // The GET stream on a live node was not disturbed.
    assert.equal(stream.ended, false, 'GET stream ended');
    await noteUpdateReaches(stream, streamSid, 'after-kill');
    const h = await fetchAll(`http://127.0.0.1:${nginxPort}/nginx-health`);
    assert.equal(h.status, 200);
  });
});

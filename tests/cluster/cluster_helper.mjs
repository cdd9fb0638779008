// Shared helpers of the end-to-end cluster tests: a local cluster behind nginx
// (deploy/local/cluster.sh up/down), each node's addresses and pid, raw MCP over HTTP (fetch),
// a GET/POST SSE reader with deadlines, /metrics, and bounded concurrency.
//
// Every wait here has a deadline; nothing sleeps to synchronise (pollUntil polls a condition).
// Only Node built-ins: the SDK-based tests import the SDK themselves.
//
// env MCPMESH_NODE  path to mcpmesh-node (required by cluster.sh's callers here)
//     MCPMESH_NGINX optional nginx binary (cluster.sh's default otherwise)
//     MCPMESH_TEST_KEEP=1 keeps the cluster directory (logs) after `down`
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { delay, pollUntil, SseParser, withDeadline } from '../lib/util.mjs';

export { delay, pollUntil, SseParser, withDeadline };

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLUSTER_SH = path.join(REPO, 'deploy', 'local', 'cluster.sh');
export const PROTOCOL = '2025-11-25';
export const UP_DEADLINE_MS = 90_000; // cluster.sh bounds each of its own waits (20 s) itself
export const DOWN_DEADLINE_MS = 60_000;
export const CALL_DEADLINE_MS = 15_000;

// ---------------------------------------------------------------------------------------------
// small utilities

/** Runs `fn(item, index)` over `items` with at most `limit` at a time; results in order. */
export async function mapBounded(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The p-quantile (0..1) of numbers, nearest rank. */
export function percentile(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

/** Runs a command to its end (killed at the deadline); resolves { code, stdout, stderr }. */
export function run(cmd, args, { deadlineMs, env = process.env, cwd = REPO }) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no exit within ${deadlineMs} ms\n${stdout}\n${stderr}`));
    }, deadlineMs);
    proc.once('error', (e) => { clearTimeout(timer); reject(e); });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr });
    });
  });
}

/** A free loopback port (bound to port 0, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves true when nothing accepts TCP connections on host:port any more. */
export function refusesConnections(host, port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (refused) => { sock.destroy(); resolve(refused); };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => done(false));
    sock.once('error', () => done(true));
  });
}

/** Is `pid` a live process running `exe` (not a recycled pid, not a zombie)? */
export function runs(pid, exe) {
  try {
    const link = fs.readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
    if (exe && link !== exe) return false;
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

export const ownerOf = (sid) => sid.slice(0, sid.indexOf('.'));
export const hostPort = (addr) => {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
};

// ---------------------------------------------------------------------------------------------
// the cluster

/**
 * Brings up `cluster.sh up --nodes N --port P --dir D --app APP --profile PROFILE --detach`
 * (P a free port, D a fresh temporary directory; each of `nodeArgs` passed to every node with
 * --node-arg) and returns a Cluster. Registers process
 * signal handlers that bring it down when the test process is interrupted.
 */
export async function clusterUp({ nodes = 4, app = 'demo', profile = 'fast', name = 'cluster', nodeArgs = [] } = {}) {
  if (!process.env.MCPMESH_NODE) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  const c = new Cluster(fs.mkdtempSync(path.join(os.tmpdir(), `mcpmesh-${name}-`)));
  c.port = await freePort();
  c.armSignals();
  try {
    const r = await run(CLUSTER_SH, ['up', '--nodes', String(nodes), '--port', String(c.port), '--dir', c.dir,
      '--app', app, '--profile', profile, '--detach', ...nodeArgs.flatMap((a) => ['--node-arg', a])],
    { deadlineMs: UP_DEADLINE_MS });
    c.started = true; // `down` runs from here on, whatever happened to `up`
    assert.equal(r.code, 0, `cluster.sh up failed:\n${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.at(-1), `url ${c.url}`, `cluster.sh up's last line:\n${r.stdout}`);
    c.loadNodes();
    assert.equal(c.nodes.length, nodes, `nodes in ${c.dir}/nodes`);
  } catch (e) {
    c.started = true;
    await c.down().catch(() => {});
    throw e;
  }
  return c;
}

export class Cluster {
  constructor(dir) {
    this.dir = dir;
    this.port = 0;
    this.started = false;
    this.nodes = []; // [{ id, http, cluster, url, pid }]
    this.nodeBin = '';
    this.nginxPid = 0;
    this.extraPids = []; // processes a test started itself ({ pid, exe }), stopped by down()
  }

  get url() { return `http://127.0.0.1:${this.port}/mcp`; }
  get base() { return `http://127.0.0.1:${this.port}`; }
  get secretFile() { return path.join(this.dir, 'cluster.secret'); }
  logPath(id) { return path.join(this.dir, `${id}.log`); }
  log(id) { try { return fs.readFileSync(this.logPath(id), 'utf8'); } catch { return ''; } }
  logTail(id, n = 30) { return this.log(id).trimEnd().split('\n').slice(-n).map((l) => `  ${id}| ${l}`).join('\n'); }
  node(id) {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id} in ${this.nodes.map((x) => x.id)}`);
    return n;
  }

  /**
   * Each node's addresses from D/nodes (`ID HTTP CLUSTER`), checked against the node's own
   * `listening on http://HOST:PORT/mcp` log line, and its pid from D/<id>.pid.
   */
  loadNodes() {
    const env = Object.fromEntries(fs.readFileSync(path.join(this.dir, 'cluster.env'), 'utf8')
      .trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    this.nodeBin = env.node_bin;
    this.nginxPid = Number(fs.readFileSync(path.join(this.dir, 'nginx.pid'), 'utf8').trim());
    this.nodes = fs.readFileSync(path.join(this.dir, 'nodes'), 'utf8').trim().split('\n').map((l) => {
      const [id, http, cluster] = l.split(' ');
      const m = /^listening on (http:\/\/\S+\/mcp)$/m.exec(this.log(id));
      assert.ok(m, `${id}: no 'listening on http://…/mcp' line in its log:\n${this.logTail(id)}`);
      assert.equal(m[1], `http://${http}/mcp`, `${id}: log and ${this.dir}/nodes disagree`);
      const pid = Number(fs.readFileSync(path.join(this.dir, `${id}.pid`), 'utf8').trim());
      return { id, http, cluster, url: m[1], base: `http://${http}`, pid };
    });
  }

  /** Is node `id` (started by cluster.sh) still running? */
  alive(id) { return runs(this.node(id).pid, this.nodeBin); }

  /** SIGKILLs node `id` and waits (bounded) until its HTTP port refuses connections. */
  async kill9(id, deadlineMs = 10_000) {
    const n = this.node(id);
    assert.ok(this.alive(id), `${id} (pid ${n.pid}) is not running`);
    process.kill(n.pid, 'SIGKILL');
    const { host, port } = hostPort(n.http);
    await pollUntil(() => !this.alive(id) && refusesConnections(host, port),
      { deadlineMs, intervalMs: 10, what: `${id} gone after SIGKILL` });
  }

  /** `cluster.sh down`, then checks that none of the processes it started still runs. */
  async down() {
    this.disarmSignals();
    if (!this.started) { this.cleanup(); return; }
    this.started = false;
    this.stopExtra();
    const r = await run(CLUSTER_SH, ['down', '--dir', this.dir], { deadlineMs: DOWN_DEADLINE_MS });
    const left = [...this.nodes.map((n) => n.pid), this.nginxPid].filter((pid) => pid && runs(pid, null)
      && (runs(pid, this.nodeBin) || /nginx/.test(safeCmdline(pid))));
    this.cleanup();
    assert.equal(r.code, 0, `cluster.sh down failed:\n${r.stdout}\n${r.stderr}`);
    assert.deepEqual(left, [], 'processes still running after cluster.sh down');
  }

  /** SIGKILL for the processes a test started itself and left running. */
  stopExtra() {
    for (const { pid, exe } of this.extraPids.splice(0)) if (runs(pid, exe)) process.kill(pid, 'SIGKILL');
  }

  cleanup() {
    if (process.env.MCPMESH_TEST_KEEP) console.log(`# cluster directory kept: ${this.dir}`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // Interrupted (ctest timeout's SIGTERM, Ctrl-C): bring the cluster down synchronously.
  armSignals() {
    this.onSignal = (sig) => {
      this.stopExtra();
      if (this.started) spawnSync(CLUSTER_SH, ['down', '--dir', this.dir], { stdio: 'inherit', timeout: DOWN_DEADLINE_MS });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }
  disarmSignals() {
    if (!this.onSignal) return;
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    this.onSignal = null;
  }

  /**
   * Starts node `id` again with the command line of its log's last `# <date> <bin> <args>`
   * line (cluster.sh writes it), appending to the same log; resolves once it logs `cluster
   * listening on`. A port of the killed process that is not free yet is retried (bounded).
   */
  async restart(id, startMs = 20_000) {
    const n = this.node(id);
    const cmd = this.log(id).split('\n').filter((l) => l.startsWith('# ')).at(-1);
    if (!cmd) throw new Error(`${id}: no command line in its log`);
    const [, , bin, ...args] = cmd.split(' ');
    if (bin !== this.nodeBin) throw new Error(`${id}: command line '${cmd}' does not run ${this.nodeBin}`);
    const end = Date.now() + startMs;
    for (;;) {
      const offset = fs.statSync(this.logPath(id)).size;
      fs.appendFileSync(this.logPath(id), `# ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} ${bin} ${args.join(' ')}\n`);
      const fd = fs.openSync(this.logPath(id), 'a');
      const child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd] });
      fs.closeSync(fd);
      child.unref();
      n.pid = child.pid;
      fs.writeFileSync(path.join(this.dir, `${id}.pid`), `${child.pid}\n`);
      const tail = () => this.log(id).slice(offset);
      const up = await pollUntil(() => {
        if (/^cluster listening on /m.test(tail())) return 'up';
        if (!runs(child.pid, this.nodeBin)) return 'exited';
        return Date.now() > end ? 'late' : false;
      }, { deadlineMs: startMs + 1000, intervalMs: 20, what: `${id} restart` });
      if (up === 'up') return;
      if (up === 'exited' && /Address already in use|cannot listen/.test(tail()) && Date.now() < end) {
        await delay(200); // a port of the killed process is not free yet
        continue;
      }
      throw new Error(`${id} did not start again (${up}):\n${tail().slice(-2000)}`);
    }
  }

  /**
   * Waits until the cluster is whole: every node sees all nodes alive and none suspect, and
   * its replication has caught up with at least one replica in sync.
   */
  async waitWhole(what, deadlineMs = 60_000) {
    let last = '';
    await pollUntil(async () => {
      for (const n of this.nodes) {
        let m;
        try { m = await this.metrics(n.id); } catch (e) { last = `${n.id}: ${e.message}`; return false; }
        const alive = metricValue(m, 'mcpmesh_cluster_members', 'state="alive"');
        const suspect = metricValue(m, 'mcpmesh_cluster_members', 'state="suspect"');
        const pending = metricValue(m, 'mcpmesh_cluster_replication_pending');
        const inSync = metricValue(m, 'mcpmesh_cluster_in_sync_replicas');
        last = `${n.id}: alive ${alive} suspect ${suspect} pending ${pending} in-sync ${inSync}`;
        if (alive !== this.nodes.length || suspect !== 0 || pending !== 0 || !(inSync >= 1)) return false;
      }
      return true;
    }, { deadlineMs, intervalMs: 50, what }).catch((e) => { throw new Error(`${e.message}; last seen ${last}`); });
  }

  /** /metrics of node `id`, as text. */
  async metrics(id) {
    const r = await fetchAll(`${this.node(id).base}/metrics`);
    assert.equal(r.status, 200, `${id} /metrics: ${r.status}`);
    return r.body;
  }
}

function safeCmdline(pid) {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return ''; }
}

/** The value of metric `name{labels}` (labels: the exact text inside braces, or none). */
export function metricValue(text, name, labels = '') {
  const key = labels ? `${name}{${labels}}` : name;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp > 0 && line.slice(0, sp) === key) return Number(line.slice(sp + 1));
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// SSE

/**
 * A response body read as SSE while it arrives. `events` (every event, priming included),
 * `messages` (parsed JSON-RPC messages, each with its event id as `_eventId`), `ended`.
 * `until(fn, ms, what)` resolves with fn()'s first truthy value, checked after every event;
 * it rejects at the deadline, or when the stream ended and fn() is still falsy.
 */
export class SseStream {
  constructor(res, abort, { onMessage } = {}) {
    this.status = res.status;
    this.headers = res.headers;
    this.events = [];
    this.messages = [];
    this.ended = false;
    this.endError = null;
    this.abort = abort;
    this.onMessage = onMessage;
    this.waiters = new Set();
    const parser = new SseParser((ev) => {
      this.events.push(ev);
      if (ev.data.trim()) {
        const msg = JSON.parse(ev.data);
        Object.defineProperty(msg, '_eventId', { value: ev.id, enumerable: false });
        this.messages.push(msg);
        this.onMessage?.(msg, this);
      }
      this.notify();
    });
    this.done = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body) parser.feed(decoder.decode(chunk, { stream: true }));
      } catch (e) {
        this.endError = e;
      }
      this.ended = true;
      this.notify();
    })();
  }
  notify() { for (const w of [...this.waiters]) w(); }
  close() { this.abort.abort(); }
  /** The id of the last event that carried one. */
  lastEventId() { return this.events.findLast((e) => e.id !== undefined)?.id; }
  until(fn, ms, what) {
    let check;
    return withDeadline(new Promise((resolve, reject) => {
      check = () => {
        let v;
        try { v = fn(); } catch (e) { this.waiters.delete(check); reject(e); return; }
        if (v) { this.waiters.delete(check); resolve(v); } else if (this.ended) {
          this.waiters.delete(check);
          reject(new Error(`${what}: the stream ended (${this.endError?.message ?? 'closed'})`));
        }
      };
      this.waiters.add(check);
      check();
    }), ms, what).finally(() => this.waiters.delete(check));
  }
  waitFor(pred, ms, what) { return this.until(() => this.messages.find(pred), ms, what); }
}

// ---------------------------------------------------------------------------------------------
// MCP over HTTP (raw fetch)

export function mcpHeaders(sessionId, extra = {}) {
  const h = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': PROTOCOL,
    ...extra,
  };
  if (sessionId) h['Mcp-Session-Id'] = sessionId;
  return h;
}

/** One whole exchange; resolves { status, headers, body, messages, events }. */
export async function fetchAll(url, init = {}, deadlineMs = CALL_DEADLINE_MS) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(deadlineMs) });
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

export function post(url, sessionId, message, deadlineMs) {
  return fetchAll(url, { method: 'POST', headers: mcpHeaders(sessionId), body: JSON.stringify(message) }, deadlineMs);
}

let nextId = 1;
/** A JSON-RPC request on a session; { ...response, msg } with msg the answer to it. */
export async function rpc(url, sessionId, method, params, deadlineMs) {
  const id = nextId++;
  const res = await post(url, sessionId, { jsonrpc: '2.0', id, method, ...(params ? { params } : {}) }, deadlineMs);
  return { ...res, msg: res.messages.find((m) => m.id === id) };
}

/** initialize + notifications/initialized; returns the session id. */
export async function openSession(url, { name = 'cluster-test', capabilities = {} } = {}) {
  const res = await post(url, undefined, {
    jsonrpc: '2.0', id: 0, method: 'initialize',
    params: { protocolVersion: PROTOCOL, capabilities, clientInfo: { name, version: '1.0.0' } },
  });
  assert.equal(res.status, 200, `initialize ${name}: ${res.status} ${res.body}`);
  const sid = res.headers.get('mcp-session-id');
  assert.ok(sid, `initialize ${name}: no Mcp-Session-Id`);
  assert.equal(res.messages[0]?.result?.protocolVersion, PROTOCOL, res.body);
  const n = await post(url, sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
  assert.equal(n.status, 202, `notifications/initialized ${name}: ${n.status} ${n.body}`);
  return sid;
}

/** tools/call whoami; returns { status, who: { node_id, session_id } | undefined, res }. */
export async function whoami(url, sid, deadlineMs) {
  const res = await rpc(url, sid, 'tools/call', { name: 'whoami', arguments: {} }, deadlineMs);
  return { status: res.status, who: res.msg?.result?.structuredContent, res };
}

/**
 * Opens a GET SSE stream of session `sid` at `url` (optionally resuming after `lastEventId`).
 * Resolves with an SseStream when the answer is 200 text/event-stream, else with
 * { status, body, headers } (the body read whole).
 */
export async function openGetStream(url, sid, { lastEventId, onMessage, deadlineMs = CALL_DEADLINE_MS } = {}) {
  const ac = new AbortController();
  const headers = { Accept: 'text/event-stream', 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': PROTOCOL };
  if (lastEventId !== undefined) headers['Last-Event-ID'] = lastEventId;
  const timer = setTimeout(() => ac.abort(new Error(`GET stream: no answer within ${deadlineMs} ms`)), deadlineMs);
  let res;
  try {
    res = await fetch(url, { headers, signal: ac.signal });
  } finally {
    clearTimeout(timer);
  }
  if (res.status !== 200 || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    const body = await withDeadline(res.text(), deadlineMs, 'GET stream error body').catch((e) => `(${e.message})`);
    return { status: res.status, body, headers: res.headers };
  }
  return new SseStream(res, ac, { onMessage });
}

/**
 * POSTs `message` and reads the answer as it arrives (SSE or JSON). Resolves { status,
 * headers, stream } (stream: an SseStream when the answer is SSE) or { status, headers, body }.
 */
export async function postStreaming(url, sid, message, { onMessage, deadlineMs = CALL_DEADLINE_MS } = {}) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`POST: no answer within ${deadlineMs} ms`)), deadlineMs);
  let res;
  try {
    res = await fetch(url, { method: 'POST', headers: mcpHeaders(sid), body: JSON.stringify(message), signal: ac.signal });
  } finally {
    clearTimeout(timer);
  }
  if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    return { status: res.status, headers: res.headers, stream: new SseStream(res, ac, { onMessage }) };
  }
  return { status: res.status, headers: res.headers, body: await res.text() };
}

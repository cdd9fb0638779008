// The chaos workload: real MCP clients in the root namespace, speaking Streamable HTTP to any
// node (every request goes to a node picked at random among those running: most are relayed
// to the session's holder). Everything they send and see goes into the history; the checker
// decides what it means.
//
// * sessions: initialize + notifications/initialized (raw HTTP), some at start, more while
//   the run goes on (new sessions);
// * callers: tools/call of `add`, `echo` and `whoami` on random sessions, arguments unique per
//   request, so an answer is checkable on its own (and one meant for another request or
//   session shows up as wrong);
// * SDK clients: sessions of the official TypeScript SDK's Client (`add`), which moves to
//   another node (same Mcp-Session-Id, no new initialize) when its node fails it;
// * subscribers: sessions that subscribe to note:// URIs and hold their GET stream, resumed
//   with Last-Event-ID through a random node whenever it ends or goes silent;
// * the updater: note_set on one URI after another (each URI's updates are serial).
//
// Every request has a deadline; a request with no answer is recorded as such (indeterminate).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { delay, SseParser } from '../tests/lib/util.mjs';
import { mcpHeaders, PROTOCOL } from '../tests/cluster/cluster_helper.mjs';

export const REQUEST_MS = 5_000;
const STREAM_OPEN_MS = 5_000;
const STREAM_IDLE_MS = 6_000; // no byte (event or keep-alive) this long: the stream is dead
const KEEPALIVE_ARG = '--sse-keepalive-ms';
export const NODE_ARGS = [KEEPALIVE_ARG, '2000']; // so a silent stream is noticed quickly

/** A small seeded PRNG (mulberry32): the workload's choices replay from the seed. */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    range: (lo, hi) => lo + next() * (hi - lo),
  };
}

const textOf = (result) => (result?.content ?? []).find((c) => c.type === 'text')?.text;
const isResponse = (m) => m && m.id !== undefined && m.id !== null && !m.method && ('result' in m || 'error' in m);

/** What the checker needs of a tools/call result. */
function compactResult(result) {
  return { text: textOf(result), structured: result?.structuredContent, isError: result?.isError === true };
}

export class Workload {
  /**
   * `nodes`: a NodeSet (for URLs and which nodes run); `history`; `rng`: a prng; `opts`:
   * { initialSessions, subscribers, sdkClients, callers, uris, callPauseMs, updateEveryMs,
   *   newSessionEveryMs, maxSessions }.
   */
  constructor({ nodes, history, rng, opts }) {
    Object.assign(this, { nodes, history, rng, opts });
    this.sessions = []; // { sid, kind, subscriber?, uris?, stream? }
    this.subscribers = [];
    this.sdk = [];
    this.stopping = false;
    this.loops = [];
    this.inflight = new Set();
    this.nextRid = 1;
    this.updateSeq = 0;
    this.uris = Array.from({ length: opts.uris }, (_, i) => `note://chaos-${i}`);
  }

  /** A node to send the next request to: a running one at random (any node would answer). */
  pickNode() {
    const up = this.nodes.ids.filter((id) => this.nodes.running(id));
    return this.rng.pick(up.length ? up : this.nodes.ids);
  }

  track(p) {
    this.inflight.add(p);
    p.finally(() => this.inflight.delete(p));
    return p;
  }

  // -------------------------------------------------------------------------------------------
  // raw HTTP

  /**
   * POSTs one JSON-RPC message; resolves { status, messages, sid, error } (error: why there
   * was no whole answer: network, deadline, truncated stream, unparsable body).
   */
  async exchange(via, sid, message) {
    let res;
    try {
      res = await fetch(this.nodes.url(via), {
        method: 'POST', headers: mcpHeaders(sid), body: JSON.stringify(message), signal: AbortSignal.timeout(REQUEST_MS),
      });
    } catch (e) {
      return { status: 0, messages: [], error: e.cause?.code ?? e.name ?? 'error' };
    }
    let body;
    try {
      body = await res.text();
    } catch (e) {
      return { status: res.status, messages: [], error: `body: ${e.cause?.code ?? e.name}` };
    }
    const ct = res.headers.get('content-type') ?? '';
    const messages = [];
    try {
      if (ct.startsWith('application/json') && body) {
        const v = JSON.parse(body);
        messages.push(...(Array.isArray(v) ? v : [v]));
      } else if (ct.startsWith('text/event-stream')) {
        new SseParser((ev) => { if (ev.data.trim()) messages.push(JSON.parse(ev.data)); }).feed(body);
      }
    } catch {
      return { status: res.status, messages, error: 'unparsable body' };
    }
    return { status: res.status, messages, sid: res.headers.get('mcp-session-id') ?? undefined, body: body.slice(0, 300) };
  }

  /** A JSON-RPC request on session `sid` through `via`, recorded as a `call` event. */
  async call(sid, via, method, params, { tool, kind = 'raw' } = {}) {
    const rid = this.nextRid++;
    const ev = { type: 'call', kind, sid, rid, via, method, tool, args: params?.arguments, t0: this.history.now() };
    const r = await this.exchange(via, sid, { jsonrpc: '2.0', id: rid, method, ...(params ? { params } : {}) });
    ev.t = this.history.now();
    ev.status = r.status;
    const mine = r.messages.filter((m) => isResponse(m) && m.id === rid);
    const foreign = r.messages.filter((m) => isResponse(m) && m.id !== rid);
    ev.answers = mine.length;
    if (foreign.length) ev.foreign = foreign.map((m) => m.id);
    if (mine.length) {
      const m = mine[0];
      if (m.error) { ev.outcome = 'rpc_error'; ev.error = { code: m.error.code, message: String(m.error.message).slice(0, 200) }; } else {
        ev.outcome = 'ok';
        ev.result = method === 'tools/call' ? compactResult(m.result) : m.result;
      }
    } else if (r.status === 404) {
      ev.outcome = 'not_found';
    } else if (r.error) {
      ev.outcome = 'no_answer';
      ev.error = { message: r.error };
    } else {
      ev.outcome = 'http_error';
      ev.error = { message: r.body };
    }
    this.history.add(ev);
    return ev;
  }

  /** initialize + notifications/initialized through a random node; the session or null. */
  async openSession(kind = 'raw') {
    const via = this.pickNode();
    const ev = { type: 'session', kind, via, t0: this.history.now() };
    const r = await this.exchange(via, undefined, {
      jsonrpc: '2.0', id: 0, method: 'initialize',
      params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'mcpmesh-chaos', version: '1.0.0' } },
    });
    ev.status = r.status;
    const ok = r.status === 200 && r.sid && r.messages[0]?.result?.protocolVersion === PROTOCOL;
    if (ok) {
      const n = await this.exchange(via, r.sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
      ev.initialized = n.status;
    }
    ev.t = this.history.now();
    ev.outcome = ok && ev.initialized === 202 ? 'ok' : 'failed';
    if (ok) ev.sid = r.sid;
    if (!ok) ev.error = r.error ?? r.body;
    this.history.add(ev);
    if (ev.outcome !== 'ok') return null;
    const s = { sid: r.sid, kind };
    this.sessions.push(s);
    return s;
  }

  // -------------------------------------------------------------------------------------------
  // subscribers and their GET streams

  /** Subscribes session `s` to `uris` (each its own request, retried on errors) and holds its GET stream. */
  async makeSubscriber(s, uris) {
    s.subscriber = true;
    s.uris = uris;
    s.lastEventId = undefined;
    s.conn = 0;
    this.subscribers.push(s);
    // The stream first, so that no update after the subscription's answer can miss it.
    await this.openStream(s, { until: Date.now() + 10_000 });
    this.loops.push(this.streamLoop(s));
    for (const uri of uris) {
      for (let i = 0; i < 5 && !this.stopping; i++) {
        const via = this.pickNode();
        const ev = { type: 'subscribe', sid: s.sid, uri, via, t0: this.history.now() };
        const r = await this.exchange(via, s.sid, { jsonrpc: '2.0', id: this.nextRid++, method: 'resources/subscribe', params: { uri } });
        ev.t = this.history.now();
        ev.status = r.status;
        const m = r.messages.find(isResponse);
        ev.outcome = m && !m.error ? 'ok' : m?.error ? 'rpc_error' : r.status === 404 ? 'not_found' : 'no_answer';
        this.history.add(ev);
        if (ev.outcome === 'ok') break;
        await delay(300);
      }
    }
  }

  /** Opens (or resumes, with Last-Event-ID) the GET stream of `s` once; true when it is open. */
  async openStream(s, { until }) {
    while (!this.stopping && Date.now() < until) {
      const via = this.pickNode();
      const conn = ++s.conn;
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), STREAM_OPEN_MS);
      const headers = { Accept: 'text/event-stream', 'Mcp-Session-Id': s.sid, 'MCP-Protocol-Version': PROTOCOL };
      if (s.lastEventId !== undefined) headers['Last-Event-ID'] = s.lastEventId;
      let res;
      try {
        res = await fetch(this.nodes.url(via), { headers, signal: ac.signal });
      } catch (e) {
        clearTimeout(timer);
        this.history.add({ type: 'stream', action: 'fail', sid: s.sid, conn, via, error: e.cause?.code ?? e.name });
        await delay(250);
        continue;
      }
      clearTimeout(timer);
      const ok = res.status === 200 && (res.headers.get('content-type') ?? '').startsWith('text/event-stream');
      if (!ok) {
        await res.body?.cancel().catch(() => {});
        this.history.add({ type: 'stream', action: 'fail', sid: s.sid, conn, via, status: res.status });
        await delay(res.status === 404 ? 1000 : 250);
        continue;
      }
      this.history.add({ type: 'stream', action: 'open', sid: s.sid, conn, via, lastEventId: s.lastEventId });
      s.stream = { conn, via, ac, res, done: this.readStream(s, conn, via, res, ac) };
      return true;
    }
    return false;
  }

  /** Reads one GET stream connection to its end; records deliveries and any stray answer. */
  async readStream(s, conn, via, res, ac) {
    let lastByte = Date.now();
    const idle = setInterval(() => { if (Date.now() - lastByte > STREAM_IDLE_MS) ac.abort(); }, 500);
    const parser = new SseParser((ev) => {
      if (ev.id !== undefined) s.lastEventId = ev.id;
      if (!ev.data.trim()) return;
      let m;
      try { m = JSON.parse(ev.data); } catch { this.history.add({ type: 'stream', action: 'garbage', sid: s.sid, conn }); return; }
      if (m.method === 'notifications/resources/updated') {
        this.history.add({ type: 'delivery', sid: s.sid, uri: m.params?.uri, eventId: ev.id, conn, via });
      } else if (isResponse(m)) {
        this.history.add({ type: 'stray_answer', sid: s.sid, rid: m.id, conn, via, channel: 'get' });
      }
    });
    let why = 'end';
    try {
      const decoder = new TextDecoder();
      for await (const chunk of res.body) {
        lastByte = Date.now();
        parser.feed(decoder.decode(chunk, { stream: true }));
      }
    } catch (e) {
      why = ac.signal.aborted ? (this.stopping ? 'closed' : 'idle') : (e.cause?.code ?? e.name ?? 'error');
    }
    clearInterval(idle);
    this.history.add({ type: 'stream', action: 'end', sid: s.sid, conn, via, why });
  }

  /** Keeps the GET stream of `s` open until the workload stops. */
  async streamLoop(s) {
    while (!this.stopping) {
      if (s.stream) await s.stream.done;
      s.stream = null;
      if (this.stopping) break;
      await delay(100 + this.rng.int(200));
      await this.openStream(s, { until: Date.now() + 30_000 });
    }
  }

  // -------------------------------------------------------------------------------------------
  // SDK clients

  async openSdkClient() {
    const via = this.pickNode();
    const ev = { type: 'session', kind: 'sdk', via, t0: this.history.now() };
    const c = { kind: 'sdk', via, client: null, transport: null, unknownIds: 0 };
    try {
      await this.connectSdk(c, via, undefined);
      ev.sid = c.transport.sessionId;
      ev.outcome = ev.sid ? 'ok' : 'failed';
    } catch (e) {
      ev.outcome = 'failed';
      ev.error = String(e.message).slice(0, 200);
    }
    ev.t = this.history.now();
    this.history.add(ev);
    if (ev.outcome !== 'ok') { await c.client?.close().catch(() => {}); return null; }
    c.sid = ev.sid;
    this.sessions.push({ sid: c.sid, kind: 'sdk' });
    this.sdk.push(c);
    return c;
  }

  /** (Re)connects SDK client `c` through node `via`; with `sid`, it continues that session. */
  async connectSdk(c, via, sid) {
    await c.client?.close().catch(() => {});
    c.via = via;
    c.transport = new StreamableHTTPClientTransport(new URL(this.nodes.url(via)), {
      sessionId: sid,
      reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 0 },
    });
    c.client = new Client({ name: 'mcpmesh-chaos-sdk', version: '1.0.0' });
    c.client.onerror = (e) => {
      // The SDK reports an answer to a request it is no longer waiting for like this.
      if (/unknown message ID/i.test(String(e?.message))) {
        this.history.add({ type: 'stray_answer', sid: c.sid, rid: null, via: c.via, channel: 'sdk', detail: String(e.message).slice(0, 200) });
      }
    };
    await c.client.connect(c.transport, { timeout: REQUEST_MS });
  }

  async sdkLoop(c) {
    while (!this.stopping) {
      const a = this.rng.int(1_000_000);
      const b = this.rng.int(1_000_000);
      const ev = { type: 'call', kind: 'sdk', sid: c.sid, rid: null, via: c.via, method: 'tools/call', tool: 'add', args: { a, b }, t0: this.history.now(), answers: 0 };
      try {
        const result = await c.client.callTool({ name: 'add', arguments: { a, b } }, undefined, { timeout: REQUEST_MS });
        ev.outcome = 'ok';
        ev.answers = 1;
        ev.result = compactResult(result);
      } catch (e) {
        const msg = String(e?.message ?? e);
        if (e?.code === 404 || /HTTP 404/.test(msg)) ev.outcome = 'not_found';
        else if (typeof e?.code === 'number' && e.code < 0 && e.constructor?.name === 'McpError') { ev.outcome = 'rpc_error'; ev.answers = 1; } else ev.outcome = 'no_answer';
        ev.error = { code: e?.code, message: msg.slice(0, 200) };
      }
      ev.t = this.history.now();
      this.history.add(ev);
      if (ev.outcome !== 'ok' && !this.stopping) {
        // Its node failed it: continue the same session through another node.
        await delay(200);
        const via = this.pickNode();
        await this.connectSdk(c, via, c.sid).catch(() => {});
      }
      await delay(this.opts.callPauseMs);
    }
  }

  // -------------------------------------------------------------------------------------------
  // callers, updater, churn

  async callerLoop() {
    while (!this.stopping) {
      const plain = this.sessions.filter((s) => s.kind === 'raw');
      if (!plain.length) { await delay(100); continue; }
      const s = this.rng.pick(plain);
      const via = this.pickNode();
      const which = this.rng.int(3);
      if (which === 0) {
        await this.call(s.sid, via, 'tools/call', { name: 'add', arguments: { a: this.rng.int(1e9), b: this.rng.int(1e9) } }, { tool: 'add' });
      } else if (which === 1) {
        const text = `${s.sid}/${this.nextRid}/${this.rng.int(1e9)}`;
        await this.call(s.sid, via, 'tools/call', { name: 'echo', arguments: { text } }, { tool: 'echo' });
      } else {
        await this.call(s.sid, via, 'tools/call', { name: 'whoami', arguments: {} }, { tool: 'whoami' });
      }
      await delay(this.opts.callPauseMs);
    }
  }

  async updaterLoop() {
    let k = 0;
    while (!this.stopping) {
      const plain = this.sessions.filter((s) => s.kind === 'raw' && !s.subscriber);
      const start = Date.now();
      if (plain.length) {
        const uri = this.uris[k++ % this.uris.length];
        const s = this.rng.pick(plain);
        const via = this.pickNode();
        const seq = ++this.updateSeq;
        const ev = { type: 'update', uri, seq, by: s.sid, via, t0: this.history.now() };
        const c = await this.call(s.sid, via, 'tools/call', { name: 'note_set', arguments: { name: uri.slice('note://'.length), text: `v${seq}` } }, { tool: 'note_set' });
        ev.t = c.t;
        ev.rid = c.rid;
        // Raised for sure only when it answered "ok"; no answer or an error: it may or may not have been.
        ev.outcome = c.outcome === 'ok' && c.result?.text === 'ok' ? 'ok'
          : c.outcome === 'not_found' || (c.outcome === 'http_error' && c.status >= 400 && c.status < 500) ? 'failed' : 'indeterminate';
        this.history.add(ev);
      }
      await delay(Math.max(0, this.opts.updateEveryMs - (Date.now() - start)));
    }
  }

  async churnLoop() {
    while (!this.stopping) {
      await delay(this.opts.newSessionEveryMs);
      if (this.stopping || this.sessions.length >= this.opts.maxSessions) continue;
      const s = await this.openSession('raw');
      if (s && this.rng.next() < 0.25) await this.makeSubscriber(s, this.pickUris());
    }
  }

  pickUris() {
    const a = this.rng.int(this.uris.length);
    let b = this.rng.int(this.uris.length - 1);
    if (b >= a) b++;
    return [this.uris[a], this.uris[b]];
  }

  // -------------------------------------------------------------------------------------------

  /** Opens the first sessions and subscribers (bounded concurrency), then starts every loop. */
  async start() {
    const o = this.opts;
    for (let i = 0; i < o.initialSessions; i++) {
      for (let tries = 0; tries < 5; tries++) {
        if (await this.openSession('raw')) break;
        await delay(200);
      }
    }
    const raw = this.sessions.filter((s) => s.kind === 'raw');
    await Promise.all(raw.slice(0, o.subscribers).map((s) => this.makeSubscriber(s, this.pickUris())));
    for (let i = 0; i < o.sdkClients; i++) await this.openSdkClient();
    for (let i = 0; i < o.callers; i++) this.loops.push(this.callerLoop());
    for (const c of this.sdk) this.loops.push(this.sdkLoop(c));
    this.loops.push(this.updaterLoop());
    this.loops.push(this.churnLoop());
  }

  /** Stops every loop (bounded: each request has its own deadline) and closes the streams. */
  async stop() {
    this.stopping = true;
    for (const s of this.subscribers) s.stream?.ac.abort();
    await Promise.race([Promise.allSettled(this.loops), delay(REQUEST_MS * 3)]);
    for (const s of this.subscribers) s.stream?.ac.abort();
    for (const c of this.sdk) await Promise.race([c.client?.close().catch(() => {}), delay(2000)]);
  }

  /** Is every subscriber's stream open right now? */
  streamsOpen() { return this.subscribers.filter((s) => !s.stream).length; }
}

// 2026-07-28 stateless requests on a real node, over raw HTTP: what no client library shows —
// closing a request's stream cancels it, a listen stream ends with its result when the node
// shuts down, the listen bound, GET/DELETE of the modern era, malformed multi round-trip input.
//
// env MCPMESH_NODE = path to the mcpmesh-node binary (required)
// Only Node built-ins and tests/lib/util.mjs.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { sseEvents, withDeadline } from '../lib/util.mjs';

const T = { timeout: 30_000 };
const VERSION = '2026-07-28';
const META = {
  'io.modelcontextprotocol/protocolVersion': VERSION,
  'io.modelcontextprotocol/clientCapabilities': {},
};

const nodes = [];
after(() => {
  for (const n of nodes) n.proc.kill('SIGKILL');
});

async function startNode(extra = []) {
  const bin = process.env.MCPMESH_NODE;
  if (!bin) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  const proc = spawn(bin, ['--http', '127.0.0.1:0', '--app', 'demo', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  const url = await withDeadline(
    new Promise((resolve, reject) => {
      proc.stderr.on('data', (d) => {
        stderr += d;
        const m = /listening on (http:\/\/\S+\/mcp)/.exec(stderr);
        if (m) resolve(m[1]);
      });
      proc.once('exit', (code) => reject(new Error(`node exited ${code}: ${stderr}`)));
    }),
    10_000,
    'node start',
  );
  const node = { proc, url, exited: new Promise((r) => proc.once('exit', r)) };
  nodes.push(node);
  return node;
}

function post(url, method, params, { id = 1, signal, headers = {} } = {}) {
  const name = params?.name ?? params?.uri ?? params?.taskId;
  return fetch(url, {
    method: 'POST',
    signal,
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      'MCP-Protocol-Version': VERSION,
      'Mcp-Method': method,
      ...(name === undefined ? {} : { 'Mcp-Name': name }),
      ...headers,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: { ...META, ...params?._meta } } }),
  });
}

/** Yields the JSON messages of an SSE response as they come. */
async function* sse(res) {
  for await (const ev of sseEvents(res.body.getReader())) {
    if (ev.data) yield JSON.parse(ev.data);
  }
}

async function metric(url, name) {
  const text = await (await fetch(new URL('/metrics', url))).text();
  return Number(new RegExp(`^mcpmesh_${name} (\\d+)`, 'm').exec(text)[1]);
}

async function until(what, predicate, ms = 5_000) {
  await withDeadline(
    (async () => {
      while (!(await predicate())) await new Promise((r) => setTimeout(r, 25));
    })(),
    ms,
    what,
  );
}

describe('stateless requests on a node', T, () => {
  it('GET and DELETE of the modern era are 405', T, async () => {
    const { url } = await startNode();
    for (const method of ['GET', 'DELETE']) {
      const r = await fetch(url, { method, headers: { 'MCP-Protocol-Version': VERSION, Accept: 'text/event-stream' } });
      assert.equal(r.status, 405, method);
      assert.match((await r.json()).error.message, /POST each request/);
    }
  });

  it('closing a request stream cancels the request', T, async () => {
    const { url } = await startNode();
    const cancelled = await metric(url, 'cancelled_total');
    const abort = new AbortController();
    const res = await post(url, 'tools/call', {
      name: 'slow',
      arguments: { seconds: 20, steps: 200 },
      _meta: { progressToken: 'p1' },
    }, { signal: abort.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/event-stream/);
    for await (const m of sse(res)) {
      assert.equal(m.method, 'notifications/progress');
      break; // it runs: one progress notification is enough
    }
    abort.abort();
    await until('the call is cancelled', async () => (await metric(url, 'cancelled_total')) === cancelled + 1);
    await until('nothing left in flight', async () => (await metric(url, 'inflight_requests')) === 0);
  });

  it('a listen stream is acknowledged first and ends with its result on shutdown', T, async () => {
    const node = await startNode();
    const res = await post(node.url, 'subscriptions/listen', { notifications: { toolsListChanged: true, bogus: true } }, { id: 'L1' });
    assert.equal(res.status, 200);
    const seen = [];
    const reading = (async () => {
      for await (const m of sse(res)) seen.push(m);
    })();
    await until('the acknowledgement', async () => seen.length >= 1);
    assert.equal(seen[0].method, 'notifications/subscriptions/acknowledged');
    assert.deepEqual(seen[0].params.notifications, { toolsListChanged: true });
    assert.equal(seen[0].params._meta['io.modelcontextprotocol/subscriptionId'], 'L1');
    assert.equal(await metric(node.url, 'listen_streams_active'), 1);
    node.proc.kill('SIGTERM');
    await withDeadline(reading, 10_000, 'the listen stream ends');
    const last = seen.at(-1);
    assert.equal(last.id, 'L1');
    assert.equal(last.result.resultType, 'complete');
    assert.equal(last.result._meta['io.modelcontextprotocol/subscriptionId'], 'L1');
    await withDeadline(node.exited, 10_000, 'node exit');
  });

  it('listen streams are bounded by --max-listen-streams', T, async () => {
    const { url } = await startNode(['--max-listen-streams', '1']);
    const first = await post(url, 'subscriptions/listen', { notifications: { toolsListChanged: true } }, { id: 1 });
    const it1 = sse(first);
    assert.equal((await it1.next()).value.method, 'notifications/subscriptions/acknowledged');
    const second = await post(url, 'subscriptions/listen', { notifications: { toolsListChanged: true } }, { id: 2 });
    const body = await second.json();
    assert.equal(body.id, 2);
    assert.equal(body.error.code, -32000);
    assert.match(body.error.message, /max_listen_streams/);
    assert.equal(await metric(url, 'listen_streams_rejected_total'), 1);
    await it1.return();
  });

  it('malformed multi round-trip input is refused with -32602, never run', T, async () => {
    const { url } = await startNode();
    const call = (extra) => post(url, 'tools/call', { name: 'ask_user', arguments: { question: 'q' }, ...extra });
    const state = await (await call({ _meta: { 'io.modelcontextprotocol/clientCapabilities': { elicitation: {} } } })).json();
    assert.equal(state.result.resultType, 'input_required');
    const key = Object.keys(state.result.inputRequests)[0];
    const caps = { 'io.modelcontextprotocol/clientCapabilities': { elicitation: {} } };
    for (const [why, extra] of [
      ['inputResponses not an object', { inputResponses: 5 }],
      ['requestState not a string', { requestState: 5 }],
      ['another call\'s state', { requestState: state.result.requestState, arguments: { question: 'other' } }],
      ['answer not an ElicitResult', { inputResponses: { [key]: { action: 'maybe' } }, requestState: state.result.requestState }],
    ]) {
      const r = await (await post(url, 'tools/call', { name: 'ask_user', arguments: { question: 'q' }, ...extra, _meta: caps })).json();
      assert.equal(r.error?.code, -32602, `${why}: ${JSON.stringify(r)}`);
    }
    const done = await (await post(url, 'tools/call', {
      name: 'ask_user',
      arguments: { question: 'q' },
      inputResponses: { [key]: { action: 'accept', content: { answer: 'yes' } } },
      requestState: state.result.requestState,
      _meta: caps,
    })).json();
    assert.equal(done.result.content[0].text, 'action=accept answer=yes');
    // Without the elicitation capability the tool cannot ask: -32021, 400.
    const refused = await post(url, 'tools/call', { name: 'ask_user', arguments: { question: 'q' } });
    assert.equal(refused.status, 400);
    assert.equal((await refused.json()).error.code, -32021);
  });
});

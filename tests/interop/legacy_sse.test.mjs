// The deprecated HTTP+SSE transport of 2024-11-05 as seen on the wire: the endpoint event, where
// answers go, unknown sessions, and a session that ends with its stream. (The SDK's own
// SSEClientTransport runs every interop journey over it: TRANSPORTS in helper.mjs.)
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EXTERNAL_URL, startHttpNode, withDeadline } from './helper.mjs';
import { sseEvents } from '../lib/util.mjs';

const T = { timeout: 30_000 };

/** Collects the stream's events into `into` until `until(into)` holds (bounded). */
async function readUntil(events, into, until, what) {
  await withDeadline(
    (async () => {
      while (!until(into)) {
        const { value, done } = await events.next();
        if (done) break;
        into.push(value);
      }
    })(),
    5_000,
    what,
  );
}

async function sessionsActive(url) {
  const text = await (await fetch(new URL('/metrics', url))).text();
  return Number(/^mcpmesh_sessions_active (\d+)/m.exec(text)[1]);
}

// One node's own figures (sessions_active): not through a balancer.
describe('HTTP+SSE transport (2024-11-05) on the wire', { ...T, skip: EXTERNAL_URL ? 'needs one node of its own' : false }, () => {
  let node;
  before(async () => {
    // Keep-alives every 200 ms: a stream whose client went away is noticed at the next one.
    node = await startHttpNode({ app: 'demo', extraArgs: ['--sse-keepalive-ms', '200'] });
  });
  after(async () => {
    await node?.stop();
  });

  it('announces the endpoint, answers on the stream, ends the session with it', T, async () => {
    const before = await sessionsActive(node.url);
    const abort = new AbortController();
    const res = await fetch(new URL('/sse', node.url), {
      headers: { Accept: 'text/event-stream' },
      signal: abort.signal,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/event-stream/);
    const stream = sseEvents(res.body.getReader());
    const events = [];
    await readUntil(stream, events, (evs) => evs.length >= 1, 'the endpoint event');
    assert.equal(events[0].event, 'endpoint');
    const endpoint = new URL(events[0].data, node.url);
    assert.equal(endpoint.pathname, '/messages');
    assert.ok(endpoint.searchParams.get('sessionId'));
    assert.equal(await sessionsActive(node.url), before + 1);

    const post = (body) =>
      fetch(endpoint, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const init = await post({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    });
    assert.equal(init.status, 202);
    // The answer comes on the stream, not in the POST's body.
    const messages = (evs) => evs.filter((e) => e.event === 'message').map((e) => JSON.parse(e.data));
    const answered = (id) => (evs) => messages(evs).some((m) => m.id === id);
    const answer = (id) => messages(events).find((m) => m.id === id);
    await readUntil(stream, events, answered(1), 'initialize answered on the stream');
    assert.equal(answer(1).result.protocolVersion, '2024-11-05');
    assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);
    assert.equal((await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 2 } } })).status, 202);
    await readUntil(stream, events, answered(2), 'tools/call answered on the stream');
    assert.equal(answer(2).result.structuredContent.sum, 3);

    abort.abort();
    await withDeadline(
      (async () => {
        while ((await sessionsActive(node.url)) !== before) await new Promise((r) => setTimeout(r, 50));
      })(),
      10_000,
      'the session ends with its stream',
    );
    const gone = await post({ jsonrpc: '2.0', id: 3, method: 'tools/list' });
    assert.equal(gone.status, 404);
  });

  it('refuses a POST for an unknown or missing session', T, async () => {
    for (const q of ['?sessionId=n1.0.nope', '']) {
      const r = await fetch(new URL(`/messages${q}`, node.url), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
      });
      assert.equal(r.status, 404);
      assert.equal((await r.json()).error.message, 'Session not found');
    }
  });
});

// The deprecated HTTP+SSE transport of 2024-11-05 as seen on the wire: the endpoint event, where
// answers go, unknown sessions, and a session that ends with its stream. (The SDK's own
// SSEClientTransport runs every interop journey over it: TRANSPORTS in helper.mjs.)
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EXTERNAL_URL, startHttpNode, withDeadline } from './helper.mjs';

const T = { timeout: 30_000 };

/** Reads SSE events from a fetch response body until `until(events)` holds. */
async function readEvents(res, until, deadlineMs = 5_000) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buf = '';
  await withDeadline(
    (async () => {
      while (!until(events)) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let at;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const ev = { event: 'message', data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) ev.event = line.slice(7);
            else if (line.startsWith('data: ')) ev.data += line.slice(6);
          }
          if (!block.startsWith(':')) events.push(ev);
        }
      }
    })(),
    deadlineMs,
    'SSE events',
  );
  return { events, reader };
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
    const { events, reader } = await readEvents(res, (evs) => evs.length >= 1);
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
    const rest = [];
    const more = async (until) => {
      const decoder = new TextDecoder();
      let buf = '';
      await withDeadline(
        (async () => {
          while (!until(rest)) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += decoder.decode(value, { stream: true });
            let at;
            while ((at = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, at);
              buf = buf.slice(at + 2);
              const data = block.split('\n').find((l) => l.startsWith('data: '));
              if (data) rest.push(JSON.parse(data.slice(6)));
            }
          }
        })(),
        5_000,
        'answer on the stream',
      );
    };
    await more((r) => r.some((m) => m.id === 1));
    assert.equal(rest.find((m) => m.id === 1).result.protocolVersion, '2024-11-05');
    assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);
    assert.equal((await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 2 } } })).status, 202);
    await more((r) => r.some((m) => m.id === 2));
    assert.equal(rest.find((m) => m.id === 2).result.structuredContent.sum, 3);

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

// The official TypeScript SDK v2 client (@modelcontextprotocol/client 2.4.0) against one
// mcpmesh-node (--app demo) serving both protocol eras at once: pinned to 2026-07-28 (stateless
// requests, multi round-trip input, subscriptions/listen), in auto mode (it finds the modern era
// by server/discover), and beside a v1 client whose session runs at the same time. With
// MCPMESH_URL (tests/cluster/interop_cluster.mjs) the same through nginx in front of a cluster:
// each stateless request goes to whichever node nginx picks, a multi round-trip request's rounds
// included, and a listen stream on one node hears of changes made through another.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, LOG_LEVEL_META_KEY, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { EXTERNAL_URL, startHttpNode, withDeadline } from './helper.mjs';

const T = { timeout: 30_000 };
const textOf = (r) => r.content?.find((c) => c.type === 'text')?.text;

async function connectV2(url, mode, setup) {
  const client = new Client(
    { name: 'mcpmesh-sdk-v2-test', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: { form: {} } }, versionNegotiation: { mode } },
  );
  setup?.(client);
  await withDeadline(client.connect(new StreamableHTTPClientTransport(new URL(url))), 10_000, 'connect');
  return client;
}

describe('SDK v2 client, 2026-07-28 beside 2025-11-25', T, () => {
  let node;
  const elicited = [];
  const sampled = [];
  const handlers = (c) => {
    c.setRequestHandler('elicitation/create', async (req) => {
      elicited.push(req.params);
      return { action: 'accept', content: { answer: 'forty-two' } };
    });
    c.setRequestHandler('sampling/createMessage', async (req) => {
      sampled.push(req.params);
      return { role: 'assistant', content: { type: 'text', text: 'Paris' }, model: 'm', stopReason: 'endTurn' };
    });
  };
  before(async () => {
    node = EXTERNAL_URL ? { url: EXTERNAL_URL } : await startHttpNode({ app: 'demo' });
  });
  after(async () => {
    await node?.stop?.();
  });

  it('pinned to 2026-07-28: tools, resources, prompts, completion without a session', T, async () => {
    const c = await connectV2(node.url, { pin: '2026-07-28' }, handlers);
    try {
      assert.equal(c.getProtocolEra(), 'modern');
      const tools = await c.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'add'));
      const sum = await c.callTool({ name: 'add', arguments: { a: 2, b: 40 } });
      assert.equal(sum.structuredContent.sum, 42);
      // (Notes live on the node that stored them, and stateless requests go to any node: what
      // is read here does not depend on the node.)
      const templates = await c.listResourceTemplates();
      assert.equal(templates.resourceTemplates[0].uriTemplate, 'note://{name}');
      const prompts = await c.listPrompts();
      assert.ok(prompts.prompts.some((p) => p.name === 'summarize'));
      const prompt = await c.getPrompt({ name: 'summarize', arguments: { topic: 'the cluster' } });
      assert.match(prompt.messages[0].content.text, /the cluster/);
      const done = await c.complete({
        ref: { type: 'ref/prompt', name: 'summarize' },
        argument: { name: 'topic', value: 'me' },
      });
      assert.deepEqual(done.completion.values, ['mesh', 'membership', 'metrics']);
      const missing = await c.readResource({ uri: 'note://absent' }).catch((e) => e);
      assert.equal(missing.code, -32602, String(missing));
    } finally {
      await c.close();
    }
  });

  it('pinned: elicitation and sampling come back as multi round-trip input', T, async () => {
    const c = await connectV2(node.url, { pin: '2026-07-28' }, handlers);
    try {
      const asked = await c.callTool({ name: 'ask_user', arguments: { question: 'The answer?' } });
      assert.equal(textOf(asked), 'action=accept answer=forty-two');
      assert.equal(elicited.at(-1).message, 'The answer?');
      const llm = await c.callTool({ name: 'ask_llm', arguments: { prompt: 'Capital of France?' } });
      assert.equal(textOf(llm), 'sampled: Paris');
    } finally {
      await c.close();
    }
  });

  it('pinned: progress and log messages on the request stream, logs only when asked', T, async () => {
    const c = await connectV2(node.url, { pin: '2026-07-28' }, handlers);
    try {
      const progress = [];
      const r = await c.callTool(
        { name: 'slow', arguments: { seconds: 0.2, steps: 3 } },
        { onprogress: (p) => progress.push(p.progress) },
      );
      assert.equal(textOf(r), 'completed 3 steps');
      assert.deepEqual(progress, [1, 2, 3]);
      const logs = [];
      c.setNotificationHandler('notifications/message', (n) => logs.push(n.params));
      await c.callTool({ name: 'log', arguments: { level: 'error', message: 'unasked' } });
      await c.callTool({
        name: 'log',
        arguments: { level: 'warning', message: 'asked' },
        _meta: { [LOG_LEVEL_META_KEY]: 'info' },
      });
      await c.callTool({
        name: 'log',
        arguments: { level: 'debug', message: 'below the level' },
        _meta: { [LOG_LEVEL_META_KEY]: 'info' },
      });
      assert.deepEqual(logs.map((l) => l.data), ['asked']);
    } finally {
      await c.close();
    }
  });

  it('pinned: cancelling a call stops it on the server', T, async () => {
    const c = await connectV2(node.url, { pin: '2026-07-28' }, handlers);
    const cancelled = async () => {
      if (EXTERNAL_URL) return 0; // behind a balancer there is no one node to ask
      const text = await (await fetch(new URL('/metrics', node.url))).text();
      return Number(/^mcpmesh_cancelled_total (\d+)/m.exec(text)[1]);
    };
    try {
      const before = await cancelled();
      const abort = new AbortController();
      const started = Date.now();
      let progressed;
      const seen = new Promise((r) => (progressed = r));
      const call = c.callTool(
        { name: 'slow', arguments: { seconds: 20, steps: 200 } },
        { signal: abort.signal, onprogress: () => progressed() },
      );
      await withDeadline(seen, 5_000, 'the call runs');
      abort.abort();
      await assert.rejects(call);
      assert.ok(Date.now() - started < 10_000);
      if (!EXTERNAL_URL) {
        await withDeadline(
          (async () => {
            while ((await cancelled()) !== before + 1) await new Promise((r) => setTimeout(r, 25));
          })(),
          5_000,
          'the server cancels the call',
        );
      }
    } finally {
      await c.close();
    }
  });

  it('pinned: a listen stream gets the list changes it opted in to', T, async () => {
    const c = await connectV2(node.url, { pin: '2026-07-28' }, handlers);
    try {
      const changed = [];
      c.setNotificationHandler('notifications/resources/list_changed', (n) => changed.push(n));
      const sub = await withDeadline(c.listen({ resourcesListChanged: true }), 5_000, 'listen');
      // note_set on a new note changes the resource list (the note template lists its notes).
      await c.callTool({ name: 'note_set', arguments: { name: `n-${Date.now()}`, text: 'x' } });
      await withDeadline(
        (async () => {
          while (changed.length === 0) await new Promise((r) => setTimeout(r, 20));
        })(),
        5_000,
        'list_changed on the listen stream',
      );
      await sub.close();
    } finally {
      await c.close();
    }
  });

  it('auto mode finds the modern era by server/discover', T, async () => {
    const c = await connectV2(node.url, 'auto', handlers);
    try {
      assert.equal(c.getProtocolEra(), 'modern');
      assert.equal(c.getNegotiatedProtocolVersion(), '2026-07-28');
      const sum = await c.callTool({ name: 'add', arguments: { a: 1, b: 1 } });
      assert.equal(sum.structuredContent.sum, 2);
    } finally {
      await c.close();
    }
  });

  it('both eras on one node at the same time', T, async () => {
    // A node on a loaded machine may shed a new session (503, Retry-After): a client retries.
    let v1;
    for (let attempt = 1; ; attempt++) {
      v1 = new ClientV1({ name: 'mcpmesh-v1', version: '1.0.0' });
      try {
        await v1.connect(new TransportV1(new URL(node.url)));
        break;
      } catch (e) {
        if (attempt === 10 || !/overloaded|retry/.test(String(e))) throw e;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    const v2 = await connectV2(node.url, { pin: '2026-07-28' }, handlers);
    try {
      assert.ok(v1.transport.sessionId, 'the v1 client has a session');
      const calls = [];
      for (let i = 0; i < 20; i++) {
        calls.push(v1.callTool({ name: 'add', arguments: { a: i, b: 1 } }).then((r) => ['v1', i, r]));
        calls.push(v2.callTool({ name: 'add', arguments: { a: i, b: 2 } }).then((r) => ['v2', i, r]));
      }
      for (const [era, i, r] of await Promise.all(calls)) {
        assert.equal(r.structuredContent.sum, i + (era === 'v1' ? 1 : 2), `${era} call ${i}`);
      }
    } finally {
      await v2.close();
      await v1.close();
    }
  });
});

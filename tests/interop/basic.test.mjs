// initialize, tools, prompts and completion against `mcpmesh-node --app demo`,
// over Streamable HTTP and stdio, with the official TS SDK v1 client.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TRANSPORTS, createFixture, textOf } from './helper.mjs';

const T = { timeout: 30_000 };

for (const kind of TRANSPORTS) {
  describe(`basic over ${kind}`, T, () => {
    let fx;
    let client;
    before(async () => {
      fx = await createFixture(kind);
      client = await fx.connect();
    });
    after(async () => {
      await fx?.close();
    });

    it('initialize: server info and capabilities', T, async () => {
      const info = client.getServerVersion();
      assert.ok(info, 'serverInfo missing');
      assert.equal(typeof info.name, 'string');
      assert.ok(info.name.length > 0);
      assert.equal(typeof info.version, 'string');
      const caps = client.getServerCapabilities();
      assert.ok(caps?.tools, 'tools capability');
      assert.ok(caps?.resources, 'resources capability');
      assert.equal(caps.resources.subscribe, true, 'resources.subscribe');
      assert.ok(caps?.prompts, 'prompts capability');
      assert.ok(caps?.logging, 'logging capability');
      assert.ok(caps?.completions, 'completions capability');
      if (kind === 'http') assert.ok(client.transport.sessionId, 'Mcp-Session-Id');
      assert.deepEqual(await client.ping(), {});
    });

    it('tools/list lists the demo tools', T, async () => {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      for (const n of ['echo', 'add', 'slow', 'note_set', 'whoami', 'log', 'ask_llm', 'ask_user']) {
        assert.ok(names.includes(n), `tool ${n} missing from ${names}`);
      }
      for (const t of tools) assert.equal(t.inputSchema.type, 'object', `${t.name} inputSchema.type`);
      const echo = tools.find((t) => t.name === 'echo');
      assert.equal(echo.inputSchema.properties.text.type, 'string');
      const add = tools.find((t) => t.name === 'add');
      assert.deepEqual(add.outputSchema?.required, ['sum']);
      assert.equal(add.outputSchema?.properties?.sum?.type, 'number');
    });

    it('tools/call echo', T, async () => {
      const r = await client.callTool({ name: 'echo', arguments: { text: 'héllo "mesh"\n' } });
      assert.deepEqual(r.content, [{ type: 'text', text: 'héllo "mesh"\n' }]);
      assert.notEqual(r.isError, true);
    });

    it('tools/call add returns structuredContent matching outputSchema', T, async () => {
      await client.listTools(); // makes the SDK validate structuredContent against outputSchema
      const r = await client.callTool({ name: 'add', arguments: { a: 2, b: 40.5 } });
      assert.deepEqual(r.structuredContent, { sum: 42.5 });
      assert.equal(textOf(r), '42.5');
    });

    it('tools/call whoami', T, async () => {
      const r = await client.callTool({ name: 'whoami', arguments: {} });
      const sc = r.structuredContent;
      assert.ok(sc && typeof sc.node_id === 'string' && sc.node_id.length > 0, 'node_id');
      assert.equal(typeof sc.session_id, 'string');
      assert.deepEqual(JSON.parse(textOf(r)), sc);
      if (kind === 'http') assert.equal(sc.session_id, client.transport.sessionId);
    });

    it('tools/call unknown tool fails', T, async () => {
      // Either a JSON-RPC error or an isError result is acceptable per spec.
      let failed = false;
      try {
        const r = await client.callTool({ name: 'no_such_tool', arguments: {} });
        failed = r.isError === true;
      } catch {
        failed = true;
      }
      assert.ok(failed);
    });

    it('prompts/list and prompts/get summarize', T, async () => {
      const { prompts } = await client.listPrompts();
      const p = prompts.find((x) => x.name === 'summarize');
      assert.ok(p, 'prompt summarize missing');
      const arg = (p.arguments ?? []).find((a) => a.name === 'topic');
      assert.ok(arg, 'argument topic missing');
      assert.equal(arg.required, true);
      const r = await client.getPrompt({ name: 'summarize', arguments: { topic: 'gossip' } });
      assert.equal(r.messages.length, 1);
      assert.equal(r.messages[0].role, 'user');
      assert.deepEqual(r.messages[0].content, { type: 'text', text: 'Summarize gossip.' });
    });

    it('completion/complete for summarize.topic', T, async () => {
      const ref = { type: 'ref/prompt', name: 'summarize' };
      const c1 = await client.complete({ ref, argument: { name: 'topic', value: 'me' } });
      assert.deepEqual([...c1.completion.values].sort(), ['membership', 'mesh', 'metrics']);
      const c2 = await client.complete({ ref, argument: { name: 'topic', value: 'mc' } });
      assert.deepEqual(c2.completion.values, ['mcp']);
      const c3 = await client.complete({ ref, argument: { name: 'topic', value: '' } });
      assert.deepEqual([...c3.completion.values].sort(), ['mcp', 'membership', 'mesh', 'metrics']);
      const c4 = await client.complete({ ref, argument: { name: 'topic', value: 'zzz' } });
      assert.deepEqual(c4.completion.values, []);
    });
  });
}

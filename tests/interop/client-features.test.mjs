// Server -> client requests: sampling/createMessage and elicitation/create (form).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { TRANSPORTS, createFixture, textOf } from './helper.mjs';

const T = { timeout: 30_000 };

for (const kind of TRANSPORTS) {
  describe(`client features over ${kind}`, T, () => {
    let fx;
    let client;
    const samplingRequests = [];
    const elicitRequests = [];
    let elicitAnswer = { action: 'accept', content: { answer: '42' } };
    before(async () => {
      fx = await createFixture(kind);
      client = await fx.connect({
        capabilities: { sampling: {}, elicitation: { form: {} } },
        setup: (c) => {
          c.setRequestHandler(CreateMessageRequestSchema, async (req) => {
            samplingRequests.push(req.params);
            const text = req.params.messages?.[0]?.content?.text;
            return {
              role: 'assistant',
              content: { type: 'text', text: `echo of ${text}` },
              model: 'interop-test-model',
              stopReason: 'endTurn',
            };
          });
          c.setRequestHandler(ElicitRequestSchema, async (req) => {
            elicitRequests.push(req.params);
            return elicitAnswer;
          });
        },
      });
    });
    after(async () => {
      await fx?.close();
    });

    it('ask_llm sends sampling/createMessage and returns the sampled text', T, async () => {
      const r = await client.callTool({ name: 'ask_llm', arguments: { prompt: 'what is a mesh?' } });
      assert.equal(textOf(r), 'sampled: echo of what is a mesh?');
      assert.equal(samplingRequests.length, 1);
      const p = samplingRequests[0];
      assert.equal(p.maxTokens, 100);
      assert.deepEqual(p.messages, [{ role: 'user', content: { type: 'text', text: 'what is a mesh?' } }]);
    });

    it('ask_user sends elicitation/create (form) and returns the answer', T, async () => {
      elicitAnswer = { action: 'accept', content: { answer: '42' } };
      const r = await client.callTool({ name: 'ask_user', arguments: { question: 'meaning of life?' } });
      assert.equal(textOf(r), 'action=accept answer=42');
      const p = elicitRequests.at(-1);
      assert.equal(p.message, 'meaning of life?');
      assert.ok(p.mode === undefined || p.mode === 'form', `mode ${p.mode}`);
      assert.equal(p.requestedSchema.type, 'object');
      assert.equal(p.requestedSchema.properties.answer.type, 'string');
      assert.deepEqual(p.requestedSchema.required, ['answer']);
    });

    it('ask_user with a declined elicitation', T, async () => {
      elicitAnswer = { action: 'decline' };
      const r = await client.callTool({ name: 'ask_user', arguments: { question: 'share secrets?' } });
      assert.equal(textOf(r), 'action=decline answer=');
    });

    it('concurrent server->client requests are routed to the right calls', T, async () => {
      const [a, b] = await Promise.all([
        client.callTool({ name: 'ask_llm', arguments: { prompt: 'one' } }),
        client.callTool({ name: 'ask_llm', arguments: { prompt: 'two' } }),
      ]);
      assert.equal(textOf(a), 'sampled: echo of one');
      assert.equal(textOf(b), 'sampled: echo of two');
    });
  });
}

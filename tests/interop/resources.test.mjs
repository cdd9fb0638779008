// resources: templates, read, list, subscribe/updated (same session and, over
// HTTP, a second session of the same node).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { EXTERNAL_URL, TRANSPORTS, createFixture, makeWaiter, textOf, uniqueName } from './helper.mjs';

const T = { timeout: 30_000 };

for (const kind of TRANSPORTS) {
  describe(`resources over ${kind}`, T, () => {
    let fx;
    let client;
    const updates = [];
    const waiter = makeWaiter();
    before(async () => {
      fx = await createFixture(kind);
      client = await fx.connect({
        setup: (c) =>
          c.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
            updates.push(n.params.uri);
            waiter.notify();
          }),
      });
    });
    after(async () => {
      await fx?.close();
    });

    it('resources/templates/list has note://{name}', T, async () => {
      const { resourceTemplates } = await client.listResourceTemplates();
      const t = resourceTemplates.find((x) => x.uriTemplate === 'note://{name}');
      assert.ok(t, `note template missing: ${JSON.stringify(resourceTemplates)}`);
      assert.equal(t.name, 'note');
      assert.equal(t.mimeType, 'text/plain');
    });

    it('note_set then resources/read and resources/list', T, async () => {
      const name = uniqueName('n');
      const r = await client.callTool({ name: 'note_set', arguments: { name, text: 'first text' } });
      assert.equal(textOf(r), 'ok');
      const read = await client.readResource({ uri: `note://${name}` });
      assert.equal(read.contents.length, 1);
      assert.equal(read.contents[0].uri, `note://${name}`);
      assert.equal(read.contents[0].text, 'first text');
      assert.equal(read.contents[0].mimeType, 'text/plain');
      const { resources } = await client.listResources();
      assert.ok(resources.some((x) => x.uri === `note://${name}`), 'note not in resources/list');
      await client.callTool({ name: 'note_set', arguments: { name, text: 'second' } });
      assert.equal((await client.readResource({ uri: `note://${name}` })).contents[0].text, 'second');
    });

    it('reading an unknown note is error -32002', T, async () => {
      await assert.rejects(client.readResource({ uri: `note://${uniqueName('missing')}` }), (e) => {
        assert.equal(e.code, -32002, `code ${e.code}: ${e.message}`);
        return true;
      });
    });

    it('subscribe note://x, note_set x (same session) -> resources/updated', T, async () => {
      assert.deepEqual(await client.subscribeResource({ uri: 'note://x' }), {});
      const before = updates.length;
      await client.callTool({ name: 'note_set', arguments: { name: 'x', text: 'v1' } });
      await waiter.until(
        () => updates.slice(before).includes('note://x'),
        5_000,
        'notifications/resources/updated note://x',
      );
    });

    it('notes of other names do not notify note://x subscribers', T, async () => {
      const other = uniqueName('other');
      const before = updates.length;
      await client.callTool({ name: 'note_set', arguments: { name: other, text: 'v' } });
      // barrier: an update for x sent after the other note must arrive after anything for it
      await client.callTool({ name: 'note_set', arguments: { name: 'x', text: 'v2' } });
      await waiter.until(() => updates.slice(before).includes('note://x'), 5_000, 'update for x');
      assert.ok(!updates.slice(before).includes(`note://${other}`), 'got update for an unsubscribed uri');
    });

    if (kind === 'http') {
      it('note_set from a second session notifies the subscriber session', T, async () => {
        const second = await fx.connect();
        assert.notEqual(second.transport.sessionId, client.transport.sessionId);
        const before = updates.length;
        await second.callTool({ name: 'note_set', arguments: { name: 'x', text: 'from second' } });
        await waiter.until(
          () => updates.slice(before).includes('note://x'),
          5_000,
          'cross-session notifications/resources/updated note://x',
        );
        // Each node's demo app keeps its own notes (only the notification is cluster-wide):
        // behind a cluster (MCPMESH_URL) the text is shared only by sessions of one node.
        const owner = (c) => c.transport.sessionId.split('.')[0];
        if (!EXTERNAL_URL || owner(second) === owner(client)) {
          const read = await client.readResource({ uri: 'note://x' });
          assert.equal(read.contents[0].text, 'from second');
        }
      });
    }

    it('unsubscribe stops updates', T, async () => {
      assert.deepEqual(await client.unsubscribeResource({ uri: 'note://x' }), {});
      const before = updates.length;
      await client.callTool({ name: 'note_set', arguments: { name: 'x', text: 'after unsubscribe' } });
      // barrier: a subscribed uri updated afterwards; its update must come, x's must not
      const y = uniqueName('y');
      await client.subscribeResource({ uri: `note://${y}` });
      await client.callTool({ name: 'note_set', arguments: { name: y, text: 'v' } });
      await waiter.until(() => updates.slice(before).includes(`note://${y}`), 5_000, `update for ${y}`);
      assert.ok(!updates.slice(before).includes('note://x'), 'update after unsubscribe');
    });
  });
}

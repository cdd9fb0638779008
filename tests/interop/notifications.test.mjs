// logging/setLevel filtering, progress notifications and cancellation.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { TRANSPORTS, createFixture, makeWaiter, textOf, withDeadline } from './helper.mjs';

const T = { timeout: 30_000 };

for (const kind of TRANSPORTS) {
  describe(`notifications over ${kind}`, T, () => {
    let fx;
    let client;
    const logs = [];
    const waiter = makeWaiter();
    before(async () => {
      fx = await createFixture(kind);
      client = await fx.connect({
        setup: (c) =>
          c.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
            logs.push(n.params);
            waiter.notify();
          }),
      });
    });
    after(async () => {
      await fx?.close();
    });

    it('logging/setLevel filters notifications/message', T, async () => {
      assert.deepEqual(await client.setLoggingLevel('warning'), {});
      const before = logs.length;
      const levels = ['debug', 'info', 'notice', 'warning', 'error', 'critical'];
      for (const level of levels) {
        const r = await client.callTool({ name: 'log', arguments: { level, message: `m-${level}` } });
        assert.equal(textOf(r), 'logged');
      }
      const demo = () => logs.slice(before).filter((l) => l.logger === 'demo');
      // The last one is critical; logs of one call precede its result, and calls were sequential.
      await waiter.until(() => demo().some((l) => l.data === 'm-critical'), 5_000, 'critical log');
      assert.deepEqual(
        demo().map((l) => [l.level, l.data]),
        [
          ['warning', 'm-warning'],
          ['error', 'm-error'],
          ['critical', 'm-critical'],
        ],
      );

      // lowering the level lets debug through again
      assert.deepEqual(await client.setLoggingLevel('debug'), {});
      const mark = logs.length;
      await client.callTool({ name: 'log', arguments: { level: 'debug', message: 'm-debug-2' } });
      await waiter.until(
        () => logs.slice(mark).some((l) => l.logger === 'demo' && l.level === 'debug' && l.data === 'm-debug-2'),
        5_000,
        'debug log after setLevel(debug)',
      );
    });

    it('slow with onprogress receives progress notifications', T, async () => {
      const progress = [];
      const steps = 4;
      const r = await client.callTool(
        { name: 'slow', arguments: { seconds: 0.4, steps } },
        undefined,
        { onprogress: (p) => progress.push(p), timeout: 20_000 },
      );
      assert.equal(textOf(r), `completed ${steps} steps`);
      // SDK v1 client race: a progress notification that arrives in the same read
      // chunk as the response is dropped (the response handler removes the progress
      // handler synchronously, notifications are dispatched a microtask later). Over
      // stdio, and over the HTTP+SSE transport (one stream carries both), a server that writes
      // the last progress right before the result hits it.
      const min = kind === 'http' ? steps : steps - 1;
      assert.ok(progress.length >= min && progress.length <= steps, JSON.stringify(progress));
      for (let i = 0; i < progress.length; i++) {
        assert.equal(progress[i].total, steps);
        assert.ok(progress[i].progress >= 0 && progress[i].progress <= steps);
        if (i > 0) assert.ok(progress[i].progress > progress[i - 1].progress, 'progress must increase');
        if (progress[i].message !== undefined) assert.equal(typeof progress[i].message, 'string');
      }
    });

    it('cancelling slow rejects the call and the server stays healthy', T, async () => {
      const ac = new AbortController();
      let firstProgress;
      const gotProgress = new Promise((resolve) => (firstProgress = resolve));
      const started = Date.now();
      const call = client.callTool(
        { name: 'slow', arguments: { seconds: 20, steps: 20 } },
        undefined,
        { signal: ac.signal, onprogress: () => firstProgress(), timeout: 25_000 },
      );
      const rejection = assert.rejects(call); // attach before aborting
      await withDeadline(gotProgress, 5_000, 'first progress notification of slow');
      ac.abort('test cancel');
      await withDeadline(rejection, 5_000, 'rejection of the cancelled call');
      assert.ok(Date.now() - started < 10_000, 'cancel took too long');

      // the session still works, and a new slow call completes
      const echo = await withDeadline(
        client.callTool({ name: 'echo', arguments: { text: 'still alive' } }),
        5_000,
        'echo after cancel',
      );
      assert.equal(textOf(echo), 'still alive');
      const r = await client.callTool({ name: 'slow', arguments: { seconds: 0.2, steps: 2 } });
      assert.equal(textOf(r), 'completed 2 steps');
    });
  });
}

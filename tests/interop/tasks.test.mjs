// Tasks of the 2025-11-25 session era with the SDK v1 client's `client.experimental.tasks`:
// the demo's `job` (taskSupport optional) as a task, tasks/get, tasks/list, tasks/result (with
// the related-task _meta), tasks/cancel, input_required (elicitation fetched by tasks/result),
// status notifications, progress, other sessions, ttl expiry and the per-session bound.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  ElicitRequestSchema,
  McpError,
  RELATED_TASK_META_KEY,
  TaskStatusNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import {
  EXTERNAL_URL,
  TRANSPORTS,
  createFixture,
  makeWaiter,
  newClient,
  startHttpNode,
  textOf,
  withDeadline,
} from './helper.mjs';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { pollUntil } from '../lib/util.mjs';

const T = { timeout: 30_000 };

/** tools/call of `job` with params.task; returns the CreateTaskResult's task. */
async function startJob(client, args, task = {}) {
  const r = await client.request(
    { method: 'tools/call', params: { name: 'job', arguments: args, task } },
    CreateTaskResultSchema,
  );
  return r.task;
}

/** The JSON-RPC error code `promise` rejects with. */
async function errorCode(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof McpError, `expected an McpError, got ${e}`);
    return e.code;
  }
  assert.fail('expected an error');
}

for (const kind of TRANSPORTS) {
  describe(`tasks (2025-11-25) over ${kind}`, T, () => {
    let fx;
    let client;
    const statuses = [];
    const elicitations = [];
    const waiter = makeWaiter();
    before(async () => {
      fx = await createFixture(kind);
      client = await fx.connect({
        capabilities: { elicitation: { form: {} } },
        setup: (c) => {
          c.setNotificationHandler(TaskStatusNotificationSchema, (n) => {
            statuses.push(n.params);
            waiter.notify();
          });
          c.setRequestHandler(ElicitRequestSchema, async (req) => {
            elicitations.push(req.params);
            return { action: 'accept', content: { start: true } };
          });
        },
      });
      await client.listTools(); // the SDK learns which tools take tasks
    });
    after(async () => {
      await fx?.close();
    });

    it('initialize declares tasks; tools/list shows the taskSupport of job', T, async () => {
      assert.equal(client.getServerVersion().name, 'mcpmesh');
      const tasks = client.getServerCapabilities().tasks;
      assert.ok(tasks, 'capabilities.tasks');
      assert.deepEqual(tasks.list, {});
      assert.deepEqual(tasks.cancel, {});
      assert.deepEqual(tasks.requests.tools.call, {});
      const { tools } = await client.listTools();
      assert.equal(tools.find((t) => t.name === 'job').execution.taskSupport, 'optional');
      assert.equal(tools.find((t) => t.name === 'echo').execution, undefined);
    });

    it('callToolStream runs job as a task to its result', T, async () => {
      const seen = [];
      let result;
      for await (const m of client.experimental.tasks.callToolStream(
        { name: 'job', arguments: { seconds: 0.2, steps: 2 } },
        CallToolResultSchema,
        { task: { ttl: 60_000 } },
      )) {
        seen.push(m.type);
        if (m.type === 'taskCreated') {
          assert.equal(m.task.status, 'working');
          assert.equal(m.task.ttl, 60_000);
          assert.equal(typeof m.task.pollInterval, 'number');
        }
        if (m.type === 'error') assert.fail(`stream error: ${m.error}`);
        if (m.type === 'result') result = m.result;
      }
      assert.equal(seen[0], 'taskCreated');
      assert.equal(seen.at(-1), 'result');
      assert.equal(textOf(result), 'job done: 2 steps');
      assert.ok(result._meta[RELATED_TASK_META_KEY].taskId);
    });

    it('tasks/get, tasks/list and tasks/result (with the related-task _meta)', T, async () => {
      const task = await startJob(client, { seconds: 0.2 }, { ttl: 30_000 });
      assert.equal(task.status, 'working');
      assert.equal(task.ttl, 30_000);
      const got = await client.experimental.tasks.getTask(task.taskId);
      assert.equal(got.taskId, task.taskId);
      assert.ok(['working', 'completed'].includes(got.status), got.status);
      const listed = await client.experimental.tasks.listTasks();
      assert.ok(listed.tasks.some((t) => t.taskId === task.taskId));
      // tasks/result waits for the end.
      const r = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
      assert.equal(textOf(r), 'job done: 1 steps');
      assert.equal(r._meta[RELATED_TASK_META_KEY].taskId, task.taskId);
      assert.equal((await client.experimental.tasks.getTask(task.taskId)).status, 'completed');
      await waiter.until(
        () => statuses.some((s) => s.taskId === task.taskId && s.status === 'completed'),
        5_000,
        'notifications/tasks/status completed',
      );
    });

    it('a tool error fails the task; tasks/result gives the tool result', T, async () => {
      const task = await startJob(client, { seconds: 0, fail: true });
      const r = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
      assert.equal(r.isError, true);
      assert.equal(textOf(r), 'the job failed');
      const got = await client.experimental.tasks.getTask(task.taskId);
      assert.equal(got.status, 'failed');
      assert.equal(got.statusMessage, 'the job failed');
    });

    it('tasks/cancel cancels a running task; a finished one cannot be cancelled', T, async () => {
      const task = await startJob(client, { seconds: 600 });
      const cancelled = await client.experimental.tasks.cancelTask(task.taskId);
      assert.equal(cancelled.taskId, task.taskId);
      assert.equal(cancelled.status, 'cancelled');
      assert.equal((await client.experimental.tasks.getTask(task.taskId)).status, 'cancelled');
      assert.equal(await errorCode(client.experimental.tasks.cancelTask(task.taskId)), -32602);
    });

    it('input_required: the elicitation comes with tasks/result and names the task', T, async () => {
      const before = elicitations.length;
      const task = await startJob(client, { seconds: 0, confirm: true });
      await pollUntil(
        async () => (await client.experimental.tasks.getTask(task.taskId)).status === 'input_required',
        { deadlineMs: 5_000, what: 'input_required' },
      );
      const r = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
      assert.equal(textOf(r), 'job done: 1 steps');
      assert.equal(elicitations.length, before + 1);
      assert.equal(elicitations.at(-1)._meta[RELATED_TASK_META_KEY].taskId, task.taskId);
      assert.equal(elicitations.at(-1).message, 'Start the job?');
    });

    it('callToolStream answers the elicitation of an input_required task', T, async () => {
      const before = elicitations.length;
      let result;
      for await (const m of client.experimental.tasks.callToolStream({
        name: 'job',
        arguments: { seconds: 0, confirm: true },
      })) {
        if (m.type === 'error') assert.fail(`stream error: ${m.error}`);
        if (m.type === 'result') result = m.result;
      }
      assert.equal(textOf(result), 'job done: 1 steps');
      assert.equal(elicitations.length, before + 1);
    });

    it('progress of a task keeps its token', T, async () => {
      const progress = [];
      let result;
      for await (const m of client.experimental.tasks.callToolStream(
        { name: 'job', arguments: { seconds: 0.3, steps: 3 } },
        CallToolResultSchema,
        {
          onprogress: (p) => {
            progress.push(p);
            waiter.notify();
          },
        },
      )) {
        if (m.type === 'result') result = m.result;
      }
      assert.equal(textOf(result), 'job done: 3 steps');
      await waiter.until(() => progress.length === 3, 5_000, 'three progress notifications');
      assert.deepEqual(
        progress.map((p) => p.progress),
        [1, 2, 3],
      );
    });

    it('forbidden tools refuse tasks (-32601)', T, async () => {
      const code = await errorCode(
        client.request(
          { method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' }, task: {} } },
          CreateTaskResultSchema,
        ),
      );
      assert.equal(code, -32601);
    });

    it("another session sees none of this session's tasks", T, async () => {
      const task = await startJob(client, { seconds: 600 });
      const other = await fx.connect();
      assert.equal(await errorCode(other.experimental.tasks.getTask(task.taskId)), -32602);
      assert.equal(
        await errorCode(other.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema)),
        -32602,
      );
      assert.equal(await errorCode(other.experimental.tasks.cancelTask(task.taskId)), -32602);
      const listed = await other.experimental.tasks.listTasks();
      assert.ok(!listed.tasks.some((t) => t.taskId === task.taskId));
      await client.experimental.tasks.cancelTask(task.taskId);
    });

    it('a task is gone once its ttl has passed after it finished', T, async () => {
      const task = await startJob(client, { seconds: 0 }, { ttl: 0 });
      assert.equal(task.ttl, 0);
      const code = await pollUntil(
        async () => {
          try {
            await client.experimental.tasks.getTask(task.taskId);
            return undefined;
          } catch (e) {
            return e.code;
          }
        },
        { deadlineMs: 5_000, what: 'expiry' },
      );
      assert.equal(code, -32602);
    });
  });
}

describe('tasks are bounded per session', T, () => {
  if (EXTERNAL_URL) {
    it.skip('needs a node of its own (--max-tasks-per-session)');
    return;
  }
  let node;
  let client;
  before(async () => {
    node = await startHttpNode({ extraArgs: ['--max-tasks-per-session', '1'] });
    client = newClient();
    await withDeadline(client.connect(new StreamableHTTPClientTransport(new URL(node.url))), 10_000, 'connect');
  });
  after(async () => {
    await client?.close().catch(() => {});
    await node?.stop();
  });

  it('beyond --max-tasks-per-session a task-augmented call gets -32000, counted', T, async () => {
    const running = await startJob(client, { seconds: 600 });
    assert.equal(await errorCode(startJob(client, { seconds: 600 })), -32000);
    const metrics = await (await fetch(new URL('/metrics', node.url))).text();
    assert.match(metrics, /^mcpmesh_tasks_per_session_rejected_total 1$/m);
    // An ordinary call still runs; once the task is cancelled there is room again.
    assert.equal(textOf(await client.callTool({ name: 'job', arguments: { seconds: 0 } })), 'job done: 1 steps');
    await client.experimental.tasks.cancelTask(running.taskId);
    const next = await startJob(client, { seconds: 0 });
    assert.equal(next.status, 'working');
  });
});

// Sessions across a 4-node cluster behind nginx (DESIGN.md §6): any node answers for any
// session by relaying the whole HTTP exchange to the node that holds it.
//   - initializes through nginx are spread: the sessions are owned by several nodes;
//   - one session, resumed by an official SDK v1 client connected straight to each non-owner
//     node (transport option `sessionId`, no new initialize): tools/list, whoami answered by the
//     owner, progress from `slow`, and a server→client request (ask_llm → sampling) whose
//     answer, a POST to the non-owner, crosses the hop back;
//   - a GET stream opened on a non-owner, dropped, and resumed with Last-Event-ID on another
//     non-owner (raw fetch): the missed events and nothing else, then live events;
//   - a subscription on one node and note_set on another: exactly one resources/updated;
//   - an unknown session id through nginx: 404.
//
// env MCPMESH_NODE = path to mcpmesh-node (required); MCPMESH_NGINX (optional).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import {
  clusterUp, metricValue, openGetStream, openSession, ownerOf, rpc, whoami, withDeadline,
} from './cluster_helper.mjs';

const SESSIONS = 12;
const CALL_MS = 20_000;
const EVENT_MS = 10_000;
const QUIET_MS = 1_500; // after the first update: time for a duplicate to show up

const textOf = (r) => (r.content ?? []).find((c) => c.type === 'text')?.text;
// Not synchronisation: the bounded time a duplicate would need to show up after the first.
const quietWindow = () => new Promise((r) => setTimeout(r, QUIET_MS));
const isUpdate = (uri) => (m) => m.method === 'notifications/resources/updated' && m.params?.uri === uri;

describe('sessions across a 4-node cluster behind nginx', { timeout: 300_000 }, () => {
  let c;
  const sessions = [];
  const streams = [];
  const clients = [];

  before(async () => {
    c = await clusterUp({ name: 'sessions' });
  });

  after(async () => {
    for (const s of streams) s.close?.();
    for (const cl of clients) await withDeadline(cl.close(), 5_000, 'client.close').catch(() => {});
    await c?.down();
  });

  it(`${SESSIONS} sessions initialized through nginx are owned by several nodes`, async () => {
    for (let i = 0; i < SESSIONS; i++) {
      sessions.push(await openSession(c.url, { name: `s${i}`, capabilities: { sampling: {} } }));
    }
    const ids = new Set(c.nodes.map((n) => n.id));
    const count = {};
    for (const sid of sessions) {
      assert.ok(ids.has(ownerOf(sid)), `session ${sid}: owner is not a node`);
      count[ownerOf(sid)] = (count[ownerOf(sid)] ?? 0) + 1;
    }
    assert.ok(Object.keys(count).length >= 3, `owners: ${JSON.stringify(count)}`);
    for (const sid of sessions) {
      const { status, who } = await whoami(c.url, sid);
      assert.equal(status, 200);
      assert.deepEqual(who, { node_id: ownerOf(sid), session_id: sid });
    }
  });

  it('an SDK client on each non-owner node continues the session: tools, whoami, progress, sampling', async () => {
    const sid = sessions[0];
    const owner = ownerOf(sid);
    const others = c.nodes.filter((n) => n.id !== owner);
    assert.equal(others.length, 3);
    for (const n of others) {
      const forwardedBefore = metricValue(await c.metrics(n.id), 'mcpmesh_cluster_forward_calls_total');
      const client = new Client({ name: `resume-via-${n.id}`, version: '1.0.0' }, { capabilities: { sampling: {} } });
      clients.push(client);
      const sampling = [];
      client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
        sampling.push(req.params);
        return {
          role: 'assistant',
          content: { type: 'text', text: `answer from the client of ${n.id}` },
          model: 'cluster-test-model',
          stopReason: 'endTurn',
        };
      });
      const transport = new StreamableHTTPClientTransport(new URL(n.url), { sessionId: sid });
      const sent = [];
      const send = transport.send.bind(transport);
      transport.send = (msg, opts) => { sent.push(msg); return send(msg, opts); };
      await withDeadline(client.connect(transport), CALL_MS, `connect to ${n.id}`);
      assert.equal(transport.sessionId, sid);

      const { tools } = await client.listTools(undefined, { timeout: CALL_MS });
      for (const t of ['whoami', 'slow', 'ask_llm']) assert.ok(tools.some((x) => x.name === t), `${t} via ${n.id}`);

      const who = await client.callTool({ name: 'whoami', arguments: {} }, undefined, { timeout: CALL_MS });
      assert.deepEqual(who.structuredContent, { node_id: owner, session_id: sid }, `whoami via ${n.id}`);

      const steps = 4;
      const progress = [];
      const slow = await client.callTool({ name: 'slow', arguments: { seconds: 0.4, steps } }, undefined,
        { onprogress: (p) => progress.push(p), timeout: CALL_MS });
      assert.equal(textOf(slow), `completed ${steps} steps`);
      // SDK v1 client race: a progress notification read in the same chunk as the result is
      // dropped (the result removes the progress handler first); a relayed stream may coalesce.
      assert.ok(progress.length >= steps - 1 && progress.length <= steps, `progress via ${n.id}: ${JSON.stringify(progress)}`);
      progress.forEach((p, i) => {
        assert.equal(p.total, steps);
        if (i) assert.ok(p.progress > progress[i - 1].progress, 'progress increases');
      });

      const prompt = `asked through ${n.id}`;
      const asked = await client.callTool({ name: 'ask_llm', arguments: { prompt } }, undefined, { timeout: CALL_MS });
      assert.equal(textOf(asked), `sampled: answer from the client of ${n.id}`, `ask_llm via ${n.id}`);
      assert.equal(sampling.length, 1, `sampling requests via ${n.id}`);
      assert.deepEqual(sampling[0].messages, [{ role: 'user', content: { type: 'text', text: prompt } }]);

      assert.deepEqual(sent.filter((m) => m.method === 'initialize'), [], 'no new initialize');
      // The exchanges really were relayed by this node (one per request at least).
      const forwardedAfter = metricValue(await c.metrics(n.id), 'mcpmesh_cluster_forward_calls_total');
      assert.ok(forwardedAfter - forwardedBefore >= 4, `${n.id} forward calls: ${forwardedBefore} -> ${forwardedAfter}`);
      await withDeadline(client.close(), 5_000, 'client.close');
    }
    // The session is still the owner's, through nginx.
    assert.deepEqual((await whoami(c.url, sid)).who, { node_id: owner, session_id: sid });
  });

  it('a GET stream on a non-owner resumes with Last-Event-ID on another non-owner', async () => {
    const sid = sessions[1];
    const owner = ownerOf(sid);
    const [first, second] = c.nodes.filter((n) => n.id !== owner);
    const uri = 'note://resume';
    const sub = await rpc(c.url, sid, 'resources/subscribe', { uri });
    assert.deepEqual(sub.msg?.result, {}, `subscribe: ${sub.body}`);
    const setNote = async (text) => {
      const r = await rpc(c.url, sid, 'tools/call', { name: 'note_set', arguments: { name: 'resume', text } });
      assert.equal(textOf(r.msg?.result ?? {}), 'ok', `note_set: ${r.body}`);
    };

    const s1 = await openGetStream(first.url, sid);
    streams.push(s1);
    assert.equal(s1.status, 200, `GET on ${first.id}: ${s1.status} ${s1.body}`);
    await setNote('v1');
    const u1 = await s1.waitFor(isUpdate(uri), EVENT_MS, `update 1 on ${first.id}`);
    assert.ok(u1._eventId, 'the update carries an event id');
    s1.close();
    await withDeadline(s1.done, EVENT_MS, 'stream 1 closed');
    const seenOn1 = s1.messages.filter(isUpdate(uri)).length;

    // Sent while no stream is connected: must be replayed after u1.
    await setNote('v2');
    await setNote('v3');
    const s2 = await openGetStream(second.url, sid, { lastEventId: u1._eventId });
    streams.push(s2);
    assert.equal(s2.status, 200, `resume on ${second.id}: ${s2.status} ${s2.body}`);
    // Updates 2 and 3, plus any of update 1's stream that s1 did not read before it closed.
    await s2.until(() => s2.messages.filter(isUpdate(uri)).length + seenOn1 >= 3, EVENT_MS, 'replayed updates 2 and 3');
    assert.ok(!s2.messages.some((m) => m._eventId === u1._eventId), 'the event before Last-Event-ID was replayed');
    // Live events on the resumed stream.
    await setNote('v4');
    await s2.until(() => s2.messages.filter(isUpdate(uri)).length + seenOn1 >= 4, EVENT_MS, 'live update 4');
    await quietWindow();
    assert.equal(s2.messages.filter(isUpdate(uri)).length + seenOn1, 4, `updates: ${JSON.stringify(s2.messages)}`);
    const ids = s2.messages.map((m) => m._eventId);
    assert.equal(new Set(ids).size, ids.length, `event ids repeat: ${ids}`);
    s2.close();
  });

  it('a subscription on one node, note_set on another: exactly one resources/updated', async () => {
    const byOwner = new Map();
    for (const sid of sessions.slice(2)) if (!byOwner.has(ownerOf(sid))) byOwner.set(ownerOf(sid), sid);
    assert.ok(byOwner.size >= 3, `sessions of 3 nodes: ${[...byOwner.keys()]}`);
    const [a, b, third] = [...byOwner.values()];
    const uri = 'note://x';
    const subscribers = [a, third];
    const got = new Map(subscribers.map((s) => [s, []]));
    const mine = new Map();
    for (const sid of subscribers) {
      const s = await openGetStream(c.url, sid, { onMessage: (m) => got.get(sid).push(m) });
      streams.push(s);
      mine.set(sid, s);
      assert.equal(s.status, 200, `GET ${sid}: ${s.status} ${s.body}`);
      const sub = await rpc(c.url, sid, 'resources/subscribe', { uri });
      assert.deepEqual(sub.msg?.result, {}, `subscribe ${sid}: ${sub.body}`);
    }
    const set = await rpc(c.url, b, 'tools/call', { name: 'note_set', arguments: { name: 'x', text: 'from b' } });
    assert.equal(textOf(set.msg?.result ?? {}), 'ok', set.body);
    assert.equal((await whoami(c.url, b)).who.node_id, ownerOf(b));
    const bus = async () => Object.fromEntries(await Promise.all(c.nodes.map(async (n) => [n.id,
      (await c.metrics(n.id)).split('\n').filter((l) => /^mcpmesh_cluster_(bus_messages_total|interest_uris)/.test(l))
        .map((l) => l.replace('mcpmesh_cluster_', '')).join(', ')])));
    for (const sid of subscribers) {
      await mine.get(sid).until(() => got.get(sid).some(isUpdate(uri)), EVENT_MS,
        `resources/updated ${uri} on ${ownerOf(sid)}`).catch(async (e) => {
        throw new Error(`${e.message}. Subscribed on ${subscribers.map(ownerOf)}, set on ${ownerOf(b)}; ` +
          `the ${ownerOf(sid)} session's GET stream got ${JSON.stringify(got.get(sid))}; bus: ${JSON.stringify(await bus())}`);
      });
    }
    await quietWindow();
    for (const sid of subscribers) {
      const n = got.get(sid).filter(isUpdate(uri)).length;
      assert.equal(n, 1, `${ownerOf(sid)} session got ${n} updates for ${uri} set on ${ownerOf(b)}`);
    }
  });

  it('an unknown session id through nginx gets 404', async () => {
    const real = sessions[0];
    const forged = [
      real.replace(/[0-9a-f]{8}$/, (h) => (h === '00000000' ? '11111111' : '00000000')), // a live owner's prefix
      `${c.nodes[2].id}.1.00000000000000000000000000000000`,
      'nosuchnode.1.00000000000000000000000000000000',
    ];
    for (const sid of forged) {
      const r = await rpc(c.url, sid, 'tools/list');
      assert.equal(r.status, 404, `POST with ${sid}: ${r.status} ${r.body}`);
      const g = await openGetStream(c.url, sid);
      g.close?.();
      assert.equal(g.status, 404, `GET with ${sid}: ${g.status}`);
    }
    // The real one still works.
    assert.equal((await whoami(c.url, real)).status, 200);
  });
});

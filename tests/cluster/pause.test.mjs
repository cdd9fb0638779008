// A holder paused past its suspicion timeout (SIGSTOP) is declared dead and its heir continues
// its session S; when it resumes (SIGCONT) it first runs a request that was waiting in its
// socket: note_set on S itself, which raises an update of a URI S subscribes to. The heir gets
// that update over the bus and buffers it on its copy of S; the resumed node must not also
// give it to its own stale copy of S (whose stream the client still holds), or the client sees
// it twice once its stream moves to the heir (chaos/: duplicate_notification). The resumed
// node holds its notifications until it has heard from its heir and closed its stale copies
// (docs/CLUSTER.md A4, the delivery fence).
//   1. 3 nodes (fast profile); S owned by n3, its GET stream on n3, subscribed to x and y; a
//      session on each other node subscribed to both (whichever is the heir then cares);
//   2. SIGSTOP n3 until a node continued S; note_set(x) for S sent to n3 (waits in its
//      socket); SIGCONT;
//   3. the heir's own subscriber gets that update; n3 closes its copy of S (its stream ends);
//      S's stream is resumed with Last-Event-ID through the third node (the heir answers);
//      an update of y raised on the heir marks the end of what the heir replays;
//   4. S's client got the x update exactly once over both streams.
//
// Second case: a request relayed to a holder that then stops is answered 503 ("may or may not
// have run") as soon as the relaying node declares the holder dead, not when its relay link
// would notice the silence (set to a minute here).
//
// env MCPMESH_NODE = path to mcpmesh-node (required); MCPMESH_NGINX (optional).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  clusterUp, delay, metricValue, mcpHeaders, openGetStream, openSession, pollUntil, rpc,
  withDeadline,
} from './cluster_helper.mjs';

const SETTLE_MS = 20_000; // replication in sync before the pause
const ADOPT_MS = 20_000; // SIGSTOP → a node continued S (fast profile: ~1-2 s)
const EVENT_MS = 15_000;
const GOSSIP_SPENT_MS = 2_000;
const REQUEST_MS = 10_000;
const VICTIM = 'n3';
const X = 'note://pause-x';
const Y = 'note://pause-y';
const textOf = (r) => (r?.content ?? []).find((x) => x.type === 'text')?.text;
const updatesOf = (stream, uri, from = 0) => stream.messages.slice(from)
  .filter((m) => m.method === 'notifications/resources/updated' && m.params?.uri === uri);

/**
 * POSTs `message` on session `sid` to `url` on a connection of its own. `sent` resolves once
 * the request is handed to the kernel (the server may be stopped); `answer` with { status,
 * body } (the JSON-RPC answer, JSON or SSE).
 */
function postInBackground(url, sid, message, deadlineMs) {
  const body = JSON.stringify(message);
  let req;
  const answer = withDeadline(new Promise((resolve, reject) => {
    req = http.request(url, { method: 'POST', agent: false, headers: { ...mcpHeaders(sid), 'Content-Length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c) => { text += c; }).on('end', () => resolve({ status: res.statusCode, body: text }));
        res.once('error', reject);
      });
    req.once('error', reject);
  }), deadlineMs, 'note_set on the paused node').finally(() => req.destroy());
  const sent = withDeadline(new Promise((resolve) => req.end(body, resolve)), deadlineMs, 'request written');
  return { sent, answer };
}

/** The tools/call result in a POST answer's body (JSON or SSE). */
function resultOf(body) {
  const datas = body.trimStart().startsWith('{') ? [body] : body.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5));
  for (const d of datas) {
    try {
      const m = JSON.parse(d);
      if (m.id !== undefined) return m.result;
    } catch { /* not a message */ }
  }
  return undefined;
}

describe('a holder paused until its heir took over: each update reaches the client once', { timeout: 180_000 }, () => {
  let c;
  const streams = [];

  before(async () => {
    c = await clusterUp({ nodes: 3, name: 'pause' });
  });

  after(async () => {
    for (const s of streams) s.close();
    // A node left stopped would outlive the test's SIGTERM-based teardown.
    try { process.kill(c.node(VICTIM).pid, 'SIGCONT'); } catch { /* gone already */ }
    await c?.down();
  });

  it('the resumed node gives its stale copy nothing; the heir gives the update once', async () => {
    const victim = c.node(VICTIM);
    const others = c.nodes.filter((n) => n.id !== VICTIM);

    // 1. S on n3 with its stream there; one subscriber per other node.
    const sid = await openSession(victim.url, { name: 'pause-s' });
    assert.ok(sid.startsWith(`${VICTIM}.`), sid);
    const first = await openGetStream(victim.url, sid);
    assert.equal(first.status, 200, `GET stream of S: ${first.status} ${first.body}`);
    streams.push(first);
    const watchers = {};
    for (const n of others) {
      const w = await openSession(n.url, { name: `pause-${n.id}` });
      const st = await openGetStream(n.url, w);
      assert.equal(st.status, 200, `GET stream on ${n.id}: ${st.status} ${st.body}`);
      streams.push(st);
      watchers[n.id] = { sid: w, stream: st };
    }
    for (const [url, s] of [[victim.url, sid], ...others.map((n) => [n.url, watchers[n.id].sid])]) {
      for (const uri of [X, Y]) {
        const r = await rpc(url, s, 'resources/subscribe', { uri }, REQUEST_MS);
        assert.deepEqual(r.msg?.result, {}, `subscribe ${s} ${uri}: ${r.status} ${r.body}`);
      }
    }
    // The notes exist on n3 (x) and on both others (y), so the updates below raise no list
    // change; S sees these before the pause.
    const set = async (url, s, uri, text) => {
      const r = await rpc(url, s, 'tools/call', { name: 'note_set', arguments: { name: uri.slice(7), text } }, REQUEST_MS);
      assert.equal(textOf(r.msg?.result), 'ok', `note_set ${uri} on ${url}: ${r.status} ${r.body}`);
    };
    await set(victim.url, sid, X, 'before');
    for (const n of others) await set(n.url, watchers[n.id].sid, Y, 'before');
    await first.until(() => updatesOf(first, X).length === 1 && updatesOf(first, Y).length === 2, EVENT_MS, 'S got the updates before the pause');
    await pollUntil(async () => {
      const m = await c.metrics(VICTIM);
      return metricValue(m, 'mcpmesh_cluster_replication_pending') === 0
        && metricValue(m, 'mcpmesh_cluster_in_sync_replicas') >= 1;
    }, { deadlineMs: SETTLE_MS, intervalMs: 50, what: 'S replicated to its heir' });
    const mark = first.messages.length;
    const marks = Object.fromEntries(others.map((n) => [n.id, watchers[n.id].stream.messages.length]));

    // 2. Paused until a node continued S; then a note_set on S waits in n3's socket.
    process.kill(victim.pid, 'SIGSTOP');
    let heir;
    try {
      heir = await pollUntil(async () => {
        for (const n of others) {
          if (metricValue(await c.metrics(n.id), 'mcpmesh_cluster_adopted_sessions_total') >= 1) return n;
        }
        return false;
      }, { deadlineMs: ADOPT_MS, intervalMs: 50, what: 'a node continued S' });
    } catch (e) {
      process.kill(victim.pid, 'SIGCONT');
      throw e;
    }
    // Not synchronisation: long enough that the adoption's gossip is spent (each broadcast goes
    // out a bounded number of times; ~1 s in the fast profile), so the resumed node learns of it
    // only by exchanging state, after it ran the waiting request: the window under test.
    await delay(GOSSIP_SPENT_MS);
    const third = others.find((n) => n !== heir);
    const stale = postInBackground(victim.url, sid,
      { jsonrpc: '2.0', id: 9001, method: 'tools/call', params: { name: 'note_set', arguments: { name: X.slice(7), text: 'stale' } } },
      REQUEST_MS + ADOPT_MS);
    try {
      await stale.sent;
    } finally {
      process.kill(victim.pid, 'SIGCONT');
    }
    const answer = await stale.answer;
    assert.equal(answer.status, 200, `note_set after SIGCONT: ${answer.body}`);
    assert.equal(textOf(resultOf(answer.body)), 'ok', `note_set after SIGCONT: ${answer.body}`);

    // 3. The heir delivered the update (to its own subscriber, so to its copy of S too); n3
    // closed its copy; S's stream resumed through the third node.
    const heirWatch = watchers[heir.id].stream;
    await heirWatch.until(() => updatesOf(heirWatch, X, marks[heir.id]).length >= 1, EVENT_MS, `the update on ${heir.id}`);
    await withDeadline(first.done, EVENT_MS, 'S\'s stream on the resumed n3 ends');
    const resumed = await openGetStream(third.url, sid, { lastEventId: first.lastEventId() });
    assert.equal(resumed.status, 200, `S resumed through ${third.id}: ${resumed.status} ${resumed.body}`);
    streams.push(resumed);
    await set(heir.url, watchers[heir.id].sid, Y, 'marker');
    await resumed.until(() => updatesOf(resumed, Y).length >= 1, EVENT_MS, 'the marker on S\'s resumed stream');

    // 4. Exactly once.
    const onStale = updatesOf(first, X, mark).length;
    const onHeir = updatesOf(resumed, X).length;
    assert.equal(onStale + onHeir, 1,
      `the update reached S ${onStale + onHeir} times: ${onStale} on its stream on the resumed ${VICTIM}, `
      + `${onHeir} on its stream resumed on ${heir.id} (after event ${first.lastEventId()})`);
  });
});

describe('a request relayed to a holder that stops ends when the holder is declared dead', { timeout: 120_000 }, () => {
  let c;
  // Links would take a minute to notice the silence: the answer must come from the death.
  const SILENCE_MS = 60_000;

  before(async () => {
    c = await clusterUp({ nodes: 3, name: 'pause-relay', nodeArgs: [`--relay-silence-ms=${SILENCE_MS}`] });
  });

  after(async () => {
    try { process.kill(c.node(VICTIM).pid, 'SIGCONT'); } catch { /* gone already */ }
    await c?.down();
  });

  it('answers 503 "may or may not have run" within the detection time, not the silence', async () => {
    const victim = c.node(VICTIM);
    const relay = c.nodes.find((n) => n.id !== VICTIM);
    const sid = await openSession(victim.url, { name: 'pause-relay' });
    // The relay link from `relay` to the victim is open and serving.
    const warm = await rpc(relay.url, sid, 'tools/call', { name: 'whoami', arguments: {} }, REQUEST_MS);
    assert.equal(warm.status, 200, `relayed whoami: ${warm.status} ${warm.body}`);
    const before = await c.metrics(relay.id);
    const calls = metricValue(before, 'mcpmesh_cluster_forward_calls_total');
    const failures = metricValue(before, 'mcpmesh_cluster_forward_failures_total');

    process.kill(victim.pid, 'SIGSTOP');
    const t0 = Date.now();
    const { answer } = postInBackground(relay.url, sid,
      { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'whoami', arguments: {} } }, 30_000);
    const got = await answer;
    const took = Date.now() - t0;
    assert.equal(got.status, 503, `answer: ${got.status} ${got.body}`);
    assert.match(got.body, /may or may not have run/);
    assert.ok(took < 15_000, `answered after ${took} ms (the link's silence is ${SILENCE_MS} ms)`);
    const after = await c.metrics(relay.id);
    assert.equal(metricValue(after, 'mcpmesh_cluster_forward_calls_total'), calls + 1, 'the request was relayed');
    assert.equal(metricValue(after, 'mcpmesh_cluster_forward_failures_total'), failures + 1);
  });
});

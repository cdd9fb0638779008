// A node killed and restarted (a new process, the same node id) publishes its interest set
// anew; the other nodes still hold its previous life's set. A session on the restarted node
// that subscribes to a URI its previous life never cared about must get the updates raised on
// another node (chaos/: missed_notification after a kill): the new life's versions are newer
// than the old life's, and a node that finds a gap fetches the whole set before it answers the
// delta the subscribe waits for (docs/CLUSTER.md A5).
//   1. 3 nodes (fast profile); on n3, a session subscribes to two URIs (its interest set moves
//      on twice), with a GET stream;
//   2. kill -9 of n3, restarted with the same command line; the cluster is whole again;
//   3. a new session on n3 subscribes to a third URI; note_set of it on n1: the session gets
//      the update.
//
// env MCPMESH_NODE = path to mcpmesh-node (required); MCPMESH_NGINX (optional).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clusterUp, openGetStream, openSession, rpc } from './cluster_helper.mjs';

const EVENT_MS = 15_000;
const REQUEST_MS = 10_000;
const RESTARTED = 'n3';
const textOf = (r) => (r?.content ?? []).find((x) => x.type === 'text')?.text;

describe('a restarted node\'s new subscriptions reach the other nodes', { timeout: 180_000 }, () => {
  let c;
  const streams = [];

  before(async () => {
    c = await clusterUp({ nodes: 3, name: 'restart' });
  });

  after(async () => {
    for (const s of streams) s.close();
    await c?.down();
  });

  it('an update raised elsewhere reaches a URI first subscribed after the restart', async () => {
    const node = c.node(RESTARTED);
    const subscribe = async (sid, uri) => {
      const r = await rpc(node.url, sid, 'resources/subscribe', { uri }, REQUEST_MS);
      assert.deepEqual(r.msg?.result, {}, `subscribe ${uri}: ${r.status} ${r.body}`);
    };
    // 1. The first life's interest set: two URIs.
    const before = await openSession(node.url, { name: 'restart-before' });
    const st = await openGetStream(node.url, before);
    assert.equal(st.status, 200, `GET stream: ${st.status} ${st.body}`);
    streams.push(st);
    for (const uri of ['note://restart-a', 'note://restart-b']) await subscribe(before, uri);

    // 2. kill -9, the same command line again.
    await c.kill9(RESTARTED);
    st.close();
    await c.restart(RESTARTED);
    await c.waitWhole('the cluster whole after the restart');

    // 3. The second life's first subscription, an update raised on n1.
    const after = await openSession(node.url, { name: 'restart-after' });
    assert.ok(after.startsWith(`${RESTARTED}.`), after);
    const stream = await openGetStream(node.url, after);
    assert.equal(stream.status, 200, `GET stream: ${stream.status} ${stream.body}`);
    streams.push(stream);
    await subscribe(after, 'note://restart-c');
    const n1 = c.node('n1');
    const setter = await openSession(n1.url, { name: 'restart-setter' });
    const set = await rpc(n1.url, setter, 'tools/call', { name: 'note_set', arguments: { name: 'restart-c', text: 'x' } }, REQUEST_MS);
    assert.equal(textOf(set.msg?.result), 'ok', `note_set on n1: ${set.status} ${set.body}`);
    await stream.until(() => stream.messages.some((m) => m.method === 'notifications/resources/updated'
      && m.params?.uri === 'note://restart-c'), EVENT_MS, 'the update raised on n1, on the restarted node\'s session');
  });
});

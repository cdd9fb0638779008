// Only the side of the cluster that sees a majority alive continues failed members' sessions
// (docs/CLUSTER.md A4, "Only the side with the quorum continues"). A node cut off from the
// others sees them all die; were it to continue their sessions, they would give them up when
// the cut heals, and every session they made meanwhile with them (chaos/: lost_session after
// an isolation).
//   1. 3 nodes (fast profile), --replicas 2: every node holds a copy of every session, so n1
//      is an heir of both others;
//   2. SIGSTOP n2 and n3: n1 sees both dead, one of three alive: it continues nothing, says so
//      (mcpmesh_cluster_adoptions_deferred_total, mcpmesh_cluster_quorate 0), answers a
//      request for their sessions 503 (unavailable), never 404, and refuses new sessions with
//      503 (a session made there could be lost when the cut heals), /readyz 503 too;
//   3. SIGCONT: the sessions are still served by the nodes that made them, with their ids, and
//      no node renewed its epoch.
//
// env MCPMESH_NODE = path to mcpmesh-node (required); MCPMESH_NGINX (optional).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  clusterUp, fetchAll, metricValue, openSession, pollUntil, post, PROTOCOL, whoami,
} from './cluster_helper.mjs';

const SETTLE_MS = 20_000; // replication in sync before the pause
const DEAD_MS = 20_000; // SIGSTOP → n1 sees both dead (fast profile: ~1-2 s)
const HEAL_MS = 30_000;
const PAUSED = ['n2', 'n3'];

describe('a node that sees a minority alive continues no failed member\'s sessions', { timeout: 180_000 }, () => {
  let c;

  before(async () => {
    c = await clusterUp({ nodes: 3, name: 'quorum', nodeArgs: ['--replicas', '2'] });
  });

  after(async () => {
    // A node left stopped would outlive the test's SIGTERM-based teardown.
    for (const id of PAUSED) {
      try { process.kill(c.node(id).pid, 'SIGCONT'); } catch { /* gone already */ }
    }
    await c?.down();
  });

  it('n1 alone defers, answers 503, and after the heal nothing moved', async () => {
    const n1 = c.node('n1');
    const sessions = {};
    for (const id of PAUSED) sessions[id] = await openSession(c.node(id).url, { name: `quorum-${id}` });
    await pollUntil(async () => {
      for (const id of PAUSED) {
        const m = await c.metrics(id);
        if (metricValue(m, 'mcpmesh_cluster_replication_pending') !== 0
          || !(metricValue(m, 'mcpmesh_cluster_in_sync_replicas') >= 2)) return false;
      }
      return true;
    }, { deadlineMs: SETTLE_MS, intervalMs: 50, what: 'both sessions replicated to both other nodes' });
    const before = await c.metrics('n1');
    assert.equal(metricValue(before, 'mcpmesh_cluster_quorate'), 1, 'n1 holds the quorum before the pause');
    const deferredBefore = metricValue(before, 'mcpmesh_cluster_adoptions_deferred_total');

    for (const id of PAUSED) process.kill(c.node(id).pid, 'SIGSTOP');
    try {
      const m = await pollUntil(async () => {
        const text = await c.metrics('n1');
        return metricValue(text, 'mcpmesh_cluster_members', 'state="dead"') === 2
          && metricValue(text, 'mcpmesh_cluster_adoptions_deferred_total') >= deferredBefore + 2 && text;
      }, { deadlineMs: DEAD_MS, intervalMs: 50, what: 'n1 sees n2 and n3 dead and defers both' });
      assert.equal(metricValue(m, 'mcpmesh_cluster_quorate'), 0, 'n1 alone holds no quorum');
      assert.equal(metricValue(m, 'mcpmesh_cluster_adopted_sessions_total'), 0, 'n1 continued sessions without the quorum');
      for (const id of PAUSED) {
        const r = await whoami(n1.url, sessions[id]);
        assert.equal(r.status, 503, `${id}'s session through n1 while ${id} is stopped: ${r.status} ${r.res.body}`);
      }
      const init = await post(n1.url, undefined, {
        jsonrpc: '2.0', id: 1, method: 'initialize',
        params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'quorum', version: '1' } },
      });
      assert.equal(init.status, 503, `initialize on n1 alone: ${init.status} ${init.body}`);
      assert.equal(init.messages?.[0]?.error?.code, -32000, init.body);
      assert.match(init.messages[0].error.message, /half of its cluster/);
      const ready = await fetchAll(`${n1.base}/readyz`);
      assert.equal(ready.status, 503, `/readyz on n1 alone: ${ready.status} ${ready.body}`);
      assert.ok(metricValue(await c.metrics('n1'), 'mcpmesh_sessions_rejected_total') >= 1, 'the refusal is counted');
    } finally {
      for (const id of PAUSED) process.kill(c.node(id).pid, 'SIGCONT');
    }

    await pollUntil(async () => {
      for (const n of c.nodes) {
        const text = await c.metrics(n.id);
        if (metricValue(text, 'mcpmesh_cluster_members', 'state="alive"') !== 3) return false;
      }
      return true;
    }, { deadlineMs: HEAL_MS, intervalMs: 100, what: 'every node sees all three alive' });
    for (const n of c.nodes) {
      const text = await c.metrics(n.id);
      assert.equal(metricValue(text, 'mcpmesh_cluster_adopted_sessions_total'), 0, `${n.id} continued sessions`);
      assert.equal(metricValue(text, 'mcpmesh_cluster_epoch_renewals_total'), 0, `${n.id} renewed its epoch`);
      assert.equal(metricValue(text, 'mcpmesh_cluster_quorate'), 1, `${n.id} holds the quorum after the heal`);
    }
    assert.ok(await openSession(n1.url, { name: 'quorum-after' }), 'n1 takes new sessions again');
    for (const id of PAUSED) {
      for (const via of c.nodes) {
        const r = await whoami(via.url, sessions[id]);
        assert.equal(r.who?.node_id, id, `${id}'s session through ${via.id} after the heal: ${r.status} ${r.res.body}`);
      }
    }
  });
});

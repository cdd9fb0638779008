// mcpmesh-ctl against a real 3-node cluster behind nginx (cluster.sh): every admin command,
// in table form and with --json, and its exit codes.
//   - `sessions`: each live member's sessions and replica copies, and the total;
//   - `sessions ID` asked of a node that does not hold it: owner, epoch, holder, heir, phase,
//     protocol version, client name and subscriptions from the holder; an unknown session is
//     gone (exit 3); a malformed id is refused (exit 1);
//   - `registry`: shards and sessions, and the subscribing node's interest set as the other
//     nodes know it;
//   - `health`: every node ready and green; `metrics`: the node's Prometheus text;
//   - a wrong secret is refused (exit 1), an unknown command is a usage error (exit 2).
//
// env MCPMESH_NODE = path to mcpmesh-node (required); MCPMESH_CTL (default: mcpmesh-ctl beside
//     it); MCPMESH_NGINX (optional).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { clusterUp, openSession, ownerOf, pollUntil, rpc, run } from './cluster_helper.mjs';

const nodeBin = process.env.MCPMESH_NODE;
const ctlBin = process.env.MCPMESH_CTL || (nodeBin ? path.join(path.dirname(nodeBin), 'mcpmesh-ctl') : '');
const CTL_MS = 15_000;
const URI = 'note://ctl-watch';

describe('mcpmesh-ctl against a 3-node cluster', { timeout: 240_000 }, () => {
  let c;
  let sid;
  let owner;
  let other; // a node that does not hold the session

  /** mcpmesh-ctl ARGS against `node`'s cluster address: { code, stdout, stderr, json }. */
  async function ctl(node, args, { secret } = {}) {
    const r = await run(ctlBin, ['--node', node.cluster, '--cluster-secret-file', secret ?? c.secretFile,
      ...args], { deadlineMs: CTL_MS });
    let json;
    if (args.includes('--json') && r.code === 0) json = JSON.parse(r.stdout);
    return { ...r, json };
  }

  before(async () => {
    assert.ok(ctlBin && fs.existsSync(ctlBin), `mcpmesh-ctl not found (${ctlBin}); set MCPMESH_CTL`);
    c = await clusterUp({ nodes: 3, name: 'ctl' });
    sid = await openSession(c.url, { name: 'ctl-client' });
    owner = ownerOf(sid);
    other = c.nodes.find((n) => n.id !== owner);
    const sub = await rpc(c.url, sid, 'resources/subscribe', { uri: URI });
    assert.equal(sub.status, 200, sub.body);
  });

  after(async () => {
    await c?.down();
  });

  it('sessions: every live member, and the total', async () => {
    const r = await ctl(other, ['--json', 'sessions']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.json.nodes.map((n) => n.node_id).sort(), c.nodes.map((n) => n.id).sort());
    const held = r.json.nodes.find((n) => n.node_id === owner);
    assert.ok(held.sessions >= 1, JSON.stringify(r.json));
    assert.equal(r.json.sessions, r.json.nodes.reduce((s, n) => s + n.sessions, 0));
    for (const n of r.json.nodes) assert.ok(n.max_sessions > 0, JSON.stringify(n));
    const table = await ctl(other, ['sessions']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NODE\s+SESSIONS\s+REPLICAS\s+MAX$/m);
    assert.match(table.stdout, /^total\s+\d+$/m);
  });

  it('sessions ID, asked of a node that does not hold it: what its holder knows', async () => {
    const epoch = parseInt(sid.split('.')[1], 16);
    // The heir is announced once the replica is in sync: poll (bounded) for it.
    const r = await pollUntil(async () => {
      const x = await ctl(other, ['--json', 'sessions', sid]);
      assert.equal(x.code, 0, x.stderr);
      return x.json.heir ? x : null;
    }, { deadlineMs: 15_000, what: 'an heir for the session' });
    const s = r.json;
    assert.equal(s.id, sid);
    assert.equal(s.owner, owner);
    assert.equal(s.epoch, epoch);
    assert.equal(s.holder, owner);
    assert.equal(s.state, 'live');
    assert.notEqual(s.heir, owner);
    assert.ok(c.nodes.some((n) => n.id === s.heir), s.heir);
    assert.equal(s.phase, 'ready');
    assert.equal(s.protocol_version, '2025-11-25');
    assert.equal(s.client_name, 'ctl-client');
    assert.deepEqual(s.subscriptions, [URI]);
    assert.equal(s.asked, other.id);
    const table = await ctl(other, ['sessions', sid]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`^holder\\s+${owner}$`, 'm'));
    assert.match(table.stdout, new RegExp(`^  ${URI}$`, 'm'));
  });

  it('sessions ID of a session nobody holds: gone, exit 3; a malformed id: exit 1', async () => {
    const unknown = `${owner}.${sid.split('.')[1]}.${'0'.repeat(32)}`;
    const gone = await ctl(other, ['--json', 'sessions', unknown]);
    assert.equal(gone.code, 3, gone.stderr);
    assert.equal(JSON.parse(gone.stdout).state, 'gone');
    const bad = await ctl(other, ['sessions', 'not-a-session-id']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a session id/);
  });

  it("registry: shards, sessions, and the subscriber's interest set as the others know it", async () => {
    const r = await pollUntil(async () => {
      const x = await ctl(other, ['--json', 'registry']);
      assert.equal(x.code, 0, x.stderr);
      return x.json.interest.some((i) => i.node_id === owner && i.uris >= 1) ? x : null;
    }, { deadlineMs: 15_000, what: `${owner}'s interest set on ${other.id}` });
    assert.equal(r.json.node_id, other.id);
    assert.ok(r.json.shards >= 1, JSON.stringify(r.json));
    assert.ok(r.json.interest_uris >= 1, JSON.stringify(r.json));
    assert.deepEqual(r.json.adoptions, []);
    const held = await ctl(c.node(owner), ['--json', 'registry']);
    assert.ok(held.json.sessions >= 1 && held.json.subscribed_uris >= 1, JSON.stringify(held.json));
    const table = await ctl(other, ['registry']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^interest sets/m);
    assert.match(table.stdout, /^adoptions$/m);
  });

  it('health: every node ready and green; metrics: the Prometheus text', async () => {
    const h = await ctl(other, ['--json', 'health']);
    assert.equal(h.code, 0, h.stderr);
    assert.equal(h.json.nodes.length, 3);
    for (const n of h.json.nodes) {
      assert.equal(n.ready, true, JSON.stringify(n));
      assert.equal(n.zone, 'green', JSON.stringify(n));
      assert.equal(n.draining, false, JSON.stringify(n));
    }
    const m = await ctl(c.node(owner), ['metrics']);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stdout, /^mcpmesh_sessions_active [1-9]/m);
    assert.match(m.stdout, /^mcpmesh_cluster_members\{state="alive"\} 3$/m);
    const mj = await ctl(c.node(owner), ['--json', 'metrics']);
    assert.equal(mj.json.node_id, owner);
    assert.match(mj.json.text, /mcpmesh_health_zone/);
  });

  it('a wrong secret is refused (exit 1); an unknown command is a usage error (exit 2)', async () => {
    const wrong = path.join(c.dir, 'wrong.secret');
    fs.writeFileSync(wrong, 'not-the-cluster-secret-0123456789\n', { mode: 0o600 });
    const r = await ctl(other, ['health'], { secret: wrong });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /cluster auth/);
    const u = await ctl(other, ['frobnicate']);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /unknown command frobnicate/);
  });
});

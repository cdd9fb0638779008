// Graceful drain (DESIGN.md §6): a node told to stop (SIGTERM, or `mcpmesh-ctl drain`) turns
// /readyz to 503, hands its sessions to its heir, lets requests in flight finish within
// --drain-timeout-ms, leaves the cluster and exits 0; its sessions go on elsewhere with the same
// Mcp-Session-Id and no new initialize.
//
// Four nodes: n1..n3 and nginx from deploy/local/cluster.sh, and n4, started by this test with
// the same secret and seed so that its exit status is this process's to read (a node started by
// cluster.sh is nobody's child here). nginx does not list n4: its sessions' requests through
// nginx go to any node, which relays them to whoever holds the session.
//   - SIGTERM to n4 while a 4 s `slow` call (with progress) runs on it: /readyz 503 at once, no new
//     session there, the call completes with its result, exit status 0, then every n4 session
//     answers through nginx, served by another node;
//   - `mcpmesh-ctl --node <n1's cluster address> drain n2` (skipped only when this build's
//     mcpmesh-ctl has no `drain`): the same for n2 (started by cluster.sh: its exit is seen as
//     the process going away and its log's last `drained` line, not as a status).
//
// env MCPMESH_NODE = path to mcpmesh-node (required); MCPMESH_CTL (default: mcpmesh-ctl beside
//     it); MCPMESH_NGINX (optional).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  clusterUp, fetchAll, freePort, hostPort, openSession, ownerOf, pollUntil, post, postStreaming,
  refusesConnections, run, runs, whoami, withDeadline,
} from './cluster_helper.mjs';

const START_MS = 30_000;
const CALL_MS = 30_000;
const SLOW_S = 4; // the call in flight: far longer than /readyz takes to turn, far below the drain timeout
const SLOW_STEPS = 8;
const SLOW_CALL_MS = (SLOW_S + 10) * 1000; // the SDK's deadline for it
const READYZ_MS = 3_000; // /readyz must turn 503 this soon after the signal
const EXIT_MS = 40_000; // drain timeout (10 s) + leave (2 s) + a loaded machine
const SERVED_AGAIN_MS = 15_000;
const SESSIONS_PER_NODE = 4;

const nodeBin = process.env.MCPMESH_NODE;
const ctlBin = process.env.MCPMESH_CTL || (nodeBin ? path.join(path.dirname(nodeBin), 'mcpmesh-ctl') : '');
const ctlHelp = ctlBin ? spawnSync(ctlBin, ['--help'], { encoding: 'utf8', timeout: 10_000 }) : null;
const ctlHasDrain = /^\s*drain\b/m.test(`${ctlHelp?.stdout ?? ''}${ctlHelp?.stderr ?? ''}`);
const textOf = (r) => (r?.content ?? []).find((x) => x.type === 'text')?.text;

/** Starts one mcpmesh-node of the cluster as a child of this process; resolves when it listens. */
async function startNode(c, id) {
  const clusterPort = await freePort();
  const args = ['--node-id', id, '--app', 'demo', '--http', '127.0.0.1:0',
    '--cluster', `127.0.0.1:${clusterPort}`, '--cluster-profile', 'fast',
    '--cluster-secret-file', c.secretFile, '--seeds', c.node('n1').cluster];
  const logPath = c.logPath(id);
  fs.writeFileSync(logPath, `# ${nodeBin} ${args.join(' ')}\n`);
  const proc = spawn(nodeBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const node = { id, proc, log: '', exit: null, cluster: `127.0.0.1:${clusterPort}` };
  c.extraPids.push({ pid: proc.pid, exe: fs.realpathSync(nodeBin) });
  const onData = (chunk) => { node.log += chunk; fs.appendFileSync(logPath, chunk); };
  proc.stdout.setEncoding('utf8').on('data', onData);
  proc.stderr.setEncoding('utf8').on('data', onData);
  node.exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
    node.exit = { code, signal, at: performance.now() };
    resolve(node.exit);
  }));
  await pollUntil(() => {
    if (node.exit) throw new Error(`${id} exited during start (${JSON.stringify(node.exit)}):\n${node.log}`);
    return /^cluster listening on /m.test(node.log);
  }, { deadlineMs: START_MS, what: `${id} listening` });
  const m = /^listening on (http:\/\/(\S+)\/mcp)$/m.exec(node.log);
  assert.ok(m, `${id}: no 'listening on http://…/mcp' line:\n${node.log}`);
  Object.assign(node, { url: m[1], http: m[2], base: `http://${m[2]}` });
  return node;
}

/** `mcpmesh-ctl members --json` as seen by the node at cluster address `addr`. */
async function members(c, addr) {
  const r = await run(ctlBin, ['--node', addr, '--cluster-secret-file', c.secretFile, '--json', 'members'],
    { deadlineMs: 15_000 });
  if (r.code !== 0) return [];
  return JSON.parse(r.stdout).members;
}

/**
 * Polls /readyz of `base` every few ms from now on, until it answers 503 (resolves the time) or
 * the deadline; connection refused before that fails (the node went before it said so).
 */
async function readyzTurns503(base, t0) {
  const { host, port } = hostPort(base.slice('http://'.length));
  return pollUntil(async () => {
    try {
      const r = await fetchAll(`${base}/readyz`, {}, 1_000);
      return r.status === 503 ? performance.now() - t0 : false;
    } catch (e) {
      if (await refusesConnections(host, port)) throw new Error(`${base} refused connections before /readyz said 503`);
      return false;
    }
  }, { deadlineMs: READYZ_MS, intervalMs: 10, what: `${base}/readyz 503` });
}

/** Every session in `sids` answers whoami through nginx with its id, from a node other than `gone`. */
async function servedElsewhere(c, sids, gone) {
  for (const sid of sids) {
    const who = await answeredBy(c.url, sid);
    assert.equal(who.session_id, sid);
    assert.notEqual(who.node_id, gone, `${sid} still served by ${gone}`);
  }
}

/** Waits (bounded) until `id`'s replication is in sync (its heir holds every session). */
async function replicated(base, id) {
  await pollUntil(async () => {
    const r = await fetchAll(`${base}/metrics`);
    return /^mcpmesh_cluster_replication_pending 0$/m.test(r.body) && /^mcpmesh_cluster_in_sync_replicas [1-9]/m.test(r.body);
  }, { deadlineMs: START_MS, intervalMs: 100, what: `${id} replicated its sessions` });
}

/** whoami of `sid` at `url`, retried on 502/503 (bounded); a 404 or another status fails. */
async function answeredBy(url, sid) {
  return pollUntil(async () => {
    const r = await whoami(url, sid, 10_000);
    if (r.status === 200 && r.who) return r.who;
    assert.ok(r.status === 502 || r.status === 503, `${sid} at ${url}: ${r.status} ${r.res.body}`);
    return false;
  }, { deadlineMs: SERVED_AGAIN_MS, intervalMs: 100, what: `${sid} answered at ${url}` });
}

/** An SDK client continuing session `sid` at `url` (no initialize); records what it sends. */
async function resume(url, sid, clients) {
  const client = new Client({ name: 'drain-test', version: '1.0.0' }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(new URL(url), { sessionId: sid });
  const sent = [];
  const send = transport.send.bind(transport);
  transport.send = (msg, opts) => { sent.push(msg); return send(msg, opts); };
  await withDeadline(client.connect(transport), CALL_MS, `resume ${sid}`);
  clients.push(client);
  return { client, sent };
}

describe('drain: SIGTERM and mcpmesh-ctl drain', { timeout: 400_000 }, () => {
  let c;
  let n4;
  const clients = [];
  const drained = []; // { id, sids }

  before(async () => {
    c = await clusterUp({ name: 'drain', nodes: 3 });
    n4 = await startNode(c, 'n4');
    // n4 has joined: it sees all four members alive (its replica is awaited by each case).
    await pollUntil(async () => {
      const m = await members(c, n4.cluster);
      return m.filter((x) => x.state === 'alive').length === 4;
    }, { deadlineMs: START_MS, intervalMs: 100, what: 'n4 sees 4 alive members' });
  });

  after(async () => {
    for (const cl of clients) await withDeadline(cl.close(), 5_000, 'client.close').catch(() => {});
    if (n4 && !n4.exit) n4.proc.kill('SIGKILL');
    await c?.down();
  });

  it('SIGTERM: /readyz 503, the call in flight completes, exit 0, sessions continue elsewhere', async () => {
    const sids = [];
    for (let i = 0; i < SESSIONS_PER_NODE; i++) sids.push(await openSession(n4.url, { name: `n4-${i}` }));
    assert.deepEqual(sids.map(ownerOf), sids.map(() => 'n4'));
    await replicated(n4.base, 'n4');

    // The call in flight, over the SDK, straight to n4.
    const { client } = await resume(n4.url, sids[0], clients);
    const progress = [];
    let firstProgress;
    const progressed = new Promise((r) => { firstProgress = r; });
    const call = client.callTool({ name: 'slow', arguments: { seconds: SLOW_S, steps: SLOW_STEPS } }, undefined,
      { onprogress: (p) => { progress.push(p); firstProgress(); }, timeout: SLOW_CALL_MS });
    const callDone = call.then((r) => ({ r, at: performance.now() }), (e) => ({ e, at: performance.now() }));
    await withDeadline(progressed, CALL_MS, 'first progress of slow');

    const t0 = performance.now();
    n4.proc.kill('SIGTERM');
    const readyAfter = await readyzTurns503(n4.base, t0);
    console.log(`# n4 /readyz 503 ${readyAfter.toFixed(0)} ms after SIGTERM`);
    // Every further check is collected, so that one run reports each broken part of the drain.
    const problems = [];
    const check = async (what, fn) => { try { await fn(); } catch (e) { problems.push(`${what}: ${e.message}`); } };

    await check('no new session on the draining node', async () => {
      const init = await post(n4.url, undefined, {
        jsonrpc: '2.0', id: 1, method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'late', version: '1' } },
      });
      assert.ok(!(init.status === 200 && init.headers.get('mcp-session-id')?.startsWith('n4.')), `${init.status} ${init.body}`);
    });
    await check('a request for a handed-over session sent to the draining node is relayed, not 404', async () => {
      assert.equal(n4.exit, null, 'n4 still runs while its call is in flight');
      const who = await answeredBy(n4.url, sids[1]);
      assert.notEqual(who.node_id, 'n4');
    });
    await check('the call in flight completes with its result', async () => {
      const done = await withDeadline(callDone, SLOW_CALL_MS + 5_000, 'the call in flight');
      assert.ok(!done.e, `it failed: ${done.e?.message}`);
      assert.equal(textOf(done.r), `completed ${SLOW_STEPS} steps`, JSON.stringify(done.r));
      assert.notEqual(done.r.isError, true);
      assert.ok(progress.length >= SLOW_STEPS - 1, `progress: ${progress.length}`);
      const exit = await withDeadline(n4.exited, EXIT_MS, 'n4 exit after SIGTERM');
      assert.ok(done.at <= exit.at, 'answered before n4 exited');
    });
    await check('n4 exits with status 0', async () => {
      const exit = await withDeadline(n4.exited, EXIT_MS, 'n4 exit after SIGTERM');
      assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, `log:\n${n4.log}`);
      assert.match(n4.log, /\[info\] drained$/m);
      console.log(`# n4 exited ${exit.code} ${(exit.at - t0).toFixed(0)} ms after SIGTERM`);
    });
    await check('its sessions answer through nginx, from another node', () => servedElsewhere(c, sids, 'n4'));
    await check('the SDK client goes on through nginx with the same id, no initialize', async () => {
      const again = await resume(c.url, sids[0], clients);
      const echo = await again.client.callTool({ name: 'echo', arguments: { text: 'after drain' } }, undefined, { timeout: CALL_MS });
      assert.equal(textOf(echo), 'after drain');
      assert.deepEqual(again.sent.filter((m) => m.method === 'initialize'), []);
    });
    drained.push({ id: 'n4', sids });
    assert.deepEqual(problems, [], `n4 log:\n${n4.log}`);
  });

  it('mcpmesh-ctl drain n2 (through n1): /readyz 503, call in flight completes, n2 exits, sessions continue',
    { skip: ctlHasDrain ? false : 'ctl drain not built' }, async () => {
      const sids = [];
      for (let i = 0; i < 30 && sids.length < SESSIONS_PER_NODE; i++) {
        const sid = await openSession(c.url, { name: `via-nginx-${i}` });
        if (ownerOf(sid) === 'n2') sids.push(sid);
      }
      assert.equal(sids.length, SESSIONS_PER_NODE, 'sessions owned by n2');
      const n2 = c.node('n2');
      await replicated(n2.base, 'n2');

      // A call in flight on n2, through nginx (raw; progress and the result on its SSE answer).
      const inflight = await postStreaming(c.url, sids[0], {
        jsonrpc: '2.0', id: 77, method: 'tools/call',
        params: { name: 'slow', arguments: { seconds: SLOW_S, steps: SLOW_STEPS }, _meta: { progressToken: 'drain' } },
      }, { deadlineMs: CALL_MS });
      assert.equal(inflight.status, 200, inflight.body);
      assert.ok(inflight.stream, 'slow answers with an SSE stream');
      await inflight.stream.waitFor((m) => m.method === 'notifications/progress', CALL_MS, 'first progress');

      const t0 = performance.now();
      const r = await run(ctlBin, ['--node', c.node('n1').cluster, '--cluster-secret-file', c.secretFile, 'drain', 'n2'],
        { deadlineMs: 15_000 });
      assert.equal(r.code, 0, `mcpmesh-ctl drain n2: ${r.stdout}${r.stderr}`);
      const readyAfter = await readyzTurns503(n2.base, t0);
      console.log(`# n2 /readyz 503 ${readyAfter.toFixed(0)} ms after mcpmesh-ctl drain`);
      const problems = [];
      const check = async (what, fn) => { try { await fn(); } catch (e) { problems.push(`${what}: ${e.message}`); } };

      await check('its sessions answer through nginx while it drains (nginx still sends them to n2)', async () => {
        assert.ok(c.alive('n2'), 'n2 still runs while its call is in flight');
        const who = await answeredBy(c.url, sids[1]);
        assert.notEqual(who.node_id, 'n2');
      });
      await check('the call in flight completes with its result', async () => {
        const answer = await inflight.stream.waitFor((m) => m.id === 77, SLOW_CALL_MS, 'the answer');
        assert.ok(answer.result, JSON.stringify(answer));
        assert.equal(textOf(answer.result), `completed ${SLOW_STEPS} steps`);
      });
      await check('n2 exits after a complete drain', async () => {
        await pollUntil(() => !c.alive('n2'), { deadlineMs: EXIT_MS, intervalMs: 50, what: 'n2 exits' });
        assert.match(c.log('n2'), /\[info\] drained$/m, c.logTail('n2'));
      });
      await check('its sessions answer through nginx, from another node', () => servedElsewhere(c, sids, 'n2'));
      drained.push({ id: 'n2', sids });
      assert.deepEqual(problems, [], `n2 log:\n${c.logTail('n2', 40)}`);
    });

  it('after the drains every drained session still answers through nginx', async () => {
    assert.ok(drained.length >= 1, 'a drain ran');
    for (const { id, sids } of drained) await servedElsewhere(c, sids, id);
    const alive = c.nodes.filter((n) => c.alive(n.id)).map((n) => n.id);
    assert.ok(alive.includes('n1') && alive.includes('n3'), `live nodes: ${alive}`);
    assert.ok(runs(c.node('n1').pid, c.nodeBin));
  });
});

// Notification fan-out across the cluster (make bench-cluster, section "Notification fan-out"):
// one node raises resource updates; how fast, and how exactly, they reach subscribers spread
// over every node.
//
// A 4-node cluster (deploy/local/cluster.sh through tests/cluster/cluster_helper.mjs, fast
// profile, demo app; its nginx is not used). SUBSCRIBERS sessions are opened directly on the
// nodes' HTTP ports, round robin (so a quarter live on the raising node and three quarters are
// reached over the notification bus); each opens its GET SSE stream and subscribes to
// note://fanout. One more session, on the raising node (RAISER, default n1), raises the updates
// with tools/call note_set name=fanout (each answer must be "ok"):
//   1. one unmeasured update: every subscriber gets it exactly once (the setup works);
//   2. phase "paced": UPDATES updates, one every PACE_MS; the raise time of update k is taken
//      just before its POST is sent; wait until every subscriber has UPDATES updates (deadline
//      EVENT_MS), then QUIET_MS more for a duplicate to show up;
//   3. phase "burst" (unless FANOUT_SKIP_BURST=1): the same with each update raised as soon as
//      the previous note_set answered: the rate the cluster sustains, not the offered one.
// The k-th update a subscriber receives is matched with the k-th raise (the events carry only
// the URI); its delivery latency is the arrival time on the subscriber's stream (when this
// process received the chunk carrying it; streams read with node:http, not fetch, to keep the
// client's cost per event low) minus the raise time. Deliveries must be exactly SUBSCRIBERS x
// UPDATES: 0 lost, 0 duplicated, every stream still open.
// Also measured in each phase (first raise to last delivery): the rate (deliveries per second from
// the first raise to the last arrival), CPU time of the 4 nodes (utime+stime of every thread,
// /proc/PID/stat) and their context switches (voluntary + nonvoluntary over
// /proc/PID/task/*/status) per delivery, this client's own CPU per delivery, and the
// notification bus counters (mcpmesh_cluster_bus_messages_total deltas).
//
// Output: a Markdown table and `BENCH <name> <value>` lines; exit 1 when a delivery was lost or
// duplicated (after printing the figures).
//
// env MCPMESH_NODE (default <repo>/build/bin/mcpmesh-node), MCPMESH_NGINX (optional),
//     FANOUT_SUBSCRIBERS (400), FANOUT_UPDATES (50), FANOUT_PACE_MS (100), FANOUT_RAISER (n1),
//     FANOUT_SKIP_BURST=1, FANOUT_CONCURRENCY (16, for the setup), FANOUT_EVENT_MS (30000), FANOUT_QUIET_MS (1500),
//     BENCH_QUICK=1 (smoke test: 40 subscribers, 5 updates), MCPMESH_TEST_KEEP=1 (keep the logs).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {
  PROTOCOL, REPO, clusterUp, delay, mapBounded, metricValue, openSession, percentile, pollUntil, rpc,
} from '../tests/cluster/cluster_helper.mjs';

const QUICK = !!process.env.BENCH_QUICK;
const num = (name, dflt) => (process.env[name] !== undefined ? Number(process.env[name]) : dflt);
const SUBSCRIBERS = num('FANOUT_SUBSCRIBERS', QUICK ? 40 : 400);
const UPDATES = num('FANOUT_UPDATES', QUICK ? 5 : 50);
const PACE_MS = num('FANOUT_PACE_MS', 100);
const RAISER = process.env.FANOUT_RAISER ?? 'n1';
const CONCURRENCY = num('FANOUT_CONCURRENCY', 16);
const EVENT_MS = num('FANOUT_EVENT_MS', 30_000);
const QUIET_MS = num('FANOUT_QUIET_MS', 1_500);
const BURST = !process.env.FANOUT_SKIP_BURST;
const REQUEST_MS = 5_000;
const NODES = 4;
const URI = 'note://fanout';
process.env.MCPMESH_NODE ??= path.join(REPO, 'build', 'bin', 'mcpmesh-node');

const HZ = 100; // USER_HZ: the unit of /proc/PID/stat times on Linux
const fmt = (v, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
const log = (...a) => console.log(...a);
const textOf = (r) => (r?.content ?? []).find((x) => x.type === 'text')?.text;

function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime
}
function ctxSwitches(pid) {
  let sum = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    let s;
    try { s = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'); } catch { continue; }
    for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) sum += Number(m[1]);
  }
  return sum;
}
/**
 * A GET SSE stream read with node:http and a minimal parser (the helper's fetch-based reader
 * costs this process ~10x more CPU per event, which at 400 streams would make the client the
 * bottleneck). `onEvent(data, t)`: the data of every event with `t` = performance.now() when
 * the chunk carrying it arrived. Resolves { status, ended, close() } once the answer's head is
 * in (or { status, body } for a non-SSE answer).
 */
function openStream(url, sid, onEvent, deadlineMs = REQUEST_MS) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'GET',
      agent: false, // one connection per stream
      headers: { Accept: 'text/event-stream', 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': PROTOCOL },
    });
    const timer = setTimeout(() => req.destroy(new Error(`GET stream ${sid}: no answer within ${deadlineMs} ms`)), deadlineMs);
    req.once('error', (e) => { clearTimeout(timer); reject(e); });
    req.once('response', (res) => {
      clearTimeout(timer);
      res.setEncoding('utf8');
      if (res.statusCode !== 200 || !(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.once('end', () => resolve({ status: res.statusCode, body }));
        return;
      }
      const st = { status: 200, ended: false, close: () => req.destroy() };
      let buf = '';
      res.on('data', (chunk) => {
        const t = performance.now();
        buf += chunk.includes('\r') ? chunk.replace(/\r\n?/g, '\n') : chunk;
        let at;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          if (data) onEvent(data, t);
        }
      });
      res.once('close', () => { st.ended = true; });
      resolve(st);
    });
    req.end();
  });
}

const raiseAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
/** POST one JSON-RPC request on a kept-alive node:http connection; resolves { status, body }. */
function postRpc(url, sid, message, deadlineMs = REQUEST_MS) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(message);
    const req = http.request(url, {
      method: 'POST',
      agent: raiseAgent,
      headers: {
        'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
        'Mcp-Session-Id': sid, 'MCP-Protocol-Version': PROTOCOL, 'Content-Length': Buffer.byteLength(body),
      },
    });
    const timer = setTimeout(() => req.destroy(new Error(`POST: no answer within ${deadlineMs} ms`)), deadlineMs);
    req.once('error', (e) => { clearTimeout(timer); reject(e); });
    req.once('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.once('end', () => { clearTimeout(timer); resolve({ status: res.statusCode, body: text }); });
    });
    req.end(body);
  });
}

async function busCounters(c) {
  const out = { published: 0, delivered: 0, failed: 0, duplicate: 0 };
  for (const n of c.nodes) {
    const m = await c.metrics(n.id);
    for (const k of Object.keys(out)) out[k] += metricValue(m, 'mcpmesh_cluster_bus_messages_total', `outcome="${k}"`) ?? 0;
  }
  return out;
}

async function main() {
  const started = Date.now();
  log(`# fan-out bench: ${NODES} nodes (fast profile), ${SUBSCRIBERS} subscribers of ${URI}, `
    + `${UPDATES} updates raised on ${RAISER}: one every ${PACE_MS} ms${BURST ? ', then back to back' : ''}`);
  const c = await clusterUp({ nodes: NODES, profile: 'fast', name: 'fanout-bench' });
  // Interrupted: the helper's signal handler brings the cluster down and exits; the directory
  // (logs) goes too unless MCPMESH_TEST_KEEP is set.
  process.once('exit', () => { if (!process.env.MCPMESH_TEST_KEEP) fs.rmSync(c.dir, { recursive: true, force: true }); });
  const subs = [];
  const failures = [];
  const results = [];
  let perNode;
  try {
    const raiserNode = c.node(RAISER);
    // subscribers, round robin over the nodes
    await mapBounded(Array.from({ length: SUBSCRIBERS }, (_, i) => i), CONCURRENCY, async (i) => {
      const node = c.nodes[i % NODES];
      const sid = await openSession(node.url, { name: `fanout-${i}` });
      const s = { sid, node: node.id, arrivals: [], other: 0 };
      subs[i] = s;
      const st = await openStream(node.url, sid, (data, t) => {
        if (!data.includes('notifications/resources/updated')) return;
        const m = JSON.parse(data);
        if (m.method !== 'notifications/resources/updated') return;
        if (m.params?.uri === URI) s.arrivals.push(t); else s.other++;
      });
      if (st.status !== 200 || !st.close) throw new Error(`GET stream of ${sid} on ${node.id}: ${st.status} ${st.body}`);
      s.stream = st;
      const r = await rpc(node.url, sid, 'resources/subscribe', { uri: URI }, REQUEST_MS);
      if (r.status !== 200 || JSON.stringify(r.msg?.result) !== '{}') {
        throw new Error(`subscribe ${sid} on ${node.id}: ${r.status} ${r.body}`);
      }
    });
    perNode = Object.fromEntries(c.nodes.map((n) => [n.id, subs.filter((s) => s.node === n.id).length]));
    const raiser = await openSession(raiserNode.url, { name: 'fanout-raiser' });
    let rid = 0;
    const raise = async (text) => {
      const r = await postRpc(raiserNode.url, raiser,
        { jsonrpc: '2.0', id: ++rid, method: 'tools/call', params: { name: 'note_set', arguments: { name: 'fanout', text } } });
      // the answer: JSON, or SSE whose data line carries it
      const json = r.body.trimStart().startsWith('{') ? r.body
        : r.body.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).find((d) => d.includes(`"id":${rid}`));
      const msg = json ? JSON.parse(json) : undefined;
      if (r.status !== 200 || msg?.id !== rid || textOf(msg?.result) !== 'ok') throw new Error(`note_set: ${r.status} ${r.body}`);
    };
    const waitAll = (n, what) => pollUntil(() => subs.every((s) => s.arrivals.length >= n),
      { deadlineMs: EVENT_MS, intervalMs: 5, what }).catch((e) => {
      const short = subs.filter((s) => s.arrivals.length < n);
      failures.push(`${what}: ${short.length} subscribers short, e.g. ${short.slice(0, 5).map((s) =>
        `${s.sid} on ${s.node} got ${s.arrivals.length}${s.stream.ended ? ' (stream ended)' : ''}`).join('; ')}`);
      log(`# ${e.message}`);
    });

    // 1. the setup works: one update, once each
    await raise('warm-up');
    await waitAll(1, 'the warm-up update');
    await delay(QUIET_MS);
    const warm = subs.filter((s) => s.arrivals.length !== 1);
    if (warm.length) throw new Error(`warm-up: ${warm.length} subscribers got ${[...new Set(warm.map((s) => s.arrivals.length))]} updates, not 1`);

    // 2. + 3. the measured updates: paced, then (optionally) back to back
    const phase = async (name, paceMs) => {
      for (const s of subs) { s.arrivals = []; s.other = 0; }
      const pids = c.nodes.map((n) => n.pid);
      const cpu0 = pids.map(cpuTicks);
      const cs0 = pids.map(ctxSwitches);
      const bus0 = await busCounters(c);
      const self0 = process.cpuUsage();
      const raised = [];
      const acked = []; // raise -> note_set's answer, ms
      const t0 = performance.now();
      for (let k = 0; k < UPDATES; k++) {
        const wait = t0 + k * paceMs - performance.now();
        if (wait > 0) await delay(wait);
        raised[k] = performance.now();
        await raise(`${name}-${k}`);
        acked[k] = performance.now() - raised[k];
      }
      await waitAll(UPDATES, `${name}: ${UPDATES} updates each`);
      const lastArrival = Math.max(...subs.flatMap((s) => s.arrivals));
      const cpu1 = pids.map(cpuTicks);
      const cs1 = pids.map(ctxSwitches);
      const self1 = process.cpuUsage(self0);
      await delay(QUIET_MS); // a bounded look for duplicates, not synchronisation
      const bus1 = await busCounters(c);

      const expected = SUBSCRIBERS * UPDATES;
      const got = subs.reduce((a, s) => a + s.arrivals.length, 0);
      const lost = subs.reduce((a, s) => a + Math.max(0, UPDATES - s.arrivals.length), 0);
      const dup = subs.reduce((a, s) => a + Math.max(0, s.arrivals.length - UPDATES), 0);
      const other = subs.reduce((a, s) => a + s.other, 0);
      const ended = subs.filter((s) => s.stream.ended).length;
      if (lost || dup) failures.push(`${name}: deliveries ${got} of ${expected}: ${lost} lost, ${dup} duplicated`);
      if (other) failures.push(`${name}: ${other} updates of another URI`);
      if (ended) failures.push(`${name}: ${ended} GET streams ended`);
      const lat = { local: [], remote: [] };
      const perRaise = Array.from({ length: UPDATES }, () => 0);
      for (const s of subs) {
        s.arrivals.slice(0, UPDATES).forEach((t, k) => {
          const ms = t - raised[k];
          lat[s.node === RAISER ? 'local' : 'remote'].push(ms);
          perRaise[k] = Math.max(perRaise[k], ms);
        });
      }
      const span = (lastArrival - t0) / 1000;
      const ticks = cpu1.reduce((a, v, i) => a + v - cpu0[i], 0);
      const r = {
        name, paceMs, expected, got, lost, dup, ended, all: [...lat.local, ...lat.remote], lat, perRaise, span, acked,
        rate: got / span,
        raises: UPDATES / span,
        cpuPerDelivery: ((ticks / HZ) * 1e6) / Math.max(1, got),
        perNodeCpu: Object.fromEntries(c.nodes.map((n, i) => [n.id, ((cpu1[i] - cpu0[i]) / HZ) * 1e6 / Math.max(1, got)])),
        csPerDelivery: cs1.reduce((a, v, i) => a + v - cs0[i], 0) / Math.max(1, got),
        clientCpuPerDelivery: (self1.user + self1.system) / Math.max(1, got),
        bus: Object.fromEntries(Object.keys(bus0).map((k) => [k, bus1[k] - bus0[k]])),
      };
      log(`  ${name}: ${got}/${expected} delivered (${lost} lost, ${dup} duplicated) in ${fmt(span, 2)} s; `
        + `raise -> arrival p50 ${fmt(percentile(r.all, 0.5), 2)} p99 ${fmt(percentile(r.all, 0.99), 2)} ms; `
        + `${fmt(r.rate, 0)} deliveries/s; nodes ${fmt(r.cpuPerDelivery, 1)} us CPU and ${fmt(r.csPerDelivery, 2)} switches per delivery`);
      return r;
    };
    results.push(await phase('paced', PACE_MS));
    if (BURST) results.push(await phase('burst', 0));
  } finally {
    for (const s of subs) s?.stream?.close?.();
    raiseAgent.destroy();
    await c.down();
  }

  log(`\n### Notification fan-out: ${SUBSCRIBERS} subscribers over ${NODES} nodes ${JSON.stringify(perNode)}, `
    + `${UPDATES} updates of ${URI} raised on ${RAISER}\n`);
  const name = (r) => (r.paceMs > 0 ? `one every ${r.paceMs} ms` : 'back to back');
  log(`| measure | ${results.map(name).join(' | ')} |`);
  log(`|---|${results.map(() => '---:').join('|')}|`);
  const row = (label, f) => log(`| ${label} | ${results.map(f).join(' | ')} |`);
  const p = (v, q) => fmt(percentile(v, q), 2);
  row('deliveries / expected (S×M)', (r) => `${r.got} / ${r.expected}`);
  row('lost / duplicated / streams ended', (r) => `${r.lost} / ${r.dup} / ${r.ended}`);
  row('raise → arrival p50 / p99 / max ms', (r) => `${p(r.all, 0.5)} / ${p(r.all, 0.99)} / ${fmt(Math.max(...r.all), 2)}`);
  row(`… subscribers on ${RAISER} (local) p50 / p99 ms`, (r) => `${p(r.lat.local, 0.5)} / ${p(r.lat.local, 0.99)}`);
  row('… subscribers on other nodes (bus) p50 / p99 ms', (r) => `${p(r.lat.remote, 0.5)} / ${p(r.lat.remote, 0.99)}`);
  row('raise → last subscriber, per update, p50 / p99 ms', (r) => `${p(r.perRaise, 0.5)} / ${p(r.perRaise, 0.99)}`);
  row('raise → note_set answered p50 / p99 ms', (r) => `${p(r.acked, 0.5)} / ${p(r.acked, 0.99)}`);
  row('first raise → last arrival s', (r) => fmt(r.span, 2));
  row('deliveries per s (updates per s)', (r) => `${fmt(r.rate, 0)} (${fmt(r.raises, 1)})`);
  row("nodes' CPU µs per delivery (sum of 4)", (r) => fmt(r.cpuPerDelivery, 1));
  row('… per node', (r) => Object.entries(r.perNodeCpu).map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', '));
  row("nodes' context switches per delivery", (r) => fmt(r.csPerDelivery, 2));
  row('client (this process) CPU µs per delivery', (r) => fmt(r.clientCpuPerDelivery, 1));
  row('bus messages published / delivered / failed / duplicate', (r) => `${r.bus.published} / ${r.bus.delivered} / ${r.bus.failed} / ${r.bus.duplicate}`);
  log('');
  log(`BENCH fanout_subscribers ${SUBSCRIBERS}`);
  log(`BENCH fanout_updates ${UPDATES}`);
  for (const r of results) {
    const pre = r.paceMs > 0 ? 'fanout' : 'fanout_burst';
    const bench = [
      ['expected', r.expected], ['delivered', r.got], ['lost', r.lost], ['duplicated', r.dup],
      ['p50_ms', p(r.all, 0.5)], ['p99_ms', p(r.all, 0.99)], ['max_ms', fmt(Math.max(...r.all), 2)],
      ['local_p50_ms', p(r.lat.local, 0.5)], ['remote_p50_ms', p(r.lat.remote, 0.5)], ['remote_p99_ms', p(r.lat.remote, 0.99)],
      ['last_subscriber_p50_ms', p(r.perRaise, 0.5)], ['note_set_answer_p50_ms', p(r.acked, 0.5)],
      ['rate_per_s', fmt(r.rate, 0)], ['nodes_cpu_us_per_delivery', fmt(r.cpuPerDelivery, 1)],
      ['nodes_cs_per_delivery', fmt(r.csPerDelivery, 2)], ['client_cpu_us_per_delivery', fmt(r.clientCpuPerDelivery, 1)],
    ];
    for (const [k, v] of bench) log(`BENCH ${pre}_${k} ${v}`);
  }
  if (failures.length) {
    console.error(`fanout_bench: ${failures.join('\n  ')}`);
    process.exitCode = 1;
  }
  log(`# ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

main().catch((e) => {
  console.error(`fanout_bench: ${e.stack ?? e}`);
  process.exit(1);
});

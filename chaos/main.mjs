// chaos/run: a 4-node mcpmesh cluster in network namespaces, a workload of MCP clients, a
// seeded schedule of nemeses, and a checker over the recorded history. See chaos/README.md.
//
// Prints the checker's verdict and, as its last line, one JSON object (the report). Exit 0
// when the run found no violation, 1 when it did, 2 on a usage error, 3 when the harness itself
// failed (the report then says why), 77 when it cannot run here (not root).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { delay } from '../tests/lib/util.mjs';
import { mapBounded } from '../tests/cluster/cluster_helper.mjs';
import { check } from './checker.mjs';
import { History } from './history.mjs';
import { KINDS, Nemeses, plan } from './nemesis.mjs';
import { ChaosNet, cleanStale } from './net.mjs';
import { NodeSet } from './nodes.mjs';
import { renderTimeline } from './timeline.mjs';
import { NODE_ARGS, prng, Workload } from './workload.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE_IDS = ['n1', 'n2', 'n3', 'n4'];
const VIEW_EVERY_MS = 1000;
const METRICS_EVERY_MS = 500;
const FINAL_STREAMS_MS = 15_000;
const DELIVERY_GRACE_MS = 2_000;

const USAGE = `usage: chaos/run [--duration SECONDS] [--seed N] [--nemeses kill,pause,isolate,split,oneway,loss,delay]
                 [--out DIR] [--bin PATH] [--ctl PATH] [--delayer PATH] [--profile fast|lan]
                 [--quiet-s SECONDS] [--sessions N] [--subscribers N] [--callers N]`;

function parseArgs(argv) {
  const o = {
    duration: 60, seed: Date.now() % 1_000_000, nemeses: [...KINDS], out: null,
    bin: process.env.MCPMESH_NODE ?? path.join(REPO, 'build/bin/mcpmesh-node'),
    ctl: process.env.MCPMESH_CTL ?? path.join(REPO, 'build/bin/mcpmesh-ctl'),
    delayer: process.env.MCPMESH_NFQ_DELAY ?? path.join(REPO, 'build/bin/mcpmesh-nfq-delay'),
    profile: 'fast', quiet: 3, sessions: 24, subscribers: 10, callers: 6,
  };
  const num = (k, v, lo, hi) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < lo || n > hi) throw new Error(`--${k}: a number in [${lo}, ${hi}]`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') { console.log(USAGE); process.exit(0); }
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a}: missing value`);
    switch (a) {
      case '--duration': o.duration = num('duration', v, 10, 86_400); break;
      case '--seed': o.seed = num('seed', v, 0, 2 ** 32 - 1); break;
      case '--nemeses': o.nemeses = v.split(',').filter(Boolean); break;
      case '--out': o.out = v; break;
      case '--bin': o.bin = v; break;
      case '--ctl': o.ctl = v; break;
      case '--delayer': o.delayer = v; break;
      case '--profile': o.profile = v; break;
      case '--quiet-s': o.quiet = num('quiet-s', v, 1, 600); break;
      case '--sessions': o.sessions = num('sessions', v, 4, 10_000); break;
      case '--subscribers': o.subscribers = num('subscribers', v, 0, 1000); break;
      case '--callers': o.callers = num('callers', v, 1, 256); break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  for (const k of o.nemeses) if (!KINDS.includes(k)) throw new Error(`--nemeses: unknown '${k}' (known: ${KINDS.join(', ')})`);
  if (!['fast', 'lan'].includes(o.profile)) throw new Error('--profile: fast or lan');
  if (o.subscribers > o.sessions) throw new Error('--subscribers: at most --sessions');
  return o;
}

function say(msg) { process.stderr.write(`chaos: ${msg}\n`); }

function needTools(o) {
  const missing = [];
  for (const t of ['ip', 'nft', 'iptables', 'setpriv']) {
    if (spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) missing.push(t);
  }
  for (const [flag, p] of [['--bin', o.bin], ['--ctl', o.ctl]]) if (!fs.existsSync(p)) missing.push(`${p} (${flag})`);
  if (o.nemeses.includes('delay') && !fs.existsSync(o.delayer)) missing.push(`${o.delayer} (--delayer; the delay nemesis)`);
  return missing;
}

async function main() {
  let o;
  try { o = parseArgs(process.argv.slice(2)); } catch (e) { say(e.message); console.error(USAGE); return 2; }
  if (process.getuid() !== 0) { say('needs root (ip netns, nft, iptables): skipped'); return 77; }
  const cwd0 = process.env.MCPMESH_CHAOS_CWD ?? process.cwd();
  const missing = needTools({ ...o, bin: path.resolve(cwd0, o.bin), ctl: path.resolve(cwd0, o.ctl), delayer: path.resolve(cwd0, o.delayer) });
  if (missing.length) { say(`missing: ${missing.join(', ')} (make deps-test; make build)`); return 3; }
  const cwd = process.env.MCPMESH_CHAOS_CWD ?? process.cwd(); // chaos/run's caller's directory
  o.bin = path.resolve(cwd, o.bin);
  o.ctl = path.resolve(cwd, o.ctl);
  o.delayer = o.nemeses.includes('delay') ? path.resolve(cwd, o.delayer) : null;
  const out = o.out ? path.resolve(cwd, o.out) : fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmesh-chaos-'));
  fs.mkdirSync(out, { recursive: true });
  say(`seed ${o.seed}, duration ${o.duration} s, nemeses ${o.nemeses.join(',')}, output in ${out}`);

  const removed = cleanStale();
  if (removed.length) say(`removed leftovers of earlier runs: ${removed.join(' ')}`);

  const history = new History(path.join(out, 'history.jsonl'));
  const net = new ChaosNet(NODE_IDS);
  let nodes = null;
  let nemeses = null;
  let cleaned = false;
  const cleanupSync = () => {
    if (cleaned) return;
    cleaned = true;
    nemeses?.killAllNow();
    nodes?.killAllNow();
    net.down();
  };
  const onSignal = (sig) => {
    say(`${sig}: stopping`);
    cleanupSync();
    history.close();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('exit', cleanupSync);

  const report = { seed: o.seed, out };
  let harnessError = null;
  const t0 = Date.now();
  let workload = null;
  const observers = { stop: false, loops: [] };
  try {
    net.up();
    history.add({ type: 'run', phase: 'net', subnet: `10.77.${net.subnet}.0/24`, id: net.id, addrs: net.addrs, bridge: net.hostAddr });
    nodes = new NodeSet({ net, bin: o.bin, ctl: o.ctl, dir: out, profile: o.profile, history, extraArgs: NODE_ARGS });
    await Promise.all(NODE_IDS.map((id) => nodes.start(id)));

    const rng = prng(o.seed);
    workload = new Workload({
      nodes, history, rng: prng(o.seed ^ 0x5bd1e995),
      opts: {
        initialSessions: o.sessions, subscribers: o.subscribers, sdkClients: 3, callers: o.callers, uris: 8,
        callPauseMs: 60, updateEveryMs: 500, newSessionEveryMs: 1000, maxSessions: o.sessions * 10,
      },
    });
    const converged = makeConvergence(nodes, workload);
    nemeses = new Nemeses({ nodes, net, history, rng, delayer: o.delayer, converged });

    // Formed: every node sees every other alive and replication is in sync.
    const formed = await nemeses.waitConverged(60_000);
    if (formed !== null) throw new Error(`the cluster did not form: ${formed}`);
    startObservers(nodes, history, observers);
    history.add({ type: 'run', phase: 'workload_start' });
    await workload.start();
    history.add({ type: 'run', phase: 'workload_ready', sessions: workload.sessions.length });
    say(`${workload.sessions.length} sessions, ${workload.subscribers.length} subscribers; nemeses start`);

    // The schedule: the chosen kinds in a seeded order, then seeded picks, until the time is up.
    const end = Date.now() + o.duration * 1000;
    const order = [...o.nemeses];
    for (let i = order.length - 1; i > 0; i--) { const j = rng.int(i + 1); [order[i], order[j]] = [order[j], order[i]]; }
    let k = 0;
    for (;;) {
      const kind = k < order.length ? order[k] : rng.pick(o.nemeses);
      const n = plan(kind, NODE_IDS, rng);
      const need = (o.quiet + n.window_s + 4) * 1000; // quiet, window, a typical convergence
      if (Date.now() + need > end) break;
      await delay(o.quiet * 1000);
      say(`nemesis ${++k}: ${kind} ${JSON.stringify({ targets: n.targets, ...(n.to ? { to: n.to } : {}), window_s: n.window_s, ...(n.loss_pct ? { loss_pct: n.loss_pct } : {}), ...(n.delay_ms ? { delay_ms: n.delay_ms } : {}) })}`);
      const c = await nemeses.run(n);
      if (!c.ok) say(`  did not converge within the deadline: ${c.detail}`);
      else say(`  converged ${c.took_ms} ms after the heal`);
      for (const cr of nodes.crashed()) {
        history.add({ type: 'crash', node: cr.id, pid: cr.pid, code: cr.code, sig: cr.sig });
        throw new Error(`${cr.id} (pid ${cr.pid}) exited on its own (${cr.code ?? cr.sig}); see ${nodes.logPath(cr.id)}`);
      }
    }
    // What is left of the duration is quiet time; then every stream is open again, the last
    // deliveries arrive, and the workload stops.
    await delay(Math.max(o.quiet * 1000, end - Date.now()));
    const t = Date.now() + FINAL_STREAMS_MS;
    while (workload.streamsOpen() > 0 && Date.now() < t) await delay(100);
    await delay(DELIVERY_GRACE_MS);
    history.add({ type: 'run', phase: 'workload_stop' });
    await workload.stop();
    await finalProbes(nodes, workload, history);
    history.add({ type: 'run', phase: 'end' });
  } catch (e) {
    harnessError = e;
    say(`harness error: ${e.stack ?? e.message}`);
    history.add({ type: 'run', phase: 'harness_error', error: String(e.message).slice(0, 2000) });
  }
  observers.stop = true;
  if (workload && !workload.stopping) await workload.stop().catch(() => {});
  await Promise.race([Promise.allSettled(observers.loops), delay(5000)]);
  await nodes?.stopAll();
  await nemeses?.stopDelayer();
  net.down();
  cleaned = true;
  const left = net.leftovers();
  history.close();

  const result = check(history.events);
  Object.assign(report, {
    verdict: harnessError ? 'harness_error' : result.violations.length ? 'violations' : 'ok',
    ...result.summary,
    duration_s: Math.round((Date.now() - t0) / 100) / 10,
    nemesis_duration_s: o.duration,
    history: path.join(out, 'history.jsonl'),
    timeline: path.join(out, 'timeline.svg'),
  });
  if (harnessError) report.harness_error = String(harnessError.message).split('\n')[0];
  if (left.length) { report.leftovers = left; report.verdict = 'harness_error'; }
  fs.writeFileSync(path.join(out, 'timeline.svg'), renderTimeline(history.events, result, { title: `mcpmesh chaos, seed ${o.seed}` }));
  fs.writeFileSync(path.join(out, 'report.json'), `${JSON.stringify({ ...report, violation_list: result.violations, excused: result.excused }, null, 2)}\n`);

  printVerdict(report, result);
  console.log(JSON.stringify(report));
  if (report.verdict === 'harness_error') return 3;
  return result.violations.length ? 1 : 0;
}

/** Member views (mcpmesh-ctl, every VIEW_EVERY_MS) and /metrics (every METRICS_EVERY_MS), recorded on change. */
function startObservers(nodes, history, observers) {
  for (const id of nodes.ids) {
    observers.loops.push((async () => {
      let last = '';
      while (!observers.stop) {
        const started = Date.now();
        if (nodes.running(id) && !nodes.procs.get(id)?.paused) {
          const t0 = history.now();
          const v = await nodes.members(id);
          const key = JSON.stringify(v);
          if (key !== last) { history.add({ type: 'view', node: id, t0, ...v }); last = key; }
        } else if (last !== 'down') {
          history.add({ type: 'view', node: id, down: true });
          last = 'down';
        }
        await delay(Math.max(50, VIEW_EVERY_MS - (Date.now() - started)));
      }
    })());
    observers.loops.push((async () => {
      let last = null;
      while (!observers.stop) {
        const started = Date.now();
        if (nodes.running(id) && !nodes.procs.get(id)?.paused) {
          const t0 = history.now();
          const pid = nodes.procs.get(id)?.pid;
          const m = await nodes.metrics(id);
          if (m && (last === null || last.pid !== pid || m.declared_dead !== last.declared_dead)) {
            history.add({ type: 'metrics', node: id, pid, t0, ...m });
            last = { pid, ...m };
          }
        }
        await delay(Math.max(50, METRICS_EVERY_MS - (Date.now() - started)));
      }
    })());
  }
}

/**
 * The convergence test after a heal: null when every node sees every node alive (and none
 * suspect or dead), replication is caught up with a replica in sync everywhere, and every
 * session is answered by the same holder through every node (or gone through every node); else
 * why not.
 */
function makeConvergence(nodes, workload) {
  return async () => {
    for (const id of nodes.ids) {
      if (!nodes.running(id)) return `${id} is not running`;
      const v = await nodes.members(id);
      if (v.error) return `${id}: ${v.error}`;
      const bad = nodes.ids.filter((x) => v.members[x] !== 'alive');
      if (bad.length) return `${id} sees ${bad.map((x) => `${x} ${v.members[x] ?? 'missing'}`).join(', ')}`;
      const m = await nodes.metrics(id);
      if (!m) return `${id}: no /metrics`;
      if (m.suspect || m.dead) return `${id}: ${m.suspect} suspect, ${m.dead} dead`;
      if (m.replication_pending !== 0 || !(m.in_sync_replicas >= 1)) return `${id}: replication pending ${m.replication_pending}, in sync ${m.in_sync_replicas}`;
    }
    // Every session, through every node: one holder (or gone everywhere).
    let diverged = null;
    await mapBounded(workload.sessions, 16, async (s) => {
      if (diverged) return;
      const seen = new Set();
      for (const id of nodes.ids) {
        const r = await workload.exchange(id, s.sid, { jsonrpc: '2.0', id: `converge-${workload.nextRid++}`, method: 'tools/call', params: { name: 'whoami', arguments: {} } });
        const holder = r.status === 404 ? 'gone' : r.messages[0]?.result?.structuredContent?.node_id;
        if (!holder) { diverged = diverged ?? `${s.sid} via ${id}: ${r.status} ${r.error ?? ''}`; return; }
        seen.add(holder);
      }
      if (seen.size > 1) diverged = diverged ?? `${s.sid}: holders ${[...seen].join(', ')} depending on the node asked`;
    });
    if (diverged) return diverged;
    return null;
  };
}

/** Every session through every node: its holder, or 404 (lost). Retries explicit errors a few times. */
async function finalProbes(nodes, workload, history) {
  await mapBounded(workload.sessions, 8, async (s) => {
    const results = {};
    for (const id of nodes.ids) {
      let r;
      for (let i = 0; i < 10; i++) {
        r = await workload.exchange(id, s.sid, { jsonrpc: '2.0', id: `final-${workload.nextRid++}`, method: 'tools/call', params: { name: 'whoami', arguments: {} } });
        if (r.status === 200 || r.status === 404) break;
        await delay(300);
      }
      const who = r.messages[0]?.result?.structuredContent;
      results[id] = { status: r.status, node_id: who?.node_id, session_id: who?.session_id, ...(r.error ? { error: r.error } : {}) };
    }
    history.add({ type: 'final_probe', sid: s.sid, kind: s.kind, results });
  });
}

function printVerdict(report, result) {
  const lines = [];
  lines.push(`verdict: ${report.verdict}${report.harness_error ? ` (${report.harness_error})` : ''}`);
  lines.push(`  ${report.sessions} sessions (${report.lost_sessions} lost, ${report.lost_sessions_excused} lost where CLUSTER.md allows it), `
    + `${report.requests} requests (${report.requests_ok} answered, ${report.requests_indeterminate} indeterminate), `
    + `${report.nemeses} nemeses, ${report.notifications_delivered} notifications (${report.notifications_required} required)`);
  for (const [rule, n] of Object.entries(result.summary.violations_by_rule ?? {})) lines.push(`  ${rule}: ${n}`);
  for (const v of result.violations.slice(0, 20)) lines.push(`  VIOLATION ${v.rule} at ${(v.t / 1000).toFixed(1)} s: ${v.detail}`);
  if (result.violations.length > 20) lines.push(`  … ${result.violations.length - 20} more in report.json`);
  lines.push(`  history ${report.history}`);
  lines.push(`  timeline ${report.timeline}`);
  console.log(lines.join('\n'));
}

process.exitCode = await main().catch((e) => { say(e.stack ?? e.message); return 3; });

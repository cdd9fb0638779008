// Nemeses: each a window (the fault is on), a heal, then a wait until the cluster converged.
// Which nemesis, on which nodes and with which parameters comes from the seeded PRNG alone, so a
// seed replays the same schedule (its timing follows the cluster: a heal waits for convergence).
//
//   kill     SIGKILL one node; restart it (same flags, new epoch) at the heal
//   pause    SIGSTOP one node; SIGCONT at the heal. Long (2.5-5 s: it is declared dead) or short
//            (0.2-0.4 s: below the fast profile's T + min = 0.6 s, so it must never be)
//   isolate  one node's packets to and from every other node dropped (nft, in its namespace)
//   split    two halves, each dropping the other's packets
//   oneway   one node's packets to one or two others dropped, the other direction untouched
//   loss     5-15 % of one node's packets dropped, both ways (nft numgen random)
//   delay    one node's outgoing packets held 20-50 ms (+-5 ms) by mcpmesh-nfq-delay (NFQUEUE)
//
// A nemesis's `start` event says exactly what it does: `down` (nodes not running or stopped),
// `cut` (directed pairs [from, to] whose packets are dropped), `degraded` (lossy or slow
// nodes), `affected` (nodes whose sessions may be lost or changed by it, CLUSTER.md A4) and
// `excuseDead` (false for a short pause: nobody may be declared dead).
import { spawn } from 'node:child_process';
import readline from 'node:readline';

import { delay } from '../tests/lib/util.mjs';

export const KINDS = ['kill', 'pause', 'isolate', 'split', 'oneway', 'loss', 'delay'];
const CONVERGE_MS = 30_000;
const DELAYER_READY_MS = 5_000;

/** Plans the next nemesis of `kind` from `rng` over node ids `ids`. */
export function plan(kind, ids, rng) {
  const shuffle = (xs) => {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) { const j = rng.int(i + 1); [a[i], a[j]] = [a[j], a[i]]; }
    return a;
  };
  const pick = () => rng.pick(ids);
  const secs = (lo, hi) => Math.round(rng.range(lo, hi) * 10) / 10;
  const others = (x) => ids.filter((y) => y !== x);
  const both = (xs, ys) => xs.flatMap((x) => ys.flatMap((y) => (x === y ? [] : [[x, y], [y, x]])));
  switch (kind) {
    case 'kill': {
      const x = pick();
      return { kind, targets: [x], window_s: secs(2, 5), down: [x], cut: [], degraded: [], affected: [x], excuseDead: true };
    }
    case 'pause': {
      const x = pick();
      const long = rng.next() < 0.6;
      return {
        kind, targets: [x], window_s: long ? secs(2.5, 5) : secs(0.2, 0.4), short: !long,
        down: long ? [x] : [], cut: [], degraded: [], affected: [x], excuseDead: long,
      };
    }
    case 'isolate': {
      const x = pick();
      return { kind, targets: [x], window_s: secs(3, 6), down: [], cut: both([x], others(x)), degraded: [], affected: [x], excuseDead: true };
    }
    case 'split': {
      const shuffled = shuffle(ids);
      const a = shuffled.slice(0, Math.floor(ids.length / 2)).sort();
      const b = shuffled.slice(Math.floor(ids.length / 2)).sort();
      return { kind, targets: a, halves: [a, b], window_s: secs(3, 6), down: [], cut: a.flatMap((x) => b.flatMap((y) => [[x, y], [y, x]])), degraded: [], affected: [...ids], excuseDead: true };
    }
    case 'oneway': {
      const x = pick();
      const n = 1 + rng.int(2);
      const to = shuffle(others(x)).slice(0, n).sort();
      return { kind, targets: [x], to, window_s: secs(3, 6), down: [], cut: to.map((y) => [x, y]), degraded: [], affected: [x, ...to], excuseDead: true };
    }
    case 'loss': {
      const x = pick();
      return { kind, targets: [x], loss_pct: Math.round(rng.range(5, 15)), window_s: secs(4, 8), down: [], cut: [], degraded: [x], affected: [x], excuseDead: false };
    }
    case 'delay': {
      const x = pick();
      return { kind, targets: [x], delay_ms: Math.round(rng.range(20, 50)), jitter_ms: 5, window_s: secs(4, 8), down: [], cut: [], degraded: [x], affected: [x], excuseDead: false };
    }
    default:
      throw new Error(`unknown nemesis '${kind}' (known: ${KINDS.join(', ')})`);
  }
}

/** Per-node nft/iptables settings for the planned nemesis `n` (or none: everything open). */
export function rulesFor(ids, n, delayQueue) {
  const rules = Object.fromEntries(ids.map((id) => [id, { dropFrom: [], dropTo: [], lossPct: 0, delayQueue: null }]));
  if (!n) return rules;
  for (const [from, to] of n.cut) {
    rules[from].dropTo.push(to);
    rules[to].dropFrom.push(from);
  }
  if (n.kind === 'loss') rules[n.targets[0]].lossPct = n.loss_pct;
  if (n.kind === 'delay') rules[n.targets[0]].delayQueue = delayQueue;
  return rules;
}

export class Nemeses {
  /** `nodes`: NodeSet; `net`: ChaosNet; `history`; `rng`; `delayer`: path of mcpmesh-nfq-delay or null; `converged`: async () => detail|null. */
  constructor({ nodes, net, history, rng, delayer, converged }) {
    Object.assign(this, { nodes, net, history, rng, delayer, converged });
    this.count = 0;
    this.delayerProc = null;
    this.active = null;
  }

  /** Runs nemesis `n` (from plan): start, window, heal, convergence. Returns the converge event. */
  async run(n) {
    const id = ++this.count;
    const { kind } = n;
    this.active = n;
    this.history.add({ type: 'nemesis', phase: 'start', id, ...n });
    if (kind === 'kill') await this.nodes.kill(n.targets[0]);
    else if (kind === 'pause') this.nodes.stop(n.targets[0]);
    else if (kind === 'delay') await this.startDelayer(n);
    if (n.cut.length || kind === 'loss' || kind === 'delay') this.applyRules(n);
    await delay(n.window_s * 1000);
    await this.heal();
    this.history.add({ type: 'nemesis', phase: 'heal', id, kind });
    const t0 = Date.now();
    const detail = await this.waitConverged();
    const ev = this.history.add({ type: 'nemesis', phase: 'converged', id, kind, ok: detail === null, took_ms: Date.now() - t0, ...(detail ? { detail } : {}) });
    this.active = null;
    return ev;
  }

  /** Undoes whatever is on: every node runs and is continued, every rule removed. */
  async heal() {
    const n = this.active;
    this.applyRules(null);
    await this.stopDelayer();
    for (const id of this.nodes.ids) if (this.nodes.running(id)) this.nodes.cont(id);
    if (n?.kind === 'kill' || !n) {
      for (const id of this.nodes.ids) if (!this.nodes.running(id)) await this.nodes.start(id);
    }
  }

  applyRules(n) {
    const rules = rulesFor(this.nodes.ids, n, 1);
    for (const id of this.nodes.ids) this.net.applyRules(id, rules[id]);
  }

  async startDelayer(n) {
    if (!this.delayer) throw new Error('the delay nemesis needs mcpmesh-nfq-delay (--delayer PATH)');
    const x = n.targets[0];
    const p = spawn('ip', ['netns', 'exec', this.net.ns(x), 'setpriv', '--pdeathsig', 'KILL', '--', this.delayer,
      '--queue', '1', '--delay-ms', String(n.delay_ms), '--jitter-ms', String(n.jitter_ms), '--seed', String(this.count)],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    this.delayerProc = p;
    p.exited = new Promise((r) => p.once('exit', r));
    let stderr = '';
    p.stderr.on('data', (c) => { stderr += c; });
    const lines = readline.createInterface({ input: p.stdout });
    p.lastLine = '';
    const ready = new Promise((resolve) => lines.on('line', (l) => { p.lastLine = l; if (l.startsWith('ready')) resolve(true); }));
    const ok = await Promise.race([ready, p.exited.then(() => false), delay(DELAYER_READY_MS).then(() => false)]);
    if (!ok) {
      await this.stopDelayer();
      throw new Error(`mcpmesh-nfq-delay did not start: ${stderr.trim()}`);
    }
  }

  async stopDelayer() {
    const p = this.delayerProc;
    if (!p) return;
    this.delayerProc = null;
    try { process.kill(p.pid, 'SIGTERM'); } catch { /* gone */ }
    if (!(await Promise.race([p.exited.then(() => true), delay(5000).then(() => false)]))) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      await Promise.race([p.exited, delay(5000)]);
    }
    if (p.lastLine && !p.lastLine.startsWith('ready')) this.history.add({ type: 'delayer', stats: p.lastLine });
  }

  /** Synchronous last resort (signal handlers). */
  killAllNow() {
    if (this.delayerProc) { try { process.kill(this.delayerProc.pid, 'SIGKILL'); } catch { /* gone */ } }
  }

  /** Polls until the cluster converged (null) or the deadline (the last reason it had not). */
  async waitConverged(deadlineMs = CONVERGE_MS) {
    const end = Date.now() + deadlineMs;
    let last = 'not checked';
    for (;;) {
      last = await this.converged();
      if (last === null) return null;
      if (Date.now() >= end) return last;
      await delay(250);
    }
  }
}

// The chaos harness's node processes: mcpmesh-node in each node's namespace (`ip netns exec`,
// then `setpriv --pdeathsig KILL`, so a node never outlives the harness even when the harness
// itself is SIGKILLed), started, killed, stopped and continued by pid; and the observers that
// read each node's view of the members (mcpmesh-ctl members --json) and its /metrics.
//
// Every node gets every other node as a seed, so a restarted node (any of them) rejoins.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { delay, pollUntil } from '../tests/lib/util.mjs';
import { metricValue, run } from '../tests/cluster/cluster_helper.mjs';

const START_DEADLINE_MS = 20_000;
const EXIT_DEADLINE_MS = 10_000;
export const HTTP_PORT = 8080;
export const CLUSTER_PORT = 7000;

export class NodeSet {
  /**
   * `net`: a ChaosNet that is up; `bin`, `ctl`: the binaries; `dir`: where logs and the secret
   * go; `profile`: lan | fast; `history`: a History.
   */
  constructor({ net, bin, ctl, dir, profile, history, extraArgs = [] }) {
    Object.assign(this, { net, bin, ctl, dir, profile, history, extraArgs });
    this.ids = net.nodes;
    this.procs = new Map(); // id -> { pid, child, exited: Promise, paused }
    this.secretFile = path.join(dir, 'cluster.secret');
    fs.writeFileSync(this.secretFile, crypto.randomBytes(32), { mode: 0o600 });
  }

  http(id) { return `${this.net.addrs[id]}:${HTTP_PORT}`; }
  url(id) { return `http://${this.http(id)}/mcp`; }
  base(id) { return `http://${this.http(id)}`; }
  clusterAddr(id) { return `${this.net.addrs[id]}:${CLUSTER_PORT}`; }
  logPath(id) { return path.join(this.dir, `${id}.log`); }
  running(id) { return this.procs.has(id); }

  args(id) {
    return ['--node-id', id, '--app', 'demo', '--http', this.http(id), '--cluster', this.clusterAddr(id),
      '--cluster-profile', this.profile, '--cluster-secret-file', this.secretFile,
      '--seeds', this.ids.filter((x) => x !== id).map((x) => this.clusterAddr(x)).join(','),
      ...this.extraArgs];
  }

  /** Starts node `id` and resolves once it answers /healthz (bounded). */
  async start(id) {
    if (this.procs.has(id)) throw new Error(`${id} already runs`);
    const args = this.args(id);
    const offset = fs.existsSync(this.logPath(id)) ? fs.statSync(this.logPath(id)).size : 0;
    fs.appendFileSync(this.logPath(id), `# ${new Date().toISOString()} ${this.bin} ${args.join(' ')}\n`);
    const fd = fs.openSync(this.logPath(id), 'a');
    const child = spawn('ip', ['netns', 'exec', this.net.ns(id), 'setpriv', '--pdeathsig', 'KILL', '--', this.bin, ...args],
      { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const p = { pid: child.pid, child, paused: false };
    p.exited = new Promise((resolve) => child.once('exit', (code, sig) => { p.exit = { code, sig }; resolve(p.exit); }));
    this.procs.set(id, p);
    this.history.add({ type: 'node', node: id, action: 'start', pid: child.pid });
    const tail = () => { try { return fs.readFileSync(this.logPath(id), 'utf8').slice(offset); } catch { return ''; } };
    try {
      await pollUntil(async () => {
        if (p.exit) throw new Error(`${id} exited during start (${JSON.stringify(p.exit)}):\n${tail().slice(-2000)}`);
        if (!/^cluster listening on /m.test(tail())) return false;
        try {
          const r = await fetch(`${this.base(id)}/healthz`, { signal: AbortSignal.timeout(1000) });
          await r.text();
          return r.status === 200;
        } catch { return false; }
      }, { deadlineMs: START_DEADLINE_MS, intervalMs: 50, what: `${id} start` });
    } catch (e) {
      await this.kill(id).catch(() => {});
      throw e;
    }
  }

  /** SIGKILL and wait for the exit (bounded). */
  async kill(id) {
    const p = this.procs.get(id);
    if (!p) return;
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone already */ }
    const r = await Promise.race([p.exited, delay(EXIT_DEADLINE_MS).then(() => null)]);
    if (!r) throw new Error(`${id} (pid ${p.pid}) did not exit after SIGKILL`);
    this.procs.delete(id);
    this.history.add({ type: 'node', node: id, action: 'kill', pid: p.pid });
  }

  stop(id) {
    const p = this.procs.get(id);
    process.kill(p.pid, 'SIGSTOP');
    p.paused = true;
    this.history.add({ type: 'node', node: id, action: 'stop', pid: p.pid });
  }

  cont(id) {
    const p = this.procs.get(id);
    if (!p?.paused) return;
    process.kill(p.pid, 'SIGCONT');
    p.paused = false;
    this.history.add({ type: 'node', node: id, action: 'cont', pid: p.pid });
  }

  /** Nodes that exited without being killed here (a crash is a finding). */
  crashed() {
    return [...this.procs].filter(([, p]) => p.exit).map(([id, p]) => ({ id, pid: p.pid, ...p.exit }));
  }

  /** SIGCONT + SIGKILL for every node still running (by pid), waiting (bounded) for each. */
  async stopAll() {
    for (const [id, p] of this.procs) {
      try { process.kill(p.pid, 'SIGCONT'); } catch { /* gone */ }
      await this.kill(id).catch(() => {});
    }
  }

  /** Synchronous last resort (signal handlers): SIGKILL every node still running. */
  killAllNow() {
    for (const [, p] of this.procs) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
  }

  /** `mcpmesh-ctl members --json` as `id` sees them: { members: {n1: 'alive', …} } or { error }. */
  async members(id, deadlineMs = 1500) {
    try {
      const r = await run(this.ctl, ['--node', this.clusterAddr(id), '--cluster-secret-file', this.secretFile,
        '--timeout-ms', String(deadlineMs - 300), 'members', '--json'], { deadlineMs: deadlineMs + 2000 });
      if (r.code !== 0) return { error: (r.stderr || r.stdout).trim().split('\n').at(-1)?.slice(0, 200) };
      const j = JSON.parse(r.stdout);
      return { members: Object.fromEntries(j.members.map((m) => [m.node_id, m.state])) };
    } catch (e) {
      return { error: e.message.split('\n')[0].slice(0, 200) };
    }
  }

  /** A few figures from /metrics of node `id`, or null when it does not answer in time. */
  async metrics(id, deadlineMs = 1000) {
    try {
      const r = await fetch(`${this.base(id)}/metrics`, { signal: AbortSignal.timeout(deadlineMs) });
      const text = await r.text();
      if (r.status !== 200) return null;
      const ev = (e) => metricValue(text, 'mcpmesh_cluster_membership_events_total', `event="${e}"`);
      return {
        declared_dead: ev('declared_dead'),
        suspicions: ev('suspicions_started'),
        alive: metricValue(text, 'mcpmesh_cluster_members', 'state="alive"'),
        suspect: metricValue(text, 'mcpmesh_cluster_members', 'state="suspect"'),
        dead: metricValue(text, 'mcpmesh_cluster_members', 'state="dead"'),
        replication_pending: metricValue(text, 'mcpmesh_cluster_replication_pending'),
        in_sync_replicas: metricValue(text, 'mcpmesh_cluster_in_sync_replicas'),
      };
    } catch {
      return null;
    }
  }
}

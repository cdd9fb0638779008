// The chaos harness's network: one bridge in the root namespace with an address (the clients'
// side), and per node a network namespace joined to it by a veth pair, with its own address in
// a private /24 (10.77.X.0/24, X picked free at start). Faults are nftables rules inside a
// node's namespace (table `inet mcpmesh_chaos`), rewritten as a whole each time.
//
// Every name carries the run's id (`mmc<id>…` links, `mmc-<id>-<node>` namespaces) and the run
// writes a lock file (LOCK_DIR/<id>.json: its pid and subnet); a start removes the leftovers
// of runs whose pid is gone, and never touches a live run's. Only names and addresses made
// here are ever removed.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const LOCK_DIR = '/run/mcpmesh-chaos';
const NS_RE = /^mmc-([0-9a-f]{4})-[a-z0-9]+$/;
const LINK_RE = /^mmc([0-9a-f]{4})(br|h\d+|p\d+)$/;
const CMD_DEADLINE_MS = 10_000;

/** Runs a command synchronously (bounded); throws with its stderr unless `ok` allows failure. */
export function sh(cmd, args, { input, ok = false } = {}) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: CMD_DEADLINE_MS });
  if (r.error && !ok) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0 && !ok) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${(r.stderr ?? '').trim()}`);
  return r;
}

function pidRunsChaos(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('chaos');
  } catch {
    return false;
  }
}

function readLocks() {
  const locks = new Map();
  let files = [];
  try { files = fs.readdirSync(LOCK_DIR); } catch { return locks; }
  for (const f of files) {
    const m = /^([0-9a-f]{4})\.json$/.exec(f);
    if (!m) continue;
    try { locks.set(m[1], JSON.parse(fs.readFileSync(path.join(LOCK_DIR, f), 'utf8'))); } catch { locks.set(m[1], {}); }
  }
  return locks;
}

function listNamespaces() {
  return sh('ip', ['netns', 'list'], { ok: true }).stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

function listLinks() {
  return sh('ip', ['-o', 'link', 'show'], { ok: true }).stdout.split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]).filter(Boolean);
}

/** Kills (SIGKILL, by pid) what still runs inside namespace `ns`, then deletes it. */
function removeNamespace(ns) {
  const pids = sh('ip', ['netns', 'pids', ns], { ok: true }).stdout.split('\n').filter((p) => /^\d+$/.test(p));
  for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
  sh('ip', ['netns', 'del', ns], { ok: true });
}

/**
 * Removes the namespaces, links and lock files of earlier runs whose process is gone.
 * Returns what it removed.
 */
export function cleanStale() {
  const locks = readLocks();
  const live = new Set([...locks].filter(([, l]) => l.pid && pidRunsChaos(l.pid)).map(([id]) => id));
  const removed = [];
  for (const ns of listNamespaces()) {
    const m = NS_RE.exec(ns);
    if (m && !live.has(m[1])) { removeNamespace(ns); removed.push(ns); }
  }
  for (const link of listLinks()) {
    const m = LINK_RE.exec(link);
    if (m && !live.has(m[1])) { sh('ip', ['link', 'del', link], { ok: true }); removed.push(link); }
  }
  for (const [id] of locks) {
    if (!live.has(id)) { fs.rmSync(path.join(LOCK_DIR, `${id}.json`), { force: true }); removed.push(`lock ${id}`); }
  }
  return removed;
}

/** Third octets of 10.77.X.0/24 in use: root-namespace addresses and live runs' locks. */
function subnetsInUse() {
  const used = new Set();
  for (const m of sh('ip', ['-4', '-o', 'addr', 'show'], { ok: true }).stdout.matchAll(/inet 10\.77\.(\d+)\./g)) used.add(Number(m[1]));
  for (const [, l] of readLocks()) if (Number.isInteger(l.subnet)) used.add(l.subnet);
  return used;
}

export class ChaosNet {
  /** `nodes`: node ids (short, [a-z0-9]). */
  constructor(nodes) {
    this.nodes = nodes;
    this.created = { namespaces: [], links: [] };
    this.rules = new Map(); // node -> rules text last applied
    this.queues = new Map(); // node -> NFQUEUE number of its delay rule, or null
  }

  /** Creates the bridge, namespaces and veths. Throws (after undoing what it made) on failure. */
  up() {
    fs.mkdirSync(LOCK_DIR, { recursive: true });
    const used = subnetsInUse();
    for (let tries = 0; ; tries++) {
      const id = crypto.randomBytes(2).toString('hex');
      const lock = path.join(LOCK_DIR, `${id}.json`);
      const free = [];
      for (let x = 1; x < 255; x++) if (!used.has(x)) free.push(x);
      if (!free.length) throw new Error('no free 10.77.X.0/24 subnet');
      const subnet = free[crypto.randomInt(free.length)];
      try {
        fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, subnet, started: new Date().toISOString() }), { flag: 'wx' });
      } catch (e) {
        if (e.code === 'EEXIST' && tries < 10) continue;
        throw e;
      }
      this.id = id;
      this.subnet = subnet;
      this.lockFile = lock;
      break;
    }
    this.bridge = `mmc${this.id}br`;
    this.hostAddr = `10.77.${this.subnet}.1`;
    this.addrs = Object.fromEntries(this.nodes.map((n, i) => [n, `10.77.${this.subnet}.${11 + i}`]));
    try {
      sh('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
      this.created.links.push(this.bridge);
      sh('ip', ['addr', 'add', `${this.hostAddr}/24`, 'dev', this.bridge]);
      sh('ip', ['link', 'set', this.bridge, 'up']);
      this.nodes.forEach((n, i) => {
        const ns = this.ns(n);
        const host = `mmc${this.id}h${i + 1}`;
        const peer = `mmc${this.id}p${i + 1}`;
        sh('ip', ['netns', 'add', ns]);
        this.created.namespaces.push(ns);
        sh('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
        this.created.links.push(host);
        sh('ip', ['link', 'set', peer, 'netns', ns]);
        sh('ip', ['-n', ns, 'link', 'set', peer, 'name', 'eth0']);
        sh('ip', ['link', 'set', host, 'master', this.bridge]);
        sh('ip', ['link', 'set', host, 'up']);
        sh('ip', ['-n', ns, 'addr', 'add', `${this.addrs[n]}/24`, 'dev', 'eth0']);
        sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
        sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        this.applyRules(n, { dropFrom: [], dropTo: [], lossPct: 0, delayQueue: null });
      });
    } catch (e) {
      this.down();
      throw e;
    }
  }

  ns(node) { return `mmc-${this.id}-${node}`; }

  /**
   * Replaces node's fault rules (atomically, one nft transaction). `dropFrom`/`dropTo`: node
   * ids whose packets are dropped on the way in / out; `lossPct`: share of every non-loopback
   * packet dropped both ways (nft numgen); `delayQueue`: an NFQUEUE number every outgoing
   * non-loopback packet is queued to (bypass: passes when no delayer is bound). The queue rule
   * is iptables' NFQUEUE target (nftables' own `queue` statement needs nft_queue, which not
   * every kernel has; iptables-nft reaches the same queue through xt_NFQUEUE).
   */
  applyRules(node, { dropFrom, dropTo, lossPct, delayQueue }) {
    const set = (ids) => `{ ${ids.map((x) => this.addrs[x]).join(', ')} }`;
    const inRules = ['iifname "lo" accept'];
    const outRules = ['oifname "lo" accept'];
    if (dropFrom.length) inRules.push(`ip saddr ${set(dropFrom)} drop`);
    if (dropTo.length) outRules.push(`ip daddr ${set(dropTo)} drop`);
    if (lossPct > 0) {
      const perMille = Math.round(lossPct * 10);
      inRules.push(`numgen random mod 1000 < ${perMille} drop`);
      outRules.push(`numgen random mod 1000 < ${perMille} drop`);
    }
    const text = [
      'table inet mcpmesh_chaos',
      'delete table inet mcpmesh_chaos',
      'table inet mcpmesh_chaos {',
      `  chain input { type filter hook input priority 0; policy accept; ${inRules.join('; ')}; }`,
      `  chain output { type filter hook output priority 0; policy accept; ${outRules.join('; ')}; }`,
      '}',
      '',
    ].join('\n');
    if (this.rules.get(node) !== text) {
      sh('ip', ['netns', 'exec', this.ns(node), 'nft', '-f', '-'], { input: text });
      this.rules.set(node, text);
    }
    const queue = delayQueue ?? null;
    if ((this.queues.get(node) ?? null) !== queue) {
      const ipt = (...a) => sh('ip', ['netns', 'exec', this.ns(node), 'iptables', '-w', '5', ...a]);
      ipt('-F', 'OUTPUT');
      if (queue !== null) ipt('-A', 'OUTPUT', '!', '-o', 'lo', '-j', 'NFQUEUE', '--queue-num', String(queue), '--queue-bypass');
      this.queues.set(node, queue);
    }
  }

  /** Removes everything this run made (idempotent; never throws). */
  down() {
    for (const ns of this.created.namespaces.splice(0)) removeNamespace(ns);
    for (const link of this.created.links.splice(0)) sh('ip', ['link', 'del', link], { ok: true });
    if (this.lockFile) fs.rmSync(this.lockFile, { force: true });
  }

  /** Names of this run's namespaces and links still present (for the final leak check). */
  leftovers() {
    if (!this.id) return [];
    // A deleted namespace's veth goes a moment after its last process: look a few times.
    for (let i = 0; i < 20; i++) {
      if (!listLinks().some((l) => l.startsWith(`mmc${this.id}`))) break;
      sh('sleep', ['0.1'], { ok: true });
    }
    return [...listNamespaces().filter((n) => n.startsWith(`mmc-${this.id}-`)),
      ...listLinks().filter((l) => l.startsWith(`mmc${this.id}`))];
  }
}

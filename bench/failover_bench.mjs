// Failover under repeated kill -9 (make bench-cluster, section "Failover"): how long the sessions
// of a node that dies take to be served again through nginx, and whether any is lost.
//
// A 4-node cluster behind nginx (deploy/local/cluster.sh through tests/cluster/cluster_helper.mjs,
// fast profile, demo app, one replica per session). SESSIONS sessions are opened through nginx.
// Then KILLS rounds, the victim rotating n1, n2, n3, n4, n1, …:
//   1. whoami through nginx on every session: every one answers 200 (none lost since the last
//      round) and names the node that holds it now (sessions move to heirs round after round);
//   2. kill -9 of the victim (wall clock and monotonic time taken just before the signal);
//   3. every session the victim held is retried through nginx (whoami; on 502, 503 or a
//      request that fails or times out; RETRY_PAUSE_MS between two tries of one session,
//      at most CONCURRENCY requests in flight) until it answers 200: its time to serve is from
//      the kill to that answer. 404 = lost. Anything else = a wrong answer. RECOVER_MS bounds it;
//   4. detection from the node logs: the first "cluster <heir>: <victim> is dead" line the heir
//      wrote after the kill (the heir = the node that now answers for the victim's sessions),
//      and its "continuing N sessions of <victim>" line; log time stamps are milliseconds of
//      the same clock the kill time was read from;
//   5. the victim is started again with the command line cluster.sh gave it (the last `# <date>
//      <binary> <args>` line of its log: same id, same HTTP and cluster addresses, same secret),
//      its pid written where cluster.sh down finds it;
//   6. wait until the cluster is whole: every node sees 4 alive members and none suspect, no
//      replication pending, every node with an in-sync replica (WHOLE_MS bounds it);
//   7. the restarted node got no sessions back (they stay with the heir), so SESSIONS/4 new
//      sessions are opened directly on its HTTP port (later used through nginx like the others)
//      and the cluster is whole again before the next round: every victim holds sessions.
// At the end every session must still answer through nginx.
//
// Output: one line per round, a Markdown table (time to serve p50/p99/max over all rounds, the
// detection part and the rest), `BENCH <name> <value>` lines. Exit 1 when a session was lost,
// answered wrongly or was not served again in time (after printing the figures).
//
// env MCPMESH_NODE (default <repo>/build/bin/mcpmesh-node), MCPMESH_NGINX (optional),
//     FAILOVER_SESSIONS (1000), FAILOVER_KILLS (12), FAILOVER_CONCURRENCY (16),
//     FAILOVER_RETRY_PAUSE_MS (20), FAILOVER_RECOVER_MS (30000), FAILOVER_WHOLE_MS (60000),
//     BENCH_QUICK=1 (smoke test: 120 sessions, 2 kills), MCPMESH_TEST_KEEP=1 (keep the logs).
import fs from 'node:fs';
import path from 'node:path';
import {
  REPO, clusterUp, delay, mapBounded, metricValue, openSession, percentile, whoami,
} from '../tests/cluster/cluster_helper.mjs';

const QUICK = !!process.env.BENCH_QUICK;
const num = (name, dflt) => (process.env[name] !== undefined ? Number(process.env[name]) : dflt);
const SESSIONS = num('FAILOVER_SESSIONS', QUICK ? 120 : 1000);
const KILLS = num('FAILOVER_KILLS', QUICK ? 2 : 12);
const CONCURRENCY = num('FAILOVER_CONCURRENCY', 16);
const RETRY_PAUSE_MS = num('FAILOVER_RETRY_PAUSE_MS', 20);
const RECOVER_MS = num('FAILOVER_RECOVER_MS', 30_000);
const WHOLE_MS = num('FAILOVER_WHOLE_MS', 60_000);
const REQUEST_MS = 5_000;
const START_MS = 20_000;
const NODES = 4;
process.env.MCPMESH_NODE ??= path.join(REPO, 'build', 'bin', 'mcpmesh-node');

const fmt = (v, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
const log = (...a) => console.log(...a);

/** At most `n` holders at a time; FIFO. */
function semaphore(n) {
  let free = n;
  const waiting = [];
  return {
    async acquire() {
      if (free > 0) { free--; return; }
      await new Promise((r) => waiting.push(r));
    },
    release() {
      const next = waiting.shift();
      if (next) next(); else free++;
    },
  };
}

/** `[YYYY-MM-DD HH:MM:SS.mmm]` of an spdlog line (local time) → ms since the epoch. */
function logTime(line) {
  const m = /^\[(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3})\]/.exec(line);
  return m ? new Date(`${m[1]}T${m[2]}`).getTime() : NaN;
}

/** The first line of node `id`'s log matching `re` stamped at or after `sinceMs`; its time. */
function firstLogAfter(c, id, re, sinceMs) {
  for (const line of c.log(id).split('\n')) {
    if (!re.test(line)) continue;
    const t = logTime(line);
    if (t >= sinceMs) return t;
  }
  return NaN;
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** mcpmesh_cluster_adopted_sessions_total of every node but `except`. */
async function adoptedCounts(c, except) {
  const out = {};
  for (const n of c.nodes) {
    if (n.id !== except) out[n.id] = metricValue(await c.metrics(n.id), 'mcpmesh_cluster_adopted_sessions_total');
  }
  return out;
}

async function main() {
  const t = { start: Date.now() };
  log(`# failover bench: ${NODES} nodes behind nginx (fast profile), ${SESSIONS} sessions, ${KILLS} kill -9 rounds`);
  const c = await clusterUp({ nodes: NODES, profile: 'fast', name: 'failover-bench' });
  // Interrupted: the helper's signal handler brings the cluster down and exits; the directory
  // (logs) goes too unless MCPMESH_TEST_KEEP is set.
  process.once('exit', () => { if (!process.env.MCPMESH_TEST_KEEP) fs.rmSync(c.dir, { recursive: true, force: true }); });
  const results = [];
  const failures = [];
  let sessions = [];
  try {
    log(`# cluster up in ${c.dir}; nginx ${c.url}`);
    const sids = await mapBounded(Array.from({ length: SESSIONS }, (_, i) => i), CONCURRENCY,
      (i) => openSession(c.url, { name: `failover-bench-${i}` }));
    sessions = sids.map((sid) => ({ sid }));
    await c.waitWhole('cluster whole after the sessions were opened', WHOLE_MS);

    for (let round = 1; round <= KILLS; round++) {
      const victim = c.nodes[(round - 1) % NODES].id;
      // 1. who holds what, and nothing lost since the last round
      const live = sessions.filter((s) => !s.lost);
      await mapBounded(live, CONCURRENCY, async (s) => {
        const r = await whoami(c.url, s.sid, REQUEST_MS);
        if (r.status !== 200 || !r.who) {
          s.lost = true;
          failures.push(`round ${round}, before the kill: ${s.sid} -> ${r.status} ${r.res.body.slice(0, 200)}`);
          return;
        }
        s.holder = r.who.node_id;
      });
      const held = live.filter((s) => !s.lost && s.holder === victim);
      for (const s of held) { delete s.ttfs; delete s.servedBy; delete s.afterDetect; }
      const perNode = Object.fromEntries(c.nodes.map((n) => [n.id, live.filter((s) => s.holder === n.id).length]));

      const adoptedBefore = await adoptedCounts(c, victim);

      // 2. kill -9
      const pid = c.node(victim).pid;
      if (!c.alive(victim)) throw new Error(`${victim} (pid ${pid}) is not running before round ${round}`);
      const killWall = Date.now();
      const t0 = performance.now();
      process.kill(pid, 'SIGKILL');

      // 3. every session it held, until served again
      const sem = semaphore(CONCURRENCY);
      const retries = {};
      const lost = [];
      const wrong = [];
      await Promise.all(held.map(async (s) => {
        for (;;) {
          if (performance.now() - t0 > RECOVER_MS) return;
          await sem.acquire();
          let r;
          try {
            r = await whoami(c.url, s.sid, REQUEST_MS);
          } catch (e) {
            retries[e.name] = (retries[e.name] ?? 0) + 1;
            r = null;
          } finally {
            sem.release();
          }
          if (r?.status === 200 && r.who) {
            s.ttfs = (performance.now() - t0) / 1000;
            s.servedBy = r.who.node_id;
            if (r.who.session_id !== s.sid) wrong.push(`${s.sid}: whoami names ${r.who.session_id}`);
            return;
          }
          if (r?.status === 404) { lost.push(s.sid); s.lost = true; return; }
          if (r && r.status !== 502 && r.status !== 503) {
            wrong.push(`${s.sid}: ${r.status} ${r.res.body.slice(0, 200)}`);
            s.lost = true;
            return;
          }
          if (r) retries[r.status] = (retries[r.status] ?? 0) + 1;
          await delay(RETRY_PAUSE_MS);
        }
      }));
      const served = held.filter((s) => s.ttfs !== undefined && s.servedBy !== undefined);
      const notServed = held.filter((s) => s.ttfs === undefined && !s.lost);
      const ttfs = served.map((s) => s.ttfs);
      const heirs = [...new Set(served.map((s) => s.servedBy))];
      const heir = heirs.length === 1 ? heirs[0] : heirs.join('+');
      if (served.some((s) => s.servedBy === victim)) wrong.push(`a session of ${victim} answered by the dead node`);
      for (const s of notServed) s.lost = true;
      failures.push(...lost.map((x) => `round ${round}: lost ${x}`), ...wrong.map((x) => `round ${round}: ${x}`),
        ...notServed.map((s) => `round ${round}: ${s.sid} not served within ${RECOVER_MS} ms`));

      // 4. detection and adoption, from the heir's log
      const dead = new RegExp(`cluster ${escapeRe(heirs[0] ?? '')}: ${escapeRe(victim)} is dead`);
      const cont = new RegExp(`cluster ${escapeRe(heirs[0] ?? '')}: continuing \\d+ sessions of ${escapeRe(victim)}`);
      const firstDead = Math.min(...c.nodes.filter((n) => n.id !== victim)
        .map((n) => firstLogAfter(c, n.id, new RegExp(`cluster ${escapeRe(n.id)}: ${escapeRe(victim)} is dead`), killWall))
        .filter(Number.isFinite));
      const detect = heirs[0] ? (firstLogAfter(c, heirs[0], dead, killWall) - killWall) / 1000 : NaN;
      const adopt = heirs[0] ? (firstLogAfter(c, heirs[0], cont, killWall) - killWall) / 1000 : NaN;
      for (const s of served) s.afterDetect = s.ttfs - detect;

      // 5. + 6. restart, whole again
      const tRestart = performance.now();
      await c.restart(victim, START_MS);
      await c.waitWhole(`round ${round}: cluster whole after ${victim} restarted`, WHOLE_MS);
      const whole = (performance.now() - tRestart) / 1000;
      // 7. the restarted node gets a share of new sessions
      const fresh = await mapBounded(Array.from({ length: Math.round(SESSIONS / NODES) }, (_, i) => i), CONCURRENCY,
        (i) => openSession(c.node(victim).url, { name: `failover-bench-r${round}-${i}` }));
      sessions.push(...fresh.map((sid) => ({ sid })));
      await c.waitWhole(`round ${round}: replication of the new sessions`, WHOLE_MS);
      // counted by the survivors from before the kill until now (the round's end)
      const adoptedAfter = await adoptedCounts(c, victim);
      const adoptedCounted = Object.keys(adoptedAfter).reduce((a, id) => a + adoptedAfter[id] - adoptedBefore[id], 0);

      // which sets the lost sessions belong to: `owner.epoch` of their ids
      const lostSets = {};
      for (const s of held.filter((x) => x.lost)) {
        const set = s.sid.split('.').slice(0, 2).join('.');
        lostSets[set] = (lostSets[set] ?? 0) + 1;
      }
      const heldSets = {};
      for (const s of held) {
        const set = s.sid.split('.').slice(0, 2).join('.');
        heldSets[set] = (heldSets[set] ?? 0) + 1;
      }
      const servedBy = {};
      for (const s of served) servedBy[s.servedBy] = (servedBy[s.servedBy] ?? 0) + 1;
      const res = {
        round, victim, heir, held: held.length, served: served.length, lost: lost.length,
        wrong: wrong.length, notServed: notServed.length, ttfs, detect, adopt,
        firstDead: (firstDead - killWall) / 1000, whole, perNode, retries, adoptedCounted, lostSets, heldSets, servedBy,
        afterDetect: served.map((s) => s.afterDetect),
      };
      results.push(res);
      log(`  round ${String(round).padStart(2)}: kill ${victim} holding ${String(held.length).padStart(4)} of `
        + `${live.length} (${JSON.stringify(perNode)}) -> heir ${heir}; served ${served.length}, lost ${lost.length}, `
        + `wrong ${wrong.length}; time to serve p50 ${fmt(percentile(ttfs, 0.5))} p99 ${fmt(percentile(ttfs, 0.99))} `
        + `max ${fmt(Math.max(...ttfs))} s; heir saw it dead ${fmt(detect)} s (first node ${fmt(res.firstDead)} s), `
        + `continued ${fmt(adopt)} s; survivors' adopted_sessions_total +${adoptedCounted}; restart -> whole ${fmt(whole)} s; retries ${JSON.stringify(retries)}`);
      log(`      held by set (owner.epoch) ${JSON.stringify(heldSets)}; served by ${JSON.stringify(servedBy)}`
        + `${lost.length ? `; lost by set ${JSON.stringify(lostSets)}` : ''}`);
    }

    // every session still answers at the end
    const end = sessions.filter((s) => !s.lost);
    await mapBounded(end, CONCURRENCY, async (s) => {
      const r = await whoami(c.url, s.sid, REQUEST_MS);
      if (r.status !== 200 || !r.who) {
        s.lost = true;
        failures.push(`at the end: ${s.sid} -> ${r.status} ${r.res.body.slice(0, 200)}`);
      }
    });
  } finally {
    await c.down();
  }

  const all = results.flatMap((r) => r.ttfs);
  const rest = results.flatMap((r) => r.afterDetect).filter(Number.isFinite);
  const detects = results.map((r) => r.detect).filter(Number.isFinite);
  const adopts = results.map((r) => r.adopt).filter(Number.isFinite);
  const wholes = results.map((r) => r.whole);
  const lostTotal = sessions.filter((s) => s.lost).length;
  const measured = results.reduce((a, r) => a + r.held, 0);
  log(`\n### Failover: ${results.length} rounds of kill -9, 4 nodes behind nginx, fast profile `
    + `(${SESSIONS} sessions through nginx + ${Math.round(SESSIONS / NODES)} per restart; ${sessions.length} in the end)\n`);
  log('| round | killed | sessions it held | heir | heir saw it dead s | heir continued s | serve p50 s | serve p99 s | serve max s | lost | adopted_sessions_total delta | restart → whole s |');
  log('|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    log(`| ${r.round} | ${r.victim} | ${r.held} | ${r.heir} | ${fmt(r.detect)} | ${fmt(r.adopt)} | ${fmt(percentile(r.ttfs, 0.5))} | `
      + `${fmt(percentile(r.ttfs, 0.99))} | ${fmt(Math.max(...r.ttfs))} | ${r.lost + r.notServed + r.wrong} | ${r.adoptedCounted} | ${fmt(r.whole)} |`);
  }
  log('');
  log('| over all rounds | n | p50 s | p99 s | max s |');
  log('|---|---:|---:|---:|---:|');
  const row = (name, v) => log(`| ${name} | ${v.length} | ${fmt(percentile(v, 0.5))} | ${fmt(percentile(v, 0.99))} | ${fmt(v.length ? Math.max(...v) : NaN)} |`);
  row('kill → first answer through nginx (per session)', all);
  row('kill → heir logs "X is dead" (per round)', detects);
  row('kill → heir continues the sessions (per round)', adopts);
  row('"X is dead" → first answer (per session)', rest);
  row('restart → cluster whole (per round)', wholes);
  log(`\nsessions measured ${measured}, served again ${all.length}, lost ${lostTotal}`);
  const bench = [
    ['failover_rounds', results.length], ['failover_sessions_measured', measured],
    ['failover_sessions_lost', lostTotal],
    ['failover_serve_p50_s', fmt(percentile(all, 0.5))], ['failover_serve_p99_s', fmt(percentile(all, 0.99))],
    ['failover_serve_max_s', fmt(all.length ? Math.max(...all) : NaN)],
    ['failover_detect_p50_s', fmt(percentile(detects, 0.5))], ['failover_detect_max_s', fmt(detects.length ? Math.max(...detects) : NaN)],
    ['failover_adopt_p50_s', fmt(percentile(adopts, 0.5))],
    ['failover_after_detect_p50_s', fmt(percentile(rest, 0.5))], ['failover_after_detect_p99_s', fmt(percentile(rest, 0.99))],
    ['failover_restart_whole_p50_s', fmt(percentile(wholes, 0.5))],
  ];
  for (const [k, v] of bench) log(`BENCH ${k} ${v}`);
  if (failures.length) {
    console.error(`failover_bench: ${failures.length} failures:\n  ${failures.slice(0, 20).join('\n  ')}`);
    process.exitCode = 1;
  }
  log(`# ${((Date.now() - t.start) / 1000).toFixed(0)} s`);
}

main().catch((e) => {
  console.error(`failover_bench: ${e.stack ?? e}`);
  process.exit(1);
});

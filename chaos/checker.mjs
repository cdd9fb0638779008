// The chaos checker: a pure function of the recorded history (History events, see
// chaos/README.md "History") that returns every violation of what docs/CLUSTER.md promises,
// what it excused and why, and the run's figures. No clock, no I/O: a history replays to the
// same verdict (`node chaos/checker.mjs history.jsonl`).
//
// The rules, each with the guarantee it encodes:
//   wrong_answer           an answered request whose answer is not the one its input
//                          determines (add, echo, whoami, note_set), or an answer to another
//                          request. CLUSTER.md A2/A4: never a wrong answer.
//   duplicate_answer       a request answered more than once, or an answer outside its own
//                          exchange (on a GET stream, or one the SDK was no longer waiting for).
//   lost_session           a session that every node answers 404 after the last heal, unless
//                          its owner was under a nemesis from its initialize until REPLICATION_MS
//                          after it (A4: changes in the replication window are not survived).
//   false_not_found        404 for a session outside every nemesis window (and its settling),
//                          while the session is served again later.
//   unavailable_after_heal a session no node answers (only explicit errors) after the last heal.
//   ownership_diverged     after the last heal, the nodes disagree about who holds a session.
//   duplicate_notification the same SSE event id twice on a subscriber, or more
//                          notifications/resources/updated of a URI than updates raised so far
//                          since the subscription (less IN_FLIGHT_MS: a bus message on its way)
//                          (A5: exactly once per subscriber, whatever the retries).
//   missed_notification    fewer deliveries than the updates that must arrive: raised ("ok")
//                          after the subscription was answered, outside every nemesis window
//                          (from REPLICATION_MS before it to SETTLE_MS after its convergence),
//                          the subscription and the session themselves safe as above.
//   false_dead             a node seen `dead` (mcpmesh-ctl members), or a declared_dead counter
//                          rising, where no nemesis excuses it: the observer or the member was
//                          killed or stopped (a long pause), or the two were cut apart. A short
//                          pause (< T + min, CLUSTER.md §3) and loss or delay excuse nothing.
//   no_convergence         after a heal, membership, replication and ownership did not settle
//                          within the harness's deadline.
//   node_crashed           a node exited without being killed.
// A request with no answer, or an explicit error (502/503, JSON-RPC error), is indeterminate.
export const REPLICATION_MS = 1500; // a change is on its replica this long after it was answered
export const SETTLE_MS = 1000; // after the harness saw convergence
export const DELIVERY_GRACE_MS = 2000; // an update this close to the end may not have arrived yet
export const IN_FLIGHT_MS = 2000; // an update answered this long before a subscription may still reach it

const sumOf = (a, b) => a + b;

function expectedProblem(ev, nodeIds) {
  const r = ev.result ?? {};
  if (r.isError) return `tool error: ${r.text}`;
  switch (ev.tool) {
    case 'add': {
      const want = sumOf(ev.args.a, ev.args.b);
      if (r.text !== String(want)) return `add(${ev.args.a}, ${ev.args.b}): text '${r.text}', want '${want}'`;
      if (ev.kind !== 'sdk' || r.structured) { if (r.structured?.sum !== want) return `add(${ev.args.a}, ${ev.args.b}): sum ${r.structured?.sum}, want ${want}`; }
      return null;
    }
    case 'echo':
      return r.text === ev.args.text ? null : `echo: '${r.text}', want '${ev.args.text}'`;
    case 'whoami':
      if (r.structured?.session_id !== ev.sid) return `whoami: session ${r.structured?.session_id}, want ${ev.sid}`;
      if (nodeIds.size && !nodeIds.has(r.structured?.node_id)) return `whoami: node ${r.structured?.node_id} is not a node of the cluster`;
      return null;
    case 'note_set':
      return r.text === 'ok' ? null : `note_set: '${r.text}', want 'ok'`;
    default:
      return null;
  }
}

/** Nemesis windows: { id, kind, start, heal, end (convergence or the end of the history), spec }. */
export function windowsOf(events) {
  const byId = new Map();
  let last = 0;
  for (const e of events) {
    last = Math.max(last, e.t);
    if (e.type !== 'nemesis') continue;
    if (e.phase === 'start') byId.set(e.id, { id: e.id, kind: e.kind, start: e.t, heal: null, end: null, spec: e });
    const w = byId.get(e.id);
    if (!w) continue;
    if (e.phase === 'heal') w.heal = e.t;
    if (e.phase === 'converged') { w.end = e.t; w.converged = e.ok; }
  }
  for (const w of byId.values()) if (w.end === null) w.end = last;
  return [...byId.values()];
}

const overlaps = (a0, a1, b0, b1) => a0 <= b1 && b0 <= a1;

/** Is `observer` seeing `member` dead excused by window `w`? */
function deadExcused(w, observer, member) {
  const s = w.spec;
  if (!s.excuseDead) return false;
  if (s.down.includes(member) || s.down.includes(observer)) return true;
  return s.cut.some(([a, b]) => (a === observer && b === member) || (a === member && b === observer));
}

export function check(events) {
  const violations = [];
  const excused = [];
  const v = (rule, t, detail, extra = {}) => violations.push({ rule, t, detail, ...extra });
  const windows = windowsOf(events);
  const nodeIds = new Set();
  for (const e of events) if (e.type === 'run' && e.addrs) for (const id of Object.keys(e.addrs)) nodeIds.add(id);
  const inAnyWindow = (t0, t1, pad0 = 0, pad1 = 0) => windows.some((w) => overlaps(t0, t1, w.start - pad0, w.end + pad1));
  const ownerOf = (sid) => sid.slice(0, sid.indexOf('.'));
  const ownerHit = (sid, t0, t1) => windows.find((w) => w.spec.affected.includes(ownerOf(sid)) && overlaps(t0, t1, w.start, w.end));
  const stopEv = events.find((e) => e.type === 'run' && e.phase === 'workload_stop');
  const stopT = stopEv ? stopEv.t : Infinity;

  // ---- requests
  const calls = events.filter((e) => e.type === 'call');
  const servedAt = new Map(); // sid -> times it was answered ok
  for (const e of calls) {
    if (e.outcome === 'ok') {
      if (!servedAt.has(e.sid)) servedAt.set(e.sid, []);
      servedAt.get(e.sid).push(e.t);
      const p = expectedProblem(e, nodeIds);
      if (p) v('wrong_answer', e.t, `${e.sid} request ${e.rid} via ${e.via}: ${p}`, { sid: e.sid, rid: e.rid });
    }
    if (e.answers > 1) v('duplicate_answer', e.t, `${e.sid} request ${e.rid} via ${e.via}: answered ${e.answers} times in its exchange`, { sid: e.sid, rid: e.rid });
    if (e.foreign?.length) v('wrong_answer', e.t, `${e.sid} request ${e.rid} via ${e.via}: its exchange also carried answers to ${e.foreign.join(', ')}`, { sid: e.sid, rid: e.rid });
  }
  for (const e of events.filter((x) => x.type === 'stray_answer')) {
    v('duplicate_answer', e.t, `${e.sid}: an answer${e.rid !== null ? ` to request ${e.rid}` : ''} outside its exchange (${e.channel} via ${e.via})${e.detail ? `: ${e.detail}` : ''}`, { sid: e.sid });
  }

  // ---- sessions
  const sessions = events.filter((e) => e.type === 'session' && e.outcome === 'ok');
  const created = new Map(sessions.map((e) => [e.sid, e]));
  const finals = new Map(events.filter((e) => e.type === 'final_probe').map((e) => [e.sid, e]));
  const lost = new Set();
  let lostExcused = 0;
  for (const [sid, f] of finals) {
    const rs = Object.entries(f.results);
    const statuses = rs.map(([, r]) => r.status);
    if (statuses.every((s) => s === 404)) {
      lost.add(sid);
      const c = created.get(sid);
      const hit = c && ownerHit(sid, c.t0, c.t + REPLICATION_MS);
      if (hit) {
        lostExcused++;
        excused.push({ rule: 'lost_session', sid, why: `created ${c.t0}-${c.t} ms while its owner ${ownerOf(sid)} was under nemesis ${hit.id} (${hit.kind})` });
      } else {
        v('lost_session', f.t, `${sid} (${f.kind}, created at ${c ? (c.t / 1000).toFixed(1) : '?'} s via ${c?.via}) answers 404 through every node`, { sid });
      }
      continue;
    }
    const answered = rs.filter(([, r]) => r.status === 200);
    if (!answered.length) {
      v('unavailable_after_heal', f.t, `${sid}: no node answers it after the last heal (${rs.map(([n, r]) => `${n} ${r.status}${r.error ? ` ${r.error}` : ''}`).join(', ')})`, { sid });
      continue;
    }
    const holders = new Set(rs.map(([, r]) => (r.status === 200 ? r.node_id : r.status === 404 ? '404' : null)).filter(Boolean));
    if (holders.size > 1) v('ownership_diverged', f.t, `${sid}: ${rs.map(([n, r]) => `via ${n}: ${r.status === 200 ? r.node_id : r.status}`).join(', ')}`, { sid });
    for (const [n, r] of answered) if (r.session_id !== sid) v('wrong_answer', f.t, `${sid} final whoami via ${n}: session ${r.session_id}`, { sid });
  }
  for (const e of calls) {
    if (e.outcome !== 'not_found') continue;
    if (inAnyWindow(e.t0, e.t, 0, SETTLE_MS)) continue;
    const later = (servedAt.get(e.sid) ?? []).some((t) => t > e.t) || (finals.has(e.sid) && !lost.has(e.sid));
    if (later) v('false_not_found', e.t, `${e.sid} request ${e.rid} via ${e.via}: 404 outside any nemesis, yet the session is served afterwards`, { sid: e.sid, rid: e.rid });
  }

  // ---- notifications
  const updates = events.filter((e) => e.type === 'update');
  const deliveries = events.filter((e) => e.type === 'delivery');
  const subs = new Map(); // `${sid} ${uri}` -> { first (request start), ok (first ok event) }
  for (const e of events.filter((x) => x.type === 'subscribe')) {
    const k = `${e.sid} ${e.uri}`;
    if (!subs.has(k)) subs.set(k, { sid: e.sid, uri: e.uri, first: e.t0, ok: null });
    const s = subs.get(k);
    if (e.outcome === 'ok' && !s.ok) s.ok = e;
  }
  const seenIds = new Map();
  for (const d of deliveries) {
    if (d.eventId === undefined) continue;
    const k = `${d.sid} ${d.eventId}`;
    if (seenIds.has(k)) v('duplicate_notification', d.t, `${d.sid}: event ${d.eventId} (${d.uri}) delivered twice (conn ${seenIds.get(k).conn} via ${seenIds.get(k).via}, then conn ${d.conn} via ${d.via})`, { sid: d.sid });
    else seenIds.set(k, d);
  }
  let required = 0;
  let missed = 0;
  const cleanUpdate = (u) => u.outcome === 'ok' && !inAnyWindow(u.t0, u.t, REPLICATION_MS, SETTLE_MS) && u.t <= stopT - DELIVERY_GRACE_MS;
  for (const s of subs.values()) {
    const mine = deliveries.filter((d) => d.sid === s.sid && d.uri === s.uri);
    // An update may have been raised any time between its request and its answer, and one
    // raised just before the subscription may still be on its way to the subscriber's node.
    const possible = updates.filter((u) => u.uri === s.uri && u.outcome !== 'failed' && u.t >= s.first - IN_FLIGHT_MS);
    // Never more deliveries than updates raised so far.
    let flagged = false;
    mine.forEach((d, i) => {
      const sofar = possible.filter((u) => u.t0 <= d.t).length;
      if (i + 1 > sofar && !flagged) {
        flagged = true;
        v('duplicate_notification', d.t, `${s.sid} ${s.uri}: delivery ${i + 1} while only ${sofar} updates were raised since its subscription`, { sid: s.sid });
      }
    });
    if (!s.ok) continue;
    const c = created.get(s.sid);
    const whySkip = lost.has(s.sid) ? 'its session is lost'
      : !c ? 'its session was not created in this history'
        : ownerHit(s.sid, c.t0, c.t + REPLICATION_MS) ? 'its session was created under a nemesis'
          : inAnyWindow(s.first, s.ok.t + REPLICATION_MS) ? 'it was subscribed under a nemesis' : null;
    const clean = updates.filter((u) => u.uri === s.uri && u.t0 > s.ok.t && cleanUpdate(u));
    if (whySkip) {
      if (clean.length) excused.push({ rule: 'missed_notification', sid: s.sid, uri: s.uri, why: whySkip });
      continue;
    }
    required += clean.length;
    if (mine.length < clean.length) {
      missed += clean.length - mine.length;
      // Which ones: the clean updates with no delivery before the next update of the URI.
      const all = updates.filter((u) => u.uri === s.uri).sort((a, b) => a.t0 - b.t0);
      const silent = clean.filter((u) => {
        const next = all.find((x) => x.t0 > u.t0);
        return !mine.some((d) => d.t >= u.t0 && (!next || d.t < next.t0));
      }).map((u) => `#${u.seq} at ${(u.t0 / 1000).toFixed(1)} s`);
      v('missed_notification', s.ok.t, `${s.sid} ${s.uri}: ${mine.length} deliveries, ${clean.length} required${silent.length ? ` (none after update ${silent.slice(0, 5).join(', ')})` : ''}`, { sid: s.sid });
    }
  }

  // ---- membership
  for (const e of events.filter((x) => x.type === 'view' && x.members)) {
    const t0 = e.t0 ?? e.t;
    for (const [member, state] of Object.entries(e.members)) {
      if (state !== 'dead' || member === e.node) continue;
      const w = windows.find((x) => overlaps(t0, e.t, x.start, x.end) && deadExcused(x, e.node, member));
      if (!w) v('false_dead', e.t, `${e.node} sees ${member} dead${windows.some((x) => overlaps(t0, e.t, x.start, x.end)) ? ' (the nemesis on then does not cut them apart)' : ' outside any nemesis'}`, { node: e.node, member });
    }
  }
  const lastMetrics = new Map();
  for (const e of events.filter((x) => x.type === 'metrics')) {
    const prev = lastMetrics.get(e.node);
    lastMetrics.set(e.node, e);
    if (!prev || prev.pid !== e.pid || !(e.declared_dead > prev.declared_dead)) continue;
    const from = prev.t0 ?? prev.t;
    const ok = windows.some((w) => overlaps(from, e.t, w.start, w.end) && [...nodeIds].some((m) => m !== e.node && deadExcused(w, e.node, m)));
    if (!ok) v('false_dead', e.t, `${e.node} declared ${e.declared_dead - prev.declared_dead} member(s) dead between ${(from / 1000).toFixed(1)} s and ${(e.t / 1000).toFixed(1)} s with no nemesis that excuses it`, { node: e.node });
  }

  // ---- convergence, crashes
  for (const w of windows) if (w.converged === false) v('no_convergence', w.end, `after nemesis ${w.id} (${w.kind}): ${events.find((e) => e.type === 'nemesis' && e.id === w.id && e.phase === 'converged')?.detail}`);
  for (const e of events.filter((x) => x.type === 'crash')) v('node_crashed', e.t, `${e.node} (pid ${e.pid}) exited by itself: ${e.code ?? e.sig}`);

  violations.sort((a, b) => a.t - b.t);
  const byRule = {};
  for (const x of violations) byRule[x.rule] = (byRule[x.rule] ?? 0) + 1;
  const okCalls = calls.filter((e) => e.outcome === 'ok');
  const lat = okCalls.map((e) => e.t - e.t0).sort((a, b) => a - b);
  const q = (p) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)] * 10) / 10 : null);
  const nemesisKinds = {};
  for (const w of windows) nemesisKinds[w.kind] = (nemesisKinds[w.kind] ?? 0) + 1;
  return {
    violations,
    excused,
    summary: {
      sessions: sessions.length,
      lost_sessions: [...lost].length - lostExcused,
      lost_sessions_excused: lostExcused,
      violations: violations.length,
      violations_by_rule: byRule,
      nemeses: windows.length,
      nemeses_by_kind: nemesisKinds,
      requests: calls.length,
      requests_ok: okCalls.length,
      requests_indeterminate: calls.filter((e) => ['no_answer', 'http_error', 'rpc_error'].includes(e.outcome)).length,
      requests_not_found: calls.filter((e) => e.outcome === 'not_found').length,
      latency_ms_p50: q(0.5),
      latency_ms_p99: q(0.99),
      subscriptions: [...subs.values()].filter((s) => s.ok).length,
      updates: updates.length,
      notifications_delivered: deliveries.length,
      notifications_required: required,
      notifications_missed: missed,
    },
  };
}

// `node chaos/checker.mjs history.jsonl`: re-checks a recorded run.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { History } = await import('./history.mjs');
  const r = check(History.read(process.argv[2]));
  for (const x of r.violations) console.log(`${x.rule} at ${(x.t / 1000).toFixed(1)} s: ${x.detail}`);
  console.log(JSON.stringify(r.summary));
  process.exitCode = r.violations.length ? 1 : 0;
}

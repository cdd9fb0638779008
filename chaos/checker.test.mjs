// The checker on crafted histories: a clean one passes, and each fault the harness must catch
// (a duplicate answer, a wrong answer, a lost session, a missed or duplicated notification, a
// healthy node declared dead, no convergence) is reported under its rule, while what
// docs/CLUSTER.md allows (no answer during a kill, a session created in the replication window
// of its killed owner, a node dead while it was isolated) is not.
//   node --test chaos/checker.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { check } from './checker.mjs';

const S1 = 'n1.18c.00000000000000000000000000000001';
const S2 = 'n2.18c.00000000000000000000000000000002';
const SUB = 'n3.18c.00000000000000000000000000000003';
const IDS = ['n1', 'n2', 'n3', 'n4'];
const alive = () => Object.fromEntries(IDS.map((id) => [id, 'alive']));
const final = (sid, t, f) => ({ type: 'final_probe', sid, kind: 'raw', t, results: Object.fromEntries(IDS.map((id) => [id, f(id)])) });
const served = (sid, holder) => () => ({ status: 200, node_id: holder, session_id: sid });

/** A small healthy run: two sessions, a subscriber of note://a, two updates, one kill of n4. */
function baseHistory() {
  return [
    { type: 'run', phase: 'net', t: 0, addrs: Object.fromEntries(IDS.map((id, i) => [id, `10.77.1.${11 + i}`])) },
    { type: 'session', kind: 'raw', via: 'n1', t0: 100, t: 110, outcome: 'ok', sid: S1 },
    { type: 'session', kind: 'raw', via: 'n2', t0: 120, t: 130, outcome: 'ok', sid: S2 },
    { type: 'session', kind: 'raw', via: 'n3', t0: 140, t: 150, outcome: 'ok', sid: SUB },
    { type: 'stream', action: 'open', sid: SUB, conn: 1, via: 'n3', t: 160 },
    { type: 'subscribe', sid: SUB, uri: 'note://a', via: 'n1', t0: 170, t: 200, outcome: 'ok' },
    ...IDS.map((id) => ({ type: 'view', node: id, t0: 300, t: 310, members: alive() })),
    { type: 'call', kind: 'raw', sid: S1, rid: 1, via: 'n2', tool: 'add', args: { a: 2, b: 40 }, t0: 2000, t: 2005, status: 200, answers: 1, outcome: 'ok', result: { text: '42', structured: { sum: 42 }, isError: false } },
    { type: 'call', kind: 'raw', sid: S2, rid: 2, via: 'n1', tool: 'echo', args: { text: 'hi/2' }, t0: 2010, t: 2015, status: 200, answers: 1, outcome: 'ok', result: { text: 'hi/2', isError: false } },
    { type: 'update', uri: 'note://a', seq: 1, by: S1, via: 'n1', t0: 3000, t: 3010, outcome: 'ok' },
    { type: 'delivery', sid: SUB, uri: 'note://a', eventId: '0-3', conn: 1, via: 'n3', t: 3012 },
    // kill of n4 from 5 s, healed at 8 s, converged at 9 s
    { type: 'nemesis', phase: 'start', id: 1, kind: 'kill', targets: ['n4'], window_s: 3, down: ['n4'], cut: [], degraded: [], affected: ['n4'], excuseDead: true, t: 5000 },
    { type: 'node', node: 'n4', action: 'kill', pid: 9, t: 5001 },
    { type: 'view', node: 'n1', t0: 6000, t: 6010, members: { ...alive(), n4: 'dead' } },
    { type: 'call', kind: 'raw', sid: S1, rid: 3, via: 'n4', tool: 'add', args: { a: 1, b: 1 }, t0: 5000, t: 5002, status: 0, answers: 0, outcome: 'no_answer', error: { message: 'ECONNRESET' } },
    { type: 'nemesis', phase: 'heal', id: 1, kind: 'kill', t: 8000 },
    { type: 'nemesis', phase: 'converged', id: 1, kind: 'kill', ok: true, took_ms: 1000, t: 9000 },
    { type: 'view', node: 'n1', t0: 9000, t: 9010, members: alive() },
    { type: 'update', uri: 'note://a', seq: 2, by: S1, via: 'n2', t0: 12_000, t: 12_010, outcome: 'ok' },
    { type: 'delivery', sid: SUB, uri: 'note://a', eventId: '0-4', conn: 1, via: 'n3', t: 12_015 },
    { type: 'run', phase: 'workload_stop', t: 20_000 },
    final(S1, 21_000, served(S1, 'n1')),
    final(S2, 21_000, served(S2, 'n2')),
    final(SUB, 21_000, served(SUB, 'n3')),
  ];
}

const sorted = (events) => [...events].sort((a, b) => a.t - b.t);
const rules = (r) => r.violations.map((v) => v.rule);

describe('chaos checker', () => {
  it('passes a healthy history, with the kill excusing the dead view and the request without an answer', () => {
    const r = check(sorted(baseHistory()));
    assert.deepEqual(r.violations, []);
    assert.equal(r.summary.sessions, 3);
    assert.equal(r.summary.requests, 3);
    assert.equal(r.summary.requests_indeterminate, 1);
    assert.equal(r.summary.notifications_required, 2);
    assert.equal(r.summary.nemeses, 1);
  });

  it('catches a request answered twice, and an answer outside its exchange', () => {
    const h = baseHistory();
    h.find((e) => e.type === 'call' && e.rid === 1).answers = 2;
    h.push({ type: 'stray_answer', sid: S2, rid: 2, conn: 1, via: 'n3', channel: 'get', t: 2020 });
    assert.deepEqual(rules(check(sorted(h))), ['duplicate_answer', 'duplicate_answer']);
  });

  it('catches wrong answers: a wrong sum, an echo of something else, another session, an answer to another request', () => {
    const h = baseHistory();
    h.find((e) => e.rid === 1).result = { text: '43', structured: { sum: 43 }, isError: false };
    h.find((e) => e.rid === 2).result = { text: 'hi/7', isError: false };
    h.push({ type: 'call', kind: 'raw', sid: S1, rid: 4, via: 'n3', tool: 'whoami', args: {}, t0: 2100, t: 2101, status: 200, answers: 1, outcome: 'ok', result: { structured: { node_id: 'n1', session_id: S2 } } });
    h.push({ type: 'call', kind: 'raw', sid: S2, rid: 5, via: 'n3', tool: 'echo', args: { text: 'x' }, t0: 2200, t: 2201, status: 200, answers: 1, foreign: [99], outcome: 'ok', result: { text: 'x' } });
    const r = check(sorted(h));
    assert.deepEqual(rules(r), ['wrong_answer', 'wrong_answer', 'wrong_answer', 'wrong_answer']);
    assert.match(r.violations[0].detail, /add\(2, 40\)/);
  });

  it('catches a lost session, and excuses one its owner lost in the replication window', () => {
    const h = baseHistory().filter((e) => !(e.type === 'final_probe' && e.sid === S2));
    h.push(final(S2, 21_000, () => ({ status: 404 })));
    let r = check(sorted(h));
    assert.deepEqual(rules(r), ['lost_session']);
    assert.equal(r.summary.lost_sessions, 1);
    // The same session created on n4 just before its kill: allowed (CLUSTER.md A4).
    const S4 = 'n4.18c.00000000000000000000000000000004';
    h.push({ type: 'session', kind: 'raw', via: 'n4', t0: 4800, t: 4810, outcome: 'ok', sid: S4 });
    h.push(final(S4, 21_000, () => ({ status: 404 })));
    r = check(sorted(h));
    assert.deepEqual(rules(r), ['lost_session']);
    assert.equal(r.summary.lost_sessions_excused, 1);
  });

  it('catches a session whose nodes disagree about its holder after the heal', () => {
    const h = baseHistory().filter((e) => !(e.type === 'final_probe' && e.sid === S1));
    h.push(final(S1, 21_000, (id) => (id === 'n2' ? { status: 404 } : { status: 200, node_id: 'n1', session_id: S1 })));
    assert.deepEqual(rules(check(sorted(h))), ['ownership_diverged']);
  });

  it('catches a 404 outside any nemesis for a session served later', () => {
    const h = baseHistory();
    h.push({ type: 'call', kind: 'raw', sid: S1, rid: 6, via: 'n3', tool: 'add', args: { a: 1, b: 2 }, t0: 15_000, t: 15_001, status: 404, answers: 0, outcome: 'not_found' });
    assert.deepEqual(rules(check(sorted(h))), ['false_not_found']);
    // During the kill's window it is only indeterminate.
    const g = baseHistory();
    g.push({ type: 'call', kind: 'raw', sid: S1, rid: 6, via: 'n3', tool: 'add', args: { a: 1, b: 2 }, t0: 6000, t: 6001, status: 404, answers: 0, outcome: 'not_found' });
    assert.deepEqual(rules(check(sorted(g))), []);
  });

  it('catches a missed notification of a clean update', () => {
    const h = baseHistory().filter((e) => !(e.type === 'delivery' && e.eventId === '0-4'));
    const r = check(sorted(h));
    assert.deepEqual(rules(r), ['missed_notification']);
    assert.match(r.violations[0].detail, /1 deliveries, 2 required.*#2/);
  });

  it('does not require an update raised during a nemesis', () => {
    const h = baseHistory();
    h.push({ type: 'update', uri: 'note://a', seq: 3, by: S1, via: 'n2', t0: 7000, t: 7010, outcome: 'ok' });
    const r = check(sorted(h));
    assert.deepEqual(rules(r), []);
    assert.equal(r.summary.notifications_required, 2);
  });

  it('catches a duplicated notification: the same event id twice, or more deliveries than updates', () => {
    const h = baseHistory();
    h.push({ type: 'delivery', sid: SUB, uri: 'note://a', eventId: '0-3', conn: 2, via: 'n1', t: 3500 });
    assert.deepEqual(rules(check(sorted(h))), ['duplicate_notification', 'duplicate_notification']);
    const g = baseHistory();
    g.push({ type: 'delivery', sid: SUB, uri: 'note://a', eventId: '0-9', conn: 1, via: 'n3', t: 3013 });
    const r = check(sorted(g));
    assert.deepEqual(rules(r), ['duplicate_notification']);
    assert.match(r.violations[0].detail, /delivery 2 while only 1 updates/);
  });

  it('catches a healthy node seen dead: outside any nemesis, by a node that reaches it, or after a short pause', () => {
    const h = baseHistory();
    h.push({ type: 'view', node: 'n2', t0: 15_000, t: 15_010, members: { ...alive(), n3: 'dead' } });
    assert.deepEqual(rules(check(sorted(h))), ['false_dead']);
    // Isolating n4: n1 may see n4 dead, but not n2.
    const g = baseHistory();
    g.push({ type: 'nemesis', phase: 'start', id: 2, kind: 'isolate', targets: ['n4'], window_s: 3, down: [], cut: [['n4', 'n1'], ['n1', 'n4'], ['n4', 'n2'], ['n2', 'n4'], ['n4', 'n3'], ['n3', 'n4']], degraded: [], affected: ['n4'], excuseDead: true, t: 13_000 });
    g.push({ type: 'view', node: 'n1', t0: 14_000, t: 14_010, members: { ...alive(), n4: 'dead' } });
    g.push({ type: 'view', node: 'n1', t0: 14_100, t: 14_110, members: { ...alive(), n2: 'dead' } });
    g.push({ type: 'nemesis', phase: 'heal', id: 2, kind: 'isolate', t: 16_000 });
    g.push({ type: 'nemesis', phase: 'converged', id: 2, kind: 'isolate', ok: true, took_ms: 500, t: 16_500 });
    const r = check(sorted(g));
    assert.deepEqual(rules(r), ['false_dead']);
    assert.match(r.violations[0].detail, /n1 sees n2 dead/);
    // A short pause excuses nothing, not even the paused node.
    const p = baseHistory();
    p.push({ type: 'nemesis', phase: 'start', id: 2, kind: 'pause', targets: ['n2'], window_s: 0.3, short: true, down: [], cut: [], degraded: [], affected: ['n2'], excuseDead: false, t: 13_000 });
    p.push({ type: 'metrics', node: 'n1', pid: 5, t0: 12_900, t: 12_950, declared_dead: 0 });
    p.push({ type: 'metrics', node: 'n1', pid: 5, t0: 13_400, t: 13_450, declared_dead: 1 });
    p.push({ type: 'nemesis', phase: 'heal', id: 2, kind: 'pause', t: 13_300 });
    p.push({ type: 'nemesis', phase: 'converged', id: 2, kind: 'pause', ok: true, took_ms: 100, t: 13_400 });
    assert.deepEqual(rules(check(sorted(p))), ['false_dead']);
  });

  it('reports a heal that did not converge and a node that crashed', () => {
    const h = baseHistory();
    h.find((e) => e.phase === 'converged').ok = false;
    h.find((e) => e.phase === 'converged').detail = 'n2 sees n4 dead';
    h.push({ type: 'crash', node: 'n3', pid: 7, sig: 'SIGSEGV', t: 19_000 });
    assert.deepEqual(rules(check(sorted(h))), ['no_convergence', 'node_crashed']);
  });
});

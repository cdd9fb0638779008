// The run's timeline as one SVG, written by hand (no plotting library): nemesis windows as
// bands across every lane, request latency (log scale) with errors and violations marked,
// indeterminate requests per second, each node's process (running, killed, stopped) and each
// node's view of every member (alive, suspect, dead, not readable).
import { windowsOf } from './checker.mjs';

const W = 1400;
const LEFT = 130;
const RIGHT = 20;
const KIND_COLOR = {
  kill: '#e15759', pause: '#f28e2b', isolate: '#76b7b2', split: '#59a14f', oneway: '#edc948', loss: '#b07aa1', delay: '#9c755f',
};
const STATE_COLOR = { alive: '#59a14f', suspect: '#edc948', dead: '#e15759', left: '#bab0ac', unknown: '#d3d3d3', down: '#555555' };

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

export function renderTimeline(events, result, { title = 'mcpmesh chaos' } = {}) {
  const tEnd = Math.max(1, ...events.map((e) => e.t));
  const x = (t) => LEFT + (t / tEnd) * (W - LEFT - RIGHT);
  const out = [];
  let y = 40;
  const text = (tx, ty, s, extra = '') => out.push(`<text x="${tx.toFixed(1)}" y="${ty.toFixed(1)}" ${extra}>${esc(s)}</text>`);
  const rect = (x0, y0, w, h, fill, extra = '') => out.push(`<rect x="${x0.toFixed(1)}" y="${y0.toFixed(1)}" width="${Math.max(0.5, w).toFixed(1)}" height="${h.toFixed(1)}" fill="${fill}" ${extra}/>`);

  const nodeIds = [...new Set(events.filter((e) => e.type === 'run' && e.addrs).flatMap((e) => Object.keys(e.addrs)))];
  const windows = windowsOf(events);

  // Header
  text(10, 22, `${title} — ${result.summary.sessions} sessions, ${result.summary.requests} requests, ${result.summary.nemeses} nemeses, ${result.summary.violations} violations`, 'font-size="15" font-weight="bold"');

  // Lane: nemeses (labels), the bands are drawn later across all lanes.
  const bandTop = y;
  text(10, y + 14, 'nemeses');
  for (const w of windows) {
    const c = KIND_COLOR[w.kind] ?? '#999';
    rect(x(w.start), y, x(w.heal ?? w.end) - x(w.start), 18, c);
    rect(x(w.heal ?? w.end), y, x(w.end) - x(w.heal ?? w.end), 18, c, 'opacity="0.35"');
    const t = [w.spec.targets?.join('|'), w.spec.to ? `→${w.spec.to.join(',')}` : ''].join('');
    text(x(w.start) + 2, y + 13, `${w.kind} ${t}`, 'font-size="10"');
  }
  y += 30;

  // Lane: latency (log scale 1 ms .. 10 s)
  const latTop = y;
  const latH = 180;
  const ly = (ms) => latTop + latH - (Math.log10(Math.max(1, Math.min(10_000, ms))) / 4) * latH;
  text(10, latTop + 14, 'request latency');
  text(10, latTop + 28, '(log, ms)', 'font-size="10"');
  for (const ms of [1, 10, 100, 1000, 10_000]) {
    out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${ly(ms).toFixed(1)}" y2="${ly(ms).toFixed(1)}" stroke="#eee"/>`);
    text(LEFT - 40, ly(ms) + 4, String(ms), 'font-size="10"');
  }
  const calls = events.filter((e) => e.type === 'call');
  const ok = calls.filter((e) => e.outcome === 'ok');
  const step = Math.max(1, Math.ceil(ok.length / 20_000));
  const dots = [];
  ok.forEach((e, i) => { if (i % step === 0) dots.push(`M${x(e.t0).toFixed(1)} ${ly(e.t - e.t0).toFixed(1)}h1`); });
  out.push(`<path d="${dots.join('')}" stroke="#4e79a7" stroke-width="2" opacity="0.5"/>`);
  const bad = calls.filter((e) => e.outcome !== 'ok');
  const marks = (list, color) => out.push(`<path d="${list.map((e) => `M${x(e.t0).toFixed(1)} ${(ly(e.t - e.t0) - 3).toFixed(1)}v6`).join('')}" stroke="${color}" stroke-width="1.5"/>`);
  marks(bad.filter((e) => e.outcome !== 'not_found'), '#f28e2b');
  marks(bad.filter((e) => e.outcome === 'not_found'), '#b07aa1');
  for (const v of result.violations) out.push(`<line x1="${x(v.t).toFixed(1)}" x2="${x(v.t).toFixed(1)}" y1="${latTop}" y2="${latTop + latH}" stroke="#d00" stroke-width="1.5"><title>${esc(`${v.rule}: ${v.detail}`)}</title></line>`);
  y += latH + 12;

  // Lane: errors per second
  const errTop = y;
  const errH = 50;
  text(10, errTop + 14, 'no answer / error');
  text(10, errTop + 28, 'per second', 'font-size="10"');
  const buckets = new Map();
  for (const e of bad) buckets.set(Math.floor(e.t0 / 1000), (buckets.get(Math.floor(e.t0 / 1000)) ?? 0) + 1);
  const maxB = Math.max(1, ...buckets.values());
  for (const [s, n] of buckets) rect(x(s * 1000), errTop + errH - (n / maxB) * errH, x(1000) - x(0), (n / maxB) * errH, '#f28e2b');
  text(W - RIGHT - 60, errTop + 10, `max ${maxB}/s`, 'font-size="10"');
  y += errH + 14;

  // Lane: processes
  text(10, y + 10, 'processes', 'font-weight="bold"');
  y += 16;
  for (const id of nodeIds) {
    text(20, y + 10, id);
    let state = 'running';
    let since = 0;
    const seg = (t1) => rect(x(since), y, x(t1) - x(since), 12, state === 'running' ? STATE_COLOR.alive : state === 'stopped' ? STATE_COLOR.suspect : STATE_COLOR.down);
    for (const e of events.filter((ev) => ev.type === 'node' && ev.node === id)) {
      seg(e.t);
      since = e.t;
      state = { start: 'running', kill: 'killed', stop: 'stopped', cont: 'running' }[e.action];
    }
    seg(tEnd);
    y += 16;
  }
  y += 6;

  // Lanes: each node's view of the members
  for (const obs of nodeIds) {
    text(10, y + 10, `${obs}'s view`, 'font-weight="bold"');
    y += 14;
    const views = events.filter((e) => e.type === 'view' && e.node === obs);
    for (const member of nodeIds) {
      text(30, y + 9, member, 'font-size="11"');
      let state = 'unknown';
      let since = 0;
      const seg = (t1) => rect(x(since), y, x(t1) - x(since), 10, STATE_COLOR[state] ?? STATE_COLOR.unknown);
      for (const v of views) {
        seg(v.t);
        since = v.t;
        state = v.down ? 'down' : v.error ? 'unknown' : (v.members?.[member] ?? 'unknown');
      }
      seg(tEnd);
      y += 12;
    }
    y += 6;
  }

  // Bands across every lane, behind nothing but faint.
  for (const w of windows) rect(x(w.start), bandTop, x(w.end) - x(w.start), y - bandTop, KIND_COLOR[w.kind] ?? '#999', 'opacity="0.08"');

  // Time axis
  out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${y}" y2="${y}" stroke="#333"/>`);
  const tick = tEnd > 300_000 ? 60_000 : tEnd > 60_000 ? 10_000 : 5_000;
  for (let t = 0; t <= tEnd; t += tick) {
    out.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${y}" y2="${y + 5}" stroke="#333"/>`);
    text(x(t) - 8, y + 17, `${t / 1000}s`, 'font-size="10"');
  }
  y += 30;

  // Legend
  let lx = LEFT;
  const legend = (color, label) => { rect(lx, y - 9, 10, 10, color); text(lx + 14, y, label, 'font-size="11"'); lx += 24 + label.length * 6.5; };
  for (const [k, c] of Object.entries(KIND_COLOR)) legend(c, k);
  lx += 20;
  legend('#4e79a7', 'answered');
  legend('#f28e2b', 'no answer / error');
  legend('#b07aa1', '404');
  legend('#d00', 'violation');
  y += 18;
  lx = LEFT;
  for (const [k, c] of Object.entries(STATE_COLOR)) legend(c, k === 'down' ? 'not running / killed' : k === 'unknown' ? 'view not readable' : k);
  y += 14;

  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif" font-size="12">\n`
    + `<rect width="100%" height="100%" fill="white"/>\n${out.join('\n')}\n</svg>\n`;
}

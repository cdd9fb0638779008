// The history of a chaos run: every event the harness saw, in order, each stamped with `t`
// (ms since the run's start, from one monotonic clock). Kept in memory for the checker and
// the timeline, and appended to history.jsonl (one JSON object per line) as it happens, so a
// run that dies still leaves what it saw.
import fs from 'node:fs';

export class History {
  constructor(file) {
    this.t0 = performance.now();
    this.events = [];
    this.fd = file ? fs.openSync(file, 'w') : null;
  }

  now() { return Math.round((performance.now() - this.t0) * 10) / 10; }

  /** Appends `ev` (its `t` set now unless given); returns it. */
  add(ev) {
    if (ev.t === undefined) ev.t = this.now();
    this.events.push(ev);
    if (this.fd !== null) fs.writeSync(this.fd, `${JSON.stringify(ev)}\n`);
    return ev;
  }

  close() {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  /** Reads a history.jsonl back (for re-checking a run). */
  static read(file) {
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }
}

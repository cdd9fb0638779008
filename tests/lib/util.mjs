// Small utilities shared by the Node test files (integration, interop, cluster, bench):
// deadlines, polling a condition, an SSE parser. Only Node built-ins.
//
// Every wait has a deadline; nothing sleeps to synchronise (pollUntil polls a condition).

/** Rejects when `promise` has not settled within `ms`. */
export function withDeadline(promise, ms, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A pause between two polls of a condition (never used as synchronisation by itself). */
export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls async `fn` until it returns something truthy (returned) or the deadline passes. */
export async function pollUntil(fn, { deadlineMs, intervalMs = 50, what = 'condition' }) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= end) throw new Error(`${what}: not reached within ${deadlineMs} ms`);
    await delay(intervalMs);
  }
}

/** Incremental text/event-stream parser: feed() chunks, get { event, id, retry, data } objects. */
export class SseParser {
  constructor(onEvent) {
    this.buf = '';
    this.onEvent = onEvent;
  }
  feed(text) {
    this.buf += text.replace(/\r\n?/g, '\n');
    let at;
    while ((at = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, at);
      this.buf = this.buf.slice(at + 2);
      const ev = { event: 'message', id: undefined, retry: undefined, data: [] };
      let any = false;
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') ev.data.push(value);
        else if (field === 'event') ev.event = value;
        else if (field === 'id') ev.id = value;
        else if (field === 'retry') ev.retry = value;
        else continue;
        any = true;
      }
      if (any) this.onEvent({ ...ev, data: ev.data.join('\n') });
    }
  }
}

/**
 * The events of an SSE response body as they arrive ({ event, id, retry, data }), read through
 * `reader` (res.body.getReader(), so that the caller may go on reading after a break).
 */
export async function* sseEvents(reader) {
  const decoder = new TextDecoder();
  const ready = [];
  const parser = new SseParser((ev) => ready.push(ev));
  for (;;) {
    while (ready.length) yield ready.shift();
    const { value, done } = await reader.read();
    if (done) return;
    parser.feed(decoder.decode(value, { stream: true }));
  }
}

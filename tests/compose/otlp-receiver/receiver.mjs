// A small OTLP trace receiver that stands in for Jaeger in the compose test (Jaeger's image
// cannot be pulled where the test runs). Only Node built-ins.
//
//   :4318  POST /v1/traces — OTLP/HTTP, JSON (application/json) or protobuf
//          (application/x-protobuf), gzip or not; answers 200 with an empty
//          ExportTraceServiceResponse in the request's encoding, 400 for a body it cannot read.
//   :16686 the part of Jaeger's query API the test reads, same paths and shapes:
//          GET /api/services                 {"data": [service names], "total": N}
//          GET /api/traces?service=S[&limit=N] {"data": [{traceID, spans, processes}]}
//          GET /api/traces/ID                {"data": [that trace]} (404 when unknown)
//          (each span's kind is its `span.kind` tag, as Jaeger shows it)
//          GET /                             "ok" (health check)
//
// Spans are kept in memory, at most MAX_SPANS (oldest dropped first). OTLP/gRPC (4317) is not
// served: the node exports over OTLP/HTTP.
import http from 'node:http';
import zlib from 'node:zlib';

const LISTEN_HOST = process.env.LISTEN_HOST ?? '0.0.0.0';
const OTLP_PORT = Number(process.env.OTLP_HTTP_PORT ?? 4318);
const QUERY_PORT = Number(process.env.QUERY_PORT ?? 16686);
const MAX_SPANS = 100_000;
const MAX_BODY_BYTES = 16 << 20;

/** Received spans: { traceId, spanId, parentSpanId, name, kind, startNs, endNs, attributes, resource }. */
const spans = [];

// ---------------------------------------------------------------------------------------------
// protobuf (opentelemetry/proto/collector/trace/v1 ExportTraceServiceRequest), read by hand

class ProtoReader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }
  done() { return this.pos >= this.buf.length; }
  varint() {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  }
  bytes(n) {
    if (this.pos + n > this.buf.length) throw new Error('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** Calls fn(fieldNumber, wireType, value) for each field; value: bigint, Buffer. */
  fields(fn) {
    while (!this.done()) {
      const key = Number(this.varint());
      const field = key >>> 3;
      const wire = key & 7;
      let value;
      if (wire === 0) value = this.varint();
      else if (wire === 1) value = this.bytes(8);
      else if (wire === 2) value = this.bytes(Number(this.varint()));
      else if (wire === 5) value = this.bytes(4);
      else throw new Error(`unsupported wire type ${wire}`);
      fn(field, wire, value);
    }
  }
}

const each = (buf, fn) => new ProtoReader(buf).fields(fn);

/** An int64 attribute as Jaeger shows it: a number (a decimal string beyond 2^53). */
function intAttribute(n) {
  return Number.isSafeInteger(Number(n)) ? Number(n) : n.toString();
}

function protoAnyValue(buf) {
  let v = null;
  each(buf, (f, w, value) => {
    if (f === 1) v = value.toString('utf8');
    else if (f === 2) v = value !== 0n;
    else if (f === 3) v = intAttribute(BigInt.asIntN(64, value));
    else if (f === 4) v = value.readDoubleLE(0);
    else if (f === 7) v = value.toString('base64');
  });
  return v;
}

function protoKeyValue(buf) {
  let key = '';
  let value = null;
  each(buf, (f, w, v) => {
    if (f === 1) key = v.toString('utf8');
    else if (f === 2) value = protoAnyValue(v);
  });
  return [key, value];
}

function protoSpan(buf, resource) {
  const s = { traceId: '', spanId: '', parentSpanId: '', name: '', kind: 0, startNs: '0', endNs: '0', attributes: {}, resource };
  each(buf, (f, w, v) => {
    if (f === 1) s.traceId = v.toString('hex');
    else if (f === 2) s.spanId = v.toString('hex');
    else if (f === 4) s.parentSpanId = v.toString('hex');
    else if (f === 5) s.name = v.toString('utf8');
    else if (f === 6) s.kind = Number(v);
    else if (f === 7) s.startNs = v.readBigUInt64LE(0).toString();
    else if (f === 8) s.endNs = v.readBigUInt64LE(0).toString();
    else if (f === 9) { const [k, val] = protoKeyValue(v); s.attributes[k] = val; }
  });
  return s;
}

function decodeProtobuf(buf) {
  const out = [];
  each(buf, (f, w, resourceSpans) => {
    if (f !== 1) return;
    const resource = {};
    const scopeSpans = [];
    each(resourceSpans, (rf, rw, v) => {
      if (rf === 1) {
        each(v, (af, aw, kv) => { if (af === 1) { const [k, val] = protoKeyValue(kv); resource[k] = val; } });
      } else if (rf === 2) {
        scopeSpans.push(v);
      }
    });
    for (const ss of scopeSpans) each(ss, (sf, sw, v) => { if (sf === 2) out.push(protoSpan(v, resource)); });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON (lowerCamelCase field names; ids in hex; 64-bit integers as strings or numbers)

function jsonAnyValue(v) {
  if (!v || typeof v !== 'object') return null;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) return intAttribute(BigInt(v.intValue));
  if ('doubleValue' in v) return v.doubleValue;
  if ('bytesValue' in v) return v.bytesValue;
  return null;
}

const jsonAttributes = (list) => Object.fromEntries((list ?? []).map((kv) => [kv.key, jsonAnyValue(kv.value)]));

function decodeJson(body) {
  const req = JSON.parse(body);
  const out = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: String(s.traceId ?? '').toLowerCase(),
          spanId: String(s.spanId ?? '').toLowerCase(),
          parentSpanId: String(s.parentSpanId ?? '').toLowerCase(),
          name: String(s.name ?? ''),
          kind: typeof s.kind === 'number' ? s.kind : 0,
          startNs: String(s.startTimeUnixNano ?? '0'),
          endNs: String(s.endTimeUnixNano ?? '0'),
          attributes: jsonAttributes(s.attributes),
          resource,
        });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// servers

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) { reject(new Error('body too large')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const otlp = http.createServer(async (req, res) => {
  if (req.method !== 'POST' || req.url.split('?')[0] !== '/v1/traces') {
    send(res, 404, 'text/plain', 'not found\n');
    return;
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim();
  try {
    let body = await readBody(req);
    if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
    let got;
    if (type === 'application/json') got = decodeJson(body.toString('utf8'));
    else if (type === 'application/x-protobuf') got = decodeProtobuf(body);
    else { send(res, 415, 'text/plain', `unsupported content type '${type}'\n`); return; }
    spans.push(...got);
    if (spans.length > MAX_SPANS) spans.splice(0, spans.length - MAX_SPANS);
    const services = [...new Set(got.map((s) => `${s.resource['service.name']}/${s.resource['service.instance.id'] ?? '-'}`))];
    console.log(`${new Date().toISOString()} ${got.length} spans (${type}) from ${services.join(', ') || '-'}; ${spans.length} held`);
    if (type === 'application/json') send(res, 200, 'application/json', '{}');
    else send(res, 200, 'application/x-protobuf', '');
  } catch (e) {
    console.log(`${new Date().toISOString()} refused a batch: ${e.message}`);
    send(res, 400, 'text/plain', `cannot read the request: ${e.message}\n`);
  }
});

/** OTLP's SpanKind numbers as Jaeger names them. */
const SPAN_KINDS = { 1: 'internal', 2: 'server', 3: 'client', 4: 'producer', 5: 'consumer' };

/** Jaeger's JSON model for the spans of one trace. */
function jaegerTrace(traceId, list) {
  const processes = {};
  const processOf = new Map();
  const spansOut = list.map((s) => {
    const key = JSON.stringify(s.resource);
    if (!processOf.has(key)) {
      const id = `p${processOf.size + 1}`;
      processOf.set(key, id);
      processes[id] = {
        serviceName: String(s.resource['service.name'] ?? 'unknown'),
        tags: Object.entries(s.resource).map(([k, v]) => ({ key: k, type: 'string', value: String(v) })),
      };
    }
    const start = BigInt(s.startNs);
    const end = BigInt(s.endNs);
    return {
      traceID: traceId,
      spanID: s.spanId,
      operationName: s.name,
      references: s.parentSpanId ? [{ refType: 'CHILD_OF', traceID: traceId, spanID: s.parentSpanId }] : [],
      startTime: Number(start / 1000n),
      duration: Number((end > start ? end - start : 0n) / 1000n),
      tags: [
        ...Object.entries(s.attributes).map(([k, v]) => ({ key: k, type: typeof v === 'string' ? 'string' : typeof v, value: v })),
        ...(SPAN_KINDS[s.kind] ? [{ key: 'span.kind', type: 'string', value: SPAN_KINDS[s.kind] }] : []),
      ],
      processID: processOf.get(key),
    };
  });
  return { traceID: traceId, spans: spansOut, processes };
}

const query = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://receiver');
  if (req.method !== 'GET') { send(res, 405, 'text/plain', 'GET only\n'); return; }
  if (url.pathname === '/') { send(res, 200, 'text/plain', 'ok\n'); return; }
  if (url.pathname === '/api/services') {
    const names = [...new Set(spans.map((s) => String(s.resource['service.name'] ?? 'unknown')))].sort();
    send(res, 200, 'application/json', JSON.stringify({ data: names, total: names.length }));
    return;
  }
  if (url.pathname.startsWith('/api/traces/')) {
    const id = url.pathname.slice('/api/traces/'.length).toLowerCase();
    const list = spans.filter((s) => s.traceId === id);
    if (!list.length) { send(res, 404, 'application/json', JSON.stringify({ data: null, errors: [{ code: 404, msg: 'trace not found' }] })); return; }
    send(res, 200, 'application/json', JSON.stringify({ data: [jaegerTrace(id, list)], total: 1 }));
    return;
  }
  if (url.pathname === '/api/traces') {
    const service = url.searchParams.get('service');
    const limit = Number(url.searchParams.get('limit') ?? 20);
    const traces = new Map();
    for (const s of spans) {
      if (!traces.has(s.traceId)) traces.set(s.traceId, []);
      traces.get(s.traceId).push(s);
    }
    const data = [...traces.entries()]
      .filter(([, list]) => !service || list.some((s) => s.resource['service.name'] === service))
      .slice(-limit)
      .map(([id, list]) => jaegerTrace(id, list));
    send(res, 200, 'application/json', JSON.stringify({ data, total: data.length }));
    return;
  }
  send(res, 404, 'text/plain', 'not found\n');
});

otlp.listen(OTLP_PORT, LISTEN_HOST, () => console.log(`OTLP/HTTP on :${OTLP_PORT}/v1/traces`));
query.listen(QUERY_PORT, LISTEN_HOST, () => console.log(`query API on :${QUERY_PORT}/api/services, /api/traces`));
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => { otlp.close(); query.close(); process.exit(0); });
}

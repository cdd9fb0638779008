// Traces across nodes, as an operator reads them in Jaeger: two nodes export their spans over
// OTLP/HTTP to the receiver of tests/compose/otlp-receiver (the compose test's Jaeger stand-in,
// here on loopback), and the test reads them back through its Jaeger-shaped query API.
//
//   1. a tools/call sent to a node that does not hold the session: one trace, the caller's,
//      with spans from both nodes linked parent to child — the HTTP request on the relaying
//      node, both ends of the forwarding hop, the MCP method and the tool's handler on the
//      holder — named and attributed after OpenTelemetry's HTTP, RPC and MCP conventions;
//   2. a traceparent in params._meta is the MCP span's parent (the MCP convention);
//   3. a caller's decision not to sample is kept: no span of that trace is exported;
//   4. a 4xx answer is logged at debug level with the trace id of its request;
//   5. /metrics counts the exported spans;
//   6. replication (both ends, linked through gRPC metadata) and adoption have spans too.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  clusterUp, fetchAll, freePort, mcpHeaders, metricValue, openSession, pollUntil, REPO,
} from './cluster_helper.mjs';

const RECEIVER = path.join(REPO, 'tests', 'compose', 'otlp-receiver', 'receiver.mjs');
const EXPORT_DEADLINE_MS = 15_000; // the exporter sends every second

const hex = (bytes) => randomBytes(bytes).toString('hex');
const traceparent = (traceId, spanId, sampled = true) => `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;

let receiver;
let queryBase;
let cluster;

async function startReceiver() {
  const [otlpPort, queryPort] = [await freePort(), await freePort()];
  const proc = spawn(process.execPath, [RECEIVER], {
    env: { ...process.env, LISTEN_HOST: '127.0.0.1', OTLP_HTTP_PORT: String(otlpPort), QUERY_PORT: String(queryPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout.setEncoding('utf8').on('data', (c) => { log += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => { log += c; });
  const base = `http://127.0.0.1:${queryPort}`;
  await pollUntil(async () => {
    if (proc.exitCode !== null) throw new Error(`the OTLP receiver exited:\n${log}`);
    try { return (await fetch(`${base}/`, { signal: AbortSignal.timeout(1000) })).ok; } catch { return false; }
  }, { deadlineMs: 15_000, what: 'the OTLP receiver answering' });
  return { proc, base, endpoint: `http://127.0.0.1:${otlpPort}/v1/traces`, log: () => log };
}

/** A trace's spans in Jaeger's model, plus their tags by key, `kind`, `node` and `parent`. */
function readSpans(trace) {
  return trace.spans.map((s) => {
    const tags = Object.fromEntries(s.tags.map((t) => [t.key, t.value]));
    const proc = Object.fromEntries(trace.processes[s.processID].tags.map((t) => [t.key, t.value]));
    return { ...s, tags, kind: tags['span.kind'], node: proc['service.instance.id'], parent: s.references[0]?.spanID };
  });
}

/** The spans of trace `id` (readSpans) once `done(spans)` holds (polled). */
async function traceOf(id, done, what) {
  let spans = [];
  await pollUntil(async () => {
    const res = await fetch(`${queryBase}/api/traces/${id}`, { signal: AbortSignal.timeout(2000) });
    if (res.status === 404) return false;
    spans = readSpans((await res.json()).data[0]);
    return done(spans);
  }, { deadlineMs: EXPORT_DEADLINE_MS, what });
  return spans;
}

/** The spans of the first trace (of the last 1,000) that has a span for which `match` holds. */
async function spansWhere(match, what) {
  let found = [];
  await pollUntil(async () => {
    const res = await fetch(`${queryBase}/api/traces?service=mcpmesh&limit=1000`, { signal: AbortSignal.timeout(2000) });
    for (const trace of (await res.json()).data) {
      const spans = readSpans(trace);
      if (spans.some(match)) { found = spans; return true; }
    }
    return false;
  }, { deadlineMs: EXPORT_DEADLINE_MS, what });
  return found;
}

const describeSpans = (spans) => spans.map((s) => `${s.node} ${s.kind} "${s.operationName}" ${s.spanID} <- ${s.parent ?? '-'}`).join('\n');

function callTool(url, sid, name, args, headers = {}, meta) {
  const params = { name, arguments: args, ...(meta ? { _meta: meta } : {}) };
  return fetchAll(url, {
    method: 'POST',
    headers: mcpHeaders(sid, headers),
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params }),
  });
}

describe('traces across nodes (OTLP)', { timeout: 180_000 }, () => {
  before(async () => {
    receiver = await startReceiver();
    queryBase = receiver.base;
    // Two nodes: n2 continues n1's sessions when n1 dies although it then sees only half of
    // the cluster alive without the lowest id (CLUSTER.md A4, the quorum), as it is told to.
    cluster = await clusterUp({
      nodes: 2, name: 'tracing',
      nodeArgs: [`--otlp-endpoint=${receiver.endpoint}`, '--log-level=debug', '--adopt-without-quorum'],
    });
  });

  after(async () => {
    if (cluster) await cluster.down();
    if (receiver) receiver.proc.kill('SIGTERM');
  });

  it('a tools/call sent to a non-owner is one trace with spans from both nodes, parent and child linked', async () => {
    const [n1, n2] = cluster.nodes;
    const sid = await openSession(n1.url, { name: 'tracing' });
    assert.ok(sid.startsWith(`${n1.id}.`), sid);
    const traceId = hex(16);
    const callerSpan = hex(8);
    const res = await callTool(n2.url, sid, 'echo', { text: 'traced' }, { traceparent: traceparent(traceId, callerSpan) });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.messages[0]?.result?.content?.[0]?.text, 'traced', res.body);

    const spans = await traceOf(traceId, (s) => s.length >= 5, 'five spans of the relayed call');
    const why = describeSpans(spans);
    const one = (node, kind, name) => {
      const found = spans.filter((s) => s.node === node && s.kind === kind && s.operationName === name);
      assert.equal(found.length, 1, `one ${kind} span "${name}" from ${node}:\n${why}`);
      return found[0];
    };
    const http = one(n2.id, 'server', 'POST /mcp');
    const hopOut = one(n2.id, 'client', 'mcpmesh.v1.Forward/Relay');
    const hopIn = one(n1.id, 'server', 'mcpmesh.v1.Forward/Relay');
    const method = one(n1.id, 'server', 'tools/call echo');
    const handler = one(n1.id, 'internal', 'execute_tool echo');
    assert.equal(http.parent, callerSpan, `the HTTP span's parent is the caller's span:\n${why}`);
    assert.equal(hopOut.parent, http.spanID, why);
    assert.equal(hopIn.parent, hopOut.spanID, `the holder's end of the hop is a child of the relaying end:\n${why}`);
    assert.equal(method.parent, hopIn.spanID, why);
    assert.equal(handler.parent, method.spanID, why);

    // Attributes after the conventions (HTTP, RPC, MCP); the session id shown cut short.
    assert.equal(http.tags['http.request.method'], 'POST');
    assert.equal(http.tags['http.response.status_code'], 200);
    assert.equal(hopOut.tags['rpc.system'], 'mcpmesh-relay');
    assert.equal(hopIn.tags['rpc.system'], 'mcpmesh-relay');
    assert.equal(hopOut.tags['mcpmesh.forward.node'], n1.id);
    assert.equal(hopIn.tags['mcpmesh.forward.hops'], 1);
    assert.equal(method.tags['mcp.method.name'], 'tools/call');
    assert.equal(method.tags['gen_ai.tool.name'], 'echo');
    assert.equal(method.tags['gen_ai.operation.name'], 'execute_tool');
    assert.equal(method.tags['jsonrpc.request.id'], '7');
    assert.equal(method.tags['mcp.protocol.version'], '2025-11-25');
    const shown = method.tags['mcp.session.id'];
    assert.ok(shown.endsWith('...') && sid.startsWith(shown.slice(0, -3)) && shown.length < sid.length,
      `mcp.session.id ${shown} is the id ${sid} cut short`);
    for (const s of spans) assert.ok(!JSON.stringify(s.tags).includes(sid), `the whole session id in ${s.operationName}`);
  });

  it('a traceparent in params._meta is the MCP span\'s parent', async () => {
    const [n1] = cluster.nodes;
    const sid = await openSession(n1.url, { name: 'tracing-meta' });
    const httpTrace = hex(16);
    const metaTrace = hex(16);
    const metaSpan = hex(8);
    const res = await callTool(n1.url, sid, 'add', { a: 2, b: 3 }, { traceparent: traceparent(httpTrace, hex(8)) },
      { traceparent: traceparent(metaTrace, metaSpan) });
    assert.equal(res.status, 200, res.body);
    const spans = await traceOf(metaTrace, (s) => s.some((x) => x.operationName === 'execute_tool add'), 'the MCP spans under _meta\'s trace');
    const method = spans.find((s) => s.operationName === 'tools/call add');
    assert.ok(method, describeSpans(spans));
    assert.equal(method.parent, metaSpan, describeSpans(spans));
    // The HTTP span stays in the transport's own trace.
    const transport = await traceOf(httpTrace, (s) => s.some((x) => x.operationName === 'POST /mcp'), 'the HTTP span');
    assert.ok(!transport.some((s) => s.operationName.startsWith('tools/call')), describeSpans(transport));
  });

  it('a caller that does not sample gets no spans; a 4xx is logged with its trace id', async () => {
    const [n1, n2] = cluster.nodes;
    const sid = await openSession(n1.url, { name: 'tracing-unsampled' });
    const unsampled = hex(16);
    const res = await callTool(n2.url, sid, 'echo', { text: 'quiet' }, { traceparent: traceparent(unsampled, hex(8), false) });
    assert.equal(res.status, 200, res.body);
    // A 400 (no session header) under a sampled trace, sent after it: once its spans arrived,
    // any span of the unsampled call (ended before) would have been exported too.
    const refused = hex(16);
    const bad = await fetchAll(n2.url, {
      method: 'POST',
      headers: mcpHeaders(undefined, { traceparent: traceparent(refused, hex(8)) }),
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(bad.status, 400, bad.body);
    const spans = await traceOf(refused, (s) => s.length >= 1, 'the refused request\'s span');
    assert.equal(spans[0].tags['http.response.status_code'], 400);
    for (const node of [n1, n2]) {
      const got = await fetch(`${queryBase}/api/traces/${unsampled}`);
      assert.equal(got.status, 404, `spans of an unsampled trace were exported (${node.id})`);
    }
    await pollUntil(() => cluster.log(n2.id).includes(`trace_id=${refused}`),
      { deadlineMs: 5_000, what: `n2's log line for the 400 with trace_id=${refused}` });
    const line = cluster.log(n2.id).split('\n').find((l) => l.includes(`trace_id=${refused}`));
    assert.match(line, /answered 400 to POST \/mcp from .*Mcp-Session-Id header is required/, line);
  });

  it('/metrics counts the spans exported', async () => {
    for (const node of cluster.nodes) {
      const text = await (await fetch(`${node.base}/metrics`)).text();
      assert.ok(metricValue(text, 'mcpmesh_trace_spans_exported_total') > 0, `${node.id}:\n${text.slice(0, 200)}`);
      assert.equal(metricValue(text, 'mcpmesh_trace_spans_dropped_total', 'reason="queue_full"'), 0);
    }
  });

  it('replication has a span at both ends, and adopting a dead node\'s sessions one of its own', async () => {
    const [n1, n2] = cluster.nodes;
    await openSession(n1.url, { name: 'tracing-replicated' });
    const replicated = await spansWhere((s) => s.operationName === 'mcpmesh.v1.Replication/Replicate' && s.kind === 'server' &&
      s.node === n2.id && s.parent, 'a replication batch n1 -> n2 with its server span');
    const batch = replicated.find((s) => s.kind === 'server' && s.node === n2.id && s.parent);
    const sender = replicated.find((s) => s.spanID === batch.parent);
    assert.ok(sender, `the client span of the batch:\n${describeSpans(replicated)}`);
    assert.equal(sender.node, n1.id);
    assert.equal(sender.kind, 'client');
    assert.equal(sender.tags['mcpmesh.replication.peer'], n2.id);
    assert.equal(batch.tags['mcpmesh.replication.holder'], n1.id);

    await cluster.kill9(n1.id);
    const adopted = await spansWhere((s) => s.operationName === 'mcpmesh.adopt' && s.node === n2.id, 'n2 adopting n1\'s sessions');
    const adopt = adopted.find((s) => s.operationName === 'mcpmesh.adopt');
    assert.equal(adopt.tags['mcpmesh.adopt.holder'], n1.id);
    assert.ok(adopt.tags['mcpmesh.adopt.sessions'] >= 1, JSON.stringify(adopt.tags));
  });
});

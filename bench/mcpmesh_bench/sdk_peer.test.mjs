// mcpmesh-bench against a peer: the official TypeScript SDK v1 reference server
// (bench/reference-server.mjs), which answers every POST as an SSE stream, on loopback.
// Every operation of the mix and a held stream must work there too.
//
// env MCPMESH_BENCH = path to the mcpmesh-bench binary (required)
// Run by tests/run-node-tests.sh --needs @modelcontextprotocol/sdk (the pinned Node 22).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { brief, runBench, startServer } from './bench_helper.mjs';

const referenceServer = fileURLToPath(new URL('../reference-server.mjs', import.meta.url));
let sdk;

before(async () => {
  sdk = await startServer(process.execPath, [referenceServer, '0']);
});

after(async () => {
  await sdk?.stop();
});

describe('mcpmesh-bench against the TypeScript SDK reference server', () => {
  it('closed loop over SSE answers: every operation answered, no error', async () => {
    const r = await runBench(['--url', sdk.url, '--duration', '1.5s', '--warmup', '0.5s',
      '--sessions', '4', '--connections', '2', '--mix', 'tools_call=85,initialize=5,ping=5,notify=5',
      '--sse-streams', '1', '--timeout', '5s']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.report;
    const why = brief(j);
    assert.equal(j.ok, true, why);
    assert.equal(j.sessions.created, 4, why);
    assert.equal(j.sessions.deleted, 4, why);
    for (const op of ['tools_call', 'initialize', 'ping', 'notify']) {
      assert.ok(j.ops[op]?.count > 0, `${op}: ${why}`);
      assert.equal(j.ops[op].ok, j.ops[op].count, `${op}: ${why}`);
    }
    assert.equal(j.errors.socket + j.errors.jsonrpc + j.errors.bad_answer + j.errors.timeout, 0, why);
    assert.equal(j.status.other, 0, why);
    assert.equal(j.sse.opened, 1, why);
    assert.equal(j.sse.ended_early, 0, why);
  });
});

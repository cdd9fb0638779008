// Shared by the mcpmesh-bench process tests: start a server that prints
// `listening on http://HOST:PORT/mcp` on stderr, and run mcpmesh-bench, each with a deadline.
//
// env MCPMESH_BENCH = path to the mcpmesh-bench binary (required)
// Only Node built-ins.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

export const START_DEADLINE_MS = 20_000;

export function benchBinary() {
  const p = process.env.MCPMESH_BENCH;
  if (!p) throw new Error('MCPMESH_BENCH is not set (path to mcpmesh-bench)');
  return p;
}

/** Starts `cmd args` and waits (bounded) for its listening line. Returns { url, proc, stop() }. */
export async function startServer(cmd, args, { env = process.env, deadlineMs = START_DEADLINE_MS } = {}) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stderr = '';
  proc.stdout.resume();
  proc.stderr.setEncoding('utf8');
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready within ${deadlineMs} ms:\n${stderr}`)), deadlineMs);
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on http:\/\/[^\s]+:(\d+)\/mcp/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited early (${code}/${sig}):\n${stderr}`));
    });
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  }).catch((e) => {
    proc.kill('SIGKILL');
    throw e;
  });
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    proc,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Runs mcpmesh-bench with `args`; kills it past `deadlineMs`. `onStderr(text, proc)` sees its
 * stderr as it grows. Resolves { code, signal, stdout, stderr, report } (report: the parsed
 * JSON on stdout, or undefined).
 */
export function runBench(args, { deadlineMs = 60_000, onStderr } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(benchBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (c) => { stdout += c; });
    proc.stderr.on('data', (c) => {
      stderr += c;
      onStderr?.(stderr, proc);
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`mcpmesh-bench ${args.join(' ')}: no exit within ${deadlineMs} ms\n${stderr}`));
    }, deadlineMs);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      let report;
      const lines = stdout.trim().split('\n').filter(Boolean);
      if (lines.length === 1) {
        try { report = JSON.parse(lines[0]); } catch { /* left undefined: the test says so */ }
      }
      resolve({ code, signal, stdout, stderr, report });
    });
  });
}

/** A loopback port nothing listens on (bound, then closed). */
export async function closedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** A compact view of a report for assertion messages. */
export function brief(report) {
  if (!report) return 'no report';
  const { ops, config, ...rest } = report;
  const opsBrief = Object.fromEntries(Object.entries(ops ?? {}).map(([k, v]) => {
    const { histogram_ns: _h, ...o } = v;
    return [k, o];
  }));
  return JSON.stringify({ ...rest, ops: opsBrief });
}

// Shared helpers for the interop tests: start mcpmesh-node (`--app demo`) and
// connect the official TypeScript SDK v1 client over Streamable HTTP or stdio.
//
// env MCPMESH_NODE = path to the mcpmesh-node binary (required unless MCPMESH_URL is set)
//     MCPMESH_URL  = when set, the HTTP fixtures use this MCP endpoint (e.g. a cluster behind
//                    nginx, see tests/cluster/interop_cluster.mjs) instead of starting a node,
//                    and only the HTTP cases run (stdio needs a process of its own)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';

import { withDeadline } from '../lib/util.mjs';

export { withDeadline };

/** The MCP endpoint under test when it is not a node started here (see MCPMESH_URL). */
export const EXTERNAL_URL = process.env.MCPMESH_URL || undefined;
// 'sse' is the deprecated HTTP+SSE transport of 2024-11-05 (GET /sse, POST /messages).
export const TRANSPORTS = EXTERNAL_URL ? ['http'] : ['http', 'sse', 'stdio'];
export const START_DEADLINE_MS = 20_000;
export const DEFAULT_WAIT_MS = 5_000;

export function nodeBinary() {
  const p = process.env.MCPMESH_NODE;
  if (!p) throw new Error('MCPMESH_NODE is not set (path to mcpmesh-node)');
  return p;
}

/**
 * Start `mcpmesh-node --http 127.0.0.1:0 --app <app>` and wait (bounded) for the
 * stderr line `listening on http://HOST:PORT/mcp`.
 * Returns { url, port, proc, stderr(), stop() }.
 */
export async function startHttpNode({ app = 'demo', extraArgs = [], deadlineMs = START_DEADLINE_MS } = {}) {
  const proc = spawn(nodeBinary(), ['--http', '127.0.0.1:0', '--app', app, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stdout.resume(); // drain
  proc.stderr.setEncoding('utf8');
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`mcpmesh-node not ready within ${deadlineMs} ms; stderr:\n${stderr}`));
    }, deadlineMs);
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on (http:\/\/[^\s]+:(\d+)\/mcp)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve({ port: Number(m[2]) });
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`mcpmesh-node exited early (code ${code}, signal ${signal}); stderr:\n${stderr}`));
    });
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  let port;
  try {
    ({ port } = await ready);
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  const url = `http://127.0.0.1:${port}/mcp`;
  return {
    url,
    port,
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

/** Create an SDK client with the given capabilities. */
export function newClient(capabilities = {}) {
  return new Client({ name: 'mcpmesh-interop-test', version: '1.0.0' }, { capabilities });
}

/**
 * A per-transport fixture. `connect()` returns a connected SDK Client.
 * http : one mcpmesh-node process shared by all clients of the fixture
 *        (so two clients = two sessions of the same node); with MCPMESH_URL, that endpoint
 *        (behind nginx, two clients are usually two sessions of different nodes).
 * sse  : as http, over the legacy HTTP+SSE transport (GET /sse, POST /messages).
 * stdio: each client spawns its own `mcpmesh-node --stdio --app demo`.
 */
export async function createFixture(kind, { app = 'demo' } = {}) {
  const clients = [];
  let server = null;
  if (kind === 'http' || kind === 'sse') {
    server = EXTERNAL_URL ? { url: EXTERNAL_URL } : await startHttpNode({ app });
  } else if (kind !== 'stdio') throw new Error(`unknown transport ${kind}`);

  async function connect({ capabilities = {}, setup } = {}) {
    const client = newClient(capabilities);
    if (setup) setup(client); // register handlers before initialize
    let transport;
    if (kind === 'http') {
      transport = new StreamableHTTPClientTransport(new URL(server.url));
    } else if (kind === 'sse') {
      transport = new SSEClientTransport(new URL('/sse', server.url));
    } else {
      transport = new StdioClientTransport({
        command: nodeBinary(),
        args: ['--stdio', '--app', app],
        env: { ...process.env },
        stderr: 'pipe',
      });
      // keep the child's stderr drained (and available for debugging)
      transport.stderr?.on('data', () => {});
    }
    await withDeadline(client.connect(transport), START_DEADLINE_MS, `connect over ${kind}`);
    clients.push(client);
    return client;
  }

  async function close() {
    for (const c of clients.splice(0)) {
      await withDeadline(c.close(), 10_000, 'client.close').catch(() => {});
    }
    if (server?.stop) await server.stop();
  }

  return { kind, server, connect, close };
}

/**
 * Resolve when `predicate()` is truthy; event-driven via `notify()` (call it from
 * notification handlers), with a hard deadline. Returns the predicate's value.
 */
export function makeWaiter() {
  const waiters = new Set();
  return {
    notify() {
      for (const w of [...waiters]) w.check();
    },
    until(predicate, ms = DEFAULT_WAIT_MS, what = 'condition') {
      return new Promise((resolve, reject) => {
        const w = {
          check() {
            let v;
            try {
              v = predicate();
            } catch (e) {
              waiters.delete(w);
              clearTimeout(w.timer);
              reject(e);
              return;
            }
            if (v) {
              waiters.delete(w);
              clearTimeout(w.timer);
              resolve(v);
            }
          },
        };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
        }, ms);
        waiters.add(w);
        w.check();
      });
    },
  };
}

/** Text of the first text content item of a tool result. */
export function textOf(result) {
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`no text content in ${JSON.stringify(result)}`);
  return item.text;
}

/** A name unique to this process/test run, for notes shared through one node. */
export function uniqueName(prefix) {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

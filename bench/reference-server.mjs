#!/usr/bin/env node
// Reference MCP server for the benchmark, built on the official TypeScript SDK v1
// (McpServer + StreamableHTTPServerTransport, stateful sessions, plain node:http).
// Serves one tool, `echo` {text: string} -> content [{type:"text", text}], like
// `mcpmesh-node --app demo`.
//
// usage: node bench/reference-server.mjs <port>      (0 = pick a free port)
// env:   REF_JSON_RESPONSE=1  answer POSTs with application/json instead of SSE
// Prints `listening on http://127.0.0.1:PORT/mcp` to stderr when ready.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const port = Number(process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: reference-server.mjs <port>');
  process.exit(2);
}
const jsonResponse = process.env.REF_JSON_RESPONSE === '1';

function createServer() {
  const server = new McpServer({ name: 'sdk-reference', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.registerTool(
    'echo',
    { description: 'Echo the text back', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  return server;
}

const transports = new Map(); // session id -> transport

function sendJsonError(res, status, code, message) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const httpServer = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== '/mcp') return sendJsonError(res, 404, -32000, 'Not found');
    const sid = req.headers['mcp-session-id'];
    if (req.method === 'POST') {
      let body;
      try {
        body = JSON.parse(await readBody(req));
      } catch {
        return sendJsonError(res, 400, -32700, 'Parse error');
      }
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport) {
        if (sid || !isInitializeRequest(body)) {
          return sendJsonError(res, 400, -32000, 'Bad Request: no valid session ID provided');
        }
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: jsonResponse,
          onsessioninitialized: (id) => transports.set(id, transport),
        });
        transport.onclose = () => {
          if (transport.sessionId) transports.delete(transport.sessionId);
        };
        await createServer().connect(transport);
      }
      await transport.handleRequest(req, res, body);
      return;
    }
    if (req.method === 'GET' || req.method === 'DELETE') {
      const transport = sid ? transports.get(sid) : undefined;
      if (!transport) return sendJsonError(res, 400, -32000, 'Bad Request: no valid session ID provided');
      await transport.handleRequest(req, res);
      return;
    }
    res.writeHead(405, { Allow: 'GET, POST, DELETE' }).end();
  } catch (err) {
    console.error('reference-server error:', err);
    if (!res.headersSent) sendJsonError(res, 500, -32603, 'Internal server error');
  }
});
httpServer.keepAliveTimeout = 60_000;

httpServer.listen(port, '127.0.0.1', () => {
  const { port: actual } = httpServer.address();
  console.error(`listening on http://127.0.0.1:${actual}/mcp`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    httpServer.closeAllConnections?.();
    httpServer.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2_000).unref();
  });
}

-- wrk script: POST a tools/call `echo` request on an existing MCP session.
-- usage: wrk ... -s bench/tools_call.lua <url> -- <mcp-session-id | stateless> [protocol-version]
--
-- The request is static (no request() or response() function), so wrk sends it without
-- entering Lua per request and the load generator costs as little CPU as it can. wrk counts
-- non-2xx answers itself ("Non-2xx or 3xx responses"); bench/tools_call_check.lua checks
-- the answers' bodies in a separate pass.
function init(args)
  local session = args[1]
  if session == nil or session == "" then
    error("tools_call.lua: pass the Mcp-Session-Id after --")
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  if session == "stateless" then
    -- 2026-07-28: no session; the context rides in _meta and the method and name in headers.
    wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
      .. '"arguments":{"text":"bench-payload"},"_meta":{'
      .. '"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
      .. '"io.modelcontextprotocol/clientCapabilities":{}}}}'
    wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
    wrk.headers["Mcp-Method"] = "tools/call"
    wrk.headers["Mcp-Name"] = "echo"
    return
  end
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bench-payload"}}}'
  wrk.headers["Mcp-Session-Id"] = session
  wrk.headers["MCP-Protocol-Version"] = args[2] or "2025-11-25"
end

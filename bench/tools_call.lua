-- wrk script: POST a tools/call `echo` request on an existing MCP session.
-- usage: wrk ... -s bench/tools_call.lua <url> -- <mcp-session-id> [protocol-version]
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
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bench-payload"}}}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["Mcp-Session-Id"] = session
  wrk.headers["MCP-Protocol-Version"] = args[2] or "2025-11-25"
end

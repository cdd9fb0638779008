-- wrk script: the request of bench/tools_call.lua, with every answer checked.
-- usage: wrk ... -s bench/tools_call_check.lua <url> -- <mcp-session-id | stateless> [protocol-version]
-- Counts non-200 responses and 200 responses that are not the echo's successful result. Entering Lua
-- per request and per response costs the load generator CPU, so run.sh uses it for a short
-- checking pass on each server and measures with the static script.
local threads = {}
local PAYLOAD = "bench-payload"

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local session = args[1]
  local version = args[2] or "2025-11-25"
  if session == nil or session == "" then
    error("tools_call_check.lua: pass the Mcp-Session-Id after --")
  end
  non200 = 0
  badbody = 0
  local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
    .. PAYLOAD .. '"}}}'
  local headers = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["Mcp-Session-Id"] = session,
    ["MCP-Protocol-Version"] = version,
  }
  if session == "stateless" then
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
      .. PAYLOAD .. '"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
      .. '"io.modelcontextprotocol/clientCapabilities":{}}}}'
    headers = {
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json, text/event-stream",
      ["MCP-Protocol-Version"] = "2026-07-28",
      ["Mcp-Method"] = "tools/call",
      ["Mcp-Name"] = "echo",
    }
  end
  req = wrk.format("POST", nil, headers, body)
end

function request()
  return req
end

-- The echoed text as the result's text content (the request carries PAYLOAD too, so a bare
-- substring match would also pass an error that quotes the arguments).
local ECHOED = '"text":"' .. PAYLOAD .. '"'

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif body == nil or not string.find(body, ECHOED, 1, true)
      or string.find(body, '"error"', 1, true) or string.find(body, '"isError":true', 1, true) then
    badbody = badbody + 1
  end
end

function done(summary, latency, requests)
  local n, b = 0, 0
  for _, t in ipairs(threads) do
    n = n + (t:get("non200") or 0)
    b = b + (t:get("badbody") or 0)
  end
  io.write(string.format("mcp-non200: %d\nmcp-badbody: %d\n", n, b))
end

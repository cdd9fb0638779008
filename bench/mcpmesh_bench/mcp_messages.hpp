#pragma once
/// \file
/// The MCP side of the load, away from the sockets: the HTTP/1.1 requests the bench sends
/// (written as bytes, built from fragments prepared once) and the verdict on each answer
/// (status, JSON or SSE body, the JSON-RPC response with the request's id).
///
/// Thread-safety: McpRequests is immutable after construction and shared by every thread;
/// the functions are pure.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/mcpmesh_bench/options.hpp"

namespace mcpmesh::bench {

/// One HTTP answer as the connection read it.
struct HttpAnswer {
  unsigned status = 0;
  bool event_stream = false;  ///< Content-Type text/event-stream
  std::string content_type;
  std::string session_id;  ///< Mcp-Session-Id, when sent
  std::optional<std::uint32_t> retry_after_s;
  std::string body;

  void clear();
};

/// How an operation (or one of its exchanges) ended. kCancelled: the run was stopped while it
/// was in flight (not counted).
enum class Outcome : std::uint8_t {
  kOk,
  kHttpStatus,    ///< a status other than the one expected
  kJsonRpcError,  ///< 200 with a JSON-RPC error response
  kToolError,     ///< tools/call answered with `isError: true`
  kBadAnswer,     ///< unreadable body, or no response with the request's id
  kTimeout,       ///< --timeout passed
  kSocketError,   ///< connect, send or receive failed
  kCancelled,
};

struct Verdict {
  Outcome outcome = Outcome::kOk;
  std::string detail;            ///< what was wrong (empty when kOk)
  std::string protocol_version;  ///< an initialize result's protocolVersion
};

/// Judges the answer to a request with id `id`: 200 and a JSON-RPC response with that id, in
/// a JSON body or as one event of an SSE body. `tool_call`: a result with `isError: true` is
/// a kToolError. `want_version`: an initialize answer, whose protocolVersion is kept.
[[nodiscard]] Verdict judge_response(const HttpAnswer& answer, std::int64_t id, bool tool_call,
                                     bool want_version = false);
/// Judges the answer to a notification: 202.
[[nodiscard]] Verdict judge_accepted(const HttpAnswer& answer);
/// Judges the answer to a DELETE: any 2xx.
[[nodiscard]] Verdict judge_deleted(const HttpAnswer& answer);

/// The requests of a run, as HTTP/1.1 bytes appended to a caller's buffer (which it reuses:
/// no allocation once it has grown).
class McpRequests {
 public:
  explicit McpRequests(const BenchOptions& options);

  void initialize(std::string& out, std::int64_t id) const;
  void initialized(std::string& out, std::string_view session, std::string_view version) const;
  void tools_call(std::string& out, std::string_view session, std::string_view version,
                  std::int64_t id) const;
  void ping(std::string& out, std::string_view session, std::string_view version,
            std::int64_t id) const;
  void notify(std::string& out, std::string_view session, std::string_view version) const;
  void remove(std::string& out, std::string_view session, std::string_view version) const;
  void open_stream(std::string& out, std::string_view session, std::string_view version) const;

 private:
  void post(std::string& out, std::string_view session, std::string_view version,
            std::string_view body_head, std::int64_t id, std::string_view body_tail) const;
  void head(std::string& out, std::string_view request_line, std::string_view session,
            std::string_view version) const;

  std::string request_line_post_;
  std::string request_line_get_;
  std::string request_line_delete_;
  std::string common_headers_;  ///< Host and the extra --header lines
  std::string initialize_params_;
  std::string tools_call_tail_;
  std::string notify_body_;
};

}  // namespace mcpmesh::bench

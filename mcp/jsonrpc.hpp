#pragma once
// JSON-RPC 2.0 codec on Boost.JSON: parsing with limits, message classification, builders.
// Thread-safety: free functions, no shared state; safe from any thread.

#include "mcp/trace.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mcpmesh::mcp {

namespace json = boost::json;

/// Standard JSON-RPC and MCP error codes.
enum class ErrorCode : int {
  kParseError = -32700,
  kInvalidRequest = -32600,
  kMethodNotFound = -32601,
  kInvalidParams = -32602,
  kInternalError = -32603,
  /// MCP: resource not found (resources/read of an unknown URI).
  kResourceNotFound = -32002,
  /// Server→client request that the client did not answer within its deadline.
  kRequestTimeout = -32001,
  /// Server overloaded or a limit was hit (see metrics); retry later.
  kServerBusy = -32000,
  /// 2026-07-28: the HTTP headers disagree with the body, or a required one is missing.
  kHeaderMismatch = -32020,
  /// 2026-07-28: serving the request needs a capability the client did not declare.
  kMissingClientCapability = -32021,
  /// 2026-07-28: the request's protocol version is not one this node speaks.
  kUnsupportedProtocolVersion = -32022,
};

/// An error that becomes a JSON-RPC error object.
struct RpcError {
  int code = static_cast<int>(ErrorCode::kInternalError);
  std::string message;
  json::value data = nullptr;

  RpcError() = default;
  RpcError(ErrorCode c, std::string msg, json::value d = nullptr)
      : code(static_cast<int>(c)), message(std::move(msg)), data(std::move(d)) {}
  RpcError(int c, std::string msg, json::value d = nullptr)
      : code(c), message(std::move(msg)), data(std::move(d)) {}
};

/// One decoded JSON-RPC message.
struct Message {
  enum class Kind { kRequest, kNotification, kResponse, kErrorResponse };
  Kind kind = Kind::kRequest;
  json::value id = nullptr;  // string or integer; null for notifications
  std::string method;
  json::object params;  // empty when absent
  json::value result = nullptr;
  RpcError error;
  /// The transport's span (the HTTP request) the message arrived in: the parent of its MCP
  /// span unless `params._meta` names one. Invalid when not traced.
  TraceContext trace;

  [[nodiscard]] bool is_request() const { return kind == Kind::kRequest; }
  [[nodiscard]] bool is_notification() const { return kind == Kind::kNotification; }
  [[nodiscard]] bool is_response() const {
    return kind == Kind::kResponse || kind == Kind::kErrorResponse;
  }
};

/// Limits applied while parsing untrusted input.
struct ParseLimits {
  std::size_t max_depth = 64;
};

/// The outcome of parsing one transport frame (an HTTP body or a stdio line).
struct ParsedFrame {
  bool is_batch = false;
  /// Valid messages, in order.
  std::vector<Message> messages;
  /// Errors for entries that could not be decoded, each with the id it had (or null).
  std::vector<std::pair<json::value, RpcError>> errors;
  /// Set when the frame as a whole was unusable (bad JSON, too deep, empty batch).
  std::optional<RpcError> frame_error;
};

/// Parses a frame: one message or a batch array. Never throws.
[[nodiscard]] ParsedFrame parse_frame(std::string_view text, const ParseLimits& limits);

/// Decodes one JSON value into a message, or an error carrying the id when one was readable.
[[nodiscard]] std::variant<Message, std::pair<json::value, RpcError>> decode_message(json::value v);

/// True if `id` is a valid JSON-RPC id for MCP (string or integer; MCP forbids null).
[[nodiscard]] bool is_valid_id(const json::value& id);

// Builders. Each returns the serialized message, ready to share between writers.
//
// JSON has no infinity or NaN: Boost.JSON writes such a double as a bare `Infinity` or `NaN`,
// which no client can parse (and its parser reads 1e400 as infinity, so client input can carry
// one). The builders check the text they write and never return it with such a number:
// make_result answers with an internal error instead, make_error leaves `data` out, and
// make_notification / make_request return null.
using Payload = std::shared_ptr<const std::string>;

/// `non_finite`, when given, is set when `result` held a non-finite number (and the answer is
/// the internal error), for the caller's counter.
[[nodiscard]] Payload make_result(const json::value& id, json::value result,
                                  bool* non_finite = nullptr);
[[nodiscard]] Payload make_error(const json::value& id, const RpcError& error);
/// Null when `params` holds a non-finite number.
[[nodiscard]] Payload make_notification(std::string_view method, json::object params);
/// Null when `params` holds a non-finite number.
[[nodiscard]] Payload make_request(const json::value& id, std::string_view method,
                                   json::object params);

/// Whether `text`, JSON as Boost.JSON serializes it, holds a non-finite number (`Infinity`,
/// `-Infinity` or `NaN` outside a string). Costs a memchr pass for 'I' and one for 'N': outside
/// strings the serializer writes no other capital I or N.
[[nodiscard]] bool has_non_finite_number(std::string_view text);
/// Whether `v` holds a non-finite double anywhere (a walk of the whole tree: for input checks
/// off the hot path).
[[nodiscard]] bool holds_non_finite_number(const json::value& v);
[[nodiscard]] json::object error_object(const RpcError& error);
/// The inverse: sets in `error` the code (an integer), message (a string) and data that the
/// JSON-RPC error object `o` has, and leaves the rest as it was.
void read_error_object(const json::object& o, RpcError& error);

/// A JSON number that prints as an integer when `d` is integral ("3", not "3E0").
[[nodiscard]] json::value json_number(double d);

/// The object member `key` of `o`, or null when absent or not an object.
[[nodiscard]] const json::object* get_object(const json::object& o, std::string_view key);
/// The string member `key` of `o`, or nullopt when absent or not a string.
[[nodiscard]] std::optional<std::string_view> get_string(const json::object& o,
                                                         std::string_view key);

/// The `cursor` of a paginated request: the decimal number this server gave out; 0 without one
/// (absent or null), nullopt when it is anything else.
[[nodiscard]] std::optional<std::uint64_t> parse_cursor(const json::object& params);

/// Compact key for an id usable in maps: "s:<string>" or "n:<integer>".
[[nodiscard]] std::string id_key(const json::value& id);

}  // namespace mcpmesh::mcp

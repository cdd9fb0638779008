#pragma once
/// \file
/// Requests of the stateless era (2026-07-28): no initialize and no session; each request
/// carries its protocol version, client capabilities, client info and log level in
/// `params._meta`, and over HTTP mirrors its method, name and chosen arguments in headers that
/// must agree with the body. This file checks such a request before it is served, and gives the
/// router the conversation it belongs to: itself alone.
///
/// Thread-safety: the free functions are pure; a `StatelessConversation` is used on its
/// executor only (as every Conversation), but `cancel` may be called from any thread.

#include "mcp/metrics.hpp"
#include "mcp/router.hpp"

#include <optional>
#include <string_view>
#include <vector>

namespace mcpmesh::mcp {

inline constexpr std::string_view kMetaProtocolVersion = "io.modelcontextprotocol/protocolVersion";
inline constexpr std::string_view kMetaClientCapabilities =
    "io.modelcontextprotocol/clientCapabilities";
inline constexpr std::string_view kMetaClientInfo = "io.modelcontextprotocol/clientInfo";
inline constexpr std::string_view kMetaLogLevel = "io.modelcontextprotocol/logLevel";
inline constexpr std::string_view kMetaServerInfo = "io.modelcontextprotocol/serverInfo";
inline constexpr std::string_view kMetaSubscriptionId = "io.modelcontextprotocol/subscriptionId";

/// The request metadata a transport mirrors into headers (HTTP), as the client sent them;
/// nullopt when absent. A transport without headers (stdio) passes none and is not checked.
struct MirroredHeaders {
  bool present = false;  // false: the transport has no headers; skip the header checks
  std::optional<std::string_view> protocol_version;  // MCP-Protocol-Version
  std::optional<std::string_view> method;            // Mcp-Method
  std::optional<std::string_view> name;              // Mcp-Name
  /// Mcp-Param-{Name} headers: the name part (any case) and the value.
  std::vector<std::pair<std::string_view, std::string_view>> params;
};

/// A request refused before it is served: its error, and the HTTP status that goes with it.
struct Rejection {
  RpcError error;
  unsigned http_status = 400;
};

/// Whether `m` (no session, not initialize) is to be served as a stateless request: it names a
/// stateless-era version in its header or in `_meta`, or a version this node does not speak
/// at all (answered with the unsupported-version error).
[[nodiscard]] bool is_stateless_request(const Message& m, const MirroredHeaders& headers);

/// Checks a stateless request before it is served, in the order the revision gives: the
/// version header is there, `_meta` carries the required keys with the right types, the header
/// and `_meta` name the same version, this node speaks it, and the mirrored headers agree with
/// the body (`catalog` gives the tools' x-mcp-header annotations). Returns the rejection, or
/// nullopt when the request may be served.
[[nodiscard]] std::optional<Rejection> check_stateless_request(const Message& m,
                                                               const MirroredHeaders& headers,
                                                               const App::Catalog& catalog);

/// The client state a stateless request declares in its (checked) `_meta`.
[[nodiscard]] std::shared_ptr<const ClientState> client_from_meta(const json::object& meta);

/// The params field `method` mirrors into the Mcp-Name header (`name`, `uri` or `taskId`), or
/// "" when it mirrors none.
[[nodiscard]] std::string_view mirrored_name_field(std::string_view method);

/// The task a stateless request names in its Mcp-Method and Mcp-Name headers (tasks/get,
/// tasks/update, tasks/cancel carry the task id): in a cluster, where the request is served (a
/// task lives on the node that created it, and its id names that node as a session id does).
[[nodiscard]] std::optional<std::string_view> task_named(std::string_view method,
                                                         std::string_view name);

/// The HTTP status for the answer `payload` to a stateless request: 404 for an unknown method,
/// 400 for the errors the revision ties to it, 200 otherwise.
[[nodiscard]] unsigned stateless_http_status(const Payload& payload);

/// Decodes a mirrored header value: `=?base64?...?=` is Base64 of UTF-8; anything else is the
/// value itself, without surrounding spaces and tabs. nullopt when it is malformed.
[[nodiscard]] std::optional<std::string> decode_header_value(std::string_view value);

/// A stateless request's conversation: the request alone. Its client state comes from `_meta`;
/// there is no log level to set, nothing to subscribe to (subscriptions/listen instead), and no
/// client request to make outside multi round-trip input.
class StatelessConversation final : public Conversation,
                                    public std::enable_shared_from_this<StatelessConversation> {
 public:
  StatelessConversation(asio::any_io_executor executor, std::shared_ptr<const ClientState> client,
                        std::optional<LogLevel> log_level, Metrics* metrics = nullptr)
      : executor_(std::move(executor)),
        client_(std::move(client)),
        log_level_(log_level),
        metrics_(metrics) {}

  [[nodiscard]] const asio::any_io_executor& executor() const override { return executor_; }
  [[nodiscard]] std::shared_ptr<const ClientState> client() const override { return client_; }
  [[nodiscard]] std::string_view session_id() const override { return {}; }
  [[nodiscard]] std::optional<LogLevel> log_level() const override { return log_level_; }
  [[nodiscard]] bool stateless() const override { return true; }
  Result<json::value> set_log_level(LogLevel) override;
  void subscribe(std::string_view uri, std::function<void(Result<json::value>)> done) override;
  Result<json::value> unsubscribe(std::string_view uri) override;
  [[nodiscard]] bool resumable_streams() const override { return false; }
  asio::awaitable<Result<json::object>> request_client(
      std::string method, json::object params, std::chrono::milliseconds deadline,
      const std::shared_ptr<ClientChannel>& via) override;

  /// Any thread: the client went away (closed the response stream): every request of this
  /// conversation stops, and nothing more is sent for it.
  void cancel();

 private:
  asio::any_io_executor executor_;
  std::shared_ptr<const ClientState> client_;
  std::optional<LogLevel> log_level_;
  Metrics* metrics_;  // cancelled_total
};

}  // namespace mcpmesh::mcp

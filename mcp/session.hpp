#pragma once
/// \file
/// One session-era MCP session: its replicable state (`SessionRecord`) and its runtime (strand,
/// handlers in flight, pending server→client requests, the channel or streams back to the
/// client). Method routing is the `Router`'s; the session answers initialize, keeps the
/// lifecycle and serves as the router's `Conversation`.
///
/// Threading: all session state lives on the session's strand. Transports call the thread-safe
/// entry points (`post_frame`, `post_notification`, `close`, `abort_inflight`, the readers
/// marked "any thread") from their own executors; answers come back through `ClientChannel`.

#include "mcp/router.hpp"
#include "mcp/session_record.hpp"
#include "mcp/session_streams.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

namespace mcpmesh::mcp {

class Server;

class Session final : public Conversation, public std::enable_shared_from_this<Session> {
 public:
  /// `streams`, when set, is `standalone` itself: the transport keeps resumable streams for
  /// this session (Streamable HTTP), and the session's standalone events are replicable.
  Session(Server& server, SessionRecord record, asio::any_io_executor strand,
          std::shared_ptr<ClientChannel> standalone, SessionStreams* streams);
  ~Session() override;

  /// Any thread (the id never changes).
  [[nodiscard]] const std::string& id() const { return record_.id; }
  [[nodiscard]] const asio::any_io_executor& executor() const override { return strand_; }
  /// The transport's channel for messages unrelated to a request (GET stream, stdout).
  [[nodiscard]] const std::shared_ptr<ClientChannel>& standalone() const { return standalone_; }
  /// Any thread. The session's resumable streams, or null (stdio, tests).
  [[nodiscard]] SessionStreams* streams() const { return streams_; }

  /// Any thread. Handles the messages of one frame, in order; requests answer on `reply`.
  void post_frame(std::vector<Message> messages, std::shared_ptr<ClientChannel> reply);
  /// Any thread. Sends a notification unrelated to a request (dropped before initialize).
  void post_notification(Payload message);
  /// Any thread. Cancels handlers, fails pending client requests, drops subscriptions.
  void close();
  /// Any thread. Answers every request still being handled with `error` and cancels its
  /// handler (a node that stops answers what it owes).
  void abort_inflight(RpcError error);

  /// Any thread: the negotiated version, empty before a successful initialize.
  [[nodiscard]] std::string_view protocol_version() const;
  /// Any thread: whether this session's revision accepts JSON-RPC batches.
  [[nodiscard]] bool allows_batches() const;
  /// Any thread: whether streams of this session start with a priming event id, so that a
  /// client can resume them (2025-11-25 and later).
  [[nodiscard]] bool resumable_streams() const override;
  [[nodiscard]] bool closed() const { return closed_.load(std::memory_order_acquire); }
  [[nodiscard]] std::chrono::steady_clock::time_point last_activity() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_activity_.load(std::memory_order_relaxed)));
  }
  void touch();
  /// Any thread: whether the client completed initialization (notifications/initialized, or
  /// any request after initialize). Until then the session expires after init_timeout.
  [[nodiscard]] bool established() const { return established_.load(std::memory_order_relaxed); }
  /// Any thread. A pinned session never expires for idleness (stdio: the process is the session).
  void pin() { pinned_.store(true, std::memory_order_relaxed); }
  [[nodiscard]] bool pinned() const { return pinned_.load(std::memory_order_relaxed); }

  /// What the transport reserved for this session (its client's share of sessions). Set
  /// before the session is registered; the server drops it when the session leaves the node.
  void set_admission(std::shared_ptr<void> hold) { admission_ = std::move(hold); }
  void drop_admission() { admission_.reset(); }

  /// Strand only: a copy of the replicable state.
  [[nodiscard]] SessionRecord record() const { return record_; }

  // Conversation (strand only).
  [[nodiscard]] std::shared_ptr<const ClientState> client() const override {
    return record_.client;
  }
  [[nodiscard]] std::string_view session_id() const override { return record_.id; }
  [[nodiscard]] std::optional<LogLevel> log_level() const override { return record_.log_level; }
  Result<json::value> set_log_level(LogLevel level) override;
  void subscribe(std::string_view uri, std::function<void(Result<json::value>)> done) override;
  Result<json::value> unsubscribe(std::string_view uri) override;
  asio::awaitable<Result<json::object>> request_client(
      std::string method, json::object params, std::chrono::milliseconds deadline,
      const std::shared_ptr<ClientChannel>& via) override;
  void notify_client(Payload message) override { post_notification(std::move(message)); }

 private:
  using Reply = std::shared_ptr<ClientChannel>;

  void handle(Message m, const Reply& reply);
  void handle_notification(const Message& m);
  void handle_response(Message m);
  void handle_request(Message m, const Reply& reply);
  Result<json::value> handle_initialize(const Message& m);
  void do_close();
  /// The replicable state changed: tell the server's observer (replication).
  void changed();
  void set_version_index();

  Server& server_;
  asio::any_io_executor strand_;
  std::shared_ptr<ClientChannel> standalone_;
  SessionStreams* streams_;
  std::shared_ptr<void> admission_;  // set before registration, dropped once by its remover

  // Strand only.
  SessionRecord record_;
  bool closing_ = false;
  struct PendingClientRequest;
  std::unordered_map<std::string, std::shared_ptr<PendingClientRequest>> pending_;

  // Readable from any thread.
  std::atomic<int> version_index_{-1};
  std::atomic<bool> closed_{false};
  std::atomic<bool> pinned_{false};
  std::atomic<bool> established_{false};
  std::atomic<std::chrono::steady_clock::rep> last_activity_;
};

}  // namespace mcpmesh::mcp

#pragma once
/// \file
/// The relaying side of forwarding: a `transport::SessionTarget` per remote holder. Exchanges to
/// one holder travel on one relay link to its HTTP port (relay_link.hpp), opened on first use
/// and authenticated once: each exchange is a frame with an id, the frames queued in one I/O
/// turn or while a write is in flight go out together, and the answer's chunks come back the
/// same way and are pushed to each exchange's relay queue.
///
/// Every exchange has a deadline; none is retried (it may have run); dropping the relay handle
/// cancels it (the client went away), which the holder sees as its client going away; a link
/// that breaks fails its exchanges at once (the holder died), and the next exchange opens a new
/// one.
///
/// Thread-safety: every member may be called from any thread.

#include "cluster/forward/relay_link.hpp"
#include "transport/session_target.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace mcpmesh::cluster {

struct ForwardClientConfig {
  std::string self_id;
  /// Deadline of one relayed exchange (an SSE stream ends there; the client resumes it).
  std::chrono::milliseconds timeout{3600000};
  /// Exchanges in flight on one stream; more are refused (503) and counted.
  std::size_t max_exchanges = 65536;
  /// Largest batch of exchanges sent in one frame.
  std::size_t max_batch_bytes = 1024 * 1024;
  /// Heartbeats, silence and the largest answer frame accepted.
  LinkSettings link;
  /// Links kept at once (one per holder); past it, broken ones are forgotten.
  std::size_t max_links = 1024;
};

class RelayLink;

class ForwardClient {
 public:
  /// `executor`: where exchange deadlines are checked (once a second), and where links live
  /// that are opened from a thread that runs no I/O context. `tls`: the cluster's certificates
  /// (links use TLS with them), or none.
  ForwardClient(ClusterAuth& auth, const std::optional<TlsFiles>& tls,
                boost::asio::any_io_executor executor, ForwardClientConfig config);
  ~ForwardClient();

  /// The target for sessions held by `node`, whose HTTP port is at `http_address`.
  [[nodiscard]] std::shared_ptr<transport::SessionTarget> target(const std::string& node,
                                                                 const std::string& http_address);
  /// Forgets the link to `http_address` (the peer restarted); its exchanges fail.
  void reset(const std::string& http_address);

  [[nodiscard]] std::uint64_t calls() const;
  [[nodiscard]] std::uint64_t failures() const;
  /// Frames of exchanges sent (calls / batches = exchanges per frame).
  [[nodiscard]] std::uint64_t batches() const;
  /// Links opened.
  [[nodiscard]] std::uint64_t streams() const;

  /// What the links share with the client; outlives it while links still run.
  struct Shared;

 private:
  friend class RemoteSession;
  std::shared_ptr<RelayLink> link(const std::string& http_address);
  void sweep();

  std::shared_ptr<Shared> shared_;
  boost::asio::any_io_executor executor_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<RelayLink>> links_;  // by address; guarded by mutex_
  boost::asio::steady_timer sweeper_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mcpmesh::cluster

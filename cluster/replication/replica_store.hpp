#pragma once
/// \file
/// The replica side of session replication: copies of other nodes' sessions (records and their
/// standalone events), kept per holder and applied batch by batch in order, ready to be
/// continued here (`take`) when the holder dies or hands them over. Every batch is untrusted
/// input: records are parsed and checked, sizes and counts are bounded, a batch out of order
/// asks for a full sync and changes nothing; refusals are counted.
///
/// Thread-safety: every member may be called from any thread (one mutex, held for one batch).

#include "mcp/session_record.hpp"
#include "mcp/session_streams.hpp"
#include "proto/mesh.pb.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mcpmesh::cluster {

struct ReplicaLimits {
  std::size_t max_sessions_per_holder = 100000;
  std::size_t max_sessions = 400000;  // over every holder
  std::size_t max_events = 256;       // per session, oldest dropped
  std::size_t max_event_bytes = 4 * 1024 * 1024;
  std::size_t max_holders = 64;
};

class ReplicaStore {
 public:
  explicit ReplicaStore(ReplicaLimits limits) : limits_(limits) {}

  struct Outcome {
    bool applied = false;
    bool need_full = false;
    std::uint64_t held = 0;
    std::string refused;  // why, when the batch was refused as malformed
  };
  /// Applies one batch from `batch.holder()` (already authenticated; the caller checked that
  /// the holder is a live member).
  Outcome apply(const ::mcpmesh::v1::ReplicationBatch& batch);

  /// A session as continued elsewhere: its record and its replicated standalone events.
  struct Copy {
    mcp::SessionRecord record;
    std::vector<mcp::SessionStreams::StoredEvent> events;
  };
  /// Removes and returns every copy held for `holder`, and the epoch they were replicated
  /// under (0 when nothing was held).
  std::vector<Copy> take(const std::string& holder, std::uint64_t* epoch = nullptr);
  /// Drops the copies of `holder` (its heir is another node, or it no longer lists this one).
  void drop(const std::string& holder);
  /// The epoch `holder`'s copies were replicated under, or nullopt when none are held.
  [[nodiscard]] std::optional<std::uint64_t> epoch_of(const std::string& holder) const;

  [[nodiscard]] bool holds(const std::string& holder) const;
  [[nodiscard]] std::vector<std::string> holders() const;
  [[nodiscard]] std::size_t session_count() const;
  [[nodiscard]] std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  struct Held {
    mcp::SessionRecord record;
    std::deque<std::pair<std::uint64_t, std::string>> events;
  };
  struct HolderCopies {
    std::uint64_t epoch = 0;
    std::uint64_t next_seq = 1;
    bool synced = false;  // a full sync arrived since the store learned of this holder
    std::unordered_map<std::string, Held> sessions;
  };

  ReplicaLimits limits_;
  mutable std::mutex mutex_;
  std::map<std::string, HolderCopies> holders_;  // guarded by mutex_
  std::size_t total_ = 0;                        // guarded by mutex_
  std::atomic<std::uint64_t> refused_{0};
};

}  // namespace mcpmesh::cluster

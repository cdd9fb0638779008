#pragma once
/// \file
/// The replicable part of a session: everything another node needs to continue it, as a plain
/// value with a wire form. The live parts (strand, handlers in flight, timers, the streams'
/// consumers) stay in `Session`.
///
/// Thread-safety: a value; no shared state. `parse` takes untrusted input (a peer's bytes) and
/// never throws.

#include "mcp/app.hpp"
#include "registry/subscription_index.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace mcpmesh::mcp {

struct SessionRecord {
  enum class Phase : std::uint8_t {
    kNew,           // created, initialize not answered yet
    kInitializing,  // initialize answered, notifications/initialized not seen yet
    kReady,
  };

  std::string id;  // `<owner>.<epoch>.<random>` (see Server::new_session_id)
  std::string owner;
  std::uint64_t epoch = 0;  // the owner's ownership epoch when it created the session
  Phase phase = Phase::kNew;
  /// Protocol version, capabilities and client info from initialize (null before it).
  std::shared_ptr<const ClientState> client;
  std::optional<LogLevel> log_level;
  /// Resource URIs subscribed to. A live session's hold the node's subscription index's texts
  /// (one copy of each URI per node); a record read from the wire has copies of its own.
  std::set<registry::SharedUri, std::less<>> subscriptions;
  std::int64_t next_client_request_id = 1;
  /// First id of the POST streams this holder opens: a node that adopts the session starts
  /// above every id its previous holder could have used (see Server::restore_session).
  std::uint64_t stream_base = 0;
  /// Grows with every change; a replica keeps the highest it saw.
  std::uint64_t revision = 0;

  /// Wire form (JSON text).
  [[nodiscard]] std::string serialize() const;
  /// Reads the wire form; an error says what was wrong (never throws).
  [[nodiscard]] static Result<SessionRecord> parse(std::string_view text);

  bool operator==(const SessionRecord& other) const;
};

/// Bounds on a record read from the network.
inline constexpr std::size_t kMaxRecordIdBytes = 256;
inline constexpr std::size_t kMaxRecordBytes = 256 * 1024;

/// Splits a session id `<owner>.<epoch>.<random>` into owner and epoch (hex); false when it
/// does not have that shape.
[[nodiscard]] bool parse_session_id(std::string_view id, std::string_view& owner,
                                    std::uint64_t& epoch);

}  // namespace mcpmesh::mcp

#pragma once
/// \file
/// The resumable event streams of one session: the standalone stream (stream 0: messages not
/// tied to a request) and one per request batch, their event ids, bounded resumption buffers
/// and the live consumer attached to each (a transport's queue). They live here, beside the
/// session, and not in a transport, so that a session's standalone events can be replicated
/// and resumed on another node (Streamable HTTP serves them as SSE).
///
/// Event ids are `<stream>-<seq>`: unique per session and stream, and enough to find where a
/// `Last-Event-ID` resumption starts.
/// Thread-safety: every member may be called from any thread (one short mutex per session,
/// never held across I/O).

#include "mcp/async_queue.hpp"
#include "mcp/client_channel.hpp"
#include "mcp/event_ring.hpp"
#include "mcp/metrics.hpp"

#include <map>
#include <mutex>

namespace mcpmesh::mcp {

/// One message ready to go out on a stream.
struct StreamEvent {
  Payload data;    // null for the end-of-stream marker
  std::string id;  // "<stream>-<seq>"
  bool is_response = false;
  bool end = false;         // the stream is complete: every request on it was answered
  bool disconnect = false;  // end this HTTP response now; the stream goes on for resumption
};

using EventQueue = AsyncQueue<StreamEvent>;

struct StreamLimits {
  std::size_t buffer_events = 256;  // resumption buffer per stream
  std::size_t queue_events = 1024;  // live queue before the consumer counts as slow
  std::size_t max_streams = 64;     // finished POST streams kept for resumption
};

class SessionStreams : public ClientChannel, public std::enable_shared_from_this<SessionStreams> {
 public:
  SessionStreams(StreamLimits limits, Metrics& metrics) : limits_(limits), metrics_(metrics) {}

  /// Standalone messages (stream 0).
  void deliver(Payload message, bool completes_request) override;
  /// Appends a standalone message (stream 0) and returns its sequence number.
  std::uint64_t append_standalone(Payload message);

  /// A standalone event as kept for resumption: its sequence number and message.
  using StoredEvent = std::pair<std::uint64_t, Payload>;
  /// The standalone stream's resumption buffer, oldest first.
  [[nodiscard]] std::vector<StoredEvent> standalone_events();
  /// A session continued on this node: stream 0 holds `events` (ascending sequence numbers,
  /// as replicated), all counted as delivered; its next event is numbered kRestoredSeqGap above
  /// the last of them; POST streams are numbered from `base`.
  void restore(std::vector<StoredEvent> events, std::uint64_t stream_base);

  /// Opens a stream for a POST carrying `requests` requests; returns its id.
  std::uint64_t open_post_stream(std::size_t requests);
  /// A channel that writes to stream `id` (what the session answers the POST's requests on).
  std::shared_ptr<ClientChannel> channel(std::uint64_t id);

  /// How far a continued standalone stream's numbering jumps (more than any replication lag).
  static constexpr std::uint64_t kRestoredSeqGap = std::uint64_t{1} << 20;
  /// `attach` with this sequence replays only what no consumer has been handed yet.
  static constexpr std::uint64_t kUndelivered = ~std::uint64_t{0};
  /// Attaches `queue` as the live consumer of stream `id`, first replaying the buffered events
  /// after `after_seq`. Replaces a previous consumer (which gets closed). False if unknown.
  bool attach(std::uint64_t id, std::uint64_t after_seq, const std::shared_ptr<EventQueue>& queue);
  /// Detaches `queue` if it is still the consumer of stream `id`.
  void detach(std::uint64_t id, const std::shared_ptr<EventQueue>& queue);
  /// Drops stream `id` once it is finished and unattached (its answer went out as JSON, so no
  /// event id of it ever reached the client and nothing can resume it).
  void forget(std::uint64_t id);
  /// Closes every live consumer (the session ended).
  void close_all();
  /// Closes the standalone stream's live consumer only (the session moved to another node: its
  /// client resumes that stream there; requests still answering here keep their streams).
  void close_standalone();
  void on_session_closed() override { close_all(); }

  /// Formats "<stream>-<seq>".
  static std::string event_id(std::uint64_t stream, std::uint64_t seq);
  /// Parses "<stream>-<seq>".
  static bool parse_event_id(std::string_view text, std::uint64_t& stream, std::uint64_t& seq);

 private:
  struct Stream {  // forget() empties a finished one for reuse: keep it in step with this
    std::uint64_t next_seq = 1;
    EventRing<std::pair<std::uint64_t, StreamEvent>> buffer;  // nothing allocated while empty
    std::uint64_t delivered_seq = 0;  // newest seq handed to a live consumer
    std::size_t pending_requests = 0;
    bool finished = false;
    std::shared_ptr<EventQueue> live;
  };
  class PostChannel;

  std::uint64_t append(std::uint64_t id, Payload message, bool completes_request);
  void disconnect(std::uint64_t id);
  void prune_locked();

  const StreamLimits limits_;
  Metrics& metrics_;
  std::mutex mutex_;
  std::map<std::uint64_t, Stream> streams_;  // guarded by mutex_
  using StreamNode = std::map<std::uint64_t, Stream>::node_type;
  /// This thread's last forgotten stream node, emptied, for the next POST stream of any
  /// session: POSTs answered as JSON one after another allocate no stream state, and an idle
  /// session keeps none.
  static StreamNode& spare_node();
  std::uint64_t next_stream_id_ = 1;  // guarded by mutex_
  std::size_t finished_streams_ = 0;  // guarded by mutex_
};

}  // namespace mcpmesh::mcp

#include "mcp/session_streams.hpp"

#include <array>
#include <charconv>

namespace mcpmesh::mcp {

class SessionStreams::PostChannel final : public ClientChannel {
 public:
  PostChannel(std::shared_ptr<SessionStreams> owner, std::uint64_t id)
      : owner_(std::move(owner)), id_(id) {}
  void deliver(Payload message, bool completes_request) override {
    owner_->append(id_, std::move(message), completes_request);
  }
  void close_stream() override { owner_->disconnect(id_); }

 private:
  std::shared_ptr<SessionStreams> owner_;
  std::uint64_t id_;
};

std::string SessionStreams::event_id(std::uint64_t stream, std::uint64_t seq) {
  std::array<char, 48> buf;
  auto [mid, e1] = std::to_chars(buf.data(), buf.data() + 20, stream);
  *mid++ = '-';
  auto [end, e2] = std::to_chars(mid, buf.data() + buf.size(), seq);
  return std::string(buf.data(), end);
}

void SessionStreams::deliver(Payload message, bool completes_request) {
  append(0, std::move(message), completes_request);
}

std::uint64_t SessionStreams::append_standalone(Payload message) {
  return append(0, std::move(message), false);
}

std::vector<SessionStreams::StoredEvent> SessionStreams::standalone_events() {
  std::lock_guard lock(mutex_);
  std::vector<StoredEvent> out;
  auto it = streams_.find(0);
  if (it == streams_.end()) return out;
  out.reserve(it->second.buffer.size());
  for (auto& [seq, ev] : it->second.buffer) out.emplace_back(seq, ev.data);
  return out;
}

void SessionStreams::restore(std::vector<StoredEvent> events, std::uint64_t stream_base) {
  std::lock_guard lock(mutex_);
  auto& s = streams_[0];
  s.buffer.clear();
  for (auto& [seq, data] : events) {
    if (!data || seq < s.next_seq) continue;  // ascending and unique, whatever a peer sent
    s.buffer.emplace_back(seq, StreamEvent{data, event_id(0, seq), false, false});
    s.next_seq = seq + 1;
    if (s.buffer.size() > limits_.buffer_events) s.buffer.pop_front();
  }
  s.delivered_seq = s.next_seq - 1;
  // The previous holder may have sent the client events that never reached this node; new
  // events must not reuse their ids, or a client resuming after one of them would skip new
  // events that happen to carry the same number.
  s.next_seq += kRestoredSeqGap;
  next_stream_id_ = std::max<std::uint64_t>(next_stream_id_, stream_base);
}

SessionStreams::StreamNode& SessionStreams::spare_node() {
  thread_local StreamNode spare;
  return spare;
}

std::uint64_t SessionStreams::open_post_stream(std::size_t requests) {
  std::lock_guard lock(mutex_);
  auto id = next_stream_id_++;
  if (auto& spare = spare_node()) {
    spare.key() = id;
    spare.mapped().pending_requests = requests;
    streams_.insert(std::move(spare));
    spare = {};
  } else {
    streams_[id].pending_requests = requests;
  }
  prune_locked();
  return id;
}

std::shared_ptr<ClientChannel> SessionStreams::channel(std::uint64_t id) {
  return std::make_shared<PostChannel>(shared_from_this(), id);
}

std::uint64_t SessionStreams::append(std::uint64_t id, Payload message, bool completes_request) {
  std::lock_guard lock(mutex_);
  auto& s = streams_[id];
  std::uint64_t appended = 0;
  if (message) {
    StreamEvent ev{message, event_id(id, s.next_seq), completes_request, false};
    auto seq = s.next_seq++;
    appended = seq;
    s.buffer.emplace_back(seq, ev);
    if (s.buffer.size() > limits_.buffer_events) {
      s.buffer.pop_front();
      Metrics::inc(metrics_.sse_buffer_evicted_total);
    }
    if (s.live) {
      if (s.live->push(std::move(ev))) {
        s.delivered_seq = seq;
      } else {
        // The consumer fell behind: it sees kOverflow and disconnects; the buffer keeps the
        // events for a Last-Event-ID resumption.
        s.live.reset();
      }
    }
  }
  if (completes_request && id != 0 && s.pending_requests > 0 && --s.pending_requests == 0) {
    s.finished = true;
    ++finished_streams_;
    if (s.live) {
      s.live->push(StreamEvent{nullptr, {}, false, true});
      s.live.reset();
    }
  }
  return appended;
}

void SessionStreams::disconnect(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = streams_.find(id);
  if (it == streams_.end() || !it->second.live) return;
  StreamEvent ev;
  ev.disconnect = true;
  it->second.live->push(std::move(ev));
  it->second.live.reset();
}

bool SessionStreams::attach(std::uint64_t id, std::uint64_t after_seq,
                            const std::shared_ptr<EventQueue>& queue) {
  std::lock_guard lock(mutex_);
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    if (id != 0) return false;
    it = streams_.emplace(0, Stream{}).first;
  }
  auto& s = it->second;
  if (s.live && s.live != queue) s.live->close();
  bool resuming = after_seq != kUndelivered;
  if (!resuming) after_seq = s.delivered_seq;
  std::size_t replayed = 0;
  for (auto& [seq, ev] : s.buffer) {
    if (seq <= after_seq) continue;
    if (!queue->push(ev)) break;
    s.delivered_seq = std::max(s.delivered_seq, seq);
    ++replayed;
  }
  if (resuming) Metrics::inc(metrics_.sse_replayed_total, replayed);
  if (s.finished) {
    queue->push(StreamEvent{nullptr, {}, false, true});
    s.live.reset();
  } else {
    s.live = queue;
  }
  return true;
}

void SessionStreams::detach(std::uint64_t id, const std::shared_ptr<EventQueue>& queue) {
  std::lock_guard lock(mutex_);
  auto it = streams_.find(id);
  if (it != streams_.end() && it->second.live == queue) it->second.live.reset();
}

void SessionStreams::forget(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = streams_.find(id);
  if (it == streams_.end() || id == 0 || !it->second.finished || it->second.live) return;
  --finished_streams_;
  auto& spare = spare_node();
  if (spare) {
    streams_.erase(it);
    return;
  }
  // Kept for the next POST stream on this thread, emptied (a cleared ring keeps its storage).
  spare = streams_.extract(it);
  auto& s = spare.mapped();
  s.buffer.clear();
  s.next_seq = 1;
  s.delivered_seq = 0;
  s.pending_requests = 0;
  s.finished = false;
}

void SessionStreams::close_all() {
  std::lock_guard lock(mutex_);
  for (auto& [id, s] : streams_) {
    if (s.live) s.live->close();
    s.live.reset();
  }
}

void SessionStreams::close_standalone() {
  std::lock_guard lock(mutex_);
  auto it = streams_.find(0);
  if (it == streams_.end() || !it->second.live) return;
  it->second.live->close();
  it->second.live.reset();
}

void SessionStreams::prune_locked() {
  // Keep the standalone stream, every unfinished stream and the newest finished ones.
  for (auto it = streams_.begin();
       it != streams_.end() && finished_streams_ > limits_.max_streams;) {
    if (it->first != 0 && it->second.finished && !it->second.live) {
      it = streams_.erase(it);
      --finished_streams_;
    } else {
      ++it;
    }
  }
}

bool SessionStreams::parse_event_id(std::string_view text, std::uint64_t& stream,
                                    std::uint64_t& seq) {
  auto dash = text.find('-');
  if (dash == std::string_view::npos) return false;
  auto a = text.substr(0, dash), b = text.substr(dash + 1);
  auto r1 = std::from_chars(a.data(), a.data() + a.size(), stream);
  auto r2 = std::from_chars(b.data(), b.data() + b.size(), seq);
  return r1.ec == std::errc() && r1.ptr == a.data() + a.size() && r2.ec == std::errc() &&
         r2.ptr == b.data() + b.size() && !a.empty() && !b.empty();
}

}  // namespace mcpmesh::mcp

#pragma once
/// \file
/// SseParser: the event-stream interpretation of the HTML standard (text/event-stream), fed
/// with a body's bytes in pieces of any size: lines end in CR, LF or CRLF (a CRLF split between
/// two pieces is one line end), a leading BOM is skipped, `:` lines are comments (an MCP
/// server's keep-alives), a blank line dispatches the event when it has data, `id` persists
/// across events, an event without `event:` is a "message". Lines and event data are bounded:
/// an input past the bounds fails the parser instead of growing it.
///
/// Thread-safety: none; one parser per stream.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mcpmesh::bench {

struct SseEvent {
  std::string type;  ///< `event:` field, "message" when absent
  std::string data;  ///< the `data:` lines joined by LF
  std::string id;    ///< the last event id seen on the stream (empty when none)
};

class SseParser {
 public:
  static constexpr std::size_t kDefaultMaxLine = 4 << 20;
  static constexpr std::size_t kDefaultMaxData = 16 << 20;

  explicit SseParser(std::size_t max_line = kDefaultMaxLine, std::size_t max_data = kDefaultMaxData)
      : max_line_(max_line), max_data_(max_data) {}

  /// Consumes `bytes`, appending the events they complete to `out`. False once an input line
  /// or an event's data exceeded the bounds (the parser stays failed; nothing more is parsed).
  [[nodiscard]] bool feed(std::string_view bytes, std::vector<SseEvent>& out);

  [[nodiscard]] bool failed() const { return failed_; }
  /// Comment lines seen so far (keep-alives).
  [[nodiscard]] std::uint64_t comments() const { return comments_; }
  /// The last valid `retry:` value, if any.
  [[nodiscard]] std::optional<std::uint64_t> retry_ms() const { return retry_ms_; }
  /// True between a line's first byte and its end, or inside an event not yet dispatched: a
  /// stream that ends now ends in the middle of an event (which the standard discards).
  [[nodiscard]] bool mid_event() const {
    return !line_.empty() || !data_.empty() || !type_.empty();
  }

 private:
  void on_line(std::vector<SseEvent>& out);

  std::size_t max_line_;
  std::size_t max_data_;
  std::string line_;
  std::string data_;
  std::string type_;
  std::string last_id_;
  std::optional<std::uint64_t> retry_ms_;
  std::uint64_t comments_ = 0;
  bool after_cr_ = false;  // the previous piece ended in CR: a leading LF is part of that end
  bool first_line_ = true;
  bool failed_ = false;
};

/// Every event of a complete text/event-stream body (a POST's SSE answer), in order. As the
/// standard says, an event the body ends in the middle of (no blank line after it) is dropped:
/// a client that follows the standard would never see it. Empty optional when the body breaks
/// the bounds.
[[nodiscard]] std::optional<std::vector<SseEvent>> parse_sse_body(std::string_view body);

}  // namespace mcpmesh::bench

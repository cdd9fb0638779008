#include "bench/mcpmesh_bench/sse_parser.hpp"

#include <charconv>

namespace mcpmesh::bench {

bool SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (failed_) return false;
  std::size_t i = 0;
  if (after_cr_ && !bytes.empty()) {
    after_cr_ = false;
    if (bytes[0] == '\n') i = 1;  // the LF of a CRLF split across two pieces
  }
  while (i < bytes.size()) {
    std::size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      if (line_.size() + (bytes.size() - i) > max_line_) {
        failed_ = true;
        return false;
      }
      line_.append(bytes.substr(i));
      break;
    }
    if (line_.size() + (end - i) > max_line_) {
      failed_ = true;
      return false;
    }
    line_.append(bytes.substr(i, end - i));
    i = end + 1;
    if (bytes[end] == '\r') {
      if (i == bytes.size()) {
        after_cr_ = true;
      } else if (bytes[i] == '\n') {
        ++i;
      }
    }
    on_line(out);
    if (failed_) return false;
  }
  return true;
}

void SseParser::on_line(std::vector<SseEvent>& out) {
  std::string_view line = line_;
  if (first_line_) {
    first_line_ = false;
    if (line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);
  }
  if (line.empty()) {
    if (!data_.empty()) {
      data_.pop_back();  // the LF after the last data line
      out.push_back(
          {type_.empty() ? std::string("message") : std::move(type_), std::move(data_), last_id_});
    }
    data_.clear();
    type_.clear();
  } else if (line.front() == ':') {
    ++comments_;
  } else {
    std::size_t colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value;
    if (colon != std::string_view::npos) {
      value = line.substr(colon + 1);
      if (value.starts_with(' ')) value.remove_prefix(1);
    }
    if (field == "data") {
      if (data_.size() + value.size() + 1 > max_data_) {
        failed_ = true;
      } else {
        data_.append(value);
        data_.push_back('\n');
      }
    } else if (field == "event") {
      type_.assign(value);
    } else if (field == "id") {
      if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
    } else if (field == "retry") {
      std::uint64_t ms = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (ec == std::errc() && end == value.data() + value.size() && !value.empty()) {
        retry_ms_ = ms;
      }
    }
  }
  line_.clear();
}

std::optional<std::vector<SseEvent>> parse_sse_body(std::string_view body) {
  SseParser parser;
  std::vector<SseEvent> events;
  if (!parser.feed(body, events)) return std::nullopt;
  return events;
}

}  // namespace mcpmesh::bench

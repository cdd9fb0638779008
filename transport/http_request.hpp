#pragma once
/// \file
/// An HTTP/1.x request as the Streamable HTTP transport needs it, and the Beast parser that
/// fills it. Beast's generic `http::request` keeps every field in an ordered tree; this keeps
/// the request line, the body and the fields in one flat list over one string (a request has
/// a handful of fields, looked up a handful of times): parsing a tools/call and looking up its
/// fields took ~4.9K instructions instead of ~8.8K (callgrind). Limits (header and body size)
/// are the parser's.
/// Thread-safety: none (one connection's).

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mcpmesh::transport {

namespace http = boost::beast::http;

class HttpRequest {
 public:
  [[nodiscard]] http::verb method() const { return method_; }
  [[nodiscard]] std::string_view target() const { return view(target_); }
  /// 10 or 11.
  [[nodiscard]] unsigned version() const { return version_; }
  [[nodiscard]] bool keep_alive() const { return keep_alive_; }
  [[nodiscard]] const std::string& body() const { return body_; }
  [[nodiscard]] std::string& body() { return body_; }

  /// The first value of a field, empty if absent.
  [[nodiscard]] std::string_view operator[](http::field name) const;
  /// The first value of a field by name (ASCII case-insensitive), empty if absent.
  [[nodiscard]] std::string_view operator[](std::string_view name) const;

  /// Empties the request for reuse (keeps capacity).
  void clear();

  /// Builds a request that arrived another way (relayed by another node): the request line,
  /// then add_field() for each field and body() for the body.
  void assign(http::verb method, std::string_view target, unsigned version, bool keep_alive);
  void add_field(std::string_view name, std::string_view value);
  /// Calls `fn(name, value)` for every field, in order.
  template <class Fn>
  void for_each_field(Fn&& fn) const {
    for (const auto& f : fields_) {
      fn(f.name == http::field::unknown ? view(f.name_text)
                                        : std::string_view(http::to_string(f.name)),
         view(f.value));
    }
  }

 private:
  friend class HttpRequestParser;
  struct Span {
    std::uint32_t offset = 0;
    std::uint32_t size = 0;
  };
  struct Field {
    http::field name;
    Span name_text;
    Span value;
  };
  [[nodiscard]] std::string_view view(Span s) const { return {text_.data() + s.offset, s.size}; }
  Span keep(std::string_view s);

  http::verb method_ = http::verb::unknown;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  std::string text_;  // the target and every field name and value, back to back
  Span target_;
  std::vector<Field> fields_;
  std::string body_;
};

/// Parses one request into an `HttpRequest` (use with http::read / http::async_read).
class HttpRequestParser : public http::basic_parser<true> {
 public:
  explicit HttpRequestParser(HttpRequest& out) : out_(out) { out_.clear(); }

 private:
  void on_request_impl(http::verb method, boost::beast::string_view method_str,
                       boost::beast::string_view target, int version,
                       boost::system::error_code& ec) override;
  void on_response_impl(int, boost::beast::string_view, int, boost::system::error_code&) override {}
  void on_field_impl(http::field name, boost::beast::string_view name_string,
                     boost::beast::string_view value, boost::system::error_code& ec) override;
  void on_header_impl(boost::system::error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         boost::system::error_code& ec) override;
  std::size_t on_body_impl(boost::beast::string_view body, boost::system::error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                            boost::system::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                 boost::system::error_code& ec) override;
  void on_finish_impl(boost::system::error_code&) override {}

  HttpRequest& out_;
};

}  // namespace mcpmesh::transport

#include "transport/http_request.hpp"

#include <boost/beast/core/string.hpp>

namespace mcpmesh::transport {

std::string_view HttpRequest::operator[](http::field name) const {
  for (const auto& f : fields_) {
    if (f.name == name) return view(f.value);
  }
  return {};
}

std::string_view HttpRequest::operator[](std::string_view name) const {
  // Names Beast does not know (the MCP headers) are looked for first, among the few such
  // fields, so the usual lookups skip the name hashing below.
  for (const auto& f : fields_) {
    if (f.name == http::field::unknown && boost::beast::iequals(view(f.name_text), name)) {
      return view(f.value);
    }
  }
  auto known = http::string_to_field(name);
  return known == http::field::unknown ? std::string_view() : (*this)[known];
}

void HttpRequest::clear() {
  method_ = http::verb::unknown;
  version_ = 11;
  keep_alive_ = true;
  text_.clear();
  target_ = {};
  fields_.clear();
  body_.clear();
}

void HttpRequest::assign(http::verb method, std::string_view target, unsigned version,
                         bool keep_alive) {
  clear();
  method_ = method;
  version_ = version == 10 ? 10 : 11;
  keep_alive_ = keep_alive;
  target_ = keep(target);
}

void HttpRequest::add_field(std::string_view name, std::string_view value) {
  Field f{http::string_to_field(name), {}, {}};
  if (f.name == http::field::unknown) f.name_text = keep(name);
  f.value = keep(value);
  fields_.push_back(f);
}

HttpRequest::Span HttpRequest::keep(std::string_view s) {
  // The parser's header limit (at most a few MiB) keeps offsets far below 2^32.
  Span span{static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(s.size())};
  text_ += s;
  return span;
}

void HttpRequestParser::on_request_impl(http::verb method, boost::beast::string_view,
                                        boost::beast::string_view target, int version,
                                        boost::system::error_code&) {
  out_.method_ = method;
  out_.version_ = static_cast<unsigned>(version);
  out_.text_.reserve(512);
  out_.target_ = out_.keep(target);
}

void HttpRequestParser::on_field_impl(http::field name, boost::beast::string_view name_string,
                                      boost::beast::string_view value, boost::system::error_code&) {
  HttpRequest::Field f{name, {}, {}};
  // Known names are matched by their enum; only unknown ones need their text.
  if (name == http::field::unknown) f.name_text = out_.keep(name_string);
  f.value = out_.keep(value);
  out_.fields_.push_back(f);
}

void HttpRequestParser::on_header_impl(boost::system::error_code&) {
  out_.keep_alive_ = keep_alive();
}

void HttpRequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                          boost::system::error_code&) {
  // The body limit was checked against Content-Length before this is called.
  if (content_length) out_.body_.reserve(static_cast<std::size_t>(*content_length));
}

std::size_t HttpRequestParser::on_body_impl(boost::beast::string_view body,
                                            boost::system::error_code&) {
  out_.body_ += body;
  return body.size();
}

std::size_t HttpRequestParser::on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                                  boost::system::error_code&) {
  out_.body_ += body;
  return body.size();
}

}  // namespace mcpmesh::transport

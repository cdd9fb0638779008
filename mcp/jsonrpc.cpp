#include "mcp/jsonrpc.hpp"

#include <array>
#include <charconv>
#include <cmath>

namespace mcpmesh::mcp {

bool is_valid_id(const json::value& id) {
  if (id.is_string()) return true;
  if (id.is_int64() || id.is_uint64()) return true;
  // Integral doubles are accepted too (some clients serialize ids as 1.0).
  if (id.is_double()) {
    // Range first: casting an out-of-range double (1e300, NaN) to an integer is undefined.
    double d = id.get_double();
    return d > -9.2e18 && d < 9.2e18 && d == static_cast<double>(static_cast<std::int64_t>(d));
  }
  return false;
}

json::value json_number(double d) {
  if (d > -9e15 && d < 9e15 && d == static_cast<double>(static_cast<std::int64_t>(d))) {
    return static_cast<std::int64_t>(d);
  }
  return d;
}

std::string id_key(const json::value& id) {
  if (id.is_string()) return "s:" + std::string(id.get_string());
  if (id.is_int64()) return "n:" + std::to_string(id.get_int64());
  if (id.is_uint64()) return "n:" + std::to_string(id.get_uint64());
  if (id.is_double()) return "n:" + std::to_string(static_cast<std::int64_t>(id.get_double()));
  return "x:" + json::serialize(id);
}

namespace {
using Err = std::pair<json::value, RpcError>;

/// Decodes `v` (moving from it) into `m`; the error to answer instead if it is no message.
std::optional<Err> decode_into(json::value& v, Message& m) {
  auto* obj = v.if_object();
  if (!obj) return Err{nullptr, {ErrorCode::kInvalidRequest, "message must be a JSON object"}};
  json::value id = nullptr;
  bool has_id = false;
  if (auto* p = obj->if_contains("id")) {
    has_id = true;
    id = *p;
  }
  auto* ver = obj->if_contains("jsonrpc");
  if (!ver || !ver->is_string() || ver->get_string() != "2.0") {
    return Err{is_valid_id(id) ? id : json::value(nullptr),
               {ErrorCode::kInvalidRequest, "\"jsonrpc\" must be \"2.0\""}};
  }
  if (has_id && !is_valid_id(id)) {
    return Err{nullptr, {ErrorCode::kInvalidRequest, "\"id\" must be a string or an integer"}};
  }
  if (auto* method = obj->if_contains("method")) {
    if (!method->is_string()) {
      return Err{id, {ErrorCode::kInvalidRequest, "\"method\" must be a string"}};
    }
    m.method = std::string(method->get_string());
    if (auto* params = obj->if_contains("params")) {
      if (params->is_object()) {
        m.params = std::move(params->get_object());
      } else if (!params->is_null()) {
        return Err{id, {ErrorCode::kInvalidRequest, "\"params\" must be an object"}};
      }
    }
    m.kind = has_id ? Message::Kind::kRequest : Message::Kind::kNotification;
    m.id = std::move(id);
    return std::nullopt;
  }
  if (!has_id) return Err{nullptr, {ErrorCode::kInvalidRequest, "missing \"method\""}};
  m.id = std::move(id);
  if (auto* result = obj->if_contains("result")) {
    m.kind = Message::Kind::kResponse;
    m.result = std::move(*result);
    return std::nullopt;
  }
  if (auto* error = obj->if_contains("error"); error && error->is_object()) {
    m.kind = Message::Kind::kErrorResponse;
    read_error_object(error->get_object(), m.error);
    return std::nullopt;
  }
  return Err{m.id, {ErrorCode::kInvalidRequest, "message has neither method, result nor error"}};
}
}  // namespace

std::variant<Message, std::pair<json::value, RpcError>> decode_message(json::value v) {
  Message m;
  if (auto err = decode_into(v, m)) return std::move(*err);
  return m;
}

ParsedFrame parse_frame(std::string_view text, const ParseLimits& limits) {
  ParsedFrame frame;
  json::parse_options opts;
  opts.max_depth = limits.max_depth;
  boost::system::error_code ec;
  json::value root = json::parse(text, ec, {}, opts);
  if (ec) {
    if (ec == json::error::too_deep) {
      frame.frame_error =
          RpcError(ErrorCode::kInvalidRequest,
                   "JSON nesting deeper than the limit of " + std::to_string(limits.max_depth));
    } else {
      frame.frame_error = RpcError(ErrorCode::kParseError, "parse error: " + ec.message());
    }
    return frame;
  }
  // Decoded in place: no intermediate Message to move.
  auto take = [&frame](json::value& v) {
    auto& m = frame.messages.emplace_back();
    if (auto err = decode_into(v, m)) {
      frame.messages.pop_back();
      frame.errors.push_back(std::move(*err));
    }
  };
  if (auto* arr = root.if_array()) {
    frame.is_batch = true;
    if (arr->empty()) {
      frame.frame_error = RpcError(ErrorCode::kInvalidRequest, "empty batch");
      return frame;
    }
    frame.messages.reserve(arr->size());
    for (auto& v : *arr) take(v);
  } else {
    take(root);
  }
  return frame;
}

json::object error_object(const RpcError& error) {
  json::object e;
  e["code"] = error.code;
  e["message"] = error.message;
  if (!error.data.is_null()) e["data"] = error.data;
  return e;
}

namespace {
/// Whether positions of serialized JSON lie inside a string, scanning forward only (so that many
/// candidates cost one pass, not one each).
class StringTracker {
 public:
  explicit StringTracker(std::string_view text) : text_(text) {}
  /// `pos` never decreases from one call to the next.
  bool outside_string(std::size_t pos) {
    while (next_ < pos) {
      char c = text_[next_++];
      if (in_string_) {
        if (c == '\\') {
          ++next_;  // the escaped character
        } else if (c == '"') {
          in_string_ = false;
        }
      } else if (c == '"') {
        in_string_ = true;
      }
    }
    return !in_string_;
  }

 private:
  std::string_view text_;
  std::size_t next_ = 0;
  bool in_string_ = false;
};

/// Whether `token` (starting with its first letter) stands in `text` as a value of its own:
/// preceded by ':', '[', ',' or nothing (or a '-' after one) and followed by ',', '}', ']' or
/// the end, outside strings. Text rarely matches the shape, so strings are tracked only then.
bool has_bare_token(std::string_view text, std::string_view token) {
  StringTracker strings(text);
  for (auto pos = text.find(token[0]); pos != std::string_view::npos;
       pos = text.find(token[0], pos + 1)) {
    if (text.compare(pos, token.size(), token) != 0) continue;
    auto end = pos + token.size();
    if (end != text.size() && text[end] != ',' && text[end] != '}' && text[end] != ']') continue;
    auto start = pos > 0 && text[pos - 1] == '-' ? pos - 1 : pos;
    if (start != 0 && text[start - 1] != ':' && text[start - 1] != '[' && text[start - 1] != ',') {
      continue;
    }
    if (strings.outside_string(pos)) return true;
  }
  return false;
}

Payload finish(json::object&& o) {
  auto text = std::make_shared<const std::string>(json::serialize(o));
  return has_non_finite_number(*text) ? nullptr : text;
}
}  // namespace

bool has_non_finite_number(std::string_view text) {
  return has_bare_token(text, "Infinity") || has_bare_token(text, "NaN");
}

bool holds_non_finite_number(const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_:
      return !std::isfinite(v.get_double());
    case json::kind::array:
      for (auto& e : v.get_array()) {
        if (holds_non_finite_number(e)) return true;
      }
      return false;
    case json::kind::object:
      for (auto& [k, e] : v.get_object()) {
        if (holds_non_finite_number(e)) return true;
      }
      return false;
    default:
      return false;
  }
}

namespace {
/// Appends the JSON text of `v` to `out`, serializing straight into its spare capacity.
void append_json(std::string& out, const json::value& v) {
  json::serializer sr;
  sr.reset(&v);
  while (!sr.done()) {
    std::size_t used = out.size();
    // Fill the capacity there is (growing only when little is left), so a reserved buffer
    // big enough for the whole message is never reallocated.
    if (out.capacity() - used < 64) out.reserve(2 * out.capacity() + 64);
    out.resize(out.capacity());
    auto written = sr.read(out.data() + used, out.size() - used);
    out.resize(used + written.size());
  }
}

/// `{"jsonrpc":"2.0","id":<id>,"<member>":<value>}`, written directly (no envelope object).
/// Null when `value` holds a non-finite number (see make_result).
Payload envelope(const json::value& id, std::string_view member, const json::value& value) {
  auto text = std::make_shared<std::string>();
  text->reserve(192);
  *text += R"({"jsonrpc":"2.0","id":)";
  if (id.is_int64() || id.is_uint64()) {  // the usual id: no serializer needed
    std::array<char, 24> digits;
    auto [end, ec] =
        id.is_int64()
            ? std::to_chars(digits.data(), digits.data() + digits.size(), id.get_int64())
            : std::to_chars(digits.data(), digits.data() + digits.size(), id.get_uint64());
    text->append(digits.data(), end);
  } else {
    append_json(*text, id);
  }
  *text += ",\"";
  *text += member;
  *text += "\":";
  auto value_start = text->size();
  append_json(*text, value);
  // Checked on the text just written (a scan for two letters), not by walking the value.
  if (has_non_finite_number(std::string_view(*text).substr(value_start))) return nullptr;
  *text += '}';
  return text;
}
}  // namespace

Payload make_result(const json::value& id, json::value result, bool* non_finite) {
  if (auto text = envelope(id, "result", result)) return text;
  if (non_finite) *non_finite = true;
  return make_error(id, {ErrorCode::kInternalError,
                         "the result holds a number JSON cannot represent (infinity or NaN)"});
}

Payload make_error(const json::value& id, const RpcError& error) {
  if (auto text = envelope(id, "error", error_object(error))) return text;
  return envelope(id, "error", error_object({error.code, error.message}));
}

Payload make_notification(std::string_view method, json::object params) {
  json::object o;
  o["jsonrpc"] = "2.0";
  o["method"] = method;
  if (!params.empty()) o["params"] = std::move(params);
  return finish(std::move(o));
}

Payload make_request(const json::value& id, std::string_view method, json::object params) {
  json::object o;
  o["jsonrpc"] = "2.0";
  o["id"] = id;
  o["method"] = method;
  o["params"] = std::move(params);
  return finish(std::move(o));
}

const json::object* get_object(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v ? v->if_object() : nullptr;
}

std::optional<std::string_view> get_string(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string_view(v->get_string());
}

void read_error_object(const json::object& o, RpcError& error) {
  if (auto* c = o.if_contains("code"); c && c->is_int64()) {
    error.code = static_cast<int>(c->get_int64());
  }
  if (auto message = get_string(o, "message")) error.message = std::string(*message);
  if (auto* d = o.if_contains("data")) error.data = *d;
}

std::optional<std::uint64_t> parse_cursor(const json::object& params) {
  auto* c = params.if_contains("cursor");
  if (!c || c->is_null()) return 0;
  if (!c->is_string()) return std::nullopt;
  std::string_view s = c->get_string();
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return n;
}

}  // namespace mcpmesh::mcp

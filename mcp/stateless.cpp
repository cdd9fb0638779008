#include "mcp/stateless.hpp"

#include "mcp/request_state.hpp"
#include "mcp/version.hpp"

#include <charconv>
#include <cmath>

namespace mcpmesh::mcp {

namespace {

Rejection header_mismatch(std::string message) {
  return {RpcError(ErrorCode::kHeaderMismatch, "Header mismatch: " + std::move(message)), 400};
}

Rejection invalid_meta(std::string message) {
  return {RpcError(ErrorCode::kInvalidParams, "Invalid params: " + std::move(message)), 400};
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  }
  return true;
}

/// The `_meta` check of the revision: the keys it requires, with the types the schema gives.
std::optional<Rejection> check_meta(const json::object& params) {
  auto* mv = params.if_contains("_meta");
  if (!mv || !mv->is_object()) {
    return invalid_meta(
        "params._meta is required, with io.modelcontextprotocol/protocolVersion and "
        "io.modelcontextprotocol/clientCapabilities");
  }
  const auto& meta = mv->get_object();
  auto* version = meta.if_contains(kMetaProtocolVersion);
  if (!version || !version->is_string()) {
    return invalid_meta("_meta is missing io.modelcontextprotocol/protocolVersion (a string)");
  }
  auto* caps = meta.if_contains(kMetaClientCapabilities);
  if (!caps || !caps->is_object()) {
    return invalid_meta(
        "_meta is missing io.modelcontextprotocol/clientCapabilities (an object; {} declares "
        "none)");
  }
  if (auto* info = meta.if_contains(kMetaClientInfo)) {
    if (!info->is_object() || !get_string(info->get_object(), "name") ||
        !get_string(info->get_object(), "version")) {
      return invalid_meta(
          "_meta io.modelcontextprotocol/clientInfo must be an object with name and version "
          "strings");
    }
  }
  if (auto* level = meta.if_contains(kMetaLogLevel)) {
    if (!level->is_string() || !parse_log_level(level->get_string())) {
      return invalid_meta(
          "_meta io.modelcontextprotocol/logLevel must be one of debug, info, notice, warning, "
          "error, critical, alert, emergency");
    }
  }
  return std::nullopt;
}

/// The body value an x-mcp-header annotation mirrors, as its header text; nullopt when the
/// arguments hold none (or null) at its path.
std::optional<std::string> mirrored_value(const json::object& args,
                                          const std::vector<std::string_view>& path) {
  const json::object* at = &args;
  for (std::size_t i = 0; i < path.size(); ++i) {
    auto* v = at->if_contains(path[i]);
    if (!v || v->is_null()) return std::nullopt;
    if (i + 1 < path.size()) {
      if (!v->is_object()) return std::nullopt;
      at = &v->get_object();
      continue;
    }
    if (v->is_string()) return std::string(v->get_string());
    if (v->is_bool()) return v->get_bool() ? "true" : "false";
    if (v->is_int64()) return std::to_string(v->get_int64());
    if (v->is_uint64()) return std::to_string(v->get_uint64());
    if (v->is_double()) return json::serialize(*v);
    return std::nullopt;  // an object or array: not a primitive the header can mirror
  }
  return std::nullopt;
}

/// Whether header text `header` (decoded) and body text `body` name the same value; integers
/// compare numerically ("42" and "42.0").
bool same_value(std::string_view header, std::string_view body) {
  if (header == body) return true;
  auto number = [](std::string_view s) -> std::optional<double> {
    double d = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(d)) return std::nullopt;
    return d;
  };
  auto a = number(header), b = number(body);
  return a && b && *a == *b;
}

struct Annotation {
  std::string_view header;
  std::vector<std::string_view> path;
};

/// The x-mcp-header annotations of a tool's input schema: properties reachable from the root
/// through `properties` keys only.
void collect_annotations(const json::object& schema, std::vector<std::string_view>& path,
                         std::vector<Annotation>& out) {
  auto* props = get_object(schema, "properties");
  if (!props) return;
  for (auto& [name, prop] : *props) {
    if (!prop.is_object()) continue;
    path.push_back(name);
    if (auto h = get_string(prop.get_object(), "x-mcp-header")) out.push_back({*h, path});
    collect_annotations(prop.get_object(), path, out);
    path.pop_back();
  }
}

std::optional<Rejection> check_mirrored_params(const Message& m, const MirroredHeaders& headers,
                                               const App::Catalog& catalog) {
  auto name = get_string(m.params, "name");
  const App::Tool* tool = name ? catalog.find_tool(*name) : nullptr;
  if (!tool) return std::nullopt;  // the router answers for an unknown tool
  std::vector<Annotation> annotations;
  std::vector<std::string_view> path;
  collect_annotations(tool->spec.input_schema, path, annotations);
  if (annotations.empty()) return std::nullopt;
  static const json::object kNoArguments;
  const json::object* args = get_object(m.params, "arguments");
  if (!args) args = &kNoArguments;
  for (auto& a : annotations) {
    const std::string_view* header = nullptr;
    for (auto& [hname, hvalue] : headers.params) {
      if (iequals(hname, a.header)) header = &hvalue;
    }
    auto body = mirrored_value(*args, a.path);
    if (!header) {
      if (body) {
        return header_mismatch("Mcp-Param-" + std::string(a.header) +
                               " header is required: the arguments carry its value");
      }
      continue;
    }
    auto decoded = decode_header_value(*header);
    if (!decoded) {
      return header_mismatch("Mcp-Param-" + std::string(a.header) +
                             " header holds invalid characters or malformed Base64");
    }
    if (!body || !same_value(*decoded, *body)) {
      return header_mismatch("Mcp-Param-" + std::string(a.header) +
                             " header value does not match the arguments");
    }
  }
  return std::nullopt;
}

}  // namespace

std::string_view mirrored_name_field(std::string_view method) {
  if (method == "tools/call" || method == "prompts/get") return "name";
  if (method == "resources/read") return "uri";
  if (method == "tasks/get" || method == "tasks/update" || method == "tasks/cancel")
    return "taskId";
  return {};
}

bool is_stateless_request(const Message& m, const MirroredHeaders& headers) {
  if (headers.protocol_version) {
    auto v = *headers.protocol_version;
    return is_stateless_version(v) || !is_supported_version(v);
  }
  auto* mv = m.params.if_contains("_meta");
  return mv && mv->is_object() && mv->get_object().contains(kMetaProtocolVersion);
}

std::optional<Rejection> check_stateless_request(const Message& m, const MirroredHeaders& headers,
                                                 const App::Catalog& catalog) {
  if (headers.present && !headers.protocol_version) {
    return header_mismatch("the MCP-Protocol-Version header is required");
  }
  if (auto bad = check_meta(m.params)) return bad;
  auto version = m.params.at("_meta").get_object().at(kMetaProtocolVersion).get_string();
  if (headers.present && *headers.protocol_version != std::string_view(version)) {
    return header_mismatch("MCP-Protocol-Version header '" +
                           std::string(*headers.protocol_version) +
                           "' does not match _meta io.modelcontextprotocol/protocolVersion '" +
                           std::string(version) + "'");
  }
  if (!is_stateless_version(version)) {
    json::array supported;
    for (auto v : kAllVersions) supported.emplace_back(v);
    std::string message = is_supported_version(version)
                              ? "Unsupported protocol version: " + std::string(version) +
                                    " is a session-era version: send initialize first"
                              : "Unsupported protocol version: " + std::string(version);
    return Rejection{
        RpcError(ErrorCode::kUnsupportedProtocolVersion, std::move(message),
                 json::object{{"supported", std::move(supported)}, {"requested", version}}),
        400};
  }
  if (!headers.present || !m.is_request()) return std::nullopt;
  if (!headers.method) return header_mismatch("the Mcp-Method header is required");
  if (*headers.method != m.method) {
    return header_mismatch("Mcp-Method header '" + std::string(*headers.method) +
                           "' does not match the body's method '" + m.method + "'");
  }
  if (auto field = mirrored_name_field(m.method); !field.empty()) {
    if (auto body = get_string(m.params, field)) {
      if (!headers.name) {
        return header_mismatch("the Mcp-Name header (params." + std::string(field) +
                               ") is required");
      }
      auto decoded = decode_header_value(*headers.name);
      if (!decoded) return header_mismatch("Mcp-Name header holds malformed Base64");
      if (*decoded != *body) {
        return header_mismatch("Mcp-Name header value '" + *decoded + "' does not match params." +
                               std::string(field) + " '" + std::string(*body) + "'");
      }
    }
  }
  if (m.method == "tools/call") return check_mirrored_params(m, headers, catalog);
  return std::nullopt;
}

std::shared_ptr<const ClientState> client_from_meta(const json::object& meta) {
  auto state = std::make_shared<ClientState>();
  if (auto v = get_string(meta, kMetaProtocolVersion)) state->protocol_version = std::string(*v);
  if (auto* caps = get_object(meta, kMetaClientCapabilities)) state->capabilities = *caps;
  if (auto* info = get_object(meta, kMetaClientInfo)) state->info = *info;
  return state;
}

std::optional<std::string_view> task_named(std::string_view method, std::string_view name) {
  if (name.empty() || mirrored_name_field(method) != "taskId") return std::nullopt;
  return name;
}

unsigned stateless_http_status(const Payload& payload) {
  if (!payload) return 200;
  // Our own make_error writes `"error":{"code":N`; a result never has that key at the top.
  constexpr std::string_view kCode = "\"error\":{\"code\":";
  auto at = payload->find(kCode);
  if (at == std::string::npos) return 200;
  int code = 0;
  auto* p = payload->data() + at + kCode.size();
  std::from_chars(p, payload->data() + payload->size(), code);
  switch (static_cast<ErrorCode>(code)) {
    case ErrorCode::kMethodNotFound:
      return 404;
    case ErrorCode::kHeaderMismatch:
    case ErrorCode::kMissingClientCapability:
    case ErrorCode::kUnsupportedProtocolVersion:
      return 400;
    default:
      return 200;
  }
}

std::optional<std::string> decode_header_value(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  constexpr std::string_view kOpen = "=?base64?", kClose = "?=";
  if (value.size() < kOpen.size() + kClose.size() || !value.starts_with(kOpen) ||
      !value.ends_with(kClose)) {
    for (char c : value) {
      auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7F) return std::nullopt;
    }
    return std::string(value);
  }
  auto encoded = value.substr(kOpen.size(), value.size() - kOpen.size() - kClose.size());
  // Strict: whole quanta with their padding, as the encoding rule writes them.
  if (encoded.size() % 4 != 0) return std::nullopt;
  return base64_decode(encoded);
}

// ---------------------------------------------------------------------------------------------
Result<json::value> StatelessConversation::set_log_level(LogLevel) {
  return RpcError(ErrorCode::kMethodNotFound, "method not found: logging/setLevel");
}

void StatelessConversation::subscribe(std::string_view,
                                      std::function<void(Result<json::value>)> done) {
  done(RpcError(ErrorCode::kMethodNotFound, "method not found: resources/subscribe"));
}

Result<json::value> StatelessConversation::unsubscribe(std::string_view) {
  return RpcError(ErrorCode::kMethodNotFound, "method not found: resources/unsubscribe");
}

asio::awaitable<Result<json::object>> StatelessConversation::request_client(
    std::string method, json::object, std::chrono::milliseconds,
    const std::shared_ptr<ClientChannel>&) {
  // Input from the client comes through multi round-trip (HandlerContext::ask) only.
  co_return RpcError(ErrorCode::kInternalError,
                     "a stateless request cannot send " + method + " to the client");
}

void StatelessConversation::cancel() {
  asio::dispatch(executor_, [self = shared_from_this()] {
    auto requests = self->inflight;  // cancel() may end one and erase it
    for (auto& [key, request] : requests) {
      if (request->is_cancelled()) continue;
      request->cancel();
      if (self->metrics_) Metrics::inc(self->metrics_->cancelled_total);
    }
  });
}

}  // namespace mcpmesh::mcp

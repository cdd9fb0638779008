#include "mcp/session_record.hpp"

#include <charconv>

namespace mcpmesh::mcp {

namespace {

RpcError bad(std::string why) { return {ErrorCode::kInvalidParams, "session record: " + why}; }

const json::string* string_at(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v ? v->if_string() : nullptr;
}

std::optional<std::uint64_t> uint_at(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v) return std::nullopt;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
  return std::nullopt;
}

bool visible_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

bool parse_session_id(std::string_view id, std::string_view& owner, std::uint64_t& epoch) {
  auto first = id.find('.');
  if (first == 0 || first == std::string_view::npos) return false;
  auto second = id.find('.', first + 1);
  if (second == std::string_view::npos || second == first + 1 || second + 1 == id.size()) {
    return false;
  }
  auto hex = id.substr(first + 1, second - first - 1);
  auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), epoch, 16);
  if (ec != std::errc() || end != hex.data() + hex.size()) return false;
  owner = id.substr(0, first);
  return true;
}

std::string SessionRecord::serialize() const {
  json::object o;
  o["id"] = id;
  o["owner"] = owner;
  o["epoch"] = epoch;
  o["phase"] = static_cast<int>(phase);
  if (client) {
    o["version"] = client->protocol_version;
    o["capabilities"] = client->capabilities;
    o["clientInfo"] = client->info;
  }
  if (log_level) o["logLevel"] = to_string(*log_level);
  json::array subs;
  subs.reserve(subscriptions.size());
  for (auto& s : subscriptions) subs.emplace_back(s.view());
  o["subscriptions"] = std::move(subs);
  o["nextClientRequestId"] = next_client_request_id;
  o["streamBase"] = stream_base;
  o["revision"] = revision;
  return json::serialize(o);
}

Result<SessionRecord> SessionRecord::parse(std::string_view text) {
  if (text.size() > kMaxRecordBytes) return bad("too large");
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 64;
  auto v = json::parse(text, ec, {}, opts);
  if (ec || !v.is_object()) return bad("not a JSON object");
  auto& o = v.get_object();
  SessionRecord r;
  auto* id = string_at(o, "id");
  auto* owner = string_at(o, "owner");
  auto epoch = uint_at(o, "epoch");
  if (!id || id->empty() || id->size() > kMaxRecordIdBytes || !visible_ascii(*id)) {
    return bad("bad id");
  }
  if (!owner || owner->empty() || owner->size() > kMaxRecordIdBytes || !epoch) {
    return bad("bad owner or epoch");
  }
  std::string_view id_owner;
  std::uint64_t id_epoch = 0;
  if (!parse_session_id(*id, id_owner, id_epoch) || id_owner != std::string_view(*owner) ||
      id_epoch != *epoch) {
    return bad("id does not name its owner and epoch");
  }
  r.id = std::string(*id);
  r.owner = std::string(*owner);
  r.epoch = *epoch;
  auto phase = uint_at(o, "phase");
  if (!phase || *phase > static_cast<std::uint64_t>(Phase::kReady)) return bad("bad phase");
  r.phase = static_cast<Phase>(*phase);
  if (auto* version = string_at(o, "version")) {
    auto client = std::make_shared<ClientState>();
    client->protocol_version = std::string(*version);
    if (auto* caps = o.if_contains("capabilities"); caps && caps->is_object()) {
      client->capabilities = caps->get_object();
    }
    if (auto* info = o.if_contains("clientInfo"); info && info->is_object()) {
      client->info = info->get_object();
    }
    r.client = std::move(client);
  } else if (r.phase != Phase::kNew) {
    return bad("an initialized session needs a version");
  }
  if (auto* level = string_at(o, "logLevel")) {
    r.log_level = parse_log_level(*level);
    if (!r.log_level) return bad("bad log level");
  }
  if (auto* subs = o.if_contains("subscriptions")) {
    if (!subs->is_array()) return bad("subscriptions must be an array");
    for (auto& s : subs->get_array()) {
      if (!s.is_string()) return bad("subscriptions must be strings");
      r.subscriptions.emplace(std::string_view(s.get_string()));
    }
  }
  auto next_id = uint_at(o, "nextClientRequestId");
  if (!next_id || *next_id == 0 || *next_id > (std::uint64_t{1} << 53)) {
    return bad("bad nextClientRequestId");
  }
  r.next_client_request_id = static_cast<std::int64_t>(*next_id);
  r.stream_base = uint_at(o, "streamBase").value_or(0);
  r.revision = uint_at(o, "revision").value_or(0);
  return r;
}

bool SessionRecord::operator==(const SessionRecord& other) const {
  auto same_client = [](const std::shared_ptr<const ClientState>& a,
                        const std::shared_ptr<const ClientState>& b) {
    if (!a || !b) return !a && !b;
    return a->protocol_version == b->protocol_version && a->capabilities == b->capabilities &&
           a->info == b->info;
  };
  return id == other.id && owner == other.owner && epoch == other.epoch && phase == other.phase &&
         same_client(client, other.client) && log_level == other.log_level &&
         subscriptions == other.subscriptions &&
         next_client_request_id == other.next_client_request_id &&
         stream_base == other.stream_base && revision == other.revision;
}

}  // namespace mcpmesh::mcp

#include "mcp/request_state.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace mcpmesh::mcp {

namespace {

constexpr std::string_view kB64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::string_view kB64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::optional<std::string> decode_with(std::string_view text, std::string_view alphabet) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::array<int, 256> value;
  value.fill(-1);
  for (std::size_t i = 0; i < alphabet.size(); ++i) {
    value[static_cast<unsigned char>(alphabet[i])] = static_cast<int>(i);
  }
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = value[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Canonical only: the bits of the last character that no byte uses are zero, so that one
  // byte string has one text (RFC 4648 §3.5).
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string sha256(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md;
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md.data(), &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 is not available");
  }
  return std::string(reinterpret_cast<const char*>(md.data()), len);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out;
  std::size_t len = 0;
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                 reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(),
                 out.size(), &len)) {
    throw std::runtime_error("HMAC-SHA256 is not available");
  }
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

/// `v` as JSON with every object's keys in sorted order.
void canonical(const json::value& v, std::string& out) {
  if (v.is_object()) {
    const auto& o = v.get_object();
    std::vector<std::string_view> keys;
    keys.reserve(o.size());
    for (auto& [k, _] : o) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    out += '{';
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i) out += ',';
      out += json::serialize(json::string(keys[i]));
      out += ':';
      canonical(o.at(keys[i]), out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    bool first = true;
    for (auto& e : v.get_array()) {
      if (!first) out += ',';
      first = false;
      canonical(e, out);
    }
    out += ']';
  } else {
    out += json::serialize(v);
  }
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kB64Url[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kB64Url[(acc << (6 - bits)) & 63]);
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  return decode_with(text, kB64Url);
}

std::optional<std::string> base64_decode(std::string_view text) { return decode_with(text, kB64); }

std::string_view to_string(StateProblem p) {
  switch (p) {
    case StateProblem::kMalformed:
      return "requestState is malformed";
    case StateProblem::kUnknownKey:
      return "requestState was sealed with a key this server does not hold";
    case StateProblem::kBadSignature:
      return "requestState failed its integrity check";
    case StateProblem::kExpired:
      return "requestState has expired: send the request again without it";
    case StateProblem::kOtherRequest:
      return "requestState belongs to another request (method, name or arguments differ)";
  }
  return "requestState is invalid";
}

RequestStateSealer::RequestStateSealer(std::vector<std::string> keys, std::chrono::milliseconds ttl)
    : ttl_(ttl) {
  for (auto& k : keys) {
    if (k.empty()) continue;
    keys_.push_back({hex(sha256(k)).substr(0, 8), std::move(k)});
  }
  if (keys_.empty()) {
    std::string random(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()),
                   static_cast<int>(random.size())) != 1) {
      throw std::runtime_error("no random bytes for the requestState key");
    }
    keys_.push_back({hex(sha256(random)).substr(0, 8), std::move(random)});
  }
}

std::string RequestStateSealer::derive_key(std::string_view cluster_secret) {
  return hmac_sha256(cluster_secret, "mcpmesh requestState v1");
}

std::string RequestStateSealer::binding(std::string_view method, const json::object& params) {
  std::string text(method);
  text += '\n';
  for (auto key : {"name", "uri"}) {
    if (auto* v = params.if_contains(key); v && v->is_string()) text += v->get_string();
  }
  text += '\n';
  if (auto* a = params.if_contains("arguments")) canonical(*a, text);
  return base64url_encode(sha256(text).substr(0, 16));
}

std::string RequestStateSealer::seal(const json::object& data, std::string_view binding) const {
  json::object payload{{"b", binding}, {"x", now_ms() + ttl_.count()}, {"d", data}};
  const Key& key = keys_.front();
  std::string signed_part = key.id + "." + base64url_encode(json::serialize(payload));
  return signed_part + "." + base64url_encode(hmac_sha256(key.secret, signed_part));
}

boost::system::result<json::object, StateProblem> RequestStateSealer::open(
    std::string_view state, std::string_view binding) const {
  auto last = state.rfind('.');
  auto first = state.find('.');
  if (last == std::string_view::npos || first == last) return StateProblem::kMalformed;
  auto id = state.substr(0, first);
  auto signed_part = state.substr(0, last);
  auto given = base64url_decode(state.substr(last + 1));
  if (!given) return StateProblem::kMalformed;
  auto key = std::find_if(keys_.begin(), keys_.end(), [&](const Key& k) { return k.id == id; });
  if (key == keys_.end()) return StateProblem::kUnknownKey;
  auto expected = hmac_sha256(key->secret, signed_part);
  if (given->size() != expected.size() ||
      CRYPTO_memcmp(given->data(), expected.data(), expected.size()) != 0) {
    return StateProblem::kBadSignature;
  }
  // Signed by this cluster: what follows was written by seal().
  auto text = base64url_decode(signed_part.substr(first + 1));
  if (!text) return StateProblem::kMalformed;
  boost::system::error_code ec;
  auto v = json::parse(*text, ec);
  if (ec || !v.is_object()) return StateProblem::kMalformed;
  auto& payload = v.get_object();
  auto* b = payload.if_contains("b");
  auto* x = payload.if_contains("x");
  auto* d = payload.if_contains("d");
  if (!b || !b->is_string() || !x || !x->is_int64() || !d || !d->is_object()) {
    return StateProblem::kMalformed;
  }
  if (x->get_int64() < now_ms()) return StateProblem::kExpired;
  if (b->get_string() != binding) return StateProblem::kOtherRequest;
  return std::move(d->get_object());
}

}  // namespace mcpmesh::mcp

#pragma once
/// \file
/// The `requestState` of a 2026-07-28 multi round-trip request (an InputRequiredResult): what a
/// handler needs to continue when the client retries — the answers of earlier rounds — sealed so
/// that the client, which carries it, can neither read nor forge it into something the server
/// would act on.
///
/// A state is `<key id>.<payload>.<mac>`: the payload is base64url JSON; the mac is
/// HMAC-SHA256 over the key id and the payload with the key the id names. Every node of a
/// cluster holds the same keys (so a retry may land on any node); the first key seals, every
/// key opens, so keys rotate by adding the new one first on every node, then dropping the old
/// one once no state sealed with it can still be valid (its time to live).
///
/// Inside, besides the handler's data: the method and a digest of the request's salient
/// parameters (name or URI and arguments), so a state cannot be replayed on another request,
/// and an expiry. It is signed, not encrypted: the client can decode the answers it gave
/// itself, nothing more.
///
/// Thread-safety: a `RequestStateSealer` is immutable after construction; any thread.

#include "mcp/app.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace mcpmesh::mcp {

/// Why a state did not open (for the -32602 the client gets and for the counter).
enum class StateProblem { kMalformed, kUnknownKey, kBadSignature, kExpired, kOtherRequest };
[[nodiscard]] std::string_view to_string(StateProblem p);

class RequestStateSealer {
 public:
  /// `keys`: the first seals, all open; empty keys are skipped. With no key at all, a random
  /// one (states then open on this process only, until it restarts).
  explicit RequestStateSealer(std::vector<std::string> keys,
                              std::chrono::milliseconds ttl = std::chrono::minutes(10));

  /// Seals `data` for the request identified by `binding` (see binding()).
  [[nodiscard]] std::string seal(const json::object& data, std::string_view binding) const;
  /// Opens `state`, checking its signature, expiry and that it was sealed for `binding`.
  [[nodiscard]] boost::system::result<json::object, StateProblem> open(
      std::string_view state, std::string_view binding) const;

  /// What ties a state to one request: the method and a digest of its name or URI and
  /// arguments (object keys in sorted order, so the client's key order does not matter).
  [[nodiscard]] static std::string binding(std::string_view method, const json::object& params);

  [[nodiscard]] std::chrono::milliseconds ttl() const { return ttl_; }

  /// The key every node of a cluster derives from the cluster secret, when no key is
  /// configured: HMAC-SHA256(secret, "mcpmesh requestState v1"), so that the secret itself
  /// signs nothing but cluster RPCs.
  [[nodiscard]] static std::string derive_key(std::string_view cluster_secret);

 private:
  struct Key {
    std::string id;  // 8 hex digits of the key's SHA-256: names the key without revealing it
    std::string secret;
  };
  std::vector<Key> keys_;
  std::chrono::milliseconds ttl_;
};

/// base64url without padding (RFC 4648 §5).
[[nodiscard]] std::string base64url_encode(std::string_view bytes);
/// Decodes base64url (padding optional); nullopt on any other character.
[[nodiscard]] std::optional<std::string> base64url_decode(std::string_view text);
/// Decodes standard base64 (RFC 4648 §4, padding optional); nullopt on any other character.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

}  // namespace mcpmesh::mcp

#pragma once
// Cluster port authentication: a shared secret that signs every cluster RPC, and optional
// mutual TLS for the channel under it.
//
// Call tokens. Every cluster RPC (membership, forwarding, replication, admin) carries one token
// in the metadata key `x-mcpmesh-auth`:
//
//   v1.<unix_ms>.<sender_id>.<nonce>.<mac>
//   mac = hex(HMAC-SHA256(secret, "v1\n" + method + "\n" + unix_ms + "\n" + sender_id + "\n"
//                                 + nonce))
//
// where `method` is the full RPC name ("/mcpmesh.v1.Membership/Ping"), so a token for one RPC
// cannot be replayed against another; `nonce` is 16 random bytes as 32 lowercase hex digits and
// `mac` 64 lowercase hex digits. A receiver accepts a token once, and only within
// `AuthLimits::max_skew` of its own wall clock: node clocks must agree to within that.
// The secret authenticates calls; it neither encrypts them nor names the sender (every holder of
// the secret may claim any sender id). Confidentiality and peer identity come from mutual TLS.
//
// Mutual TLS. Peers dial each other by address (host:port from gossip), which no certificate can
// list in advance, so every cluster channel verifies the server's certificate against the
// fixed name `kClusterTlsName` ("mcpmesh-cluster") instead of the address. Every node therefore
// needs ONE certificate, signed by the cluster CA, that carries the SAN DNS:mcpmesh-cluster and
// serves both sides of the handshake (if it has an extendedKeyUsage, it must list both
// serverAuth and clientAuth). Servers require a client certificate signed by the same CA.
//
// Thread-safety: load_cluster_secret and the credential builders are start-up functions (they
// block on file reads and throw std::runtime_error). Every ClusterAuth member may be called from
// any thread, concurrently; stamp/token/check/check_token never throw and never block beyond a
// short mutex hold (check_token takes one mutex around the nonce cache), so they are safe on
// gRPC callback threads.

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace mcpmesh::cluster {

/// Metadata key of the call token.
inline constexpr std::string_view kAuthMetadataKey = "x-mcpmesh-auth";
/// Shortest accepted secret: 16 bytes is 128 bits if random; shorter ones are guessable.
inline constexpr size_t kMinSecretBytes = 16;
/// Longest accepted secret (after trimming): a larger file is most likely the wrong file.
inline constexpr size_t kMaxSecretBytes = 4096;
/// Name every cluster certificate carries (SAN DNS) and every cluster channel verifies.
inline constexpr std::string_view kClusterTlsName = "mcpmesh-cluster";

/// Reads the cluster secret from `path`: the file's bytes with trailing whitespace/newlines
/// trimmed; at least kMinSecretBytes, at most kMaxSecretBytes. Throws std::runtime_error with a
/// message naming the path and the problem (missing or unreadable, not a regular file, empty,
/// too short, too long); the message never contains secret bytes. Logs (spdlog::warn) when the
/// file is readable by group or others. Start-up only: blocks on the file system.
[[nodiscard]] std::string load_cluster_secret(const std::string& path);

struct AuthLimits {
  /// A token whose timestamp is further than this from the receiver's clock is refused; also
  /// how long a seen nonce must be remembered.
  std::chrono::milliseconds max_skew{60000};
  /// Most nonces remembered (under 100 bytes each: a few MiB at the default). When every
  /// remembered nonce is still inside the window, a token no newer than the oldest one is
  /// refused, and a newer one displaces it, after which tokens at or before the displaced
  /// timestamp are refused; both count as `cache_full` (reasoning in auth.cpp, remember()).
  size_t nonce_cache = 1 << 16;
  /// Longest accepted sender id (node ids are short; this bounds untrusted input).
  size_t max_sender_id = 128;
};

/// Refusals by reason, as counted since construction.
struct AuthCounters {
  uint64_t missing = 0;        // no token in the call's metadata
  uint64_t malformed = 0;      // not v1.<ms>.<id>.<nonce>.<mac>, or more than one token
  uint64_t bad_signature = 0;  // MAC does not match: wrong secret, other method or tampered
  uint64_t skew = 0;           // authentic but outside max_skew of our clock
  uint64_t replay = 0;         // authentic nonce seen before
  uint64_t cache_full = 0;     // authentic, but older than the full nonce cache still covers
  [[nodiscard]] uint64_t total() const {
    return missing + malformed + bad_signature + skew + replay + cache_full;
  }
};

/// Wall clock in Unix milliseconds; injectable so that tests control skew and expiry.
using UnixMsClock = std::function<int64_t()>;
/// std::chrono::system_clock in Unix milliseconds.
[[nodiscard]] int64_t system_unix_ms();

/// HMAC-SHA256 call tokens. Thread-safety: every member may be called from any thread.
class ClusterAuth {
 public:
  /// Throws std::invalid_argument when the secret is shorter than kMinSecretBytes or longer than
  /// kMaxSecretBytes, the sender id is empty, longer than limits.max_sender_id or not visible
  /// ASCII without '.', or a limit is zero; std::runtime_error when OpenSSL cannot set up HMAC.
  /// `now` must be callable from any thread.
  ClusterAuth(std::string secret, std::string sender_id, AuthLimits limits = {},
              UnixMsClock now = system_unix_ms);
  ~ClusterAuth();
  ClusterAuth(const ClusterAuth&) = delete;
  ClusterAuth& operator=(const ClusterAuth&) = delete;

  /// Adds the token for `method` (the RPC's name, e.g. "/mcpmesh.v1.Membership/Ping") to an
  /// outgoing call. If no token can be made (OpenSSL failure, logged), the call goes out without
  /// one and the server refuses it.
  void stamp(grpc::ClientContext& ctx, std::string_view method) const;
  /// The token value alone (for tests and for callers that set metadata themselves); empty when
  /// OpenSSL fails (logged).
  [[nodiscard]] std::string token(std::string_view method) const;

  /// Checks an incoming call's metadata for `method`: OK, or UNAUTHENTICATED with a short reason
  /// (no token, malformed, bad signature, outside the clock-skew window, replayed nonce, nonce
  /// cache full). Counts each refusal.
  [[nodiscard]] grpc::Status check(const grpc::ServerContextBase& ctx, std::string_view method);
  /// For a unary callback handler: null when the call carries a valid token for `method`;
  /// otherwise the call's reactor, already finished with the refusal, for the handler to return:
  ///   if (auto* refused = auth_.refuse_unary(context, kMethod)) return refused;
  [[nodiscard]] grpc::ServerUnaryReactor* refuse_unary(grpc::CallbackServerContext* ctx,
                                                       std::string_view method);
  /// Same, for a raw token value. The MAC is checked before the clock and the nonce cache, so a
  /// caller without the secret can neither fill the cache nor get past "bad signature".
  [[nodiscard]] grpc::Status check_token(std::string_view token, std::string_view method);

  /// Total refusals.
  [[nodiscard]] uint64_t refused() const { return counters().total(); }
  /// Refusals by reason (each field read atomically; the set is not one atomic snapshot).
  [[nodiscard]] AuthCounters counters() const;
  /// Nonces remembered now (at most limits().nonce_cache).
  [[nodiscard]] size_t nonce_cache_size() const;

  [[nodiscard]] const std::string& sender_id() const { return sender_id_; }
  [[nodiscard]] const AuthLimits& limits() const { return limits_; }

 private:
  struct Impl;  // OpenSSL HMAC key and the nonce cache, kept out of this header

  grpc::Status refuse(std::atomic<uint64_t>& counter, const char* reason);

  std::string sender_id_;
  AuthLimits limits_;
  UnixMsClock now_;
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> missing_{0};
  std::atomic<uint64_t> malformed_{0};
  std::atomic<uint64_t> bad_signature_{0};
  std::atomic<uint64_t> skew_{0};
  std::atomic<uint64_t> replay_{0};
  std::atomic<uint64_t> cache_full_{0};
};

/// PEM file paths: this node's certificate (chain) and private key, and the cluster CA that
/// signs every node certificate.
struct TlsFiles {
  std::string cert, key, ca;
};

/// Insecure credentials when `tls` is empty; else server credentials that require and verify
/// client certificates against the CA. Reads and parses the files now; throws std::runtime_error
/// naming the file when one is unreadable or not PEM, or when the key does not match the
/// certificate. Warns when the certificate does not carry kClusterTlsName.
[[nodiscard]] std::shared_ptr<grpc::ServerCredentials> server_credentials(
    const std::optional<TlsFiles>& tls);
/// Insecure credentials when `tls` is empty; else channel credentials that present this node's
/// certificate and verify the server's against the CA. Same checks and errors as
/// server_credentials. Use with apply_tls_channel_args.
[[nodiscard]] std::shared_ptr<grpc::ChannelCredentials> channel_credentials(
    const std::optional<TlsFiles>& tls);
/// With TLS, makes the channel verify the server certificate against kClusterTlsName instead of
/// the dialled address (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG); does nothing without TLS.
void apply_tls_channel_args(grpc::ChannelArguments& args, const std::optional<TlsFiles>& tls);

}  // namespace mcpmesh::cluster

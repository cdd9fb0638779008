// Cluster secret, HMAC call tokens and mutual-TLS credentials. Contracts: auth.hpp.

#include "cluster/auth.hpp"

#include <absl/container/flat_hash_set.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace mcpmesh::cluster {
namespace {

constexpr std::string_view kVersion = "v1";
constexpr size_t kNonceBytes = 16;
constexpr size_t kMacBytes = 32;  // SHA-256
/// Digits of the largest int64: longer timestamps cannot be valid.
constexpr size_t kMaxMsDigits = 19;
/// Refuse to read secret files beyond this: trimming allows some trailing whitespace, but a
/// file this large is not a secret file and must not be read whole.
constexpr off_t kMaxSecretFileBytes = 64 * 1024;
/// PEM files (a certificate chain, a CA bundle) are small; this only stops reading a wrong path
/// such as a device or a huge file.
constexpr off_t kMaxPemFileBytes = 1024 * 1024;

using Nonce = std::array<uint8_t, kNonceBytes>;
using Mac = std::array<uint8_t, kMacBytes>;

constexpr char kHexDigits[] = "0123456789abcdef";

void append_hex(std::string& out, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHexDigits[p[i] >> 4]);
    out.push_back(kHexDigits[p[i] & 0xf]);
  }
}

/// Lowercase only: one spelling per value, so a token has exactly one valid form.
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

template <size_t N>
bool decode_hex(std::string_view s, std::array<uint8_t, N>& out) {
  if (s.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    int hi = hex_value(s[2 * i]);
    int lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

/// Node ids travel inside the dotted token and in logs: visible ASCII, no '.'.
bool valid_sender_id(std::string_view id, size_t max_len) {
  if (id.empty() || id.size() > max_len) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f && c != '.'; });
}

struct ParsedToken {
  std::string_view ms_text;  // MAC'd as sent
  int64_t unix_ms = 0;
  std::string_view sender;
  std::string_view nonce_hex;  // MAC'd as sent
  Nonce nonce{};
  Mac mac{};
};

/// Splits and checks the syntax only; says nothing about authenticity.
std::optional<ParsedToken> parse_token(std::string_view t, size_t max_sender) {
  // Bound the work on untrusted input before looking inside.
  const size_t max_len =
      kVersion.size() + 1 + kMaxMsDigits + 1 + max_sender + 1 + 2 * kNonceBytes + 1 + 2 * kMacBytes;
  if (t.size() > max_len) return std::nullopt;
  std::array<std::string_view, 5> f;
  for (size_t i = 0; i < f.size(); ++i) {
    size_t dot = t.find('.');
    if (i + 1 < f.size()) {
      if (dot == std::string_view::npos) return std::nullopt;
      f[i] = t.substr(0, dot);
      t.remove_prefix(dot + 1);
    } else {
      if (dot != std::string_view::npos) return std::nullopt;
      f[i] = t;
    }
  }
  if (f[0] != kVersion) return std::nullopt;
  ParsedToken p;
  p.ms_text = f[1];
  if (p.ms_text.empty() || p.ms_text.size() > kMaxMsDigits) return std::nullopt;
  if (!std::all_of(p.ms_text.begin(), p.ms_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  auto [end, ec] =
      std::from_chars(p.ms_text.data(), p.ms_text.data() + p.ms_text.size(), p.unix_ms);
  if (ec != std::errc() || end != p.ms_text.data() + p.ms_text.size()) return std::nullopt;
  p.sender = f[2];
  if (!valid_sender_id(p.sender, max_sender)) return std::nullopt;
  p.nonce_hex = f[3];
  if (!decode_hex(p.nonce_hex, p.nonce)) return std::nullopt;
  if (!decode_hex(f[4], p.mac)) return std::nullopt;
  return p;
}

/// Opens `path` for reading and checks it is a regular file no larger than `max_bytes`; throws
/// std::runtime_error("<what> '<path>': <problem>").
std::string read_small_file(const std::string& path, const char* what, off_t max_bytes,
                            mode_t* mode_out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(std::string("cannot read ") + what + " '" + path +
                             "': " + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw std::runtime_error(std::string("cannot stat ") + what + " '" + path +
                             "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw std::runtime_error(std::string(what) + " '" + path + "' is not a regular file");
  }
  if (st.st_size > max_bytes) {
    throw std::runtime_error(std::string(what) + " '" + path + "' is too large (" +
                             std::to_string(st.st_size) + " bytes, at most " +
                             std::to_string(max_bytes) + ")");
  }
  if (mode_out) *mode_out = st.st_mode;
  std::string data;
  data.resize(static_cast<size_t>(max_bytes) + 1);
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      OPENSSL_cleanse(data.data(), data.size());
      throw std::runtime_error(std::string("cannot read ") + what + " '" + path +
                               "': " + std::strerror(errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > static_cast<size_t>(max_bytes)) {  // grew since fstat
    OPENSSL_cleanse(data.data(), data.size());
    throw std::runtime_error(std::string(what) + " '" + path + "' is too large");
  }
  data.resize(got);
  return data;
}

void warn_if_shared(const std::string& path, mode_t mode, const char* what) {
  if (mode & (S_IRGRP | S_IROTH)) {
    spdlog::warn("{} '{}' is readable by group or others (mode {:o}); chmod 600 it", what, path,
                 mode & 0777);
  }
}

struct MacCtxFree {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxFree>;

}  // namespace

int64_t system_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string load_cluster_secret(const std::string& path) {
  mode_t mode = 0;
  std::string secret = read_small_file(path, "cluster secret file", kMaxSecretFileBytes, &mode);
  warn_if_shared(path, mode, "cluster secret file");
  // Editors and `echo` add a newline; people do not mean it as part of the secret.
  size_t end = secret.find_last_not_of(" \t\r\n\v\f");
  size_t len = end == std::string::npos ? 0 : end + 1;
  OPENSSL_cleanse(secret.data() + len, secret.size() - len);
  secret.resize(len);
  if (secret.empty()) {
    throw std::runtime_error("cluster secret file '" + path + "' is empty");
  }
  if (secret.size() < kMinSecretBytes) {
    const size_t n = secret.size();
    OPENSSL_cleanse(secret.data(), secret.size());
    throw std::runtime_error("cluster secret in '" + path + "' is too short (" + std::to_string(n) +
                             " bytes, needs at least " + std::to_string(kMinSecretBytes) + ")");
  }
  if (secret.size() > kMaxSecretBytes) {
    const size_t n = secret.size();
    OPENSSL_cleanse(secret.data(), secret.size());
    throw std::runtime_error("cluster secret in '" + path + "' is too long (" + std::to_string(n) +
                             " bytes, at most " + std::to_string(kMaxSecretBytes) + ")");
  }
  return secret;
}

// ---------------------------------------------------------------------------------------------
// ClusterAuth

struct ClusterAuth::Impl {
  /// HMAC keyed with the secret and never updated: each MAC works on a copy (EVP_MAC_CTX_dup
  /// only reads it), so concurrent calls need no lock and the secret lives only in OpenSSL.
  MacCtxPtr mac_template;

  enum class Verdict { kAccepted, kReplay, kCacheFull };

  /// Nonces of accepted tokens, each with its token's timestamp. One mutex: the critical section
  /// is a hash lookup and a heap push, far cheaper than the HMAC done before it outside the lock.
  std::mutex mu;
  absl::flat_hash_set<Nonce> seen;                // guarded by mu
  std::vector<std::pair<int64_t, Nonce>> oldest;  // min-heap on timestamp; guarded by mu
  /// Newest timestamp of any nonce forgotten so far (guarded by mu). A token at or before it
  /// cannot be checked for replay, so it is refused.
  int64_t forgotten_up_to = std::numeric_limits<int64_t>::min();

  void pop_oldest() {
    std::pop_heap(oldest.begin(), oldest.end(), std::greater<>());
    forgotten_up_to = std::max(forgotten_up_to, oldest.back().first);
    seen.erase(oldest.back().second);
    oldest.pop_back();
  }

  /// Remembers an authentic, in-window nonce. Must be called only after the MAC and the clock
  /// check, so that only secret holders reach it.
  Verdict remember(int64_t ts, const Nonce& nonce, int64_t now, int64_t skew_ms, size_t cap) {
    std::lock_guard lock(mu);
    // Nonces older than the window can go: the clock check refuses their tokens anyway. Going
    // through pop_oldest also covers a wall clock stepped back: what was forgotten stays
    // refused instead of becoming replayable.
    const int64_t horizon = now - skew_ms;
    while (!oldest.empty() && oldest.front().first < horizon) pop_oldest();
    if (seen.contains(nonce)) return Verdict::kReplay;
    if (ts <= forgotten_up_to) return Verdict::kCacheFull;
    if (seen.size() >= cap) {
      // Full of nonces still inside the window. Forgetting one would let its token be replayed
      // until it leaves the window, so the bound must not cost correctness. Instead the window
      // shrinks: a token no newer than the oldest remembered one is refused outright; a newer
      // one displaces the oldest, and from then on every token at or before the displaced
      // timestamp is refused (forgotten_up_to). Honest peers stamp fresh tokens, so under a
      // flood (which takes the secret: the MAC is checked first) only late or clock-lagging
      // calls are refused, and they are counted as cache_full.
      if (ts <= oldest.front().first) return Verdict::kCacheFull;
      pop_oldest();
    }
    seen.insert(nonce);
    oldest.emplace_back(ts, nonce);
    std::push_heap(oldest.begin(), oldest.end(), std::greater<>());
    return Verdict::kAccepted;
  }

  /// HMAC-SHA256 over the token's signed fields, fed piecewise (no allocation).
  bool mac(std::string_view method, std::string_view ms_text, std::string_view sender,
           std::string_view nonce_hex, Mac& out) const {
    MacCtxPtr ctx(EVP_MAC_CTX_dup(mac_template.get()));
    if (!ctx) return false;
    auto update = [&](std::string_view s) {
      return EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(s.data()),
                            s.size()) == 1;
    };
    if (!(update(kVersion) && update("\n") && update(method) && update("\n") && update(ms_text) &&
          update("\n") && update(sender) && update("\n") && update(nonce_hex))) {
      return false;
    }
    size_t len = 0;
    if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1) return false;
    return len == out.size();
  }
};

ClusterAuth::ClusterAuth(std::string secret, std::string sender_id, AuthLimits limits,
                         UnixMsClock now)
    : sender_id_(std::move(sender_id)),
      limits_(limits),
      now_(std::move(now)),
      impl_(std::make_unique<Impl>()) {
  struct Wipe {
    std::string& s;
    ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
  } wipe{secret};
  if (secret.size() < kMinSecretBytes || secret.size() > kMaxSecretBytes) {
    throw std::invalid_argument("cluster secret must be " + std::to_string(kMinSecretBytes) + ".." +
                                std::to_string(kMaxSecretBytes) + " bytes, got " +
                                std::to_string(secret.size()));
  }
  if (limits_.max_sender_id == 0 || !valid_sender_id(sender_id_, limits_.max_sender_id)) {
    throw std::invalid_argument("cluster auth sender id '" + sender_id_ + "' must be 1.." +
                                std::to_string(limits_.max_sender_id) +
                                " visible ASCII characters without '.'");
  }
  if (limits_.max_skew.count() <= 0 || limits_.nonce_cache == 0) {
    throw std::invalid_argument("cluster auth limits must be positive (max_skew, nonce_cache)");
  }
  if (!now_) throw std::invalid_argument("cluster auth needs a clock");

  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!hmac) throw std::runtime_error("OpenSSL: HMAC is not available");
  impl_->mac_template.reset(EVP_MAC_CTX_new(hmac));
  EVP_MAC_free(hmac);  // the context holds its own reference
  if (!impl_->mac_template) throw std::runtime_error("OpenSSL: cannot create an HMAC context");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(impl_->mac_template.get(), reinterpret_cast<const unsigned char*>(secret.data()),
                   secret.size(), params) != 1) {
    throw std::runtime_error("OpenSSL: cannot key HMAC-SHA256");
  }
}

ClusterAuth::~ClusterAuth() = default;

std::string ClusterAuth::token(std::string_view method) const {
  Nonce nonce;
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
    spdlog::error("cluster auth: RAND_bytes failed; call goes out without a token");
    return {};
  }
  std::string t;
  t.reserve(kVersion.size() + 1 + kMaxMsDigits + 1 + sender_id_.size() + 1 + 2 * kNonceBytes + 1 +
            2 * kMacBytes);
  t.append(kVersion).push_back('.');
  const size_t ms_at = t.size();
  t.append(std::to_string(now_()));
  const size_t ms_len = t.size() - ms_at;
  t.push_back('.');
  t.append(sender_id_).push_back('.');
  const size_t nonce_at = t.size();
  append_hex(t, nonce.data(), nonce.size());
  Mac mac;
  std::string_view tv(t);
  if (!impl_->mac(method, tv.substr(ms_at, ms_len), sender_id_,
                  tv.substr(nonce_at, 2 * kNonceBytes), mac)) {
    spdlog::error("cluster auth: HMAC failed; call goes out without a token");
    return {};
  }
  t.push_back('.');
  append_hex(t, mac.data(), mac.size());
  return t;
}

void ClusterAuth::stamp(grpc::ClientContext& ctx, std::string_view method) const {
  std::string t = token(method);
  if (!t.empty()) ctx.AddMetadata(std::string(kAuthMetadataKey), std::move(t));
}

grpc::Status ClusterAuth::refuse(std::atomic<uint64_t>& counter, const char* reason) {
  counter.fetch_add(1, std::memory_order_relaxed);
  // Debug only: refusals come from the network, a flood must not flood the log. The counters
  // are the signal.
  spdlog::debug("cluster auth: refused: {}", reason);
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string("cluster auth: ") + reason);
}

grpc::Status ClusterAuth::check(const grpc::ServerContextBase& ctx, std::string_view method) {
  const auto& md = ctx.client_metadata();
  auto [lo, hi] =
      md.equal_range(grpc::string_ref(kAuthMetadataKey.data(), kAuthMetadataKey.size()));
  if (lo == hi) return refuse(missing_, "no token");
  // Two tokens are never sent by us; which one would count is ambiguous, so neither does.
  if (std::next(lo) != hi) return refuse(malformed_, "more than one token");
  return check_token(std::string_view(lo->second.data(), lo->second.size()), method);
}

grpc::ServerUnaryReactor* ClusterAuth::refuse_unary(grpc::CallbackServerContext* ctx,
                                                    std::string_view method) {
  auto status = check(*ctx, method);
  if (status.ok()) return nullptr;
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::Status ClusterAuth::check_token(std::string_view token, std::string_view method) {
  if (token.empty()) return refuse(missing_, "no token");
  auto parsed = parse_token(token, limits_.max_sender_id);
  if (!parsed) return refuse(malformed_, "malformed token");
  Mac expected;
  if (!impl_->mac(method, parsed->ms_text, parsed->sender, parsed->nonce_hex, expected)) {
    // Not the caller's fault, but nothing authenticated it either.
    spdlog::error("cluster auth: HMAC failed while checking a token");
    return refuse(bad_signature_, "bad signature");
  }
  // Constant time: a timing difference would let a caller find the MAC byte by byte.
  if (CRYPTO_memcmp(expected.data(), parsed->mac.data(), expected.size()) != 0) {
    return refuse(bad_signature_, "bad signature");
  }
  const int64_t now = now_();
  const int64_t skew = limits_.max_skew.count();
  // Both signs: a token from the future would otherwise outlive its nonce in the cache.
  if (parsed->unix_ms < now - skew || parsed->unix_ms > now + skew) {
    return refuse(skew_, "outside the clock-skew window");
  }
  switch (impl_->remember(parsed->unix_ms, parsed->nonce, now, skew, limits_.nonce_cache)) {
    case Impl::Verdict::kAccepted:
      return grpc::Status::OK;
    case Impl::Verdict::kReplay:
      return refuse(replay_, "replayed nonce");
    case Impl::Verdict::kCacheFull:
      return refuse(cache_full_, "token older than the full nonce cache covers");
  }
  return refuse(malformed_, "malformed token");  // unreachable
}

AuthCounters ClusterAuth::counters() const {
  AuthCounters c;
  c.missing = missing_.load(std::memory_order_relaxed);
  c.malformed = malformed_.load(std::memory_order_relaxed);
  c.bad_signature = bad_signature_.load(std::memory_order_relaxed);
  c.skew = skew_.load(std::memory_order_relaxed);
  c.replay = replay_.load(std::memory_order_relaxed);
  c.cache_full = cache_full_.load(std::memory_order_relaxed);
  return c;
}

size_t ClusterAuth::nonce_cache_size() const {
  std::lock_guard lock(impl_->mu);
  return impl_->seen.size();
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

struct TlsPem {
  std::string cert, key, ca;
};

std::unique_ptr<BIO, BioFree> mem_bio(const std::string& s) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

/// Reads and parses the three files now, so that a wrong path or a mismatched key stops the
/// process at start-up with the file's name, not later as an opaque handshake failure.
TlsPem load_tls(const TlsFiles& files) {
  if (files.cert.empty() || files.key.empty() || files.ca.empty()) {
    throw std::runtime_error("cluster TLS needs a certificate, a key and a CA file (all three)");
  }
  TlsPem pem;
  pem.cert = read_small_file(files.cert, "TLS certificate file", kMaxPemFileBytes, nullptr);
  mode_t key_mode = 0;
  pem.key = read_small_file(files.key, "TLS key file", kMaxPemFileBytes, &key_mode);
  warn_if_shared(files.key, key_mode, "TLS key file");
  pem.ca = read_small_file(files.ca, "TLS CA file", kMaxPemFileBytes, nullptr);

  auto cert_bio = mem_bio(pem.cert);
  std::unique_ptr<X509, X509Free> cert(
      cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) {
    throw std::runtime_error("TLS certificate file '" + files.cert + "' holds no PEM certificate");
  }
  auto key_bio = mem_bio(pem.key);
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) {
    throw std::runtime_error("TLS key file '" + files.key +
                             "' holds no unencrypted PEM private key");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    throw std::runtime_error("TLS key file '" + files.key + "' does not match certificate '" +
                             files.cert + "'");
  }
  auto ca_bio = mem_bio(pem.ca);
  std::unique_ptr<X509, X509Free> ca(
      ca_bio ? PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!ca) {
    throw std::runtime_error("TLS CA file '" + files.ca + "' holds no PEM certificate");
  }
  if (X509_check_host(cert.get(), kClusterTlsName.data(), kClusterTlsName.size(), 0, nullptr) !=
      1) {
    spdlog::warn(
        "TLS certificate '{}' does not carry the name {}: peers will refuse it (cluster channels "
        "verify that name, not the address)",
        files.cert, kClusterTlsName);
  }
  return pem;
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> server_credentials(const std::optional<TlsFiles>& tls) {
  if (!tls) return grpc::InsecureServerCredentials();
  TlsPem pem = load_tls(*tls);
  grpc::SslServerCredentialsOptions opts(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = std::move(pem.ca);
  opts.pem_key_cert_pairs.push_back({std::move(pem.key), std::move(pem.cert)});
  return grpc::SslServerCredentials(opts);
}

std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const std::optional<TlsFiles>& tls) {
  if (!tls) return grpc::InsecureChannelCredentials();
  TlsPem pem = load_tls(*tls);
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = std::move(pem.ca);
  opts.pem_private_key = std::move(pem.key);
  opts.pem_cert_chain = std::move(pem.cert);
  return grpc::SslCredentials(opts);
}

void apply_tls_channel_args(grpc::ChannelArguments& args, const std::optional<TlsFiles>& tls) {
  if (tls) args.SetSslTargetNameOverride(std::string(kClusterTlsName));
}

}  // namespace mcpmesh::cluster

// Cluster authentication: the secret file, HMAC call tokens (each way a token can be wrong, the
// clock window, replays, the bounded nonce cache), an in-process gRPC Admin service that checks
// tokens, and mutual TLS with certificates made here at run time (no key material in the repo).
//
// Hermetic: loopback on port 0, an injected wall clock for every time-dependent rule, files in a
// fresh temporary directory, a deadline on every RPC.

#include "cluster/auth.hpp"
#include "cluster/test_pki.hpp"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proto/admin.grpc.pb.h"

namespace mcpmesh::cluster {
namespace {

namespace fs = std::filesystem;
namespace pb = ::mcpmesh::v1;
using namespace std::chrono_literals;
using namespace testing;

constexpr char kSecret[] = "correct-horse-battery-staple-42";
constexpr char kOtherSecret[] = "incorrect-horse-battery-staple-0";
constexpr char kMembersMethod[] = "/mcpmesh.v1.Admin/Members";
constexpr char kPingMethod[] = "/mcpmesh.v1.Membership/Ping";
constexpr int64_t kT0 = 1'700'000'000'000;  // an arbitrary wall time, Unix ms

/// A fresh directory, removed with everything in it.
/// Wall clock under test control, shared by the sender and the receiver unless a test gives
/// them different ones.
struct FakeClock {
  std::shared_ptr<std::atomic<int64_t>> ms = std::make_shared<std::atomic<int64_t>>(kT0);
  UnixMsClock fn() const {
    return [ms = ms] { return ms->load(); };
  }
  void set(int64_t v) const { ms->store(v); }
  void advance(int64_t d) const { ms->fetch_add(d); }
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, '.')) out.push_back(part);
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "." : "") + parts[i];
  return out;
}

/// Routes spdlog's default logger into a string for the life of the object.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

// --- The secret file ---------------------------------------------------------------------------

TEST(ClusterSecret, MissingFileIsRefusedNamingThePath) {
  TempDir dir;
  const std::string path = dir.file("absent");
  try {
    (void)load_cluster_secret(path);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

TEST(ClusterSecret, EmptyOrBlankFileIsRefused) {
  TempDir dir;
  for (const char* content : {"", "\n", " \t\r\n\n"}) {
    try {
      (void)load_cluster_secret(dir.write("s", content));
      FAIL() << "accepted a blank secret";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("is empty"), std::string::npos) << e.what();
    }
  }
}

TEST(ClusterSecret, TooShortIsRefusedWithoutEchoingIt) {
  TempDir dir;
  const std::string short_secret = "fifteen-bytes!!";  // 15 bytes
  ASSERT_EQ(short_secret.size(), kMinSecretBytes - 1);
  try {
    (void)load_cluster_secret(dir.write("s", short_secret + "\n"));
    FAIL() << "accepted a 15-byte secret";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("too short"), std::string::npos) << msg;
    EXPECT_NE(msg.find("15 bytes"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(short_secret), std::string::npos) << "secret bytes in the message";
  }
  // Exactly the minimum is enough.
  EXPECT_EQ(load_cluster_secret(dir.write("s16", "sixteen-bytes!!!")), "sixteen-bytes!!!");
}

TEST(ClusterSecret, TooLongIsRefused) {
  TempDir dir;
  EXPECT_THROW((void)load_cluster_secret(dir.write("s", std::string(kMaxSecretBytes + 1, 'x'))),
               std::runtime_error);
  EXPECT_EQ(load_cluster_secret(dir.write("ok", std::string(kMaxSecretBytes, 'x') + "\n")).size(),
            kMaxSecretBytes);
}

TEST(ClusterSecret, DirectoryIsRefused) {
  TempDir dir;
  fs::create_directory(dir.file("d"));
  try {
    (void)load_cluster_secret(dir.file("d"));
    FAIL() << "accepted a directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

TEST(ClusterSecret, TrailingWhitespaceIsTrimmedLeadingAndInnerKept) {
  TempDir dir;
  EXPECT_EQ(load_cluster_secret(dir.write("s", "  0123456789 abcdef \t\r\n\n")),
            "  0123456789 abcdef");
  EXPECT_EQ(load_cluster_secret(dir.write("t", kSecret)), kSecret);  // no newline at all
}

TEST(ClusterSecret, WarnsOnlyWhenGroupOrOthersCanRead) {
  TempDir dir;
  {
    LogCapture log;
    (void)load_cluster_secret(dir.write("private", kSecret));
    EXPECT_EQ(log.text().find("readable by group or others"), std::string::npos) << log.text();
  }
  {
    LogCapture log;
    (void)load_cluster_secret(dir.write(
        "shared", kSecret, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));
    EXPECT_NE(log.text().find("readable by group or others"), std::string::npos) << log.text();
    EXPECT_EQ(log.text().find(kSecret), std::string::npos) << "secret bytes in the log";
  }
}

// --- Tokens ------------------------------------------------------------------------------------

TEST(ClusterAuthSetup, RefusesBadSecretsAndSenderIds) {
  EXPECT_THROW(ClusterAuth("short", "n1"), std::invalid_argument);
  EXPECT_THROW(ClusterAuth(kSecret, ""), std::invalid_argument);
  EXPECT_THROW(ClusterAuth(kSecret, "node.1"), std::invalid_argument);
  EXPECT_THROW(ClusterAuth(kSecret, "node 1"), std::invalid_argument);
  EXPECT_THROW(ClusterAuth(kSecret, std::string(129, 'n')), std::invalid_argument);
  AuthLimits zero_cache;
  zero_cache.nonce_cache = 0;
  EXPECT_THROW(ClusterAuth(kSecret, "n1", zero_cache), std::invalid_argument);
  EXPECT_NO_THROW(ClusterAuth(kSecret, "ctl"));
  EXPECT_NO_THROW(ClusterAuth(kSecret, "node-7_eu:west"));
}

TEST(ClusterAuthToken, HasTheDocumentedFormAndVerifies) {
  FakeClock clock;
  ClusterAuth sender(kSecret, "n1", {}, clock.fn());
  ClusterAuth receiver(kSecret, "n2", {}, clock.fn());
  const std::string t = sender.token(kPingMethod);
  auto f = split(t);
  ASSERT_EQ(f.size(), 5u) << t;
  EXPECT_EQ(f[0], "v1");
  EXPECT_EQ(f[1], std::to_string(kT0));
  EXPECT_EQ(f[2], "n1");
  EXPECT_EQ(f[3].size(), 32u);
  EXPECT_EQ(f[4].size(), 64u);
  EXPECT_EQ(f[4].find_first_not_of("0123456789abcdef"), std::string::npos);

  grpc::Status s = receiver.check_token(t, kPingMethod);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(receiver.refused(), 0u);
  // Nonces are random: two tokens in the same millisecond differ.
  EXPECT_NE(split(sender.token(kPingMethod))[3], f[3]);
}

TEST(ClusterAuthToken, WrongSecretIsRefused) {
  FakeClock clock;
  ClusterAuth intruder(kOtherSecret, "n1", {}, clock.fn());
  ClusterAuth receiver(kSecret, "n2", {}, clock.fn());
  grpc::Status s = receiver.check_token(intruder.token(kPingMethod), kPingMethod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("bad signature"), std::string::npos) << s.error_message();
  EXPECT_EQ(receiver.counters().bad_signature, 1u);
  EXPECT_EQ(receiver.refused(), 1u);
}

TEST(ClusterAuthToken, TokenForAnotherMethodIsRefused) {
  FakeClock clock;
  ClusterAuth sender(kSecret, "n1", {}, clock.fn());
  ClusterAuth receiver(kSecret, "n2", {}, clock.fn());
  const std::string t = sender.token(kPingMethod);
  EXPECT_EQ(receiver.check_token(t, kMembersMethod).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(receiver.counters().bad_signature, 1u);
  // The refusal did not use up the nonce: the token still works where it belongs.
  EXPECT_TRUE(receiver.check_token(t, kPingMethod).ok());
}

TEST(ClusterAuthToken, EveryTamperedFieldIsRefused) {
  FakeClock clock;
  ClusterAuth sender(kSecret, "n1", {}, clock.fn());
  ClusterAuth receiver(kSecret, "n2", {}, clock.fn());
  const std::string t = sender.token(kPingMethod);
  const auto f = split(t);
  ASSERT_EQ(f.size(), 5u);
  auto with = [&](size_t i, std::string v) {
    auto g = f;
    g[i] = std::move(v);
    return join(g);
  };
  auto flip_last = [](std::string s) {
    s.back() = s.back() == '0' ? '1' : '0';
    return s;
  };
  auto upper = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  };
  struct Case {
    std::string token;
    uint64_t AuthCounters::*reason;
  };
  const std::vector<Case> cases = {
      {with(0, "v2"), &AuthCounters::malformed},
      {with(1, std::to_string(kT0 + 1)), &AuthCounters::bad_signature},
      {with(1, "0" + f[1]), &AuthCounters::bad_signature},  // same number, other text
      {with(1, "-1"), &AuthCounters::malformed},
      {with(1, "17x"), &AuthCounters::malformed},
      {with(1, "99999999999999999999"), &AuthCounters::malformed},  // beyond int64
      {with(2, "n3"), &AuthCounters::bad_signature},
      {with(2, "n 1"), &AuthCounters::malformed},
      {with(2, ""), &AuthCounters::malformed},
      {with(3, flip_last(f[3])), &AuthCounters::bad_signature},
      {with(3, f[3].substr(2)), &AuthCounters::malformed},
      {with(3, upper(f[3])), &AuthCounters::malformed},
      {with(4, flip_last(f[4])), &AuthCounters::bad_signature},
      {with(4, upper(f[4])), &AuthCounters::malformed},
      {with(4, f[4].substr(0, 62)), &AuthCounters::malformed},
      {t + ".extra", &AuthCounters::malformed},
      {join({f[0], f[1], f[2], f[3]}), &AuthCounters::malformed},
      {"garbage", &AuthCounters::malformed},
      {std::string(100000, 'v'), &AuthCounters::malformed},
      {"", &AuthCounters::missing},
  };
  for (const auto& c : cases) {
    const AuthCounters before = receiver.counters();
    grpc::Status s = receiver.check_token(c.token, kPingMethod);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << c.token.substr(0, 200);
    EXPECT_EQ(receiver.counters().*c.reason, before.*c.reason + 1) << c.token.substr(0, 200);
  }
  EXPECT_EQ(receiver.refused(), cases.size());
  // Untouched, the token is still good: the refusals above were about the changes.
  EXPECT_TRUE(receiver.check_token(t, kPingMethod).ok());
}

TEST(ClusterAuthToken, OutsideTheClockSkewWindowIsRefused) {
  AuthLimits limits;
  limits.max_skew = 5000ms;
  FakeClock receiver_clock, sender_clock;
  ClusterAuth sender(kSecret, "n1", limits, sender_clock.fn());
  ClusterAuth receiver(kSecret, "n2", limits, receiver_clock.fn());

  sender_clock.set(kT0 - 5001);  // sender behind by more than the window
  EXPECT_EQ(receiver.check_token(sender.token(kPingMethod), kPingMethod).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  sender_clock.set(kT0 + 5001);  // ahead by more than the window
  EXPECT_EQ(receiver.check_token(sender.token(kPingMethod), kPingMethod).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(receiver.counters().skew, 2u);

  // The window's edges are inside.
  sender_clock.set(kT0 - 5000);
  EXPECT_TRUE(receiver.check_token(sender.token(kPingMethod), kPingMethod).ok());
  sender_clock.set(kT0 + 5000);
  EXPECT_TRUE(receiver.check_token(sender.token(kPingMethod), kPingMethod).ok());

  // A token that was good goes stale as the receiver's clock moves on.
  sender_clock.set(kT0);
  const std::string t = sender.token(kPingMethod);
  receiver_clock.set(kT0 + 5001);
  grpc::Status s = receiver.check_token(t, kPingMethod);
  EXPECT_NE(s.error_message().find("clock-skew"), std::string::npos) << s.error_message();
  EXPECT_EQ(receiver.counters().skew, 3u);
}

TEST(ClusterAuthToken, ReplayIsRefusedAndStaysRefusedAfterTheWindow) {
  AuthLimits limits;
  limits.max_skew = 1000ms;
  FakeClock clock;
  ClusterAuth sender(kSecret, "n1", limits, clock.fn());
  ClusterAuth receiver(kSecret, "n2", limits, clock.fn());
  const std::string t = sender.token(kPingMethod);
  ASSERT_TRUE(receiver.check_token(t, kPingMethod).ok());
  grpc::Status again = receiver.check_token(t, kPingMethod);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(again.error_message().find("replayed"), std::string::npos) << again.error_message();
  EXPECT_EQ(receiver.counters().replay, 1u);
  // Another token from the same sender is fine.
  EXPECT_TRUE(receiver.check_token(sender.token(kPingMethod), kPingMethod).ok());
  EXPECT_EQ(receiver.nonce_cache_size(), 2u);

  // Once the window has passed, the nonce is forgotten but the clock check still refuses it.
  clock.advance(1001);
  EXPECT_FALSE(receiver.check_token(t, kPingMethod).ok());
  EXPECT_EQ(receiver.counters().skew, 1u);
  EXPECT_TRUE(receiver.check_token(sender.token(kPingMethod), kPingMethod).ok());
  EXPECT_EQ(receiver.nonce_cache_size(), 1u) << "expired nonces were not dropped";
}

TEST(ClusterAuthToken, ConcurrentChecksAcceptEachTokenExactlyOnce) {
  FakeClock clock;
  ClusterAuth sender(kSecret, "n1", {}, clock.fn());
  ClusterAuth receiver(kSecret, "n2", {}, clock.fn());
  constexpr int kTokens = 2000;
  constexpr int kThreads = 4;
  std::vector<std::string> tokens;
  for (int i = 0; i < kTokens; ++i) tokens.push_back(sender.token(kPingMethod));
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Different starting points, so that threads race on the same tokens at different times.
      for (int i = 0; i < kTokens; ++i) {
        if (receiver.check_token(tokens[(i + t * kTokens / kThreads) % kTokens], kPingMethod).ok())
          accepted.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(accepted.load(), kTokens);
  EXPECT_EQ(receiver.counters().replay, uint64_t{kTokens} * (kThreads - 1));
}

// --- The bounded nonce cache --------------------------------------------------------------------

TEST(NonceCache, StaysBoundedUnderAFloodAndNeverForgetsALiveNonce) {
  AuthLimits limits;
  limits.nonce_cache = 64;  // 60 s window, so every flooded nonce is still live
  FakeClock clock;
  ClusterAuth sender(kSecret, "n1", limits, clock.fn());
  ClusterAuth receiver(kSecret, "n2", limits, clock.fn());
  constexpr int kFlood = 5000;
  std::vector<std::string> tokens;
  for (int i = 0; i < kFlood; ++i) {
    clock.set(kT0 + i);
    tokens.push_back(sender.token(kPingMethod));
    ASSERT_TRUE(receiver.check_token(tokens.back(), kPingMethod).ok()) << i;
    ASSERT_LE(receiver.nonce_cache_size(), limits.nonce_cache) << i;
  }
  EXPECT_EQ(receiver.nonce_cache_size(), limits.nonce_cache);
  EXPECT_EQ(receiver.refused(), 0u);

  // Still correct: a remembered nonce is a replay ...
  EXPECT_FALSE(receiver.check_token(tokens.back(), kPingMethod).ok());
  EXPECT_EQ(receiver.counters().replay, 1u);
  // ... and a displaced one, still inside the window, is refused too rather than accepted again.
  for (int i : {0, kFlood / 2, kFlood - 65}) {
    EXPECT_FALSE(receiver.check_token(tokens[i], kPingMethod).ok()) << i;
  }
  EXPECT_EQ(receiver.counters().cache_full, 3u);
  // A never-seen token older than what the cache still covers (a lagging clock) is refused...
  FakeClock lagging;
  lagging.set(kT0 + kFlood - 100);
  ClusterAuth late_sender(kSecret, "n3", limits, lagging.fn());
  EXPECT_FALSE(receiver.check_token(late_sender.token(kPingMethod), kPingMethod).ok());
  EXPECT_EQ(receiver.counters().cache_full, 4u);
  // ... while fresh tokens keep working.
  clock.set(kT0 + kFlood);
  EXPECT_TRUE(receiver.check_token(sender.token(kPingMethod), kPingMethod).ok());
  EXPECT_EQ(receiver.nonce_cache_size(), limits.nonce_cache);

  // When the window has passed, the flood's nonces expire and the cache drains.
  clock.advance(limits.max_skew.count() + kFlood);
  EXPECT_TRUE(receiver.check_token(sender.token(kPingMethod), kPingMethod).ok());
  EXPECT_EQ(receiver.nonce_cache_size(), 1u);
}

TEST(NonceCache, FullInTheSameMillisecondRefusesRatherThanForgets) {
  AuthLimits limits;
  limits.nonce_cache = 4;
  FakeClock clock;  // never moves: every token has the same timestamp
  ClusterAuth sender(kSecret, "n1", limits, clock.fn());
  ClusterAuth receiver(kSecret, "n2", limits, clock.fn());
  std::vector<std::string> accepted;
  for (int i = 0; i < 4; ++i) {
    accepted.push_back(sender.token(kPingMethod));
    ASSERT_TRUE(receiver.check_token(accepted.back(), kPingMethod).ok());
  }
  grpc::Status s = receiver.check_token(sender.token(kPingMethod), kPingMethod);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("nonce cache"), std::string::npos) << s.error_message();
  EXPECT_EQ(receiver.counters().cache_full, 1u);
  // Nothing was forgotten to make room: every accepted nonce is still a replay.
  for (const auto& t : accepted) EXPECT_FALSE(receiver.check_token(t, kPingMethod).ok());
  EXPECT_EQ(receiver.counters().replay, 4u);
}

// --- Over gRPC ---------------------------------------------------------------------------------

/// The Admin service as a node would wire it: check first, answer only authenticated calls.
class CheckedAdmin final : public pb::Admin::CallbackService {
 public:
  explicit CheckedAdmin(ClusterAuth& auth) : auth_(auth) {}

  grpc::ServerUnaryReactor* Members(grpc::CallbackServerContext* ctx, const pb::MembersRequest*,
                                    pb::MembersResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    grpc::Status s = auth_.check(*ctx, kMembersMethod);
    if (!s.ok()) {
      reactor->Finish(s);
      return reactor;
    }
    if (ctx->auth_context()->IsPeerAuthenticated()) tls_peers.fetch_add(1);
    answered.fetch_add(1);
    resp->set_node_id("n1");
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  std::atomic<int> answered{0};
  std::atomic<int> tls_peers{0};  // answered calls whose peer presented a verified certificate

 private:
  ClusterAuth& auth_;
};

struct AdminServer {
  AdminServer(ClusterAuth& auth, std::shared_ptr<grpc::ServerCredentials> creds) : service(auth) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", std::move(creds), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
  }
  ~AdminServer() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + 1s);
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port); }

  CheckedAdmin service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

/// One Members call; `stamp` adds the token (or not) to the context.
grpc::Status call_members(const std::shared_ptr<grpc::Channel>& channel,
                          const std::function<void(grpc::ClientContext&)>& stamp,
                          pb::MembersResponse* resp = nullptr) {
  auto stub = pb::Admin::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  if (stamp) stamp(ctx);
  pb::MembersRequest req;
  pb::MembersResponse local;
  return stub->Members(&ctx, req, resp ? resp : &local);
}

TEST(ClusterAuthGrpc, MethodNameMatchesTheGeneratedService) {
  EXPECT_EQ(std::string("/") + pb::Admin::service_full_name() + "/Members", kMembersMethod);
}

TEST(ClusterAuthGrpc, OnlyACallSignedWithTheSecretIsAnswered) {
  ClusterAuth server_auth(kSecret, "n1");
  AdminServer server(server_auth, server_credentials(std::nullopt));
  ASSERT_TRUE(server.server && server.port != 0) << "no server";
  auto channel = grpc::CreateChannel(server.addr(), channel_credentials(std::nullopt));

  grpc::Status none = call_members(channel, nullptr);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(none.error_message().find("no token"), std::string::npos) << none.error_message();

  ClusterAuth intruder(kOtherSecret, "ctl");
  grpc::Status wrong =
      call_members(channel, [&](grpc::ClientContext& c) { intruder.stamp(c, kMembersMethod); });
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(wrong.error_message().find("bad signature"), std::string::npos)
      << wrong.error_message();

  ClusterAuth ctl(kSecret, "ctl");
  pb::MembersResponse resp;
  grpc::Status right = call_members(
      channel, [&](grpc::ClientContext& c) { ctl.stamp(c, kMembersMethod); }, &resp);
  EXPECT_TRUE(right.ok()) << right.error_message();
  EXPECT_EQ(resp.node_id(), "n1");

  // The same token sent again (a captured call replayed) is refused.
  const std::string captured = ctl.token(kMembersMethod);
  auto with_captured = [&](grpc::ClientContext& c) {
    c.AddMetadata(std::string(kAuthMetadataKey), captured);
  };
  EXPECT_TRUE(call_members(channel, with_captured).ok());
  EXPECT_EQ(call_members(channel, with_captured).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Two tokens in one call are refused, even if one of them is good.
  grpc::Status twice = call_members(channel, [&](grpc::ClientContext& c) {
    ctl.stamp(c, kMembersMethod);
    intruder.stamp(c, kMembersMethod);
  });
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  EXPECT_EQ(server.service.answered.load(), 2);
  const AuthCounters c = server_auth.counters();
  EXPECT_EQ(c.missing, 1u);
  EXPECT_EQ(c.bad_signature, 1u);
  EXPECT_EQ(c.replay, 1u);
  EXPECT_EQ(c.malformed, 1u);
  EXPECT_EQ(server_auth.refused(), 4u);
}

// --- Mutual TLS --------------------------------------------------------------------------------

std::shared_ptr<grpc::Channel> tls_channel(const std::string& addr,
                                           std::shared_ptr<grpc::ChannelCredentials> creds) {
  grpc::ChannelArguments args;
  apply_tls_channel_args(args, TlsFiles{});  // any engaged optional: TLS is on
  return grpc::CreateCustomChannel(addr, std::move(creds), args);
}

TEST(ClusterMutualTls, RoundTripWithClusterCertificatesAndRefusalsWithout) {
  ThrowawayPki pki;
  ASSERT_TRUE(pki.ok) << "could not make test certificates";
  ClusterAuth server_auth(kSecret, "n1");
  AdminServer server(server_auth, server_credentials(pki.cluster));
  ASSERT_TRUE(server.server && server.port != 0) << "no TLS server";
  ClusterAuth ctl(kSecret, "ctl");
  auto stamped = [&](grpc::ClientContext& c) { ctl.stamp(c, kMembersMethod); };

  // A cluster member: verified both ways, by the fixed name, while dialling an IP address.
  pb::MembersResponse resp;
  grpc::Status ok =
      call_members(tls_channel(server.addr(), channel_credentials(pki.cluster)), stamped, &resp);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(resp.node_id(), "n1");
  EXPECT_EQ(server.service.tls_peers.load(), 1) << "server saw no verified client certificate";

  // Same CA, no client certificate: the TLS layer refuses it, though its token is good.
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = pem_of_file(pki.cluster.ca);
  EXPECT_FALSE(
      call_members(tls_channel(server.addr(), grpc::SslCredentials(no_cert)), stamped).ok());

  // A certificate from another CA: refused too.
  EXPECT_FALSE(
      call_members(tls_channel(server.addr(), channel_credentials(pki.outsider_files)), stamped)
          .ok());

  // Plaintext against the TLS port: refused.
  EXPECT_FALSE(
      call_members(grpc::CreateChannel(server.addr(), grpc::InsecureChannelCredentials()), stamped)
          .ok());

  EXPECT_EQ(server.service.answered.load(), 1);
  EXPECT_EQ(server_auth.refused(), 0u) << "refused calls must not have reached the service";
}

TEST(ClusterMutualTls, BadFilesAreRefusedAtStartUpNamingTheFile) {
  ThrowawayPki pki;
  ASSERT_TRUE(pki.ok) << "could not make test certificates";
  auto message = [](const std::function<void()>& fn) -> std::string {
    try {
      fn();
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };

  TlsFiles missing = pki.cluster;
  missing.key = pki.dir.file("absent.key");
  std::string m = message([&] { (void)server_credentials(missing); });
  EXPECT_NE(m.find(missing.key), std::string::npos) << m;

  TlsFiles mismatched = pki.cluster;
  mismatched.key = pki.outsider_files.key;
  m = message([&] { (void)channel_credentials(mismatched); });
  EXPECT_NE(m.find("does not match"), std::string::npos) << m;

  TlsFiles not_pem = pki.cluster;
  not_pem.ca = pki.dir.write("ca-garbage.pem", "not a certificate\n");
  m = message([&] { (void)server_credentials(not_pem); });
  EXPECT_NE(m.find(not_pem.ca), std::string::npos) << m;

  TlsFiles incomplete = pki.cluster;
  incomplete.ca.clear();
  m = message([&] { (void)channel_credentials(incomplete); });
  EXPECT_NE(m.find("all three"), std::string::npos) << m;

  EXPECT_NO_THROW((void)server_credentials(pki.cluster));
}

}  // namespace
}  // namespace mcpmesh::cluster

// The MCP side of the cluster, in one process and without membership: replica copies, exchanges
// relayed between two real HTTP endpoints over the Forward service, and sessions replicated over
// the Replication service and continued on another server. Real-process tests (membership,
// failover, nginx) are in tests/cluster.

#include "cluster/forward/forward_client.hpp"
#include "cluster/forward/forward_service.hpp"
#include "cluster/forward/relay_probe.hpp"
#include "cluster/replication/replica_store.hpp"
#include "cluster/replication/replication_service.hpp"
#include "cluster/replication/replicator.hpp"
#include "cluster/test_pki.hpp"
#include "transport/http_server.hpp"
#include "transport/io_pool.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <future>
#include <thread>

namespace mcpmesh::cluster {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace pb = ::mcpmesh::v1;
using namespace std::chrono_literals;

constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";

/// Polls `pred` every 5 ms for at most `limit`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return pred();
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// ReplicaStore

std::string record_of(const std::string& id, std::uint64_t revision, const std::string& sub = {}) {
  mcp::SessionRecord r;
  r.id = id;
  std::string_view owner;
  std::uint64_t epoch = 0;
  EXPECT_TRUE(mcp::parse_session_id(id, owner, epoch)) << id;
  r.owner = std::string(owner);
  r.epoch = epoch;
  r.phase = mcp::SessionRecord::Phase::kReady;
  auto client = std::make_shared<mcp::ClientState>();
  client->protocol_version = "2025-11-25";
  r.client = client;
  if (!sub.empty()) r.subscriptions.insert(sub);
  r.revision = revision;
  return r.serialize();
}

pb::ReplicationBatch batch(std::uint64_t seq, bool full, std::uint64_t epoch = 7) {
  pb::ReplicationBatch b;
  b.set_holder("a");
  b.set_holder_epoch(epoch);
  b.set_seq(seq);
  b.set_full(full);
  return b;
}

void add(pb::ReplicationBatch& b, const std::string& id, std::string record,
         std::vector<std::pair<std::uint64_t, std::string>> events = {}) {
  auto* s = b.add_sessions();
  s->set_id(id);
  s->set_record(std::move(record));
  for (auto& [seq, data] : events) {
    auto* e = s->add_events();
    e->set_seq(seq);
    e->set_data(data);
  }
}

TEST(ReplicaStore, AppliesBatchesInOrderAndAsksForAFullSyncAfterAGap) {
  ReplicaStore store({.max_events = 2});
  auto b1 = batch(1, true);
  add(b1, "a.7.s1", record_of("a.7.s1", 1), {{1, "e1"}, {2, "e2"}});
  ASSERT_TRUE(store.apply(b1).applied);
  auto b2 = batch(2, false);
  add(b2, "a.7.s1", record_of("a.7.s1", 2, "note://x"), {{2, "e2"}, {3, "e3"}});
  add(b2, "a.7.s2", record_of("a.7.s2", 1));
  auto out = store.apply(b2);
  ASSERT_TRUE(out.applied);
  EXPECT_EQ(out.held, 2u);
  // Batch 3 is lost: batch 4 must not apply on top of a copy that is missing it.
  auto b4 = batch(4, false);
  auto* gone = b4.add_sessions();
  gone->set_id("a.7.s2");
  gone->set_deleted(true);
  out = store.apply(b4);
  EXPECT_FALSE(out.applied);
  EXPECT_TRUE(out.need_full);
  EXPECT_EQ(store.session_count(), 2u) << "nothing changed";
  std::uint64_t epoch = 0;
  auto copies = store.take("a", &epoch);
  EXPECT_EQ(epoch, 7u);
  ASSERT_EQ(copies.size(), 2u);
  auto& s1 = copies[0].record.id == "a.7.s1" ? copies[0] : copies[1];
  EXPECT_EQ(s1.record.subscriptions.count("note://x"), 1u);
  ASSERT_EQ(s1.events.size(), 2u) << "bounded, oldest dropped, duplicates ignored";
  EXPECT_EQ(s1.events[0].first, 2u);
  EXPECT_EQ(*s1.events[1].second, "e3");
  EXPECT_EQ(store.session_count(), 0u);
  EXPECT_FALSE(store.holds("a"));
}

TEST(ReplicaStore, ABatchWithOneBadRecordChangesNothing) {
  ReplicaStore store({});
  auto b1 = batch(1, true);
  add(b1, "a.7.s1", record_of("a.7.s1", 1));
  ASSERT_TRUE(store.apply(b1).applied);
  auto b2 = batch(2, false);
  add(b2, "a.7.s2", record_of("a.7.s2", 1));
  add(b2, "a.7.s3", "{not json");
  auto out = store.apply(b2);
  EXPECT_FALSE(out.applied);
  EXPECT_FALSE(out.refused.empty());
  EXPECT_EQ(store.session_count(), 1u);
  auto b3 = batch(2, false);
  add(b3, "a.7.s4", record_of("a.7.s5", 1));  // the record names another session
  EXPECT_FALSE(store.apply(b3).applied);
  EXPECT_EQ(store.refused(), 2u);
  // The sequence is untouched: the next good batch still applies.
  auto b4 = batch(2, false);
  add(b4, "a.7.s2", record_of("a.7.s2", 1));
  EXPECT_TRUE(store.apply(b4).applied);
}

TEST(ReplicaStore, BoundsAndDrops) {
  ReplicaStore store({.max_sessions_per_holder = 2});
  auto b1 = batch(1, true);
  for (int i = 0; i < 4; ++i) {
    auto id = "a.7.s" + std::to_string(i);
    add(b1, id, record_of(id, 1));
  }
  ASSERT_TRUE(store.apply(b1).applied);
  EXPECT_EQ(store.session_count(), 2u);
  EXPECT_EQ(store.refused(), 2u);
  EXPECT_EQ(store.epoch_of("a"), 7u);
  store.drop("a");
  EXPECT_EQ(store.session_count(), 0u);
  EXPECT_FALSE(store.epoch_of("a"));
  // A new epoch of the holder needs a full sync first.
  auto b2 = batch(2, false, 8);
  EXPECT_TRUE(store.apply(b2).need_full);
}

// ---------------------------------------------------------------------------------------------
// A node in one process: an MCP server, its HTTP endpoint on its own I/O thread, and a gRPC
// server with the cluster services that apply.

mcp::App& test_app() {
  static mcp::App app;
  static bool filled = [] {
    app.add_tool({.name = "echo", .input_schema = mcp::object_schema({{"text", "string"}})},
                 mcp::SyncToolHandler([](mcp::HandlerContext& ctx,
                                         json::object args) -> mcp::Result<mcp::ToolResult> {
                   return mcp::ToolResult::text(std::string(args.at("text").as_string()) +
                                                " from " + ctx.request().node_id);
                 }));
    return true;
  }();
  (void)filled;
  return app;
}

struct TestNode {
  explicit TestNode(std::string id, std::uint64_t epoch)
      : pool(1),
        server(pool.at(0), test_app(), mcp::ServerConfig{.node_id = id}),
        http(pool, server, transport::HttpConfig{.port = 0}),
        auth(std::string(kSecret), id) {
    server.set_epoch(epoch);
    http.start();
    thread = std::thread([this] { pool.run(); });
  }
  ~TestNode() {
    if (grpc_server) grpc_server->Shutdown(std::chrono::system_clock::now() + 200ms);
    http.stop();
    server.close_all();
    pool.stop();
    thread.join();
  }
  /// Starts the gRPC server with `services`; returns its address.
  std::string serve(std::vector<grpc::Service*> services) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(8 << 20);  // as a node: the body limit and room to spare
    for (auto* s : services) builder.RegisterService(s);
    grpc_server = builder.BuildAndStart();
    return "127.0.0.1:" + std::to_string(port);
  }
  std::string http_address() const {
    return "127.0.0.1:" + std::to_string(http.local_endpoint().port());
  }

  transport::IoPool pool;
  mcp::Server server;
  transport::HttpServer http;
  ClusterAuth auth;
  std::unique_ptr<grpc::Server> grpc_server;
  std::thread thread;
};

using Response = http::response<http::string_body>;

/// One HTTP request on a fresh connection (blocking, with a deadline).
Response request(const std::string& address, http::verb verb, std::string body,
                 std::vector<std::pair<std::string, std::string>> headers = {}) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  auto colon = address.rfind(':');
  stream.expires_after(10s);
  stream.connect(boost::asio::ip::tcp::endpoint(
      boost::asio::ip::make_address(address.substr(0, colon)),
      static_cast<unsigned short>(std::stoi(address.substr(colon + 1)))));
  http::request<http::string_body> req(verb, "/mcp", 11);
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "application/json, text/event-stream");
  for (auto& [k, v] : headers) req.set(k, v);
  req.body() = std::move(body);
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  Response res;
  http::read(stream, buffer, res);
  return res;
}

std::string initialize(const std::string& address) {
  auto res = request(address, http::verb::post,
                     R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{)"
                     R"("protocolVersion":"2025-11-25","capabilities":{},)"
                     R"("clientInfo":{"name":"t","version":"1"}}})");
  EXPECT_EQ(res.result_int(), 200u) << res.body();
  std::string id(res["Mcp-Session-Id"]);
  request(address, http::verb::post, R"({"jsonrpc":"2.0","method":"notifications/initialized"})",
          {{"Mcp-Session-Id", id}});
  return id;
}

/// Sends sessions whose id starts with "<node>." to `target`.
class StaticLocator final : public transport::SessionLocator {
 public:
  StaticLocator(std::string node, std::shared_ptr<transport::SessionTarget> target)
      : prefix_(std::move(node) + "."), target_(std::move(target)) {}
  Location locate(std::string_view id) override {
    if (id.starts_with(prefix_)) return {Verdict::kElsewhere, target_};
    return {};
  }

 private:
  std::string prefix_;
  std::shared_ptr<transport::SessionTarget> target_;
};

class ForwardingTest : public ::testing::Test {
 protected:
  ForwardingTest()
      : forward_service(a.auth, a.http, {}),
        client(b.auth, std::nullopt, b.pool.at(0).get_executor(),
               {.self_id = "b", .timeout = 10s}) {
    locator = std::make_unique<StaticLocator>("a", client.target("a", a.http_address()));
    b.http.set_locator(locator.get());
  }
  ~ForwardingTest() override { b.http.set_locator(nullptr); }

  TestNode a{"a", 0xa1};
  TestNode b{"b", 0xb1};
  ForwardService forward_service;
  ForwardClient client;
  std::unique_ptr<StaticLocator> locator;
};

TEST_F(ForwardingTest, TheNonOwnerAnswersExactlyAsTheOwnerDoes) {
  auto id = initialize(a.http_address());
  ASSERT_EQ(id.rfind("a.a1.", 0), 0u) << id;
  std::string call =
      R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}})";
  auto direct = request(a.http_address(), http::verb::post, call, {{"Mcp-Session-Id", id}});
  auto relayed = request(b.http_address(), http::verb::post, call, {{"Mcp-Session-Id", id}});
  EXPECT_EQ(relayed.result_int(), direct.result_int());
  EXPECT_EQ(relayed[http::field::content_type], direct[http::field::content_type]);
  EXPECT_EQ(relayed.body(), direct.body());
  EXPECT_NE(relayed.body().find("hi from a"), std::string::npos) << relayed.body();
  EXPECT_EQ(b.server.metrics().forwarded_total.load(), 1u);
  EXPECT_EQ(a.server.metrics().forwarded_in_total.load(), 1u);
  // Errors too: the owner's 400 for a batch its protocol version does not allow.
  auto batch = "[" + call + "]";
  auto direct_err = request(a.http_address(), http::verb::post, batch, {{"Mcp-Session-Id", id}});
  auto relayed_err = request(b.http_address(), http::verb::post, batch, {{"Mcp-Session-Id", id}});
  EXPECT_EQ(direct_err.result_int(), 400u);
  EXPECT_EQ(relayed_err.result_int(), 400u);
  EXPECT_EQ(relayed_err.body(), direct_err.body());
}

TEST_F(ForwardingTest, StreamsNotificationsAndDeleteCrossTheHop) {
  auto id = initialize(a.http_address());
  // Subscribe through the non-owner; the owner holds the subscription.
  auto sub = request(
      b.http_address(), http::verb::post,
      R"({"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"note://x"}})",
      {{"Mcp-Session-Id", id}});
  ASSERT_EQ(sub.result_int(), 200u) << sub.body();
  EXPECT_TRUE(a.server.subscriptions().has_subscribers("note://x"));
  // A GET stream through the non-owner receives the owner's notification with its event id.
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  auto addr = b.http_address();
  stream.expires_after(10s);
  stream.connect(boost::asio::ip::tcp::endpoint(
      boost::asio::ip::make_address("127.0.0.1"),
      static_cast<unsigned short>(std::stoi(addr.substr(addr.rfind(':') + 1)))));
  std::string get =
      "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
      "Mcp-Session-Id: " +
      id + "\r\n\r\n";
  boost::asio::write(stream, boost::asio::buffer(get));
  ASSERT_TRUE(eventually([&] {
    auto s = a.server.find_session(id);
    return s != nullptr;  // attach happens on the owner once the relay arrives
  }));
  std::string seen;
  auto read_until = [&](std::string_view needle) {
    char buf[4096];
    auto until = std::chrono::steady_clock::now() + 10s;
    while (seen.find(needle) == std::string::npos && std::chrono::steady_clock::now() < until) {
      stream.expires_after(2s);
      boost::system::error_code ec;
      auto n = stream.socket().read_some(boost::asio::buffer(buf), ec);
      if (ec) break;
      seen.append(buf, n);
    }
    return seen.find(needle) != std::string::npos;
  };
  ASSERT_TRUE(read_until("text/event-stream")) << seen;
  // The stream is attached once the owner has answered the head: notify until it arrives.
  ASSERT_TRUE(eventually([&] {
    a.server.deliver_resource_updated("note://x");
    return read_until("notifications/resources/updated");
  }));
  EXPECT_NE(seen.find("id: 0-1"), std::string::npos) << seen;
  // DELETE through the non-owner ends the session on the owner.
  auto del = request(b.http_address(), http::verb::delete_, {}, {{"Mcp-Session-Id", id}});
  EXPECT_EQ(del.result_int(), 200u);
  EXPECT_EQ(a.server.find_session(id), nullptr);
  auto after = request(b.http_address(), http::verb::post,
                       R"({"jsonrpc":"2.0","id":3,"method":"ping"})", {{"Mcp-Session-Id", id}});
  EXPECT_EQ(after.result_int(), 404u) << "the owner's answer, relayed";
}

TEST_F(ForwardingTest, AWrongSecretIsRefusedAndTheClientGetsAnExplicitError) {
  auto id = initialize(a.http_address());
  ClusterAuth wrong(std::string(32, 'w'), "b");
  ForwardClient bad_client(wrong, std::nullopt, b.pool.at(0).get_executor(),
                           {.self_id = "b", .timeout = 5s});
  StaticLocator bad_locator("a", bad_client.target("a", a.http_address()));
  b.http.set_locator(&bad_locator);
  auto res = request(b.http_address(), http::verb::post,
                     R"({"jsonrpc":"2.0","id":3,"method":"ping"})", {{"Mcp-Session-Id", id}});
  b.http.set_locator(locator.get());
  EXPECT_EQ(res.result_int(), 502u);
  EXPECT_NE(res.body().find("cluster secret"), std::string::npos) << res.body();
  EXPECT_EQ(a.auth.counters().bad_signature, 1u);
  EXPECT_EQ(a.server.metrics().forwarded_in_total.load(), 0u) << "nothing reached the owner";
}

TEST_F(ForwardingTest, MalformedRelayedRequestsAreRefusedAndCounted) {
  pb::ForwardRequest good;
  good.set_method("POST");
  good.set_target("/mcp");
  good.set_version(11);
  good.set_hops(1);
  std::vector<pb::ForwardRequest> bad(6, good);
  bad[0].set_method("PUT");
  bad[1].set_hops(9);
  bad[2].set_version(20);
  bad[3].set_body(std::string((4 << 20) + 1, 'x'));
  bad[4].set_fields("Host: a\r\nno colon\r\n");
  std::string many;
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  bad[5].set_fields(many);
  // One link, one batch of six exchanges: each is refused with its reason, alone.
  RelayProbe probe(a.http_address());
  auto head = probe.open(b.auth.token(kRelayMethod));
  ASSERT_TRUE(head.starts_with("HTTP/1.1 101 ")) << head;
  pb::RelayBatch batch;
  for (std::size_t i = 0; i < bad.size(); ++i) {
    auto* f = batch.add_frames();
    f->set_exchange(i + 1);
    *f->mutable_request() = bad[i];
  }
  probe.send(batch);
  std::map<std::uint64_t, std::string> refused;
  while (refused.size() < bad.size()) {
    auto answers = probe.read();
    ASSERT_TRUE(answers) << "the link ended before every refusal came";
    for (auto& f : answers->frames()) refused[f.exchange()] = f.refused();
  }
  ASSERT_EQ(refused.size(), 6u);
  EXPECT_NE(refused[1].find("method"), std::string::npos) << refused[1];
  EXPECT_NE(refused[2].find("hop"), std::string::npos) << refused[2];
  EXPECT_NE(refused[3].find("version"), std::string::npos) << refused[3];
  EXPECT_NE(refused[4].find("body"), std::string::npos) << refused[4];
  EXPECT_NE(refused[5].find("malformed field"), std::string::npos) << refused[5];
  EXPECT_NE(refused[6].find("too many"), std::string::npos) << refused[6];
  EXPECT_EQ(forward_service.refused(), 6u);
  // The link is still good: a well-formed exchange after them is served.
  pb::RelayBatch ping;
  auto* f = ping.add_frames();
  f->set_exchange(7);
  good.set_fields(
      "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Accept: application/json, text/event-stream\r\n");
  good.set_body(R"({"jsonrpc":"2.0","id":1,"method":"ping"})");
  *f->mutable_request() = good;
  probe.send(ping);
  auto answer = probe.read();
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->frames_size(), 1);
  EXPECT_EQ(answer->frames(0).exchange(), 7u);
  EXPECT_NE(answer->frames(0).chunk().data().find("HTTP/1.1 400"), std::string::npos)
      << "served (no session: the owner's own 400)";
  EXPECT_EQ(a.server.metrics().forwarded_in_total.load(), 1u);
}

TEST_F(ForwardingTest, ALinkWithoutAValidTokenIsRefusedAndCounted) {
  // No token, a token of another secret, a replayed token: 401, counted, no link.
  RelayProbe bare(a.http_address());
  auto head = bare.open("");
  EXPECT_TRUE(head.starts_with("HTTP/1.1 401 ")) << head;
  ClusterAuth wrong(std::string(32, 'w'), "b");
  RelayProbe forged(a.http_address());
  head = forged.open(wrong.token(kRelayMethod));
  EXPECT_TRUE(head.starts_with("HTTP/1.1 401 ")) << head;
  auto token = b.auth.token(kRelayMethod);
  RelayProbe first(a.http_address());
  EXPECT_TRUE(first.open(token).starts_with("HTTP/1.1 101 "));
  RelayProbe replayed(a.http_address());
  head = replayed.open(token);
  EXPECT_TRUE(head.starts_with("HTTP/1.1 401 ")) << head;
  // A token for another method does not open a link either.
  RelayProbe other(a.http_address());
  head = other.open(b.auth.token("/mcpmesh.v1.Membership/Ping"));
  EXPECT_TRUE(head.starts_with("HTTP/1.1 401 ")) << head;
  auto c = a.auth.counters();
  EXPECT_EQ(c.missing, 1u);
  EXPECT_EQ(c.bad_signature, 2u);
  EXPECT_EQ(c.replay, 1u);
  EXPECT_EQ(a.server.metrics().upgrades_refused_total.load(), 4u);
  EXPECT_EQ(a.server.metrics().upgrades_total.load(), 1u);
  EXPECT_EQ(a.server.metrics().forwarded_in_total.load(), 0u);
}

TEST_F(ForwardingTest, AMalformedOrOversizedFrameEndsTheLinkAndChangesNothingElse) {
  auto id = initialize(a.http_address());
  // Bytes that are no RelayBatch.
  RelayProbe junk(a.http_address());
  ASSERT_TRUE(junk.open(b.auth.token(kRelayMethod)).starts_with("HTTP/1.1 101 "));
  std::string frame;
  append_frame(frame, std::string(64, '\xff'));
  junk.send_raw(frame);
  EXPECT_TRUE(junk.closed_by_peer());
  // A length over the limit: closed before the holder reads (or keeps) a byte of it.
  RelayProbe huge(a.http_address());
  ASSERT_TRUE(huge.open(b.auth.token(kRelayMethod)).starts_with("HTTP/1.1 101 "));
  huge.send_raw(std::string("\x7f\xff\xff\xff", 4));
  EXPECT_TRUE(huge.closed_by_peer());
  EXPECT_EQ(forward_service.links_refused(), 2u) << "the malformed one and the oversized one";
  EXPECT_TRUE(eventually([&] { return forward_service.links() == 0; }));
  // Relaying still works, and the session is untouched.
  auto res = request(b.http_address(), http::verb::post,
                     R"({"jsonrpc":"2.0","id":3,"method":"ping"})", {{"Mcp-Session-Id", id}});
  EXPECT_EQ(res.result_int(), 200u) << res.body();
  EXPECT_NE(a.server.find_session(id), nullptr);
}

TEST_F(ForwardingTest, ManyExchangesShareOneStreamInBatches) {
  auto id = initialize(a.http_address());
  std::string call =
      R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}})";
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto res = request(b.http_address(), http::verb::post, call, {{"Mcp-Session-Id", id}});
        if (res.result_int() == 200 && res.body().find("x from a") != std::string::npos) ++ok;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(client.streams(), 1u) << "one persistent stream to the holder";
  EXPECT_EQ(client.calls(), 200u);
  EXPECT_LE(client.batches(), 200u);
}

TEST_F(ForwardingTest, AnUnreachableHolderGivesAnExplicitErrorNotAHang) {
  auto id = initialize(a.http_address());
  ForwardClient lost(b.auth, std::nullopt, b.pool.at(0).get_executor(),
                     {.self_id = "b", .timeout = 5s});
  StaticLocator nowhere("a", lost.target("a", "127.0.0.1:1"));
  b.http.set_locator(&nowhere);
  auto res = request(b.http_address(), http::verb::post,
                     R"({"jsonrpc":"2.0","id":3,"method":"ping"})", {{"Mcp-Session-Id", id}});
  b.http.set_locator(locator.get());
  EXPECT_EQ(res.result_int(), 503u);
  EXPECT_EQ(res["Retry-After"], "1");
  EXPECT_NE(res.body().find("may or may not have run"), std::string::npos) << res.body();
  EXPECT_EQ(b.server.metrics().forward_failures_total.load(), 1u);
}

TEST_F(ForwardingTest, APausedHolderIsGivenUpAfterTheSilenceNotAfterTheDeadline) {
  auto id = initialize(a.http_address());
  // A holder that accepts the link and then says nothing (a stopped process): a listener that
  // never answers. The link ends after `silence`, long before the exchange's own deadline.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor mute(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  ForwardClient stuck(
      b.auth, std::nullopt, b.pool.at(0).get_executor(),
      {.self_id = "b", .timeout = 60s, .link = {.heartbeat = 100ms, .silence = 500ms}});
  StaticLocator paused(
      "a", stuck.target("a", "127.0.0.1:" + std::to_string(mute.local_endpoint().port())));
  b.http.set_locator(&paused);
  auto t0 = std::chrono::steady_clock::now();
  auto res = request(b.http_address(), http::verb::post,
                     R"({"jsonrpc":"2.0","id":3,"method":"ping"})", {{"Mcp-Session-Id", id}});
  auto took = std::chrono::steady_clock::now() - t0;
  b.http.set_locator(locator.get());
  EXPECT_EQ(res.result_int(), 503u) << res.body();
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 5s);
}

TEST(RelayLinks, MoreThanTheLimitAreRefusedAndCountedAndTheOpenOnesGoOn) {
  TestNode a{"a", 0xa1};
  ClusterAuth b_auth(std::string(kSecret), "b");
  ForwardService service(a.auth, a.http, {.max_links = 1});
  RelayProbe first(a.http_address());
  ASSERT_TRUE(first.open(b_auth.token(kRelayMethod)).starts_with("HTTP/1.1 101 "));
  {
    RelayProbe second(a.http_address());
    auto head = second.open(b_auth.token(kRelayMethod));
    EXPECT_TRUE(head.starts_with("HTTP/1.1 503 ")) << head;
  }
  EXPECT_EQ(service.links_refused(), 1u);
  EXPECT_EQ(service.links(), 1u);
  // The open link still serves.
  pb::RelayBatch batch;
  auto* f = batch.add_frames();
  f->set_exchange(1);
  auto* r = f->mutable_request();
  r->set_method("GET");
  r->set_target("/healthz");
  r->set_version(11);
  r->set_hops(1);
  r->set_fields("Host: 127.0.0.1\r\n");
  first.send(batch);
  auto answer = first.read();
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->frames_size(), 1);
  EXPECT_TRUE(answer->frames(0).chunk().data().starts_with("HTTP/1.1 200 "));
}

/// Relay links with the cluster's certificates: TLS both ways, checked like the gRPC port.
class TlsForwardingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(pki.ok) << "could not make test certificates"; }

  /// What `files` (the relaying node's certificates) get for a ping relayed to a.
  Response relayed_ping(const std::optional<TlsFiles>& files) {
    auto id = initialize(a.http_address());
    ForwardClient client(b.auth, files, b.pool.at(0).get_executor(),
                         {.self_id = "b", .timeout = 5s});
    StaticLocator locator("a", client.target("a", a.http_address()));
    b.http.set_locator(&locator);
    auto res = request(b.http_address(), http::verb::post,
                       R"({"jsonrpc":"2.0","id":3,"method":"ping"})", {{"Mcp-Session-Id", id}});
    b.http.set_locator(nullptr);
    return res;
  }

  testing::ThrowawayPki pki;
  TestNode a{"a", 0xa1};
  TestNode b{"b", 0xb1};
};

TEST_F(TlsForwardingTest, ClusterCertificatesRelayAndOthersAreRefused) {
  ForwardService service(a.auth, a.http, {}, pki.cluster);
  auto ok = relayed_ping(pki.cluster);
  EXPECT_EQ(ok.result_int(), 200u) << ok.body();
  EXPECT_EQ(a.server.metrics().forwarded_in_total.load(), 1u);
  // Signed by another CA, or no TLS at all: the holder ends the link (with TLS 1.3 the client
  // learns of the refused certificate only then); the client gets an explicit error, and
  // nothing runs on the holder.
  for (const auto& files :
       {std::optional<TlsFiles>(pki.outsider_files), std::optional<TlsFiles>()}) {
    auto res = relayed_ping(files);
    EXPECT_TRUE(res.result_int() == 502u || res.result_int() == 503u) << res.body();
    EXPECT_NE(res.body().find("may or may not have run"), std::string::npos) << res.body();
  }
  EXPECT_EQ(a.server.metrics().forwarded_in_total.load(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Replication

/// The server's observer, feeding the replicator (the node adds interest hints; not needed here).
class ReplicatingObserver final : public mcp::SessionObserver {
 public:
  explicit ReplicatingObserver(Replicator& r) : r_(r) {}
  void on_record(const mcp::SessionRecord& record) override { r_.on_record(record); }
  void on_standalone_event(const std::string& id, std::uint64_t seq,
                           const mcp::Payload& message) override {
    r_.on_standalone_event(id, seq, message);
  }
  void on_closed(const std::string& id) override { r_.on_closed(id); }
  void on_subscription_changed(std::string_view) override {}

 private:
  Replicator& r_;
};

TEST(Replication, SessionsReachTheReplicaAndContinueThere) {
  TestNode a{"a", 0xa1};
  TestNode r{"r", 0xc1};
  registry::ClusterView view("r");
  view.set_member({"a", registry::ClusterView::NodeState::kAlive, 0xa1, "x", {}});
  ReplicaStore store({});
  ReplicationService service(r.auth, store, view,
                             [](std::string, std::function<void(std::uint64_t)> done) { done(0); });
  auto grpc_r = r.serve({&service});
  PeerChannels channels(std::nullopt, 8 << 20);
  boost::asio::io_context mesh;
  auto work = boost::asio::make_work_guard(mesh);
  std::thread mesh_thread([&] { mesh.run(); });
  std::vector<std::vector<std::string>> announced;
  std::mutex announced_mu;
  Replicator replicator(a.server, channels, a.auth, mesh.get_executor(), {.self_id = "a"},
                        [&](std::vector<std::string> in_sync) {
                          std::lock_guard lock(announced_mu);
                          announced.push_back(std::move(in_sync));
                        });
  replicator.set_epoch(0xa1);
  ReplicatingObserver observer(replicator);
  a.server.set_observer(&observer);
  auto s1 = initialize(a.http_address());
  auto s2 = initialize(a.http_address());
  request(a.http_address(), http::verb::post,
          R"({"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"note://x"}})",
          {{"Mcp-Session-Id", s1}});
  a.server.deliver_resource_updated("note://x");
  // The replica set forms: a full sync, then the replica is announced as heir.
  replicator.set_candidates({{"r", grpc_r, 0xc1}});
  ASSERT_TRUE(eventually([&] { return replicator.in_sync() == std::vector<std::string>{"r"}; }));
  {
    std::lock_guard lock(announced_mu);
    ASSERT_FALSE(announced.empty());
    EXPECT_EQ(announced.back(), std::vector<std::string>{"r"});
  }
  // Changes after the full sync follow in batches; flush waits for their acknowledgement.
  auto s3 = initialize(a.http_address());
  request(a.http_address(), http::verb::post,
          R"({"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"error"}})",
          {{"Mcp-Session-Id", s2}});
  request(a.http_address(), http::verb::delete_, {}, {{"Mcp-Session-Id", s3}});
  std::promise<bool> flushed;
  replicator.flush(5s, [&](bool ok) { flushed.set_value(ok); });
  ASSERT_TRUE(flushed.get_future().get());
  // The DELETE's answer comes before the session's close runs on its strand: the deletion
  // follows in a later batch.
  EXPECT_TRUE(eventually([&] { return store.session_count() == 2u; })) << "s3 was deleted";
  // Another server continues both sessions from the copies.
  auto copies = store.take("a");
  ASSERT_EQ(copies.size(), 2u);
  TestNode heir{"h", 0xd1};
  for (auto& c : copies) {
    auto restored = heir.server.restore_session(std::move(c.record), std::move(c.events));
    ASSERT_TRUE(restored) << restored.error().message;
  }
  auto s2_there = heir.server.find_session(s2);
  ASSERT_NE(s2_there, nullptr);
  auto call = request(
      heir.http_address(), http::verb::post,
      R"({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"still"}}})",
      {{"Mcp-Session-Id", s1}});
  EXPECT_EQ(call.result_int(), 200u) << call.body();
  EXPECT_NE(call.body().find("still from h"), std::string::npos) << call.body();
  EXPECT_TRUE(heir.server.subscriptions().has_subscribers("note://x"));
  // The replicated event resumes on the heir with its id.
  auto queue = std::make_shared<mcp::EventQueue>(heir.pool.at(0).get_executor(), 16);
  ASSERT_TRUE(heir.server.find_session(s1)->streams()->attach(0, 0, queue));
  auto ev = queue->try_pop([](const mcp::StreamEvent&) { return true; });
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->id, "0-1");
  EXPECT_NE(ev->data->find("note://x"), std::string::npos);
  a.server.set_observer(nullptr);
  replicator.stop();
  work.reset();
  mesh.stop();
  mesh_thread.join();
}

}  // namespace
}  // namespace mcpmesh::cluster

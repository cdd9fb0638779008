#include "mcp/session_record.hpp"

#include <gtest/gtest.h>

#include "mcp/testing/session_harness.hpp"

namespace mcpmesh::mcp {
namespace {

SessionRecord sample() {
  SessionRecord r;
  r.id = "n3.18c2f0a1b2c.00112233445566778899aabbccddeeff";
  r.owner = "n3";
  r.epoch = 0x18c2f0a1b2c;
  r.phase = SessionRecord::Phase::kReady;
  auto client = std::make_shared<ClientState>();
  client->protocol_version = "2025-11-25";
  client->capabilities = {{"sampling", json::object{}}};
  client->info = {{"name", "t"}, {"version", "1"}};
  r.client = client;
  r.log_level = LogLevel::kWarning;
  r.subscriptions = {"note://a", "note://b"};
  r.next_client_request_id = 7;
  r.stream_base = 1 << 20;
  r.revision = 12;
  return r;
}

TEST(SessionRecord, RoundTrips) {
  auto r = sample();
  auto back = SessionRecord::parse(r.serialize());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, r);
}

TEST(SessionRecord, ANewSessionHasNoClientYet) {
  SessionRecord r;
  r.id = "n1.0.ab";
  r.owner = "n1";
  auto back = SessionRecord::parse(r.serialize());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->client, nullptr);
  EXPECT_EQ(*back, r);
}

TEST(SessionRecord, UntrustedInputIsRefusedNotTrusted) {
  EXPECT_FALSE(SessionRecord::parse("not json"));
  EXPECT_FALSE(SessionRecord::parse("[]"));
  EXPECT_FALSE(SessionRecord::parse(std::string(kMaxRecordBytes + 1, ' ')));
  auto with = [](auto edit) {
    auto o = json::parse(sample().serialize()).as_object();
    edit(o);
    return SessionRecord::parse(json::serialize(o));
  };
  // The id must name the owner and epoch it claims: a peer cannot file a record under
  // another node's sessions.
  EXPECT_FALSE(with([](json::object& o) { o["owner"] = "n4"; }));
  EXPECT_FALSE(with([](json::object& o) { o["epoch"] = 5; }));
  EXPECT_FALSE(with([](json::object& o) { o["id"] = "no-dots"; }));
  EXPECT_FALSE(with([](json::object& o) { o["id"] = "n3.zz.abc"; }));
  EXPECT_FALSE(with([](json::object& o) { o["id"] = "n3.18c2f0a1b2c.a b"; }));
  EXPECT_FALSE(with([](json::object& o) { o["phase"] = 9; }));
  EXPECT_FALSE(with([](json::object& o) { o["logLevel"] = "loud"; }));
  EXPECT_FALSE(with([](json::object& o) { o["subscriptions"] = json::array{1}; }));
  EXPECT_FALSE(with([](json::object& o) { o["nextClientRequestId"] = 0; }));
  EXPECT_FALSE(with([](json::object& o) { o["nextClientRequestId"] = -3; }));
  EXPECT_FALSE(with([](json::object& o) { o.erase("version"); }));
  EXPECT_TRUE(with([](json::object& o) {}));
}

TEST(SessionId, SplitsOwnerAndEpoch) {
  std::string_view owner;
  std::uint64_t epoch = 0;
  ASSERT_TRUE(parse_session_id("n1.1f.abcdef", owner, epoch));
  EXPECT_EQ(owner, "n1");
  EXPECT_EQ(epoch, 0x1fu);
  for (std::string_view bad :
       {"", "n1", "n1.1f", "n1.1f.", ".1f.ab", "n1..ab", "n1.x.ab", "n1.11111111111111111.ab"}) {
    EXPECT_FALSE(parse_session_id(bad, owner, epoch)) << bad;
  }
}

/// Records what a server tells its observer.
class RecordingObserver final : public SessionObserver {
 public:
  void on_record(const SessionRecord& record) override { records.push_back(record); }
  void on_standalone_event(const std::string& id, std::uint64_t seq,
                           const Payload& message) override {
    events.push_back({id, seq, *message});
  }
  void on_closed(const std::string& id) override { closed.push_back(id); }
  void on_subscription_changed(std::string_view uri) override { hints.emplace_back(uri); }
  struct Event {
    std::string id;
    std::uint64_t seq;
    std::string text;
  };
  std::vector<SessionRecord> records;
  std::vector<Event> events;
  std::vector<std::string> closed;
  std::vector<std::string> hints;
};

App& demo_like_app() {
  static App app;
  static bool filled = [] {
    app.add_tool({.name = "echo", .input_schema = object_schema({{"text", "string"}})},
                 SyncToolHandler([](HandlerContext&, json::object args) -> Result<ToolResult> {
                   return ToolResult::text(args.at("text").as_string());
                 }));
    return true;
  }();
  (void)filled;
  return app;
}

TEST(SessionRecord, EveryReplicableChangeReachesTheObserverAndRestores) {
  RecordingObserver observer;
  testing::SessionHarness harness(demo_like_app(), ServerConfig{.node_id = "n7"});
  harness.server().set_epoch(0xabc);
  harness.server().set_observer(&observer);
  auto made = harness.server().create_streamed_session();
  ASSERT_TRUE(made);
  auto session = *made;
  EXPECT_EQ(session->id().rfind("n7.abc.", 0), 0u) << session->id();
  testing::TestClient client(harness, session, nullptr);
  client.initialize({{"sampling", json::object{}}});
  client.call("logging/setLevel", {{"level", "error"}});
  client.call("resources/subscribe", {{"uri", "note://x"}});
  client.call("resources/subscribe", {{"uri", "note://x"}});                       // no change
  client.call("tools/call", {{"name", "echo"}, {"arguments", {{"text", "hi"}}}});  // no change
  harness.settle();
  ASSERT_EQ(observer.records.size(), 4u);  // initialize, initialized, setLevel, subscribe
  auto last = observer.records.back();
  EXPECT_EQ(last.phase, SessionRecord::Phase::kReady);
  EXPECT_EQ(last.log_level, LogLevel::kError);
  EXPECT_EQ(last.subscriptions.size(), 1u);
  EXPECT_EQ(last.revision, 4u);
  EXPECT_EQ(observer.hints, std::vector<std::string>{"note://x"});

  harness.server().deliver_resource_updated("note://x");
  harness.settle();
  ASSERT_EQ(observer.events.size(), 1u);
  EXPECT_EQ(observer.events[0].seq, 1u);
  EXPECT_NE(observer.events[0].text.find("notifications/resources/updated"), std::string::npos);

  // Another server continues the session from the record and the replicated event.
  testing::SessionHarness heir(demo_like_app(), ServerConfig{.node_id = "n8"});
  heir.server().set_epoch(0xdef);
  std::vector<SessionStreams::StoredEvent> events{
      {1, std::make_shared<const std::string>(observer.events[0].text)}};
  auto restored =
      heir.server().restore_session(*SessionRecord::parse(last.serialize()), std::move(events));
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ((*restored)->id(), session->id());
  EXPECT_EQ((*restored)->protocol_version(), "2025-11-25");
  EXPECT_EQ(heir.server().subscriptions().subscribers("note://x"),
            std::vector<std::string>{session->id()});
  // The restored session answers at once, with no new initialize.
  testing::TestClient continued(heir, *restored, nullptr);
  auto echoed = testing::result_of(
      continued.call("tools/call", {{"name", "echo"}, {"arguments", {{"text", "again"}}}}));
  EXPECT_EQ(echoed.at("content").at(0).at("text"), "again");
  // Its standalone stream resumes after the replicated event.
  auto queue = std::make_shared<EventQueue>(heir.io().get_executor(), 16);
  ASSERT_TRUE((*restored)->streams()->attach(0, 0, queue));
  auto replayed = queue->try_pop([](const StreamEvent&) { return true; });
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->id, "0-1");
  // The old holder may have sent events 0-2 and 0-3 that never reached the heir: a client that
  // resumes after them still gets what the heir sends next.
  auto resumed = std::make_shared<EventQueue>(heir.io().get_executor(), 16);
  ASSERT_TRUE((*restored)->streams()->attach(0, 3, resumed));
  heir.server().deliver_resource_updated("note://x");
  heir.settle();
  auto next = resumed->try_pop([](const StreamEvent&) { return true; });
  ASSERT_TRUE(next) << "a new event after the replicated ones";
  EXPECT_EQ(next->id, "0-" + std::to_string(2 + SessionStreams::kRestoredSeqGap));
  // The same id cannot be restored twice.
  EXPECT_FALSE(heir.server().restore_session(last, {}));

  harness.server().close_session(session->id());
  harness.settle();
  EXPECT_EQ(observer.closed, std::vector<std::string>{session->id()});
  harness.server().set_observer(nullptr);
}

}  // namespace
}  // namespace mcpmesh::mcp

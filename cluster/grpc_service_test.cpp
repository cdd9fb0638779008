// The gRPC membership service in process: a flood of inbound RPCs while the membership's loop
// is busy is refused with RESOURCE_EXHAUSTED beyond the configured queue, counted, and shown
// by the admin service; what was queued is answered once the loop runs again. Application
// state (Delegate) crosses push-pull in 1 MiB slices, within its bound on both ends.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "cluster/delegate.hpp"
#include "cluster/event_loop.hpp"
#include "cluster/grpc_transport.hpp"
#include "cluster/membership.hpp"
#include "cluster/proto_convert.hpp"
#include "proto/admin.grpc.pb.h"
#include "proto/membership.grpc.pb.h"

namespace mcpmesh::cluster {
namespace {

namespace pb = ::mcpmesh::v1;
using namespace std::chrono_literals;

/// One node's membership, its services and a gRPC server on a free loopback port; torn down
/// in order (server, transport, loop) before the membership goes.
struct ServiceHarness {
  explicit ServiceHarness(const MembershipConfig& c, uint64_t seed)
      : cfg(c),
        transport(loop, 16, cfg.max_state_members),
        membership(cfg, self_meta(), loop, transport, seed),
        service(loop, membership, cfg),
        admin(loop, membership, &service) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    builder.RegisterService(&admin);
    server = builder.BuildAndStart();
    if (server && port != 0) {
      channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                    grpc::InsecureChannelCredentials());
    }
  }
  ~ServiceHarness() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + 1s);
    transport.shutdown();
    loop.join();
  }
  static MemberMeta self_meta() {
    MemberMeta self;
    self.node_id = "n1";
    self.grpc_addr = "127.0.0.1:1";
    return self;
  }

  MembershipConfig cfg;
  EventLoop loop;
  GrpcTransport transport;
  Membership membership;
  MembershipService service;
  AdminService admin;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
};

/// Keeps `loop` busy from construction until release() (or destruction): what is posted
/// meanwhile waits in its queue.
class LoopHold {
 public:
  explicit LoopHold(EventLoop& loop) {
    loop.post([this, done = release_.get_future().share()] {
      holding_.set_value();
      done.wait();
    });
    holding_.get_future().wait();
  }
  ~LoopHold() { release(); }
  LoopHold(const LoopHold&) = delete;
  LoopHold& operator=(const LoopHold&) = delete;

  void release() {
    if (released_) return;
    released_ = true;
    release_.set_value();
  }

 private:
  std::promise<void> holding_;
  std::promise<void> release_;
  bool released_ = false;
};

TEST(MembershipService, FloodBeyondTheInboundQueueIsRefusedAndCounted) {
  constexpr size_t kLimit = 4;
  constexpr int kPings = 10;
  MembershipConfig cfg = MembershipConfig::fast();
  cfg.max_inbound_tasks = kLimit;
  ServiceHarness h(cfg, 42);
  ASSERT_TRUE(h.channel) << "no server";
  auto& loop = h.loop;
  auto& service = h.service;
  auto stub = pb::Membership::NewStub(h.channel);

  LoopHold hold(loop);  // every ping from now on waits in the loop's queue

  struct Call {
    grpc::ClientContext ctx;
    pb::PingRequest req;
    pb::PingResponse resp;
    grpc::Status status;
    bool done = false;
  };
  std::vector<Call> calls(kPings);
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  // On every way out (a failed ASSERT too): free the loop and let the calls end before what
  // they write to goes away.
  struct Drain {
    std::function<void()> fn;
    ~Drain() { fn(); }
  } drain{[&] {
    hold.release();
    std::unique_lock lock(mu);
    cv.wait_for(lock, 15s, [&] { return finished == kPings; });
  }};
  for (auto& c : calls) {
    c.ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    c.req.mutable_env()->set_cluster(cfg.cluster_name);
    c.req.mutable_env()->set_sender_id("x1");
    c.req.mutable_env()->set_sender_addr("127.0.0.1:2");
    c.req.mutable_env()->set_boot_epoch(1);
    c.req.mutable_env()->set_seq(1);
    c.req.set_target_id("n1");
    stub->async()->Ping(&c.ctx, &c.req, &c.resp, [&, call = &c](grpc::Status s) {
      std::lock_guard lock(mu);
      call->status = std::move(s);
      call->done = true;
      ++finished;
      cv.notify_all();
    });
  }
  // With the loop held, exactly the pings beyond the queue's room come back, all refused.
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return finished == kPings - int(kLimit); }));
  }
  EXPECT_EQ(service.inbound_rejected(), kPings - kLimit);
  {
    std::lock_guard lock(mu);
    for (auto& c : calls) {
      if (c.done) {
        EXPECT_EQ(c.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      }
    }
  }

  // Released, the loop answers every queued ping.
  hold.release();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return finished == kPings; }));
  }
  int ok = 0;
  for (auto& c : calls) ok += c.status.ok() ? 1 : 0;
  EXPECT_EQ(ok, int(kLimit));

  // The admin service reports the count.
  auto admin_stub = pb::Admin::NewStub(h.channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  pb::MembersRequest mreq;
  pb::MembersResponse mresp;
  ASSERT_TRUE(admin_stub->Members(&ctx, mreq, &mresp).ok());
  ASSERT_EQ(mresp.counters().count("inbound_rejected"), 1u);
  EXPECT_EQ(mresp.counters().at("inbound_rejected"), kPings - kLimit);
}

TEST(MembershipService, StateExchangeWithoutDeadlineIsCancelledAfterTheLimit) {
  MembershipConfig cfg = MembershipConfig::fast();
  cfg.state_exchange_limit = std::chrono::milliseconds(300);
  ServiceHarness h(cfg, 7);
  ASSERT_TRUE(h.channel) << "no server";
  auto stub = pb::Membership::NewStub(h.channel);

  // Streams that never send their state, with deadlines far beyond the limit (a peer may set
  // none at all): without the limit each would hold a slot until its own deadline. With it,
  // every one ends at once, cancelled by the server.
  constexpr int kStreams = 8;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<pb::StateChunk, pb::StateChunk>>> streams;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->set_deadline(std::chrono::system_clock::now() + 30s);
    streams.push_back(stub->PushPull(contexts.back().get()));
  }
  for (auto& s : streams) {
    pb::StateChunk chunk;
    EXPECT_FALSE(s->Read(&chunk));  // blocks until the server ends the stream
    EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::seconds(5));

  // The slots are free again: a real push-pull goes through.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  auto s = stub->PushPull(&ctx);
  pb::StateChunk out;
  out.mutable_env()->set_cluster(cfg.cluster_name);
  out.mutable_env()->set_sender_id("x1");
  out.mutable_env()->set_sender_addr("127.0.0.1:2");
  out.mutable_env()->set_boot_epoch(1);
  out.mutable_env()->set_seq(1);
  ASSERT_TRUE(s->Write(out));
  ASSERT_TRUE(s->WritesDone());
  pb::StateChunk in;
  int chunks = 0;
  while (s->Read(&in)) ++chunks;
  EXPECT_TRUE(s->Finish().ok());
  EXPECT_GE(chunks, 1);
}

TEST(EventLoop, TryPostRefusesBeyondTheLimit) {
  EventLoop loop;
  int ran = 0;  // before the hold: on any way out, the hold goes first and the tasks run
  LoopHold hold(loop);
  EXPECT_TRUE(loop.try_post([&] { ++ran; }, 2));
  EXPECT_TRUE(loop.try_post([&] { ++ran; }, 2));
  EXPECT_FALSE(loop.try_post([&] { ++ran; }, 2));
  hold.release();
  std::promise<void> drained;
  loop.post([&] { drained.set_value(); });
  ASSERT_EQ(drained.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(ran, 2);
  loop.join();
  EXPECT_FALSE(loop.try_post([] {}, 100));  // stopped
}

TEST(ProtoConvert, PushPullChunksSliceTheApplicationState) {
  Message m;
  m.type = MsgType::kPushPull;
  m.cluster = "c";
  m.sender_id = "x1";
  m.boot_epoch = 1;
  m.seq = 1;
  for (int i = 0; i < 700; ++i) {
    Update u;
    u.node_id = "m" + std::to_string(i);
    u.state = MemberState::kAlive;
    u.incarnation = 1;
    u.meta = std::make_shared<const MemberMeta>(MemberMeta{u.node_id, "a", "", "", 0, "app"});
    m.updates.push_back(u);
  }
  for (size_t i = 0; i < 2 * kAppStateBytesPerChunk + 10; ++i)
    m.app_state.push_back(static_cast<char>('a' + i % 26));
  auto chunks = to_chunks(m, 512);
  ASSERT_EQ(chunks.size(), 3u);  // the state needs 3 slices, the members 2 chunks
  std::string state;
  size_t members = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_LE(chunks[i].app_state().size(), kAppStateBytesPerChunk);
    EXPECT_EQ(chunks[i].last(), i + 1 == chunks.size());
    state += chunks[i].app_state();
    members += static_cast<size_t>(chunks[i].members_size());
  }
  EXPECT_EQ(state, m.app_state);
  EXPECT_EQ(members, 700u);
  EXPECT_EQ(from_proto(chunks[0].members(0)).meta->app, "app");
  m.app_state.clear();
  EXPECT_EQ(to_chunks(m, 512).size(), 2u);
}

/// Records merged states; answers with `state`. Called on the membership's loop only.
class StateDelegate final : public Delegate {
 public:
  explicit StateDelegate(std::string s) : state(std::move(s)) {}
  std::vector<std::string> broadcasts(size_t) override { return {}; }
  void on_broadcast(std::string_view, const std::string&) override {}
  std::string local_state(bool) override { return state; }
  void merge_remote_state(std::string_view remote, bool join, const std::string& from) override {
    std::lock_guard lock(mu);
    merged.push_back(std::string(remote));
    merged_from = from;
    merged_join = join;
  }
  std::string state;
  std::mutex mu;
  std::vector<std::string> merged;
  std::string merged_from;
  bool merged_join = false;
};

/// One push-pull through a client GrpcTransport (its own loop) to `addr`; the reply's state,
/// or nullopt when the exchange failed.
std::optional<std::string> push_pull(const std::string& addr, std::string state, bool join,
                                     size_t client_max_state) {
  EventLoop loop;
  GrpcTransport client(loop, 4, 1u << 16, client_max_state);
  Message m;
  m.type = MsgType::kPushPull;
  m.cluster = "mcpmesh";
  m.sender_id = "x1";
  m.sender_addr = "127.0.0.1:2";
  m.boot_epoch = 1;
  m.seq = 1;
  m.join = join;
  m.app_state = std::move(state);
  std::promise<std::optional<std::string>> done;
  auto fut = done.get_future();
  loop.post([&] {
    client.request(addr, std::move(m), 10s, [&](const Message* reply) {
      if (reply && !reply->sender_id.empty())
        done.set_value(reply->app_state);
      else
        done.set_value(std::nullopt);
    });
  });
  if (fut.wait_for(15s) != std::future_status::ready) return std::nullopt;
  auto out = fut.get();
  client.shutdown();
  loop.join();
  return out;
}

TEST(MembershipService, PushPullCarriesApplicationStateInSlicesWithinItsBound) {
  MembershipConfig cfg = MembershipConfig::fast();
  cfg.max_app_state_bytes = 3u << 20;
  ServiceHarness h(cfg, 11);
  ASSERT_TRUE(h.channel) << "no server";
  const std::string addr = "127.0.0.1:" + std::to_string(h.port);
  StateDelegate server(std::string((5u << 20) / 2, 'S'));  // 2.5 MiB: three slices
  std::promise<void> set;
  h.loop.post([&] {
    h.membership.set_delegate(&server);
    set.set_value();
  });
  set.get_future().wait();

  // Both ways, well beyond one gRPC message's 4 MiB in total, and each side merges the other's.
  std::string mine((11u << 20) / 4, 'C');  // 2.75 MiB
  auto reply = push_pull(addr, mine, /*join=*/true, 8u << 20);
  ASSERT_TRUE(reply.has_value()) << "push-pull failed";
  EXPECT_EQ(*reply, server.state);
  {
    std::lock_guard lock(server.mu);
    ASSERT_EQ(server.merged.size(), 1u);
    EXPECT_EQ(server.merged[0], mine);
    EXPECT_EQ(server.merged_from, "x1");
    EXPECT_TRUE(server.merged_join);
  }

  // Beyond the server's bound: refused before the membership sees it.
  auto refused = push_pull(addr, std::string((7u << 20) / 2, 'C'), false, 8u << 20);
  EXPECT_FALSE(refused.has_value());
  {
    std::lock_guard lock(server.mu);
    EXPECT_EQ(server.merged.size(), 1u);
  }
  // Beyond the client's bound: the answer is dropped.
  auto dropped = push_pull(addr, "small", false, 1u << 20);
  EXPECT_FALSE(dropped.has_value());

  // Served through the loop: unset the delegate before it goes.
  std::promise<void> unset;
  h.loop.post([&] {
    h.membership.set_delegate(nullptr);
    unset.set_value();
  });
  unset.get_future().wait();
}

}  // namespace
}  // namespace mcpmesh::cluster

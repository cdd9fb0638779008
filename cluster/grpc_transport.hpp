#pragma once
// Membership over gRPC: the client-side Transport and the server-side services.
//
// Client: one channel per peer for probes (ping, ping-req, gossip, leave; no transparent
// retries, fail fast, reconnect backoff capped at 1 s) and a separate channel per peer for bulk
// push-pull / join streams, which run on one bulk worker thread with a bounded queue. Every
// RPC has a deadline. Completions are posted to the EventLoop, where the Membership lives.
// reset(addr) drops a peer's channels when the membership sees it come back: a channel that
// failed to connect while the peer was down stays in reconnect backoff (up to 1 s) and fails
// every fail-fast call at once, even after the peer is listening again.
// Server: callback-API services; requests are posted to the EventLoop and answered from there.
//
// Thread-safety: GrpcTransport::request/send are called on the loop thread only; the services
// are called by gRPC threads and never block them.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "cluster/auth.hpp"
#include "cluster/config.hpp"
#include "cluster/env.hpp"
#include "cluster/event_loop.hpp"
#include "cluster/membership.hpp"
#include "proto/admin.grpc.pb.h"
#include "proto/membership.grpc.pb.h"

namespace mcpmesh::cluster {

/// Channel arguments every cluster channel shares: no transparent retries (a probe must not be
/// replayed, a relayed request may have run), reconnect backoff 100 ms..1 s, a connection of
/// its own (`kind` names it), and TLS's target name when `tls` is set.
[[nodiscard]] grpc::ChannelArguments cluster_channel_arguments(const char* kind,
                                                               const std::optional<TlsFiles>& tls);

/// Members per push-pull chunk: ~100 bytes each, so a chunk stays far below 4 MiB.
inline constexpr size_t kMembersPerChunk = 512;
/// Channel cache bound: addresses come from the network (ping-req targets), so it must not grow
/// without limit; past this many, the cache is dropped and rebuilt on demand.
inline constexpr size_t kMaxPeers = 4096;

class GrpcTransport final : public Transport {
 public:
  /// `max_state_members` / `max_app_state_bytes`: a push-pull answer with more members or more
  /// application state is refused (as on the server).
  /// `auth` (optional, outlives the transport) stamps every call with a call token; `tls`
  /// (optional) makes every channel mutual TLS.
  explicit GrpcTransport(EventLoop& loop, size_t bulk_queue_limit = 16,
                         size_t max_state_members = MembershipConfig{}.max_state_members,
                         size_t max_app_state_bytes = MembershipConfig{}.max_app_state_bytes,
                         const ClusterAuth* auth = nullptr, std::optional<TlsFiles> tls = {});
  ~GrpcTransport() override;

  void request(const std::string& addr, Message msg, Duration timeout, ReplyFn fn) override;
  void send(const std::string& addr, Message msg, Duration timeout) override;
  /// Drops the cached channels to `addr`; calls in flight keep theirs and finish normally.
  void reset(const std::string& addr) override;

  /// One-way RPCs still in flight (leave waits for them).
  [[nodiscard]] int oneway_in_flight() const { return oneway_in_flight_->load(); }
  /// Bulk jobs refused because the queue was full.
  [[nodiscard]] uint64_t bulk_rejected() const { return bulk_rejected_.load(); }
  /// Stops the bulk worker; pending jobs complete with a failure.
  void shutdown();

 private:
  struct Peer {
    std::shared_ptr<v1::Membership::Stub> probe;
    std::shared_ptr<v1::Membership::Stub> bulk;
  };
  Peer& peer(const std::string& addr);
  void stamp(grpc::ClientContext& ctx, std::string_view method) const;
  void bulk_worker();
  void push_pull(const std::shared_ptr<v1::Membership::Stub>& stub, Message msg, Duration timeout,
                 ReplyFn fn);

  /// Completions of calls still in flight at shutdown must not touch a destroyed loop: they
  /// post through this handle, which shutdown() disconnects.
  struct LoopRef {
    std::mutex mu;
    EventLoop* loop = nullptr;
    void post(std::function<void()> fn) {
      std::lock_guard lock(mu);
      if (loop) loop->post(std::move(fn));
    }
  };

  EventLoop& loop_;
  const ClusterAuth* auth_;
  std::optional<TlsFiles> tls_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::shared_ptr<LoopRef> loop_ref_ = std::make_shared<LoopRef>();
  std::unordered_map<std::string, Peer> peers_;  // loop thread only; bounded by kMaxPeers
  std::shared_ptr<std::atomic<int>> oneway_in_flight_ = std::make_shared<std::atomic<int>>(0);
  std::atomic<uint64_t> bulk_rejected_{0};

  std::mutex bulk_mu_;
  std::condition_variable bulk_cv_;
  std::deque<std::function<void()>> bulk_jobs_;
  size_t bulk_limit_;
  size_t max_state_members_;
  size_t max_app_state_bytes_;
  bool bulk_stop_ = false;
  std::thread bulk_thread_;
};

/// Server side of proto/membership.proto, feeding one Membership on `loop`.
class MembershipService final : public v1::Membership::CallbackService {
 public:
  /// Limits from `limits`: max_state_members and max_app_state_bytes (a bigger state is
  /// refused), max_inbound_tasks
  /// (inbound RPCs queued for `loop` beyond it are refused with RESOURCE_EXHAUSTED and counted
  /// in inbound_rejected()), state_exchange_limit (a longer push-pull/join is cancelled).
  /// `auth` (optional, outlives the service): every call must carry a valid call token; a call
  /// without one is refused (UNAUTHENTICATED) before it reaches the membership, and counted.
  MembershipService(EventLoop& loop, Membership& membership, const MembershipConfig& limits,
                    ClusterAuth* auth = nullptr);

  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* ctx, const v1::PingRequest* req,
                                 v1::PingResponse* resp) override;
  grpc::ServerUnaryReactor* PingReq(grpc::CallbackServerContext* ctx, const v1::PingReqRequest* req,
                                    v1::PingReqResponse* resp) override;
  grpc::ServerUnaryReactor* Gossip(grpc::CallbackServerContext* ctx, const v1::GossipRequest* req,
                                   v1::GossipResponse* resp) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const v1::LeaveRequest* req,
                                  v1::LeaveResponse* resp) override;
  grpc::ServerBidiReactor<v1::StateChunk, v1::StateChunk>* PushPull(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerBidiReactor<v1::StateChunk, v1::StateChunk>* Join(
      grpc::CallbackServerContext* ctx) override;

  /// Inbound RPCs refused because the loop's queue was full. Any thread.
  [[nodiscard]] uint64_t inbound_rejected() const {
    return inbound_rejected_.load(std::memory_order_relaxed);
  }

 private:
  /// Queues `fn` for the loop; false (counted) when the queue is full.
  bool enqueue(std::function<void()> fn);
  /// The call token check for `method` (OK without auth).
  grpc::Status admit(grpc::CallbackServerContext* ctx, std::string_view method);

  EventLoop& loop_;
  ClusterAuth* auth_;
  Membership& membership_;
  size_t max_state_members_;
  size_t max_app_state_bytes_;
  size_t max_inbound_tasks_;
  Duration state_exchange_limit_;
  std::atomic<uint64_t> inbound_rejected_{0};
  /// Push-pull/join streams being served; more than kMaxStateExchanges are refused.
  std::atomic<int> active_exchanges_{0};
};

/// Server side of proto/admin.proto: the member list and counters, and drains (this node's,
/// or relayed once to the member asked for).
class AdminService final : public v1::Admin::CallbackService {
 public:
  /// `service` (optional) adds its counters (inbound_rejected) to the answer; `auth` (optional,
  /// outlives the service) makes every call need a valid call token, and stamps relayed ones;
  /// `tls` is what relayed calls dial with.
  AdminService(EventLoop& loop, Membership& membership, const MembershipService* service = nullptr,
               ClusterAuth* auth = nullptr, std::optional<TlsFiles> tls = {})
      : loop_(loop),
        membership_(membership),
        service_(service),
        auth_(auth),
        tls_(std::move(tls)) {}
  /// Any thread. What a drain of this node runs; returns whether one started now (false: one is
  /// running already). Without it, drains are refused (a process that cannot drain).
  void set_drain_handler(std::function<bool()> start);

  grpc::ServerUnaryReactor* Members(grpc::CallbackServerContext* ctx, const v1::MembersRequest* req,
                                    v1::MembersResponse* resp) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::DrainResponse* resp) override;

  static constexpr std::string_view kMembersMethod = "/mcpmesh.v1.Admin/Members";
  static constexpr std::string_view kDrainMethod = "/mcpmesh.v1.Admin/Drain";

 private:
  EventLoop& loop_;
  Membership& membership_;
  const MembershipService* service_;
  ClusterAuth* auth_;
  std::optional<TlsFiles> tls_;
  std::mutex drain_mu_;
  std::function<bool()> drain_;  // guarded by drain_mu_
};

}  // namespace mcpmesh::cluster

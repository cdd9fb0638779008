#include "cluster/grpc_transport.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

#include "cluster/proto_convert.hpp"

namespace mcpmesh::cluster {

namespace {

std::chrono::system_clock::time_point deadline_after(Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
}

std::shared_ptr<grpc::Channel> make_channel(
    const std::string& addr, const char* kind, const std::optional<TlsFiles>& tls,
    const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  return grpc::CreateCustomChannel(addr, creds, cluster_channel_arguments(kind, tls));
}

template <typename Req, typename Resp>
struct UnaryCall {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
  std::shared_ptr<v1::Membership::Stub> stub;  // keeps the channel alive for the call
};

}  // namespace

grpc::ChannelArguments cluster_channel_arguments(const char* kind,
                                                 const std::optional<TlsFiles>& tls) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Own connection per channel, so bulk streams never queue behind (or ahead of) probes, and
  // the MCP side's traffic never behind either.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetString("mcpmesh.channel_kind", kind);
  apply_tls_channel_args(args, tls);
  return args;
}

GrpcTransport::GrpcTransport(EventLoop& loop, size_t bulk_queue_limit, size_t max_state_members,
                             size_t max_app_state_bytes, const ClusterAuth* auth,
                             std::optional<TlsFiles> tls)
    : loop_(loop),
      auth_(auth),
      tls_(std::move(tls)),
      credentials_(channel_credentials(tls_)),
      bulk_limit_(bulk_queue_limit),
      max_state_members_(max_state_members),
      max_app_state_bytes_(max_app_state_bytes),
      bulk_thread_([this] { bulk_worker(); }) {
  loop_ref_->loop = &loop_;
}

GrpcTransport::~GrpcTransport() { shutdown(); }

void GrpcTransport::shutdown() {
  {
    std::lock_guard lock(loop_ref_->mu);
    loop_ref_->loop = nullptr;
  }
  {
    std::lock_guard lock(bulk_mu_);
    bulk_stop_ = true;
    bulk_cv_.notify_all();
  }
  if (bulk_thread_.joinable()) bulk_thread_.join();
}

GrpcTransport::Peer& GrpcTransport::peer(const std::string& addr) {
  auto it = peers_.find(addr);
  if (it != peers_.end()) return it->second;
  if (peers_.size() >= kMaxPeers) peers_.clear();  // in-flight calls keep their own stubs
  Peer p;
  p.probe = v1::Membership::NewStub(make_channel(addr, "probe", tls_, credentials_));
  p.bulk = v1::Membership::NewStub(make_channel(addr, "bulk", tls_, credentials_));
  return peers_.emplace(addr, std::move(p)).first->second;
}

void GrpcTransport::reset(const std::string& addr) { peers_.erase(addr); }

void GrpcTransport::stamp(grpc::ClientContext& ctx, std::string_view method) const {
  if (auth_) auth_->stamp(ctx, method);
}

void GrpcTransport::request(const std::string& addr, Message msg, Duration timeout, ReplyFn fn) {
  Peer& p = peer(addr);
  std::shared_ptr<LoopRef> loop = loop_ref_;
  switch (msg.type) {
    case MsgType::kPing: {
      auto call = std::make_shared<UnaryCall<v1::PingRequest, v1::PingResponse>>();
      call->stub = p.probe;
      call->ctx.set_deadline(deadline_after(timeout));
      stamp(call->ctx, "/mcpmesh.v1.Membership/Ping");
      to_envelope(msg, call->req.mutable_env());
      call->req.set_probe_seq(msg.probe_seq);
      call->req.set_target_id(msg.target_id);
      call->stub->async()->Ping(&call->ctx, &call->req, &call->resp,
                                [loop, call, fn = std::move(fn)](grpc::Status status) mutable {
                                  loop->post([call, fn = std::move(fn), ok = status.ok()] {
                                    if (!ok) return fn(nullptr);
                                    Message r;
                                    r.type = MsgType::kAck;
                                    from_envelope(call->resp.env(), &r);
                                    r.probe_seq = call->resp.probe_seq();
                                    r.ack = call->resp.ack();
                                    r.nack = call->resp.unknown_sender();
                                    fn(&r);
                                  });
                                });
      return;
    }
    case MsgType::kPingReq: {
      auto call = std::make_shared<UnaryCall<v1::PingReqRequest, v1::PingReqResponse>>();
      call->stub = p.probe;
      call->ctx.set_deadline(deadline_after(timeout));
      stamp(call->ctx, "/mcpmesh.v1.Membership/PingReq");
      to_envelope(msg, call->req.mutable_env());
      call->req.set_probe_seq(msg.probe_seq);
      call->req.set_target_id(msg.target_id);
      call->req.set_target_addr(msg.target_addr);
      call->req.set_timeout_ms(msg.timeout_ms);
      call->stub->async()->PingReq(&call->ctx, &call->req, &call->resp,
                                   [loop, call, fn = std::move(fn)](grpc::Status status) mutable {
                                     loop->post([call, fn = std::move(fn), ok = status.ok()] {
                                       if (!ok) return fn(nullptr);
                                       Message r;
                                       r.type = MsgType::kPingReqReply;
                                       from_envelope(call->resp.env(), &r);
                                       r.probe_seq = call->resp.probe_seq();
                                       r.ack = call->resp.ack();
                                       r.nack = call->resp.nack();
                                       fn(&r);
                                     });
                                   });
      return;
    }
    case MsgType::kPushPull: {
      std::lock_guard lock(bulk_mu_);
      if (bulk_stop_ || bulk_jobs_.size() >= bulk_limit_) {
        bulk_rejected_++;
        loop_ref_->post([fn = std::move(fn)] { fn(nullptr); });
        return;
      }
      bulk_jobs_.push_back(
          [this, stub = p.bulk, msg = std::move(msg), timeout, fn = std::move(fn)]() mutable {
            push_pull(stub, std::move(msg), timeout, std::move(fn));
          });
      bulk_cv_.notify_one();
      return;
    }
    default:
      send(addr, std::move(msg), timeout);
      loop_ref_->post([fn = std::move(fn)] { fn(nullptr); });
      return;
  }
}

void GrpcTransport::send(const std::string& addr, Message msg, Duration timeout) {
  Peer& p = peer(addr);
  (*oneway_in_flight_)++;
  std::shared_ptr<std::atomic<int>> counter = oneway_in_flight_;
  if (msg.type == MsgType::kLeave) {
    auto call = std::make_shared<UnaryCall<v1::LeaveRequest, v1::LeaveResponse>>();
    call->stub = p.probe;
    call->ctx.set_deadline(deadline_after(timeout));
    stamp(call->ctx, "/mcpmesh.v1.Membership/Leave");
    to_envelope(msg, call->req.mutable_env());
    call->stub->async()->Leave(&call->ctx, &call->req, &call->resp,
                               [call, counter](grpc::Status) { (*counter)--; });
    return;
  }
  auto call = std::make_shared<UnaryCall<v1::GossipRequest, v1::GossipResponse>>();
  call->stub = p.probe;
  call->ctx.set_deadline(deadline_after(timeout));
  stamp(call->ctx, "/mcpmesh.v1.Membership/Gossip");
  to_envelope(msg, call->req.mutable_env());
  call->stub->async()->Gossip(&call->ctx, &call->req, &call->resp,
                              [call, counter](grpc::Status) { (*counter)--; });
}

void GrpcTransport::bulk_worker() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(bulk_mu_);
      bulk_cv_.wait(lock, [this] { return bulk_stop_ || !bulk_jobs_.empty(); });
      if (bulk_stop_) {
        bulk_jobs_.clear();
        return;
      }
      job = std::move(bulk_jobs_.front());
      bulk_jobs_.pop_front();
    }
    job();
  }
}

void GrpcTransport::push_pull(const std::shared_ptr<v1::Membership::Stub>& stub, Message msg,
                              Duration timeout, ReplyFn fn) {
  // Runs on the bulk thread: the synchronous streaming API is simplest here, and the deadline
  // bounds how long this thread can be held.
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_after(timeout));
  stamp(ctx, msg.join ? "/mcpmesh.v1.Membership/Join" : "/mcpmesh.v1.Membership/PushPull");
  auto stream = msg.join ? stub->Join(&ctx) : stub->PushPull(&ctx);
  for (const auto& chunk : to_chunks(msg, kMembersPerChunk))
    if (!stream->Write(chunk)) break;
  stream->WritesDone();
  auto reply = std::make_shared<Message>();
  reply->type = MsgType::kPushPull;
  reply->join = msg.join;  // the answer to a join is a join's state
  v1::StateChunk in;
  bool first = true;
  bool too_large = false;
  while (stream->Read(&in)) {
    if (first) from_envelope(in.env(), reply.get());
    first = false;
    for (const auto& u : in.members()) reply->updates.push_back(from_proto(u));
    too_large = reply->updates.size() > max_state_members_ ||
                in.app_state().size() > max_app_state_bytes_ - reply->app_state.size();
    if (too_large) {
      ctx.TryCancel();
      break;
    }
    reply->app_state += in.app_state();
  }
  grpc::Status status = stream->Finish();
  bool ok = status.ok() && !first && !too_large;
  loop_ref_->post([reply, ok, fn = std::move(fn)] { fn(ok ? reply.get() : nullptr); });
}

// ---------------------------------------------------------------------------------------------
// Server.

namespace {

/// Push-pull / join server stream: read the client's state to its half-close, hand it to the
/// membership on the loop, stream our state back chunk by chunk.
class StateExchangeReactor final : public grpc::ServerBidiReactor<v1::StateChunk, v1::StateChunk> {
 public:
  /// Concurrent push-pull/join streams one node serves; each may buffer a whole state.
  static constexpr int kMaxStateExchanges = 8;

  /// `admitted`: the call token's check; a refused call is finished at once.
  StateExchangeReactor(grpc::CallbackServerContext* ctx, EventLoop& loop, Membership& membership,
                       size_t max_members, size_t max_app_state, Duration limit, bool join,
                       std::atomic<int>& active, const grpc::Status& admitted)
      : loop_(loop),
        membership_(membership),
        max_members_(max_members),
        max_app_state_(max_app_state),
        active_(active) {
    msg_.type = MsgType::kPushPull;
    msg_.join = join;
    int before = active_.fetch_add(1);  // OnDone gives it back, whatever happens
    if (!admitted.ok()) {
      Finish(admitted);
      return;
    }
    if (before >= kMaxStateExchanges) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many state exchanges"));
      return;
    }
    // Past `limit`, the stream is cancelled: a pending read or write then fails and the
    // stream finishes, freeing its slot. The guard keeps the timer off a finished stream.
    guard_ = std::make_shared<Guard>();
    guard_->ctx = ctx;
    timer_ = loop_.schedule(limit, [guard = guard_] {
      std::lock_guard lock(guard->mu);
      if (!guard->done) guard->ctx->TryCancel();
    });
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (first_) from_envelope(in_.env(), &msg_);
      first_ = false;
      msg_.join = msg_.join || in_.join();
      for (const auto& u : in_.members()) msg_.updates.push_back(from_proto(u));
      if (msg_.updates.size() > max_members_ ||
          in_.app_state().size() > max_app_state_ - msg_.app_state.size()) {
        Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "state too large"));
        return;
      }
      msg_.app_state += in_.app_state();
      StartRead(&in_);
      return;
    }
    if (first_) {  // nothing arrived (cancelled, or a peer that sent no state): nothing to merge
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "no state received"));
      return;
    }
    loop_.post([this] {
      membership_.handle(std::move(msg_), [this](Message reply) {
        out_ = to_chunks(reply, kMembersPerChunk);
        write_next();
      });
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    write_next();
  }

  void OnDone() override {
    if (guard_) {
      {
        std::lock_guard lock(guard_->mu);
        guard_->done = true;
      }
      loop_.cancel(timer_);
    }
    active_.fetch_sub(1);
    delete this;
  }

 private:
  void write_next() {
    if (next_ < out_.size()) {
      StartWrite(&out_[next_++]);
      return;
    }
    Finish(grpc::Status::OK);
  }

  struct Guard {
    std::mutex mu;
    grpc::CallbackServerContext* ctx = nullptr;
    bool done = false;  // guarded by mu
  };

  EventLoop& loop_;
  Membership& membership_;
  size_t max_members_;
  size_t max_app_state_;
  std::atomic<int>& active_;
  std::shared_ptr<Guard> guard_;
  TimerId timer_ = 0;
  v1::StateChunk in_;
  Message msg_;
  bool first_ = true;
  std::vector<v1::StateChunk> out_;
  size_t next_ = 0;
};

}  // namespace

MembershipService::MembershipService(EventLoop& loop, Membership& membership,
                                     const MembershipConfig& limits, ClusterAuth* auth)
    : loop_(loop),
      auth_(auth),
      membership_(membership),
      max_state_members_(limits.max_state_members),
      max_app_state_bytes_(limits.max_app_state_bytes),
      max_inbound_tasks_(limits.max_inbound_tasks),
      state_exchange_limit_(limits.state_exchange_limit) {}

bool MembershipService::enqueue(std::function<void()> fn) {
  if (loop_.try_post(std::move(fn), max_inbound_tasks_)) return true;
  inbound_rejected_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

namespace {
const grpc::Status kBusy(grpc::StatusCode::RESOURCE_EXHAUSTED, "membership queue full");
}  // namespace

grpc::Status MembershipService::admit(grpc::CallbackServerContext* ctx, std::string_view method) {
  return auth_ ? auth_->check(*ctx, method) : grpc::Status::OK;
}

grpc::ServerUnaryReactor* MembershipService::Ping(grpc::CallbackServerContext* ctx,
                                                  const v1::PingRequest* req,
                                                  v1::PingResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (auto st = admit(ctx, "/mcpmesh.v1.Membership/Ping"); !st.ok()) {
    reactor->Finish(st);
    return reactor;
  }
  Message m;
  m.type = MsgType::kPing;
  from_envelope(req->env(), &m);
  m.probe_seq = req->probe_seq();
  m.target_id = req->target_id();
  bool queued = enqueue([this, m = std::move(m), reactor, resp]() mutable {
    membership_.handle(std::move(m), [reactor, resp](Message r) {
      to_envelope(r, resp->mutable_env());
      resp->set_probe_seq(r.probe_seq);
      resp->set_ack(r.ack);
      resp->set_unknown_sender(r.nack);
      reactor->Finish(grpc::Status::OK);
    });
  });
  if (!queued) reactor->Finish(kBusy);
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::PingReq(grpc::CallbackServerContext* ctx,
                                                     const v1::PingReqRequest* req,
                                                     v1::PingReqResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (auto st = admit(ctx, "/mcpmesh.v1.Membership/PingReq"); !st.ok()) {
    reactor->Finish(st);
    return reactor;
  }
  Message m;
  m.type = MsgType::kPingReq;
  from_envelope(req->env(), &m);
  m.probe_seq = req->probe_seq();
  m.target_id = req->target_id();
  m.target_addr = req->target_addr();
  m.timeout_ms = req->timeout_ms();
  bool queued = enqueue([this, m = std::move(m), reactor, resp]() mutable {
    membership_.handle(std::move(m), [reactor, resp](Message r) {
      to_envelope(r, resp->mutable_env());
      resp->set_probe_seq(r.probe_seq);
      resp->set_ack(r.ack);
      resp->set_nack(r.nack);
      reactor->Finish(grpc::Status::OK);
    });
  });
  if (!queued) reactor->Finish(kBusy);
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::Gossip(grpc::CallbackServerContext* ctx,
                                                    const v1::GossipRequest* req,
                                                    v1::GossipResponse*) {
  if (auto st = admit(ctx, "/mcpmesh.v1.Membership/Gossip"); !st.ok()) {
    auto* refused = ctx->DefaultReactor();
    refused->Finish(st);
    return refused;
  }
  Message m;
  m.type = MsgType::kGossip;
  from_envelope(req->env(), &m);
  bool queued =
      enqueue([this, m = std::move(m)]() mutable { membership_.handle(std::move(m), {}); });
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(queued ? grpc::Status::OK : kBusy);
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::Leave(grpc::CallbackServerContext* ctx,
                                                   const v1::LeaveRequest* req,
                                                   v1::LeaveResponse*) {
  if (auto st = admit(ctx, "/mcpmesh.v1.Membership/Leave"); !st.ok()) {
    auto* refused = ctx->DefaultReactor();
    refused->Finish(st);
    return refused;
  }
  Message m;
  m.type = MsgType::kLeave;
  from_envelope(req->env(), &m);
  bool queued =
      enqueue([this, m = std::move(m)]() mutable { membership_.handle(std::move(m), {}); });
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(queued ? grpc::Status::OK : kBusy);
  return reactor;
}

grpc::ServerBidiReactor<v1::StateChunk, v1::StateChunk>* MembershipService::PushPull(
    grpc::CallbackServerContext* ctx) {
  return new StateExchangeReactor(ctx, loop_, membership_, max_state_members_, max_app_state_bytes_,
                                  state_exchange_limit_, false, active_exchanges_,
                                  admit(ctx, "/mcpmesh.v1.Membership/PushPull"));
}

grpc::ServerBidiReactor<v1::StateChunk, v1::StateChunk>* MembershipService::Join(
    grpc::CallbackServerContext* ctx) {
  return new StateExchangeReactor(ctx, loop_, membership_, max_state_members_, max_app_state_bytes_,
                                  state_exchange_limit_, true, active_exchanges_,
                                  admit(ctx, "/mcpmesh.v1.Membership/Join"));
}

grpc::ServerUnaryReactor* AdminService::Members(grpc::CallbackServerContext* ctx,
                                                const v1::MembersRequest*,
                                                v1::MembersResponse* resp) {
  if (auth_) {
    if (auto* refused = auth_->refuse_unary(ctx, kMembersMethod)) return refused;
  }
  auto* reactor = ctx->DefaultReactor();
  loop_.post([this, reactor, resp] {
    resp->set_node_id(membership_.self().node_id);
    resp->set_cluster(membership_.config().cluster_name);
    resp->set_local_health(static_cast<uint32_t>(membership_.local_health()));
    for (const auto& v : membership_.members()) {
      auto* m = resp->add_members();
      m->set_node_id(v.meta.node_id);
      m->set_state(to_proto(v.state));
      m->set_incarnation(v.incarnation);
      m->set_grpc_addr(v.meta.grpc_addr);
      m->set_http_addr(v.meta.http_addr);
      m->set_version(v.meta.version);
      m->set_load(v.meta.load);
      m->set_last_change_unix_ms(v.last_change_wall_ms);
      m->set_is_self(v.is_self);
    }
    const auto& c = membership_.counters();
    auto& out = *resp->mutable_counters();
    out["msgs_sent"] = c.msgs_sent;
    out["msgs_received"] = c.msgs_received;
    out["probes"] = c.probes;
    out["probe_failures"] = c.probe_failures;
    out["indirect_probes"] = c.indirect_probes;
    out["nacks_received"] = c.nacks_received;
    out["suspicions_started"] = c.suspicions_started;
    out["declared_dead"] = c.declared_dead;
    out["refutations"] = c.refutations;
    out["push_pulls"] = c.push_pulls;
    out["updates_applied"] = c.updates_applied;
    out["updates_stale"] = c.updates_stale;
    out["rejected_malformed"] = c.rejected_malformed;
    out["rejected_replay"] = c.rejected_replay;
    out["rejected_cluster"] = c.rejected_cluster;
    out["rejected_id_conflict"] = c.rejected_id_conflict;
    out["gossip_dropped"] = c.gossip_dropped;
    out["epoch_resets"] = c.epoch_resets;
    out["rejected_unverified"] = c.rejected_unverified;
    out["unverified_dropped"] = c.unverified_dropped;
    out["unverified_reached"] = c.unverified_reached;
    out["unverified_pending"] = membership_.unverified_count();
    out["app_oversized"] = c.app_oversized;
    out["transport_resets"] = c.transport_resets;
    if (service_) out["inbound_rejected"] = service_->inbound_rejected();
    if (auth_) out["auth_refused"] = auth_->refused();
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

void AdminService::set_drain_handler(std::function<bool()> start) {
  std::lock_guard lock(drain_mu_);
  drain_ = std::move(start);
}

grpc::ServerUnaryReactor* AdminService::Drain(grpc::CallbackServerContext* ctx,
                                              const v1::DrainRequest* req,
                                              v1::DrainResponse* resp) {
  if (auth_) {
    if (auto* refused = auth_->refuse_unary(ctx, kDrainMethod)) return refused;
  }
  auto* reactor = ctx->DefaultReactor();
  const std::string self = membership_.self().node_id;  // immutable after start
  if (req->node_id().empty() || req->node_id() == self) {
    std::function<bool()> start;
    {
      std::lock_guard lock(drain_mu_);
      start = drain_;
    }
    if (!start) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this process cannot drain"));
      return reactor;
    }
    resp->set_node_id(self);
    resp->set_started(start());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  if (req->relayed()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "relayed to the wrong node"));
    return reactor;
  }
  // Another member: relay the request to it once.
  std::string target = req->node_id();
  loop_.post([this, reactor, resp, target] {
    std::string addr;
    for (const auto& v : membership_.members()) {
      if (v.meta.node_id == target &&
          (v.state == MemberState::kAlive || v.state == MemberState::kSuspect)) {
        addr = v.meta.grpc_addr;
      }
    }
    if (addr.empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no live member " + target));
      return;
    }
    grpc::ChannelArguments args;
    apply_tls_channel_args(args, tls_);
    struct Call {
      grpc::ClientContext ctx;
      v1::DrainRequest req;
      v1::DrainResponse resp;
      std::unique_ptr<v1::Admin::Stub> stub;
    };
    auto call = std::make_shared<Call>();
    call->stub =
        v1::Admin::NewStub(grpc::CreateCustomChannel(addr, channel_credentials(tls_), args));
    call->req.set_node_id(target);
    call->req.set_relayed(true);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (auth_) auth_->stamp(call->ctx, kDrainMethod);
    call->stub->async()->Drain(&call->ctx, &call->req, &call->resp,
                               [call, reactor, resp](grpc::Status status) {
                                 if (status.ok()) *resp = call->resp;
                                 reactor->Finish(status);
                               });
  });
  return reactor;
}

}  // namespace mcpmesh::cluster

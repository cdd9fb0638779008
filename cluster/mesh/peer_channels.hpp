#pragma once
/// \file
/// One persistent gRPC channel per peer for the MCP side of the cluster (replication, the
/// notification bus, node admin; forwarding has relay links of its own, cluster/forward/), apart
/// from the membership's probe channels, and one helper that makes an authenticated unary call with
/// a deadline.
///
/// Thread-safety: every member may be called from any thread.
/// A call may carry its caller's trace context in its metadata (inject_trace, extract_trace).

#include "cluster/auth.hpp"
#include "mcp/trace.hpp"
#include "proto/admin.grpc.pb.h"
#include "proto/mesh.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace mcpmesh::cluster {

namespace pb = ::mcpmesh::v1;

struct PeerStubs {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::Replication::Stub> replication;
  std::unique_ptr<pb::Bus::Stub> bus;
  std::unique_ptr<pb::Admin::Stub> admin;
};

class PeerChannels {
 public:
  /// `max_message_bytes`: the largest message a call may receive (forwarded answers are cut
  /// into smaller parts; replication batches are bounded below it).
  PeerChannels(std::optional<TlsFiles> tls, std::size_t max_message_bytes);

  /// The stubs for `address`, creating its channel on first use. Bounded: past kMaxPeers the
  /// cache is dropped and rebuilt on demand (calls in flight keep their own references).
  [[nodiscard]] std::shared_ptr<PeerStubs> get(const std::string& address);
  /// Forgets `address`'s channel (the peer restarted: a channel still backing off from the old
  /// process must not delay the new one).
  void reset(const std::string& address);

  static constexpr std::size_t kMaxPeers = 1024;

 private:
  std::optional<TlsFiles> tls_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::size_t max_message_bytes_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<PeerStubs>> peers_;  // guarded by mutex_
};

/// W3C trace context in gRPC metadata (`traceparent`, `tracestate`): the callee's span is a
/// child of `trace`.
void inject_trace(grpc::ClientContext& context, const mcp::TraceContext& trace);
/// The caller's trace context, when its metadata carries a valid one.
[[nodiscard]] std::optional<mcp::TraceContext> extract_trace(
    const grpc::CallbackServerContext& context);

/// Makes one authenticated unary call with a deadline and calls `done(status, response)` on a
/// gRPC thread when it ends (exactly once). `start` issues the call:
/// `[&](pb::X::Stub::async_interface* a, grpc::ClientContext* c, const Req* q, Resp* r, auto cb)`
/// — see the call sites.
template <class Req, class Resp>
struct UnaryCall {
  grpc::ClientContext context;
  Req request;
  Resp response;
  std::shared_ptr<PeerStubs> stubs;  // keeps the channel alive for the call
};

template <class Req, class Resp, class Start, class Done>
void call_unary(const ClusterAuth& auth, std::string_view method, std::shared_ptr<PeerStubs> stubs,
                Req request, std::chrono::milliseconds deadline, Start start, Done done,
                const mcp::TraceContext* trace = nullptr) {
  auto call = std::make_shared<UnaryCall<Req, Resp>>();
  call->request = std::move(request);
  call->stubs = std::move(stubs);
  call->context.set_deadline(std::chrono::system_clock::now() + deadline);
  auth.stamp(call->context, method);
  if (trace) inject_trace(call->context, *trace);
  start(*call->stubs, &call->context, &call->request, &call->response,
        [call, done = std::move(done)](grpc::Status status) mutable {
          done(status, call->response);
        });
}

}  // namespace mcpmesh::cluster

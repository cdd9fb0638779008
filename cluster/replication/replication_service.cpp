#include "cluster/replication/replication_service.hpp"

#include "cluster/replication/replicator.hpp"

#include <spdlog/spdlog.h>

namespace mcpmesh::cluster {

namespace pb = ::mcpmesh::v1;

ReplicationService::ReplicationService(
    ClusterAuth& auth, ReplicaStore& store, registry::ClusterView& view,
    std::function<void(std::string, std::function<void(std::uint64_t)>)> adopt)
    : auth_(auth), store_(store), view_(view), adopt_(std::move(adopt)) {}

grpc::Status ReplicationService::check_holder(const std::string& holder) {
  auto m = holder.empty() || holder == view_.self() ? std::nullopt : view_.member(holder);
  if (m && (m->state == registry::ClusterView::NodeState::kAlive ||
            m->state == registry::ClusterView::NodeState::kSuspect)) {
    return grpc::Status::OK;
  }
  // A node this one believes dead (it may be continuing that node's sessions right now), an
  // unknown one, or itself: its batches would resurrect or corrupt copies.
  refused_.fetch_add(1, std::memory_order_relaxed);
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      "not a live member other than this node");
}

grpc::ServerUnaryReactor* ReplicationService::Replicate(grpc::CallbackServerContext* context,
                                                        const pb::ReplicationBatch* request,
                                                        pb::ReplicationAck* response) {
  if (auto* refused = auth_.refuse_unary(context, Replicator::kReplicateMethod)) return refused;
  auto* reactor = context->DefaultReactor();
  mcp::Span span;
  if (tracer_) {
    span = tracer_->start(std::string(Replicator::kReplicateMethod.substr(1)),
                          mcp::SpanKind::kServer, extract_trace(*context));
    span.set_attribute("rpc.system", std::string("grpc"));
    span.set_attribute("mcpmesh.replication.holder", request->holder().substr(0, 256));
    span.set_attribute("mcpmesh.replication.sessions",
                       static_cast<std::int64_t>(request->sessions_size()));
  }
  if (auto status = check_holder(request->holder()); !status.ok()) {
    span.set_error(status.error_message());
    reactor->Finish(status);
    return reactor;
  }
  auto outcome = store_.apply(*request);
  if (!outcome.refused.empty()) {
    spdlog::debug("replication batch from {} refused: {}", request->holder(), outcome.refused);
    span.set_error(outcome.refused);
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, outcome.refused));
    return reactor;
  }
  response->set_seq(request->seq());
  response->set_need_full(outcome.need_full);
  response->set_held(outcome.held);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ReplicationService::Handoff(grpc::CallbackServerContext* context,
                                                      const pb::HandoffRequest* request,
                                                      pb::HandoffReply* response) {
  if (auto* refused = auth_.refuse_unary(context, kHandoffMethod)) return refused;
  auto* reactor = context->DefaultReactor();
  if (auto status = check_holder(request->holder()); !status.ok()) {
    reactor->Finish(status);
    return reactor;
  }
  adopt_(request->holder(), [reactor, response](std::uint64_t adopted) {
    response->set_adopted(adopted);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace mcpmesh::cluster

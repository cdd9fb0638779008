#include "cluster/mesh/node_admin.hpp"

#include "cluster/auth.hpp"
#include "cluster/replication/replica_store.hpp"
#include "mcp/server.hpp"
#include "mcp/session.hpp"
#include "registry/cluster_view.hpp"
#include "transport/admission.hpp"
#include "transport/http_server.hpp"

#include <boost/asio/post.hpp>

namespace mcpmesh::cluster {

namespace pb = ::mcpmesh::v1;

namespace {

/// Longest session id looked up (ids are `<node>.<hex epoch>.<32 hex>`).
constexpr std::size_t kMaxSessionIdBytes = 512;

const char* phase_name(mcp::SessionRecord::Phase phase) {
  switch (phase) {
    case mcp::SessionRecord::Phase::kNew:
      return "new";
    case mcp::SessionRecord::Phase::kInitializing:
      return "initializing";
    case mcp::SessionRecord::Phase::kReady:
      return "ready";
  }
  return "unknown";
}

}  // namespace

grpc::ServerUnaryReactor* NodeAdminService::Sessions(grpc::CallbackServerContext* ctx,
                                                     const pb::SessionsRequest* req,
                                                     pb::SessionsResponse* resp) {
  if (auto* refused = auth_.refuse_unary(ctx, kSessionsMethod)) return refused;
  auto* reactor = ctx->DefaultReactor();
  resp->set_node_id(src_.node_id);
  resp->set_local(src_.server->session_count());
  resp->set_replicas(src_.store ? src_.store->session_count() : 0);
  resp->set_max_sessions(src_.server->config().max_sessions);
  const std::string& id = req->session_id();
  if (id.empty()) {
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  std::string_view owner;
  std::uint64_t epoch = 0;
  if (id.size() > kMaxSessionIdBytes || !mcp::parse_session_id(id, owner, epoch)) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "not a session id (<node>.<epoch>.<random>)"));
    return reactor;
  }
  auto* info = resp->mutable_session();
  info->set_id(id);
  info->set_owner(std::string(owner));
  info->set_epoch(epoch);
  if (auto session = src_.server->find_session(id)) {
    info->set_held_here(true);
    info->set_holder(src_.node_id);
    if (src_.view) info->set_heir(src_.view->heir_of(src_.node_id).value_or(""));
    // The record belongs to the session's strand.
    boost::asio::post(session->executor(), [session, info, reactor] {
      auto record = session->record();
      info->set_phase(phase_name(record.phase));
      if (record.client) {
        info->set_protocol_version(record.client->protocol_version);
        if (auto* name = record.client->info.if_contains("name"); name && name->is_string()) {
          info->set_client_name(std::string(name->get_string()));
        }
      }
      for (const auto& uri : record.subscriptions) info->add_subscriptions(std::string(uri.view()));
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }
  if (src_.view) {
    using Kind = registry::ClusterView::Route::Kind;
    auto route = src_.view->resolve(owner, epoch);
    if (route.kind == Kind::kRemote) {
      info->set_holder(route.node);
      info->set_heir(src_.view->heir_of(route.node).value_or(""));
    } else if (route.kind == Kind::kUnavailable) {
      info->set_unavailable(true);
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeAdminService::Registry(grpc::CallbackServerContext* ctx,
                                                     const pb::RegistryRequest*,
                                                     pb::RegistryResponse* resp) {
  if (auto* refused = auth_.refuse_unary(ctx, kRegistryMethod)) return refused;
  resp->set_node_id(src_.node_id);
  resp->set_shards(src_.server->session_shards());
  resp->set_sessions(src_.server->session_count());
  resp->set_subscribed_uris(src_.server->subscriptions().uri_count());
  if (src_.view) {
    for (auto& i : src_.view->interest_summary()) {
      auto* set = resp->add_interest();
      set->set_node_id(i.node);
      set->set_version(i.version);
      set->set_uris(i.uris);
    }
    resp->set_interest_uris(src_.view->interest_uri_count());
    for (auto& a : src_.view->adoptions()) {
      auto* out = resp->add_adoptions();
      out->set_node_id(a.node);
      out->set_epoch(a.epoch);
      out->set_holder(a.holder);
      out->set_version(a.version);
    }
  }
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeAdminService::Health(grpc::CallbackServerContext* ctx,
                                                   const pb::HealthRequest*,
                                                   pb::HealthResponse* resp) {
  if (auto* refused = auth_.refuse_unary(ctx, kHealthMethod)) return refused;
  resp->set_node_id(src_.node_id);
  resp->set_draining(src_.draining && src_.draining());
  if (src_.http) {
    auto why = src_.http->not_ready_because();
    resp->set_ready(why.empty());
    resp->set_not_ready_because(std::string(why));
    auto& admission = src_.http->admission();
    resp->set_zone(std::string(transport::to_string(admission.zone())));
  } else {
    resp->set_ready(src_.server->accepting() && src_.server->quorate());
    if (!resp->ready()) resp->set_not_ready_because("not accepting new sessions");
    resp->set_zone("green");
  }
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeAdminService::Metrics(grpc::CallbackServerContext* ctx,
                                                    const pb::MetricsRequest*,
                                                    pb::MetricsResponse* resp) {
  if (auto* refused = auth_.refuse_unary(ctx, kMetricsMethod)) return refused;
  resp->set_node_id(src_.node_id);
  resp->set_text(src_.http ? src_.http->render_metrics()
                           : src_.server->metrics().render_prometheus());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace mcpmesh::cluster

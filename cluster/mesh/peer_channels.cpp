#include "cluster/mesh/peer_channels.hpp"

#include "cluster/grpc_transport.hpp"

namespace mcpmesh::cluster {

PeerChannels::PeerChannels(std::optional<TlsFiles> tls, std::size_t max_message_bytes)
    : tls_(std::move(tls)),
      credentials_(channel_credentials(tls_)),
      max_message_bytes_(max_message_bytes) {}

std::shared_ptr<PeerStubs> PeerChannels::get(const std::string& address) {
  std::lock_guard lock(mutex_);
  auto it = peers_.find(address);
  if (it != peers_.end()) return it->second;
  if (peers_.size() >= kMaxPeers) peers_.clear();
  auto args = cluster_channel_arguments("mesh", tls_);
  // A peer that vanished without closing its connections (a dead host, a partition) is found
  // by keep-alive pings, not by the hour-long deadline of a relayed SSE stream.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes_));
  auto stubs = std::make_shared<PeerStubs>();
  stubs->channel = grpc::CreateCustomChannel(address, credentials_, args);
  stubs->replication = pb::Replication::NewStub(stubs->channel);
  stubs->bus = pb::Bus::NewStub(stubs->channel);
  stubs->admin = pb::Admin::NewStub(stubs->channel);
  peers_.emplace(address, stubs);
  return stubs;
}

void PeerChannels::reset(const std::string& address) {
  std::lock_guard lock(mutex_);
  peers_.erase(address);
}

void inject_trace(grpc::ClientContext& context, const mcp::TraceContext& trace) {
  if (!trace.valid()) return;
  context.AddMetadata("traceparent", mcp::format_traceparent(trace));
  if (!trace.state.empty()) context.AddMetadata("tracestate", trace.state);
}

std::optional<mcp::TraceContext> extract_trace(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto parent = metadata.find("traceparent");
  if (parent == metadata.end()) return std::nullopt;
  auto state = metadata.find("tracestate");
  auto view = [](const grpc::string_ref& r) { return std::string_view(r.data(), r.size()); };
  return mcp::parse_traceparent(view(parent->second),
                                state == metadata.end() ? std::string_view() : view(state->second));
}

}  // namespace mcpmesh::cluster

#include "cluster/mesh/peer_channels.hpp"

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
  grpc::ChannelArguments args;
  // Forwarded requests may have run: the library must never replay one.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A peer that vanished without closing its connections (a dead host, a partition) is found
  // by keep-alive pings, not by the hour-long deadline of a relayed SSE stream.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes_));
  // Its own connection, never shared with the membership's probe channels.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetString("mcpmesh.channel_kind", "mesh");
  apply_tls_channel_args(args, tls_);
  auto stubs = std::make_shared<PeerStubs>();
  stubs->channel = grpc::CreateCustomChannel(address, credentials_, args);
  stubs->forward = pb::Forward::NewStub(stubs->channel);
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

}  // namespace mcpmesh::cluster

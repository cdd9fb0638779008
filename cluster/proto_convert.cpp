#include "cluster/proto_convert.hpp"

#include <algorithm>

namespace mcpmesh::cluster {

pb::MemberState to_proto(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return pb::MEMBER_STATE_ALIVE;
    case MemberState::kSuspect:
      return pb::MEMBER_STATE_SUSPECT;
    case MemberState::kDead:
      return pb::MEMBER_STATE_DEAD;
    case MemberState::kLeft:
      return pb::MEMBER_STATE_LEFT;
  }
  return pb::MEMBER_STATE_UNSPECIFIED;
}

MemberState from_proto(pb::MemberState s) {
  switch (s) {
    case pb::MEMBER_STATE_ALIVE:
      return MemberState::kAlive;
    case pb::MEMBER_STATE_SUSPECT:
      return MemberState::kSuspect;
    case pb::MEMBER_STATE_DEAD:
      return MemberState::kDead;
    case pb::MEMBER_STATE_LEFT:
      return MemberState::kLeft;
    default:
      return static_cast<MemberState>(0xff);  // rejected as malformed
  }
}

void to_proto(const Update& u, pb::MemberUpdate* out) {
  out->set_node_id(u.node_id);
  out->set_state(to_proto(u.state));
  out->set_incarnation(u.incarnation);
  out->set_from(u.from);
  if (u.meta) {
    auto* m = out->mutable_meta();
    m->set_node_id(u.meta->node_id);
    m->set_grpc_addr(u.meta->grpc_addr);
    m->set_http_addr(u.meta->http_addr);
    m->set_version(u.meta->version);
    m->set_load(u.meta->load);
    m->set_app(u.meta->app);
  }
}

Update from_proto(const pb::MemberUpdate& u) {
  Update out;
  out.node_id = u.node_id();
  out.state = from_proto(u.state());
  out.incarnation = u.incarnation();
  out.from = u.from();
  if (u.has_meta()) {
    const auto& m = u.meta();
    out.meta = std::make_shared<const MemberMeta>(
        MemberMeta{m.node_id(), m.grpc_addr(), m.http_addr(), m.version(), m.load(), m.app()});
  }
  return out;
}

void to_envelope(const Message& m, pb::Envelope* env, bool with_gossip) {
  env->set_cluster(m.cluster);
  env->set_sender_id(m.sender_id);
  env->set_sender_addr(m.sender_addr);
  env->set_boot_epoch(m.boot_epoch);
  env->set_seq(m.seq);
  if (with_gossip) {
    for (const auto& u : m.updates) to_proto(u, env->add_gossip());
    for (const auto& b : m.app_broadcasts) env->add_app(b);
  }
}

void from_envelope(const pb::Envelope& env, Message* m) {
  m->cluster = env.cluster();
  m->sender_id = env.sender_id();
  m->sender_addr = env.sender_addr();
  m->boot_epoch = env.boot_epoch();
  m->seq = env.seq();
  m->updates.reserve(m->updates.size() + static_cast<size_t>(env.gossip_size()));
  for (const auto& u : env.gossip()) m->updates.push_back(from_proto(u));
  m->app_broadcasts.reserve(m->app_broadcasts.size() + static_cast<size_t>(env.app_size()));
  for (const auto& b : env.app()) m->app_broadcasts.push_back(b);
}

std::vector<pb::StateChunk> to_chunks(const Message& m, size_t per_chunk, size_t state_per_chunk) {
  std::vector<pb::StateChunk> chunks;
  size_t n = m.updates.size();
  size_t state = m.app_state.size();
  size_t count = std::max<size_t>(
      {1, (n + per_chunk - 1) / per_chunk, (state + state_per_chunk - 1) / state_per_chunk});
  chunks.resize(count);
  for (size_t c = 0; c < count; ++c) {
    auto& chunk = chunks[c];
    to_envelope(m, chunk.mutable_env(), false);
    chunk.set_join(m.join);
    chunk.set_last(c + 1 == count);
    for (size_t i = c * per_chunk; i < std::min(n, (c + 1) * per_chunk); ++i)
      to_proto(m.updates[i], chunk.add_members());
    size_t from = std::min(state, c * state_per_chunk);
    chunk.set_app_state(m.app_state.substr(from, state_per_chunk));
  }
  return chunks;
}

}  // namespace mcpmesh::cluster

#pragma once
// Mapping between the in-memory membership Message and the gRPC contracts in proto/.
// Untrusted input never throws: an unknown enum value becomes an invalid state that the
// membership rejects and counts as malformed.
// Thread-safety: pure functions.

#include <vector>

#include "cluster/types.hpp"
#include "proto/membership.pb.h"

namespace mcpmesh::cluster {

namespace pb = ::mcpmesh::v1;

void to_proto(const Update& u, pb::MemberUpdate* out);
[[nodiscard]] Update from_proto(const pb::MemberUpdate& u);
[[nodiscard]] pb::MemberState to_proto(MemberState s);
[[nodiscard]] MemberState from_proto(pb::MemberState s);

void to_envelope(const Message& m, pb::Envelope* env, bool with_gossip = true);
/// Fills the envelope fields (and gossip) of `m` from `env`.
void from_envelope(const pb::Envelope& env, Message* m);

/// Application state bytes per push-pull chunk: with 512 members of ~1 KB at most beside it, a
/// chunk stays below gRPC's 4 MiB default message limit.
inline constexpr size_t kAppStateBytesPerChunk = 1u << 20;

/// Splits a push-pull / join message into chunks of at most `per_chunk` members and
/// `state_per_chunk` bytes of application state (as many chunks as the larger of the two needs).
[[nodiscard]] std::vector<pb::StateChunk> to_chunks(
    const Message& m, size_t per_chunk, size_t state_per_chunk = kAppStateBytesPerChunk);

}  // namespace mcpmesh::cluster

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

/// Splits a push-pull / join message into chunks of at most `per_chunk` members.
[[nodiscard]] std::vector<pb::StateChunk> to_chunks(const Message& m, size_t per_chunk);

}  // namespace mcpmesh::cluster

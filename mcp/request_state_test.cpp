#include "mcp/request_state.hpp"

#include <gtest/gtest.h>

namespace mcpmesh::mcp {
namespace {

json::object params(std::string_view name, json::object args) {
  return {{"name", name}, {"arguments", std::move(args)}};
}

TEST(RequestState, OpensWhatItSealedForTheSameRequest) {
  RequestStateSealer sealer({"a key the cluster shares"});
  auto binding = RequestStateSealer::binding("tools/call", params("t", {{"x", 1}}));
  auto state = sealer.seal({{"a", {{"k", "v"}}}}, binding);
  auto opened = sealer.open(state, binding);
  ASSERT_TRUE(opened) << to_string(opened.error());
  EXPECT_EQ(opened->at("a").at("k"), "v");
}

TEST(RequestState, BindingIgnoresKeyOrderButNotValues) {
  auto a = RequestStateSealer::binding("tools/call", params("t", {{"x", 1}, {"y", 2}}));
  auto b = RequestStateSealer::binding("tools/call", params("t", {{"y", 2}, {"x", 1}}));
  auto c = RequestStateSealer::binding("tools/call", params("t", {{"x", 1}, {"y", 3}}));
  auto d = RequestStateSealer::binding("prompts/get", params("t", {{"x", 1}, {"y", 2}}));
  auto e = RequestStateSealer::binding("tools/call", params("u", {{"x", 1}, {"y", 2}}));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_NE(a, e);
}

TEST(RequestState, RefusesATamperedState) {
  RequestStateSealer sealer({"k1"});
  auto binding = RequestStateSealer::binding("tools/call", params("t", {}));
  auto state = sealer.seal({{"a", json::object()}}, binding);
  EXPECT_FALSE(sealer.open(state + "-TAMPERED", binding));
  // A payload of the client's own making, under the right key id, fails the signature.
  auto first = state.find('.');
  auto last = state.rfind('.');
  auto forged = state.substr(0, first + 1) +
                base64url_encode(R"({"b":"x","x":9999999999999,"d":{"a":{"k":"forged"}}})") +
                state.substr(last);
  EXPECT_EQ(sealer.open(forged, binding).error(), StateProblem::kBadSignature);
  // One flipped character of the signature (its first: six whole bits of the MAC).
  auto flipped = state;
  flipped[last + 1] = flipped[last + 1] == 'A' ? 'B' : 'A';
  EXPECT_EQ(sealer.open(flipped, binding).error(), StateProblem::kBadSignature);
  // The last character also carries bits no byte uses: another one there is not the same MAC.
  for (char c :
       std::string_view("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")) {
    if (c == state.back()) continue;
    auto other = state;
    other.back() = c;
    EXPECT_FALSE(sealer.open(other, binding)) << c;
  }
}

TEST(RequestState, RefusesAStateOfAnotherRequestOrAnotherCluster) {
  RequestStateSealer sealer({"k1"});
  auto binding = RequestStateSealer::binding("tools/call", params("t", {}));
  auto state = sealer.seal({}, binding);
  auto other = RequestStateSealer::binding("tools/call", params("t", {{"x", 1}}));
  EXPECT_EQ(sealer.open(state, other).error(), StateProblem::kOtherRequest);
  RequestStateSealer stranger({"k2"});
  EXPECT_EQ(stranger.open(state, binding).error(), StateProblem::kUnknownKey);
}

TEST(RequestState, RefusesAnExpiredState) {
  RequestStateSealer sealer({"k1"}, std::chrono::milliseconds(-1));
  auto binding = RequestStateSealer::binding("tools/call", params("t", {}));
  EXPECT_EQ(sealer.open(sealer.seal({}, binding), binding).error(), StateProblem::kExpired);
}

TEST(RequestState, KeysRotate) {
  auto binding = RequestStateSealer::binding("tools/call", params("t", {}));
  RequestStateSealer before({"old"});
  RequestStateSealer during({"new", "old"});  // seals with new, opens both
  RequestStateSealer after({"new"});
  auto old_state = before.seal({}, binding);
  auto new_state = during.seal({}, binding);
  EXPECT_TRUE(during.open(old_state, binding));
  EXPECT_TRUE(before.open(old_state, binding));
  EXPECT_TRUE(after.open(new_state, binding));
  EXPECT_FALSE(before.open(new_state, binding));
  EXPECT_FALSE(after.open(old_state, binding));
}

TEST(RequestState, WithoutKeysARandomKeyPerProcess) {
  RequestStateSealer a({}), b({});
  auto binding = RequestStateSealer::binding("tools/call", params("t", {}));
  EXPECT_TRUE(a.open(a.seal({}, binding), binding));
  EXPECT_FALSE(b.open(a.seal({}, binding), binding));
}

TEST(Base64, RoundTripsAndRefusesForeignCharacters) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\x00\x10"}) {
    EXPECT_EQ(base64url_decode(base64url_encode(s)).value(), s);
  }
  EXPECT_EQ(base64_decode("SGVsbG8=").value(), "Hello");
  EXPECT_FALSE(base64_decode("SGVs!!!bG8="));
  EXPECT_FALSE(base64url_decode("a+b/"));
  EXPECT_FALSE(base64_decode("A"));  // no whole byte
}

}  // namespace
}  // namespace mcpmesh::mcp

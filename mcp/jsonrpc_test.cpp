#include "mcp/jsonrpc.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace mcpmesh::mcp {
namespace {

constexpr int kInvalidRequest = static_cast<int>(ErrorCode::kInvalidRequest);

ParsedFrame parse(std::string_view text, std::size_t max_depth = 64) {
  return parse_frame(text, ParseLimits{.max_depth = max_depth});
}

/// Parses a frame that must hold exactly one valid message.
Message parse_one(std::string_view text) {
  auto f = parse(text);
  EXPECT_FALSE(f.frame_error) << text;
  EXPECT_TRUE(f.errors.empty()) << text;
  EXPECT_EQ(f.messages.size(), 1u) << text;
  EXPECT_FALSE(f.is_batch);
  return f.messages.empty() ? Message{} : f.messages.front();
}

/// Parses a frame that must hold exactly one undecodable entry; returns (id, error).
std::pair<json::value, RpcError> parse_bad(std::string_view text) {
  auto f = parse(text);
  EXPECT_FALSE(f.frame_error) << text;
  EXPECT_TRUE(f.messages.empty()) << text;
  EXPECT_EQ(f.errors.size(), 1u) << text;
  return f.errors.empty() ? std::pair<json::value, RpcError>{} : f.errors.front();
}

TEST(ParseFrame, RequestWithIntegerId) {
  auto m = parse_one(R"({"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"1"}})");
  EXPECT_TRUE(m.is_request());
  EXPECT_EQ(m.id, json::value(7));
  EXPECT_EQ(m.method, "tools/list");
  EXPECT_EQ(m.params.at("cursor"), "1");
}

TEST(ParseFrame, RequestWithStringIdAndNoParams) {
  auto m = parse_one(R"({"jsonrpc":"2.0","id":"abc","method":"ping"})");
  EXPECT_TRUE(m.is_request());
  EXPECT_EQ(m.id, json::value("abc"));
  EXPECT_TRUE(m.params.empty());
}

TEST(ParseFrame, NullParamsCountAsAbsent) {
  auto m = parse_one(R"({"jsonrpc":"2.0","id":1,"method":"ping","params":null})");
  EXPECT_TRUE(m.is_request());
  EXPECT_TRUE(m.params.empty());
}

TEST(ParseFrame, IntegralDoubleIdIsAccepted) {
  auto m = parse_one(R"({"jsonrpc":"2.0","id":3.0,"method":"ping"})");
  EXPECT_TRUE(m.is_request());
  EXPECT_EQ(id_key(m.id), "n:3");
}

TEST(ParseFrame, Notification) {
  auto m = parse_one(R"({"jsonrpc":"2.0","method":"notifications/initialized"})");
  EXPECT_TRUE(m.is_notification());
  EXPECT_FALSE(m.is_request());
  EXPECT_TRUE(m.id.is_null());
  EXPECT_EQ(m.method, "notifications/initialized");
}

TEST(ParseFrame, Response) {
  auto m = parse_one(R"({"jsonrpc":"2.0","id":"s1","result":{"ok":true}})");
  EXPECT_EQ(m.kind, Message::Kind::kResponse);
  EXPECT_TRUE(m.is_response());
  EXPECT_EQ(m.id, json::value("s1"));
  EXPECT_EQ(m.result.at("ok"), true);
}

TEST(ParseFrame, ErrorResponse) {
  auto m = parse_one(
      R"({"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"nope","data":{"x":1}}})");
  EXPECT_EQ(m.kind, Message::Kind::kErrorResponse);
  EXPECT_TRUE(m.is_response());
  EXPECT_EQ(m.error.code, -32601);
  EXPECT_EQ(m.error.message, "nope");
  EXPECT_EQ(m.error.data.at("x"), 1);
}

TEST(ParseFrame, InvalidIdTypesAreInvalidRequests) {
  for (std::string_view text : {R"({"jsonrpc":"2.0","id":null,"method":"ping"})",
                                R"({"jsonrpc":"2.0","id":{"a":1},"method":"ping"})",
                                R"({"jsonrpc":"2.0","id":[1],"method":"ping"})",
                                R"({"jsonrpc":"2.0","id":true,"method":"ping"})",
                                R"({"jsonrpc":"2.0","id":1.5,"method":"ping"})",
                                R"({"jsonrpc":"2.0","id":1e300,"method":"ping"})"}) {
    auto [id, err] = parse_bad(text);
    EXPECT_EQ(err.code, kInvalidRequest) << text;
    EXPECT_TRUE(id.is_null()) << "an invalid id is never echoed: " << text;
  }
}

TEST(ParseFrame, MissingOrWrongJsonrpcVersion) {
  {
    auto [id, err] = parse_bad(R"({"id":1,"method":"ping"})");
    EXPECT_EQ(err.code, kInvalidRequest);
    EXPECT_EQ(id, json::value(1)) << "a valid id is kept so the error can answer it";
  }
  {
    auto [id, err] = parse_bad(R"({"jsonrpc":"1.0","id":"x","method":"ping"})");
    EXPECT_EQ(err.code, kInvalidRequest);
    EXPECT_EQ(id, json::value("x"));
  }
  {
    auto [id, err] = parse_bad(R"({"jsonrpc":2.0,"id":1,"method":"ping"})");
    EXPECT_EQ(err.code, kInvalidRequest);
  }
}

TEST(ParseFrame, NonObjectParamsAreInvalid) {
  for (std::string_view text : {R"({"jsonrpc":"2.0","id":1,"method":"m","params":[1,2]})",
                                R"({"jsonrpc":"2.0","id":1,"method":"m","params":"x"})",
                                R"({"jsonrpc":"2.0","id":1,"method":"m","params":3})"}) {
    auto [id, err] = parse_bad(text);
    EXPECT_EQ(err.code, kInvalidRequest) << text;
    EXPECT_EQ(id, json::value(1)) << text;
  }
}

TEST(ParseFrame, OtherMalformedMessages) {
  EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":1,"method":5})").second.code, kInvalidRequest);
  EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0"})").second.code, kInvalidRequest);
  EXPECT_EQ(parse_bad(R"({"jsonrpc":"2.0","id":1})").second.code, kInvalidRequest);
  EXPECT_EQ(parse_bad(R"("just a string")").second.code, kInvalidRequest);
  EXPECT_EQ(parse_bad("42").second.code, kInvalidRequest);
}

TEST(ParseFrame, MalformedJsonIsParseError) {
  for (std::string_view text : {"", "{", R"({"jsonrpc":"2.0",})", "nul", "[1,2", "{} {}"}) {
    auto f = parse(text);
    ASSERT_TRUE(f.frame_error.has_value()) << "'" << text << "'";
    EXPECT_EQ(f.frame_error->code, static_cast<int>(ErrorCode::kParseError)) << text;
    EXPECT_TRUE(f.messages.empty());
  }
}

TEST(ParseFrame, TooDeepIsInvalidRequestMentioningNesting) {
  std::string deep = R"({"jsonrpc":"2.0","id":1,"method":"m","params":{"a":)";
  for (int i = 0; i < 10; ++i) deep += "[";
  for (int i = 0; i < 10; ++i) deep += "]";
  deep += "}}";
  auto ok = parse(deep, 64);
  EXPECT_FALSE(ok.frame_error);
  ASSERT_EQ(ok.messages.size(), 1u);

  auto f = parse(deep, 5);
  ASSERT_TRUE(f.frame_error.has_value());
  EXPECT_EQ(f.frame_error->code, kInvalidRequest);
  EXPECT_NE(f.frame_error->message.find("nesting"), std::string::npos) << f.frame_error->message;
  EXPECT_TRUE(f.messages.empty());
}

TEST(ParseFrame, EmptyBatchIsInvalidRequest) {
  auto f = parse("[]");
  EXPECT_TRUE(f.is_batch);
  ASSERT_TRUE(f.frame_error.has_value());
  EXPECT_EQ(f.frame_error->code, kInvalidRequest);
}

TEST(ParseFrame, BatchWithMixedEntries) {
  auto f = parse(R"([
    {"jsonrpc":"2.0","id":1,"method":"ping"},
    {"jsonrpc":"2.0","method":"notifications/initialized"},
    {"jsonrpc":"2.0","id":2,"method":"m","params":[]},
    7,
    {"jsonrpc":"2.0","id":1.5,"method":"ping"},
    {"jsonrpc":"2.0","id":"r","result":{}}
  ])");
  EXPECT_TRUE(f.is_batch);
  EXPECT_FALSE(f.frame_error);
  ASSERT_EQ(f.messages.size(), 3u);
  EXPECT_TRUE(f.messages[0].is_request());
  EXPECT_TRUE(f.messages[1].is_notification());
  EXPECT_TRUE(f.messages[2].is_response());
  ASSERT_EQ(f.errors.size(), 3u);
  EXPECT_EQ(f.errors[0].first, json::value(2));
  EXPECT_TRUE(f.errors[1].first.is_null());
  EXPECT_TRUE(f.errors[2].first.is_null());
  for (auto& [id, err] : f.errors) EXPECT_EQ(err.code, kInvalidRequest);
}

TEST(IsValidId, Types) {
  EXPECT_TRUE(is_valid_id("a"));
  EXPECT_TRUE(is_valid_id(""));
  EXPECT_TRUE(is_valid_id(0));
  EXPECT_TRUE(is_valid_id(-5));
  EXPECT_TRUE(is_valid_id(std::uint64_t{18446744073709551615u}));
  EXPECT_TRUE(is_valid_id(2.0));
  EXPECT_FALSE(is_valid_id(2.5));
  // Integral but beyond int64: refused, and without an undefined double-to-integer cast.
  EXPECT_FALSE(is_valid_id(1e300));
  EXPECT_FALSE(is_valid_id(-1e19));
  EXPECT_FALSE(is_valid_id(nullptr));
  EXPECT_FALSE(is_valid_id(true));
  EXPECT_FALSE(is_valid_id(json::object{}));
  EXPECT_FALSE(is_valid_id(json::array{}));
}

/// Every builder's output must parse back as the message it describes.
TEST(Builders, ResultRoundTrips) {
  auto p = make_result(json::value("id-1"), json::object{{"x", 1}});
  ASSERT_TRUE(p);
  auto m = parse_one(*p);
  EXPECT_EQ(m.kind, Message::Kind::kResponse);
  EXPECT_EQ(m.id, json::value("id-1"));
  EXPECT_EQ(m.result.at("x"), 1);
}

TEST(Builders, ResultsOfEverySizeRoundTrip) {
  // Around and far beyond the envelope's first buffer, so every growth step is crossed.
  for (std::size_t n : {0u, 100u, 150u, 200u, 1000u, 100000u}) {
    std::string text(n, 'x');
    if (n > 10) text[n / 2] = '"';  // escaped: the output is longer than the input
    auto p = make_result(json::value(7), json::object{{"text", text}, {"n", n}});
    auto m = parse_one(*p);
    ASSERT_EQ(m.kind, Message::Kind::kResponse) << n;
    EXPECT_EQ(m.result.at("text").as_string(), text) << n;
    EXPECT_EQ(m.result.at("n").to_number<std::size_t>(), n);
  }
}

TEST(Builders, EveryKindOfIdRoundTrips) {
  for (json::value id :
       {json::value(0), json::value(-5), json::value(INT64_MAX), json::value(INT64_MIN),
        json::value(UINT64_MAX), json::value("a\"b"), json::value("")}) {
    auto m = parse_one(*make_result(id, json::object{}));
    EXPECT_EQ(m.id, id) << json::serialize(id);
    auto e = parse_one(*make_error(id, RpcError(ErrorCode::kInternalError, "x")));
    EXPECT_EQ(e.id, id) << json::serialize(id);
  }
}

TEST(Builders, ErrorRoundTrips) {
  auto p = make_error(json::value(9), RpcError(ErrorCode::kInvalidParams, "bad \"quote\"\n",
                                               json::object{{"field", "a"}}));
  auto m = parse_one(*p);
  EXPECT_EQ(m.kind, Message::Kind::kErrorResponse);
  EXPECT_EQ(m.id, json::value(9));
  EXPECT_EQ(m.error.code, -32602);
  EXPECT_EQ(m.error.message, "bad \"quote\"\n");
  EXPECT_EQ(m.error.data.at("field"), "a");
}

TEST(Builders, ErrorWithNullIdAndNoData) {
  auto v = json::parse(*make_error(nullptr, RpcError(ErrorCode::kParseError, "x")));
  EXPECT_TRUE(v.at("id").is_null());
  EXPECT_EQ(v.at("jsonrpc"), "2.0");
  EXPECT_EQ(v.at("error").at("code"), -32700);
  EXPECT_FALSE(v.at("error").as_object().contains("data"));
}

TEST(Builders, NotificationRoundTrips) {
  auto m = parse_one(*make_notification("notifications/progress", {{"progress", 1}}));
  EXPECT_TRUE(m.is_notification());
  EXPECT_EQ(m.method, "notifications/progress");
  EXPECT_EQ(m.params.at("progress"), 1);

  auto v = json::parse(*make_notification("notifications/tools/list_changed", {}));
  EXPECT_FALSE(v.as_object().contains("params")) << "empty params are left out";
}

TEST(Builders, RequestRoundTrips) {
  auto m = parse_one(*make_request(json::value(3), "sampling/createMessage", {{"maxTokens", 5}}));
  EXPECT_TRUE(m.is_request());
  EXPECT_EQ(m.id, json::value(3));
  EXPECT_EQ(m.method, "sampling/createMessage");
  EXPECT_EQ(m.params.at("maxTokens"), 5);
}

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(Builders, AResultJsonCannotCarryBecomesAnInternalError) {
  for (json::value result :
       {json::value(json::object{{"sum", kInf}}), json::value(json::object{{"sum", -kInf}}),
        json::value(json::array{1, json::object{{"deep", json::array{kNaN}}}}), json::value(kNaN),
        json::value(json::object{{"text", "fine"}, {"n", -kInf}})}) {
    bool non_finite = false;
    auto p = make_result(json::value(4), result, &non_finite);
    ASSERT_TRUE(p);
    EXPECT_TRUE(non_finite) << *p;
    auto m = parse_one(*p);  // what went out is JSON
    EXPECT_EQ(m.kind, Message::Kind::kErrorResponse) << *p;
    EXPECT_EQ(m.id, json::value(4));
    EXPECT_EQ(m.error.code, -32603);
    EXPECT_NE(m.error.message.find("infinity or NaN"), std::string::npos) << m.error.message;
  }
}

TEST(Builders, TextThatReadsLikeInfinityIsNoNumber) {
  // Strings may hold the words, in every position the scan looks at.
  for (std::string text : {"Infinity", "NaN", ":NaN,", "[Infinity]", "a\\\":NaN}", "-Infinity}",
                           "\\", "NaN\\\"", "I N Infinity NaN"}) {
    bool non_finite = false;
    json::object result{{"text", text}, {text, 1.5}, {"list", json::array{text, 2.5, text}}};
    auto p = make_result(json::value(1), result, &non_finite);
    EXPECT_FALSE(non_finite) << text;
    auto m = parse_one(*p);
    ASSERT_EQ(m.kind, Message::Kind::kResponse) << *p;
    EXPECT_EQ(m.result.at("text").as_string(), text);
  }
  EXPECT_FALSE(has_non_finite_number(R"({"a":"x\"","b":"NaN"})"));
  EXPECT_TRUE(has_non_finite_number(R"({"a":"x\\","b":NaN})"));
  EXPECT_TRUE(has_non_finite_number(R"([1,-Infinity])"));
  EXPECT_TRUE(has_non_finite_number("NaN"));
  EXPECT_FALSE(has_non_finite_number(R"({"NaN":1,"Infinity":2E3})"));
}

TEST(Builders, ErrorDataJsonCannotCarryIsLeftOut) {
  auto m = parse_one(*make_error(
      json::value(2), RpcError(ErrorCode::kInvalidParams, "bad", json::object{{"limit", kInf}})));
  EXPECT_EQ(m.kind, Message::Kind::kErrorResponse);
  EXPECT_EQ(m.error.code, -32602);
  EXPECT_EQ(m.error.message, "bad");
  EXPECT_TRUE(m.error.data.is_null());
}

TEST(Builders, NotificationsAndRequestsJsonCannotCarryAreNotMade) {
  EXPECT_FALSE(make_notification("notifications/progress", {{"progress", kNaN}}));
  EXPECT_FALSE(make_request(json::value(1), "x/y", {{"n", json::array{-kInf}}}));
  EXPECT_TRUE(make_notification("notifications/progress", {{"progress", 0.5}}));
}

TEST(HoldsNonFiniteNumber, WalksTheWholeValue) {
  EXPECT_FALSE(holds_non_finite_number(json::parse(R"({"a":[1,2.5,{"b":"NaN"}]})")));
  EXPECT_TRUE(holds_non_finite_number(json::parse(R"({"a":[1,2.5,{"b":1e400}]})")));
  EXPECT_TRUE(holds_non_finite_number(json::value(kNaN)));
}

TEST(JsonNumber, IntegersPrintWithoutExponent) {
  EXPECT_EQ(json::serialize(json_number(3.0)), "3");
  EXPECT_EQ(json::serialize(json_number(0.0)), "0");
  EXPECT_EQ(json::serialize(json_number(-42.0)), "-42");
  EXPECT_EQ(json::serialize(json_number(1e12)), "1000000000000");
  EXPECT_TRUE(json_number(3.0).is_int64());
  EXPECT_TRUE(json_number(2.5).is_double());
  EXPECT_EQ(json_number(2.5).get_double(), 2.5);
  // Beyond the exactly representable range the value stays a double (no overflow).
  EXPECT_TRUE(json_number(1e300).is_double());
}

TEST(IdKey, DistinguishesStringsFromNumbers) {
  EXPECT_EQ(id_key("1"), "s:1");
  EXPECT_EQ(id_key(1), "n:1");
  EXPECT_EQ(id_key(std::uint64_t{7}), "n:7");
  EXPECT_EQ(id_key(7.0), "n:7");
  EXPECT_EQ(id_key(7.0), id_key(7)) << "1.0 and 1 are the same id";
  EXPECT_NE(id_key("1"), id_key(1));
  EXPECT_EQ(id_key(-3), "n:-3");
}

}  // namespace
}  // namespace mcpmesh::mcp

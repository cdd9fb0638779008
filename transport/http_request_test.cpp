#include "transport/http_request.hpp"

#include <gtest/gtest.h>
#include <boost/asio/buffer.hpp>

namespace mcpmesh::transport {
namespace {

/// Feeds `text` to a fresh parser in one piece; returns the parser's error.
boost::system::error_code parse(HttpRequest& req, std::string_view text,
                                std::uint64_t body_limit = 1024,
                                std::uint32_t header_limit = 1024) {
  HttpRequestParser parser(req);
  parser.eager(true);
  parser.body_limit(body_limit);
  parser.header_limit(header_limit);
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(text.data(), text.size()), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  return ec;
}

TEST(HttpRequest, KeepsRequestLineFieldsAndBody) {
  HttpRequest req;
  auto ec = parse(req,
                  "POST /mcp?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: "
                  "application/json\r\nmcp-SESSION-id: n1.abc\r\nX-Twice: first\r\nX-Twice: "
                  "second\r\nContent-Length: 4\r\n\r\nbody");
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(req.method(), http::verb::post);
  EXPECT_EQ(req.target(), "/mcp?x=1");
  EXPECT_EQ(req.version(), 11u);
  EXPECT_TRUE(req.keep_alive());
  EXPECT_EQ(req[http::field::host], "localhost:8080");
  EXPECT_EQ(req["content-type"], "application/json");  // a known name given as text
  EXPECT_EQ(req["Mcp-Session-Id"], "n1.abc");          // unknown names match case-insensitively
  EXPECT_EQ(req["x-twice"], "first");                  // the first of repeated fields
  EXPECT_EQ(req["Last-Event-ID"], "");
  EXPECT_EQ(req[http::field::origin], "");
  EXPECT_EQ(req.body(), "body");
}

TEST(HttpRequest, ChunkedBodiesAreJoined) {
  HttpRequest req;
  auto ec = parse(req,
                  "POST /mcp HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(req.body(), "abcde");
}

TEST(HttpRequest, KeepAliveFollowsVersionAndConnection) {
  HttpRequest req;
  ASSERT_FALSE(parse(req, "GET / HTTP/1.0\r\nHost: a\r\n\r\n"));
  EXPECT_EQ(req.version(), 10u);
  EXPECT_FALSE(req.keep_alive());
  ASSERT_FALSE(parse(req, "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"));
  EXPECT_TRUE(req.keep_alive());
  ASSERT_FALSE(parse(req, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(req.keep_alive());
  // A reused request holds nothing of the previous one.
  EXPECT_EQ(req["Connection"], "close");
  ASSERT_FALSE(parse(req, "GET / HTTP/1.1\r\nHost: b\r\n\r\n"));
  EXPECT_EQ(req["Connection"], "");
  EXPECT_EQ(req[http::field::host], "b");
}

TEST(HttpRequest, LimitsAreTheParsers) {
  HttpRequest req;
  EXPECT_EQ(parse(req, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n", 10),
            http::error::body_limit);
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n";
  EXPECT_EQ(parse(req, big), http::error::header_limit);
  EXPECT_TRUE(parse(req, "NOT HTTP\r\n\r\n"));
}

}  // namespace
}  // namespace mcpmesh::transport

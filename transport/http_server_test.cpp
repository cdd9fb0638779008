#include "transport/http_server.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <charconv>
#include <functional>
#include <future>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

namespace mcpmesh::transport {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Origin / Host rules

TEST(OriginAllowed, LoopbackOriginsByDefault) {
  const std::vector<std::string> none;
  EXPECT_TRUE(origin_allowed("http://localhost", none));
  EXPECT_TRUE(origin_allowed("http://localhost:3000", none));
  EXPECT_TRUE(origin_allowed("https://127.0.0.1:8443", none));
  EXPECT_TRUE(origin_allowed("http://[::1]:8080", none));
  EXPECT_TRUE(origin_allowed("http://[::1]", none));
  EXPECT_TRUE(origin_allowed("HTTP://LOCALHOST:3000", none));
}

TEST(OriginAllowed, EvilOriginsByDefault) {
  const std::vector<std::string> none;
  for (std::string_view o :
       {"https://evil.com", "http://localhost.evil.com", "http://127.0.0.1.evil.com:80",
        "http://evil.com/localhost", "null", "", "localhost", "http://", "http://[::2]:80"}) {
    EXPECT_FALSE(origin_allowed(o, none)) << o;
  }
}

TEST(OriginAllowed, ExplicitListReplacesLoopbackDefault) {
  const std::vector<std::string> list = {"https://app.example.com", "http://tool.local:8080"};
  EXPECT_TRUE(origin_allowed("https://app.example.com", list));
  EXPECT_TRUE(origin_allowed("HTTPS://APP.EXAMPLE.COM", list));
  EXPECT_TRUE(origin_allowed("http://tool.local:8080", list));
  EXPECT_FALSE(origin_allowed("http://tool.local:8081", list)) << "ports are part of an origin";
  EXPECT_FALSE(origin_allowed("http://app.example.com", list)) << "so is the scheme";
  EXPECT_FALSE(origin_allowed("http://localhost:3000", list));
  EXPECT_FALSE(origin_allowed("https://evil.com", list));
}

TEST(OriginAllowed, WildcardAllowsAnything) {
  const std::vector<std::string> star = {"*"};
  EXPECT_TRUE(origin_allowed("https://evil.com", star));
  EXPECT_TRUE(origin_allowed("null", star));
}

TEST(HostAllowed, LoopbackNamesByDefault) {
  const std::vector<std::string> none;
  for (std::string_view h : {"localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:0", "[::1]",
                             "[::1]:8080", "::1", "LocalHost:1"}) {
    EXPECT_TRUE(host_allowed(h, none)) << h;
  }
}

TEST(HostAllowed, EvilHostsByDefault) {
  const std::vector<std::string> none;
  for (std::string_view h :
       {"", "evil.com", "evil.com:8080", "localhost.evil.com", "127.0.0.1.nip.io:80", "[::2]:80",
        "10.0.0.1", "0.0.0.0:8080", "127.0.0.2"}) {
    EXPECT_FALSE(host_allowed(h, none)) << h;
  }
}

TEST(HostAllowed, ExplicitListIgnoresPorts) {
  const std::vector<std::string> list = {"mcp.example.com", "10.1.2.3"};
  EXPECT_TRUE(host_allowed("mcp.example.com", list));
  EXPECT_TRUE(host_allowed("MCP.example.com:443", list));
  EXPECT_TRUE(host_allowed("10.1.2.3:8080", list));
  EXPECT_FALSE(host_allowed("localhost", list)) << "an explicit list replaces the default";
  EXPECT_FALSE(host_allowed("evil.com", list));
  EXPECT_FALSE(host_allowed("mcp.example.com.evil.com", list));
}

TEST(HostAllowed, WildcardAllowsAnyNonEmptyHost) {
  const std::vector<std::string> star = {"*"};
  EXPECT_TRUE(host_allowed("anything.example:1", star));
  EXPECT_FALSE(host_allowed("", star));
}

// ---------------------------------------------------------------------------------------------
// An in-process server on 127.0.0.1, port 0, driven by a Beast client.

using Response = http::response<http::string_body>;

constexpr std::string_view kInitialize =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",)"
    R"("capabilities":{},"clientInfo":{"name":"t","version":"1"}}})";
constexpr std::string_view kBothTypes = "application/json, text/event-stream";
constexpr std::size_t kBigText = 8u << 20;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    app_.add_tool({.name = "progress"},
                  [](mcp::HandlerContext& ctx,
                     json::object) -> mcp::asio::awaitable<mcp::Result<mcp::ToolResult>> {
                    ctx.report_progress(1, 1, "all done");
                    co_return mcp::ToolResult::text("finished");
                  });
    // Ends its POST stream at once and answers later: the client resumes with Last-Event-ID.
    app_.add_tool({.name = "release"},
                  [](mcp::HandlerContext& ctx,
                     json::object) -> mcp::asio::awaitable<mcp::Result<mcp::ToolResult>> {
                    ctx.close_stream();
                    asio::steady_timer t(ctx.executor(), 100ms);
                    co_await t.async_wait(asio::use_awaitable);
                    co_return mcp::ToolResult::text("answered after the stream closed");
                  });
    // Outlasts sse_keepalive several times without emitting anything.
    app_.add_tool({.name = "quiet"},
                  [](mcp::HandlerContext& ctx,
                     json::object) -> mcp::asio::awaitable<mcp::Result<mcp::ToolResult>> {
                    asio::steady_timer t(ctx.executor(), 1s);
                    co_await t.async_wait(asio::use_awaitable);
                    co_return mcp::ToolResult::text("quiet done");
                  });
    // An answer far larger than a socket's send buffer (at most 4 MiB here): never written
    // by one non-blocking write.
    app_.add_tool({.name = "big"}, [](mcp::HandlerContext&, json::object) {
      return mcp::Result<mcp::ToolResult>(mcp::ToolResult::text(std::string(kBigText, 'b')));
    });
    mcp::ServerConfig server_cfg;
    configure_server(server_cfg);
    server_ = std::make_unique<mcp::Server>(io_, app_, server_cfg, 1);
    HttpConfig cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.max_body_bytes = 4096;
    cfg.read_timeout = 5s;
    cfg.idle_timeout = 5s;
    cfg.write_timeout = 5s;
    cfg.sse_keepalive = 200ms;
    configure(cfg);
    http_ = std::make_unique<HttpServer>(io_, *server_, cfg);
    endpoint_ = http_->local_endpoint();
    ASSERT_NE(endpoint_.port(), 0);
    http_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  /// Fixtures of particular limits change the configuration here.
  virtual void configure(HttpConfig&) {}
  virtual void configure_server(mcp::ServerConfig&) {}

  void TearDown() override {
    asio::post(io_, [this] { http_->stop(); });
    server_->close_all();
    guard_.reset();
    // Every connection ends on its own: the client closed it, or idle_timeout (5 s) passes.
    thread_.join();
    http_.reset();
    server_.reset();
  }

  /// One request on a fresh connection, every step bounded; Host defaults to the server's.
  Response send(http::request<http::string_body> req) {
    if (req[http::field::host].empty()) {
      req.set(http::field::host, "127.0.0.1:" + std::to_string(endpoint_.port()));
    }
    req.prepare_payload();
    Response res;
    on_connection([&](beast::tcp_stream& stream) -> asio::awaitable<void> {
      co_await http::async_write(stream, req, asio::use_awaitable);
      beast::flat_buffer buffer;
      res = co_await read_response(stream, buffer);
    });
    return res;
  }

  http::request<http::string_body> post(std::string_view body, std::string_view session = {}) {
    http::request<http::string_body> req{http::verb::post, "/mcp", 11};
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, kBothTypes);
    if (!session.empty()) req.set("Mcp-Session-Id", session);
    req.body() = std::string(body);
    return req;
  }

  http::request<http::string_body> get(std::string_view target, std::string_view session = {}) {
    http::request<http::string_body> req{http::verb::get, target, 11};
    req.set(http::field::accept, "text/event-stream");
    if (!session.empty()) req.set("Mcp-Session-Id", session);
    return req;
  }

  /// initialize + notifications/initialized; returns the session id.
  std::string open_session() {
    auto res = send(post(kInitialize));
    EXPECT_EQ(res.result_int(), 200u) << res.body();
    std::string id(res["Mcp-Session-Id"]);
    auto note = send(post(R"({"jsonrpc":"2.0","method":"notifications/initialized"})", id));
    EXPECT_EQ(note.result_int(), 202u) << note.body();
    return id;
  }

  /// tools/call of the `progress` tool, with a progress token.
  http::request<http::string_body> progress_call(std::string_view session) {
    return post(R"({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":)"
                R"("progress","_meta":{"progressToken":"p1"}}})",
                session);
  }

  /// The `progress` tool's SSE body carries its progress notification, then its result.
  static void expect_progress_then_result(const std::string& body) {
    auto progress = body.find("notifications/progress");
    auto result = body.find("\"finished\"");
    ASSERT_NE(progress, std::string::npos) << body;
    ASSERT_NE(result, std::string::npos) << body;
    EXPECT_LT(progress, result);
  }

  /// Runs `body` as a client coroutine on a connection to the server, every step bounded;
  /// `receive_buffer` > 0 shrinks the client's receive buffer before connecting.
  void on_connection(std::function<asio::awaitable<void>(beast::tcp_stream&)> body,
                     int receive_buffer = 0) {
    asio::io_context cio;
    beast::tcp_stream stream(cio);
    bool done = false;
    std::string failure;
    asio::co_spawn(
        cio,
        [&]() -> asio::awaitable<void> {
          stream.expires_after(20s);
          if (receive_buffer > 0 || !source_.is_unspecified()) {
            stream.socket().open(asio::ip::tcp::v4());
          }
          if (receive_buffer > 0) {
            stream.socket().set_option(asio::socket_base::receive_buffer_size(receive_buffer));
          }
          if (!source_.is_unspecified()) stream.socket().bind({source_, 0});
          co_await stream.async_connect(endpoint_, asio::use_awaitable);
          co_await body(stream);
          done = true;
        },
        [&](std::exception_ptr e) {
          if (!e) return;
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            failure = ex.what();
          }
        });
    cio.run_for(25s);
    EXPECT_TRUE(done) << "connection failed: " << (failure.empty() ? "timed out" : failure);
  }

  /// A serialised POST of `body` on `session`, Host set.
  std::string raw_post(std::string_view body, std::string_view session) {
    auto req = post(body, session);
    req.set(http::field::host, "127.0.0.1:" + std::to_string(endpoint_.port()));
    req.prepare_payload();
    std::ostringstream out;
    out << req;
    return out.str();
  }

  static asio::awaitable<Response> read_response(beast::tcp_stream& stream,
                                                 beast::flat_buffer& buffer) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(32u << 20);
    co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
    co_return parser.release();
  }

  static std::int64_t error_code(const Response& res) {
    auto v = json::parse(res.body());
    return v.at("error").at("code").as_int64();
  }

  mcp::App app_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_{io_.get_executor()};
  std::unique_ptr<mcp::Server> server_;
  std::unique_ptr<HttpServer> http_;
  asio::ip::tcp::endpoint endpoint_;
  std::thread thread_;
  /// The local address client connections bind to (unspecified: the kernel's choice,
  /// 127.0.0.1); every 127.0.0.x is a client of its own.
  asio::ip::address source_;
};

TEST_F(HttpServerTest, InitializeCreatesASession) {
  auto res = send(post(kInitialize));
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  EXPECT_NE(res[http::field::content_type].find("application/json"), std::string::npos);
  std::string id(res["Mcp-Session-Id"]);
  EXPECT_TRUE(std::regex_match(id, std::regex("^n1\\.[0-9a-f]+\\.[0-9a-f]{32}$"))) << id;
  auto body = json::parse(res.body());
  EXPECT_EQ(body.at("id"), 1);
  EXPECT_EQ(body.at("result").at("protocolVersion"), "2025-11-25");
  EXPECT_NE(server_->find_session(id), nullptr);
}

TEST_F(HttpServerTest, KeepAliveAnswersComeInOrderAlsoWhenPipelined) {
  auto session = open_session();
  auto ping = [&](int id) {
    return raw_post(R"({"jsonrpc":"2.0","id":)" + std::to_string(id) + R"(,"method":"ping"})",
                    session);
  };
  on_connection([&](beast::tcp_stream& stream) -> asio::awaitable<void> {
    beast::flat_buffer buffer;
    // One at a time.
    for (int id = 1; id <= 3; ++id) {
      co_await asio::async_write(stream, asio::buffer(ping(id)), asio::use_awaitable);
      auto res = co_await read_response(stream, buffer);
      EXPECT_EQ(res.result_int(), 200u) << res.body();
      EXPECT_EQ(json::parse(res.body()).at("id"), id) << res.body();
    }
    // Three requests in one write: answered in order on the same connection.
    std::string three = ping(4) + ping(5) + ping(6);
    co_await asio::async_write(stream, asio::buffer(three), asio::use_awaitable);
    for (int id = 4; id <= 6; ++id) {
      auto res = co_await read_response(stream, buffer);
      EXPECT_EQ(res.result_int(), 200u) << res.body();
      EXPECT_EQ(json::parse(res.body()).at("id"), id) << res.body();
      EXPECT_TRUE(res.keep_alive());
    }
  });
}

TEST_F(HttpServerTest, AnswerLargerThanTheSocketBufferIsWrittenWholeThenTheConnectionGoesOn) {
  // The answer's first, non-blocking write is partial (8 MiB against a send buffer of at most
  // 4 MiB and a small receive window), so the rest is written as the client drains it, under
  // the write deadline; the connection then serves the next request.
  auto session = open_session();
  on_connection(
      [&](beast::tcp_stream& stream) -> asio::awaitable<void> {
        beast::flat_buffer buffer;
        auto call = raw_post(
            R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"big"}})", session);
        co_await asio::async_write(stream, asio::buffer(call), asio::use_awaitable);
        auto res = co_await read_response(stream, buffer);
        EXPECT_EQ(res.result_int(), 200u);
        auto answer = json::parse(res.body());
        EXPECT_EQ(answer.at("id"), 7);
        const auto& text = answer.at("result").at("content").at(0).at("text").as_string();
        EXPECT_EQ(text.size(), kBigText);
        EXPECT_EQ(text.find_first_not_of('b'), json::string::npos);

        auto ping = raw_post(R"({"jsonrpc":"2.0","id":8,"method":"ping"})", session);
        co_await asio::async_write(stream, asio::buffer(ping), asio::use_awaitable);
        auto pong = co_await read_response(stream, buffer);
        EXPECT_EQ(pong.result_int(), 200u) << pong.body();
        EXPECT_EQ(json::parse(pong.body()).at("id"), 8) << pong.body();
      },
      4096);
}

TEST_F(HttpServerTest, RequestsAndNotificationsOnASession) {
  auto id = open_session();
  auto res = send(post(R"({"jsonrpc":"2.0","id":2,"method":"tools/list"})", id));
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  auto body = json::parse(res.body());
  EXPECT_EQ(body.at("result").at("tools").at(0).at("name"), "progress");
  EXPECT_TRUE(res["Mcp-Session-Id"].empty()) << "only the initialize answer names the session";
}

TEST_F(HttpServerTest, ProgressTurnsTheAnswerIntoAnSseStream) {
  auto id = open_session();
  auto res = send(progress_call(id));
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "text/event-stream");
  const auto& body = res.body();
  ASSERT_NO_FATAL_FAILURE(expect_progress_then_result(body));
  EXPECT_NE(body.find("event: message\nid: "), std::string::npos) << body;
  EXPECT_EQ(res["X-Accel-Buffering"], "no");
  EXPECT_EQ(res[http::field::cache_control], "no-cache");
  // A 2025-11-25 session's SSE stream opens with a priming event: an id, a retry, empty data.
  EXPECT_EQ(body.rfind("id: ", 0), 0u) << body;
  EXPECT_NE(body.find("-0\nretry: "), std::string::npos) << body;
  EXPECT_LT(body.find("data: \n\n"), body.find("notifications/progress")) << body;
}

TEST_F(HttpServerTest, Http10SseStreamIsDelimitedByClose) {
  // HTTP/1.0 has no chunked coding (nginx talks 1.0 to upstreams unless told otherwise): the
  // stream is sent as is and ends when the server closes the connection.
  auto id = open_session();
  auto req = progress_call(id);
  req.version(10);
  auto res = send(std::move(req));
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.version(), 10u);
  EXPECT_EQ(res[http::field::content_type], "text/event-stream");
  EXPECT_TRUE(res[http::field::transfer_encoding].empty());
  EXPECT_TRUE(res[http::field::content_length].empty());
  const auto& body = res.body();
  ASSERT_NO_FATAL_FAILURE(expect_progress_then_result(body));
  // No chunk framing anywhere: the body starts with the priming event itself.
  EXPECT_EQ(body.rfind("id: ", 0), 0u) << body;
  EXPECT_EQ(body.find("\r\n"), std::string::npos) << body;
}

TEST_F(HttpServerTest, OtherMethodsAre405) {
  http::request<http::string_body> req{http::verb::put, "/mcp", 11};
  auto res = send(req);
  EXPECT_EQ(res.result_int(), 405u);
  EXPECT_EQ(res[http::field::allow], "GET, POST, DELETE");
}

TEST_F(HttpServerTest, ClosedStreamResumesWithLastEventId) {
  auto id = open_session();
  auto first = send(post(R"({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":)"
                         R"("release"}})",
                         id));
  ASSERT_EQ(first.result_int(), 200u);
  ASSERT_EQ(first[http::field::content_type], "text/event-stream");
  EXPECT_EQ(first.body().find("answered after"), std::string::npos) << first.body();
  // The priming event's id is where the resumption starts.
  std::string body = first.body();
  ASSERT_EQ(body.rfind("id: ", 0), 0u) << body;
  std::string last_id = body.substr(4, body.find('\n') - 4);
  auto req = get("/mcp", id);
  req.set("Last-Event-ID", last_id);
  auto resumed = send(req);  // ends once the stream's last request is answered
  ASSERT_EQ(resumed.result_int(), 200u);
  EXPECT_NE(resumed.body().find("answered after the stream closed"), std::string::npos)
      << resumed.body();
  EXPECT_NE(resumed.body().find("\"id\":4"), std::string::npos) << resumed.body();
}

TEST_F(HttpServerTest, LongCallBecomesSseWithKeepAliveComments) {
  auto id = open_session();
  auto res = send(post(R"({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":)"
                       R"("quiet"}})",
                       id));
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "text/event-stream");
  auto keepalive = res.body().find(": keep-alive\n\n");
  auto result = res.body().find("quiet done");
  ASSERT_NE(keepalive, std::string::npos) << res.body();
  ASSERT_NE(result, std::string::npos) << res.body();
  EXPECT_LT(keepalive, result);
}

TEST_F(HttpServerTest, GetWithoutSessionIs400) { EXPECT_EQ(send(get("/mcp")).result_int(), 400u); }

TEST_F(HttpServerTest, UnknownSessionIs404) {
  auto res = send(post(R"({"jsonrpc":"2.0","id":2,"method":"tools/list"})",
                       "n1.00000000000000000000000000000000"));
  EXPECT_EQ(res.result_int(), 404u);
  EXPECT_EQ(send(get("/mcp", "n1.nope")).result_int(), 404u);
}

TEST_F(HttpServerTest, DeleteEndsTheSession) {
  auto id = open_session();
  http::request<http::string_body> del{http::verb::delete_, "/mcp", 11};
  del.set("Mcp-Session-Id", id);
  EXPECT_EQ(send(del).result_int(), 200u);
  EXPECT_EQ(server_->find_session(id), nullptr);
  auto res = send(post(R"({"jsonrpc":"2.0","id":2,"method":"ping"})", id));
  EXPECT_EQ(res.result_int(), 404u);
  EXPECT_EQ(send(del).result_int(), 404u);
}

TEST_F(HttpServerTest, PostWithoutProperAcceptIs406) {
  auto req = post(kInitialize);
  req.erase(http::field::accept);
  EXPECT_EQ(send(req).result_int(), 406u);
  req.set(http::field::accept, "application/json");
  EXPECT_EQ(send(req).result_int(), 406u);
  req.set(http::field::accept, "text/event-stream");
  EXPECT_EQ(send(req).result_int(), 406u);
  req.set(http::field::accept, "*/*");
  EXPECT_EQ(send(req).result_int(), 200u);
}

TEST_F(HttpServerTest, GetWithoutEventStreamAcceptIs406) {
  auto id = open_session();
  auto req = get("/mcp", id);
  req.set(http::field::accept, "application/json");
  EXPECT_EQ(send(req).result_int(), 406u);
}

TEST_F(HttpServerTest, WrongContentTypeIs415) {
  auto req = post(kInitialize);
  req.set(http::field::content_type, "text/plain");
  EXPECT_EQ(send(req).result_int(), 415u);
  req.set(http::field::content_type, "application/json; charset=utf-8");
  EXPECT_EQ(send(req).result_int(), 200u);
}

TEST_F(HttpServerTest, BadProtocolVersionHeaderIs400) {
  auto id = open_session();
  auto req = post(R"({"jsonrpc":"2.0","id":2,"method":"ping"})", id);
  req.set("MCP-Protocol-Version", "1999-01-01");
  EXPECT_EQ(send(req).result_int(), 400u);
  req.set("MCP-Protocol-Version", "2025-11-25");
  EXPECT_EQ(send(req).result_int(), 200u);
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413) {
  std::string big = R"({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":")" +
                    std::string(8000, 'x') + "\"}}";
  auto res = send(post(big));
  EXPECT_EQ(res.result_int(), 413u);
  EXPECT_EQ(server_->metrics().body_too_large_total.load(), 1u);
}

TEST_F(HttpServerTest, MalformedJsonIs400ParseError) {
  auto res = send(post("{not json"));
  ASSERT_EQ(res.result_int(), 400u);
  EXPECT_EQ(error_code(res), -32700);
  EXPECT_EQ(server_->metrics().parse_errors_total.load(), 1u);
}

TEST_F(HttpServerTest, InitializeWithASessionIdIs400) {
  auto res = send(post(kInitialize, "n1.00000000000000000000000000000000"));
  EXPECT_EQ(res.result_int(), 400u);
}

TEST_F(HttpServerTest, ForeignHostAndOriginAre403) {
  auto req = post(kInitialize);
  req.set(http::field::origin, "https://evil.com");
  EXPECT_EQ(send(req).result_int(), 403u);
  EXPECT_EQ(server_->metrics().origin_rejected_total.load(), 1u);
  req.set(http::field::origin, "http://localhost:5173");
  EXPECT_EQ(send(req).result_int(), 200u);

  auto evil_host = get("/healthz");
  evil_host.set(http::field::host, "evil.com");
  EXPECT_EQ(send(evil_host).result_int(), 403u);
  EXPECT_EQ(server_->metrics().host_rejected_total.load(), 1u);
}

TEST_F(HttpServerTest, UnknownPathIs404) { EXPECT_EQ(send(get("/nope")).result_int(), 404u); }

TEST_F(HttpServerTest, HealthzAndMetrics) {
  auto health = send(get("/healthz"));
  EXPECT_EQ(health.result_int(), 200u);
  EXPECT_EQ(health.body(), "ok\n");
  auto metrics = send(get("/metrics"));
  EXPECT_EQ(metrics.result_int(), 200u);
  EXPECT_NE(metrics.body().find("mcpmesh_http_requests_total"), std::string::npos)
      << metrics.body();
  EXPECT_NE(metrics.body().find("mcpmesh_sessions_active"), std::string::npos);
}

}  // namespace
}  // namespace mcpmesh::transport

namespace mcpmesh::transport {
namespace {

TEST_F(HttpServerTest, BatchesOn2025_03_26AreArraysAndBounded) {
  auto init = send(post(R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":)"
                        R"({"protocolVersion":"2025-03-26","capabilities":{},)"
                        R"("clientInfo":{"name":"t","version":"1"}}})"));
  ASSERT_EQ(init.result_int(), 200u);
  std::string id(init["Mcp-Session-Id"]);
  // A batch of one is still answered with an array.
  auto one = send(post(R"([{"jsonrpc":"2.0","id":7,"method":"ping"}])", id));
  ASSERT_EQ(one.result_int(), 200u) << one.body();
  auto body = json::parse(one.body());
  ASSERT_TRUE(body.is_array()) << one.body();
  EXPECT_EQ(body.as_array().at(0).at("id"), 7);
  // Longer than max_batch_size (100): refused as a whole, and counted (notifications keep the
  // body under the fixture's 4 KiB limit).
  std::string big = "[";
  for (int i = 0; i < 101; ++i) {
    if (i) big += ',';
    big += R"({"jsonrpc":"2.0","method":"x"})";
  }
  big += "]";
  auto refused = send(post(big, id));
  EXPECT_EQ(refused.result_int(), 400u);
  EXPECT_EQ(error_code(refused), -32600);
  EXPECT_EQ(server_->metrics().batches_rejected_total.load(), 1u);
}

}  // namespace
}  // namespace mcpmesh::transport

// ---------------------------------------------------------------------------------------------
// Admission control over HTTP: per-client caps and buckets, trusted proxies, load shedding,
// readiness, transfer codings and the lingering close.

namespace mcpmesh::transport {
namespace {

const asio::ip::address kClientA = asio::ip::make_address("127.0.0.1");
const asio::ip::address kClientB = asio::ip::make_address("127.0.0.2");
constexpr std::string_view kPing = R"({"jsonrpc":"2.0","id":9,"method":"ping"})";

/// The Retry-After of `res` in seconds, or -1.
int retry_after(const Response& res) {
  auto v = res[http::field::retry_after];
  return v.empty() ? -1 : std::stoi(std::string(v));
}

class PerClientLimitsTest : public HttpServerTest {
 protected:
  void configure(HttpConfig& cfg) override {
    cfg.admission.max_sessions_per_client = 2;
    cfg.admission.max_connections_per_client = 3;
    cfg.admission.client_request_rate = 5;  // burst 10
    cfg.admission.client_session_rate = 0;
  }
};

TEST_F(PerClientLimitsTest, SessionCapIs429WithRetryAfterAndOtherClientsAreUnaffected) {
  auto first = open_session();
  auto second = open_session();
  auto refused = send(post(kInitialize));
  ASSERT_EQ(refused.result_int(), 429u) << refused.body();
  EXPECT_GE(retry_after(refused), 1);
  EXPECT_EQ(error_code(refused), -32000);
  EXPECT_EQ(json::parse(refused.body()).at("id"), 1) << "the answer names the request";
  EXPECT_NE(refused.body().find("too many sessions from this client"), std::string::npos);
  EXPECT_EQ(server_->metrics().client_sessions_rejected_total.load(), 1u);
  EXPECT_EQ(server_->session_count(), 2u);

  source_ = kClientB;
  auto other = open_session();
  EXPECT_FALSE(other.empty()) << "another address gets a session at once";

  source_ = kClientA;
  EXPECT_EQ(send(post(kPing, first)).result_int(), 200u) << "existing sessions keep working";
  auto del = post("", second);
  del.method(http::verb::delete_);
  ASSERT_EQ(send(del).result_int(), 200u);
  EXPECT_EQ(send(post(kInitialize)).result_int(), 200u) << "a closed session frees its place";
}

TEST_F(PerClientLimitsTest, RequestRateIs429ButAnswersAndOtherClientsPass) {
  auto session = open_session();
  source_ = kClientB;
  auto other = open_session();
  source_ = kClientA;
  int admitted = 0;
  Response refused;
  for (int i = 0; i < 40; ++i) {
    auto res = send(post(kPing, session));
    if (res.result_int() != 200u) {
      refused = res;
      break;
    }
    ++admitted;
  }
  ASSERT_EQ(refused.result_int(), 429u) << refused.body();
  EXPECT_GE(admitted, 10) << "the burst";
  EXPECT_LE(admitted, 12);
  EXPECT_GE(retry_after(refused), 1);
  EXPECT_EQ(error_code(refused), -32000);
  EXPECT_EQ(json::parse(refused.body()).at("id"), 9);
  EXPECT_GE(server_->metrics().rate_limited_total.load(), 1u);
  // What the client owes the server is never refused: a notification, a response.
  EXPECT_EQ(send(post(R"({"jsonrpc":"2.0","method":"notifications/roots/list_changed"})", session))
                .result_int(),
            202u);
  EXPECT_EQ(send(post(R"({"jsonrpc":"2.0","id":"s1","result":{}})", session)).result_int(), 202u);
  source_ = kClientB;
  EXPECT_EQ(send(post(kPing, other)).result_int(), 200u) << "another client has its own bucket";
}

TEST_F(PerClientLimitsTest, ConnectionCapIs503AndOtherClientsConnect) {
  asio::io_context cio;
  std::vector<asio::ip::tcp::socket> held;
  for (int i = 0; i < 3; ++i) {
    held.emplace_back(cio);
    held.back().connect(endpoint_);
  }
  // The fourth from the same address is answered 503 and closed before it sends anything.
  asio::ip::tcp::socket fourth(cio);
  fourth.connect(endpoint_);
  std::string answer;
  boost::system::error_code ec;
  std::array<char, 1024> buf;
  for (;;) {
    auto n = fourth.read_some(asio::buffer(buf), ec);
    if (ec) break;
    answer.append(buf.data(), n);
  }
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(answer.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("Retry-After: 1"), std::string::npos);
  EXPECT_NE(answer.find("too many connections"), std::string::npos);
  EXPECT_EQ(server_->metrics().client_connections_rejected_total.load(), 1u);
  source_ = kClientB;
  EXPECT_EQ(send(get("/healthz")).result_int(), 200u);
  held.clear();
}

class TrustedProxyTest : public HttpServerTest {
 protected:
  void configure(HttpConfig& cfg) override {
    cfg.admission.trusted_proxies = {"127.0.0.1"};
    cfg.admission.max_sessions_per_client = 1;
    // Two: a connection the client just closed may not be closed on the server's side yet.
    cfg.admission.max_connections_per_client = 2;
  }
  Response initialize_as(std::string_view forwarded_for) {
    auto req = post(kInitialize);
    req.set("X-Forwarded-For", forwarded_for);
    return send(req);
  }
};

TEST_F(TrustedProxyTest, ClientsBehindTheProxyAreCountedApartAndOthersCannotPretend) {
  // Connections from the proxy are not capped: two held open, the next ones still served.
  asio::io_context cio;
  asio::ip::tcp::socket idle(cio), idle2(cio);
  idle.connect(endpoint_);
  idle2.connect(endpoint_);
  EXPECT_EQ(initialize_as("10.0.0.1").result_int(), 200u);
  EXPECT_EQ(initialize_as("198.51.100.7, 10.0.0.1").result_int(), 429u)
      << "the entry the proxy appended names the client";
  EXPECT_EQ(initialize_as("10.0.0.2").result_int(), 200u);
  // A peer that is not a trusted proxy is its own client, whatever it forwards.
  source_ = kClientB;
  EXPECT_EQ(initialize_as("10.0.0.3").result_int(), 200u);
  EXPECT_EQ(initialize_as("10.0.0.4").result_int(), 429u);
  EXPECT_EQ(server_->metrics().client_sessions_rejected_total.load(), 2u);
}

class NodeRateTest : public HttpServerTest {
 protected:
  void configure(HttpConfig& cfg) override {
    cfg.admission.client_request_rate = 0;
    cfg.admission.node_request_rate = 4;  // burst 8, over every client
  }
};

TEST_F(NodeRateTest, TheNodeBucketSpansClients) {
  auto a = open_session();
  source_ = kClientB;
  auto b = open_session();
  int admitted = 0;
  for (int i = 0; i < 30; ++i) {
    source_ = i % 2 ? kClientA : kClientB;
    auto res = send(post(kPing, i % 2 ? a : b));
    if (res.result_int() == 429u) break;
    ASSERT_EQ(res.result_int(), 200u);
    ++admitted;
  }
  EXPECT_GE(admitted, 8);
  EXPECT_LE(admitted, 10);
  EXPECT_GE(server_->metrics().rate_limited_total.load(), 1u);
}

class FullNodeTest : public HttpServerTest {
 protected:
  void configure_server(mcp::ServerConfig& cfg) override { cfg.max_sessions = 1; }
  void configure(HttpConfig& cfg) override { cfg.admission.max_sessions_per_client = 10; }
};

TEST_F(FullNodeTest, ReadyzIs503WhileFullHealthzStays200) {
  auto ready = send(get("/readyz"));
  EXPECT_EQ(ready.result_int(), 200u);
  EXPECT_EQ(ready.body(), "ready (zone green)\n");
  auto session = open_session();
  auto full = send(get("/readyz"));
  EXPECT_EQ(full.result_int(), 503u);
  EXPECT_EQ(full.body(), "not ready: sessions at max_sessions (zone green)\n");
  EXPECT_EQ(send(get("/healthz")).result_int(), 200u) << "full is not sick";
  auto refused = send(post(kInitialize));
  EXPECT_EQ(refused.result_int(), 503u);
  EXPECT_GE(retry_after(refused), 1);
  EXPECT_EQ(send(post(kPing, session)).result_int(), 200u);
}

/// An overloaded node: a synchronous tool that holds the only I/O thread makes the event loop
/// late, which is what the load shedder measures.
class SheddingTest : public HttpServerTest {
 protected:
  void SetUp() override {
    app_.add_tool({.name = "stall"}, [](mcp::HandlerContext&, json::object) {
      std::this_thread::sleep_for(120ms);
      return mcp::Result<mcp::ToolResult>(mcp::ToolResult::text("stalled"));
    });
    HttpServerTest::SetUp();
  }
  void configure(HttpConfig& cfg) override {
    cfg.admission.shed_lag = 30ms;
    cfg.admission.tick = 20ms;
    cfg.admission.client_request_rate = 0;
    cfg.admission.client_session_rate = 0;
  }
  /// Calls `stall` on `session` over and over from another thread until `stop`.
  std::thread stall(const std::string& session, std::atomic<bool>& stop) {
    auto req = raw_post(
        R"({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"stall"}})", session);
    return std::thread([this, req, &stop] {
      asio::io_context cio;
      auto end = std::chrono::steady_clock::now() + 30s;
      while (!stop && std::chrono::steady_clock::now() < end) {
        asio::ip::tcp::socket s(cio);
        boost::system::error_code ec;
        s.connect(endpoint_, ec);
        if (ec) continue;
        asio::write(s, asio::buffer(req), ec);
        std::array<char, 4096> buf;
        s.read_some(asio::buffer(buf), ec);  // the answer's first bytes: 200 or 503
      }
    });
  }
  /// Polls `fn` every 10 ms until it holds or `deadline` passes.
  static bool eventually(const std::function<bool()>& fn, std::chrono::milliseconds deadline) {
    auto end = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < end) {
      if (fn()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return fn();
  }
};

TEST_F(SheddingTest, NewSessionsGoFirstThenNewRequestsNeverAnswersOwedThenBackToGreen) {
  auto staller = open_session();
  auto session = open_session();
  std::atomic<bool> stop{false};
  auto load = stall(staller, stop);
  Response shed_init;
  EXPECT_TRUE(eventually(
      [&] {
        shed_init = send(post(kInitialize));
        return shed_init.result_int() == 503u;
      },
      15s))
      << "initialize kept being admitted under load";
  EXPECT_GE(retry_after(shed_init), 1);
  EXPECT_NE(shed_init.body().find("overloaded"), std::string::npos) << shed_init.body();
  EXPECT_GE(server_->metrics().shed_sessions_total.load(), 1u);

  Response shed_ping;
  EXPECT_TRUE(eventually(
      [&] {
        shed_ping = send(post(kPing, session));
        return shed_ping.result_int() == 503u;
      },
      15s))
      << "requests kept being admitted under load";
  EXPECT_EQ(error_code(shed_ping), -32000);
  EXPECT_GE(server_->metrics().shed_requests_total.load(), 1u);
  EXPECT_TRUE(eventually([&] { return send(get("/readyz")).result_int() == 503u; }, 15s))
      << "/readyz stayed 200 while shedding requests";
  // Answers the node asked for are taken whatever the zone (while requests are being shed).
  ASSERT_EQ(http_->admission().zone(), Zone::kRed);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(send(post(R"({"jsonrpc":"2.0","id":"s1","result":{}})", session)).result_int(), 202u);
  }

  stop = true;
  load.join();
  auto stopped = std::chrono::steady_clock::now();
  EXPECT_TRUE(eventually([&] { return http_->admission().zone() == Zone::kGreen; }, 10s))
      << "not back to green within 10 s of the load ending";
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, 10s);
  EXPECT_EQ(send(post(kInitialize)).result_int(), 200u);
  EXPECT_EQ(send(get("/readyz")).result_int(), 200u);
  auto metrics = send(get("/metrics")).body();
  EXPECT_NE(metrics.find("mcpmesh_health_zone 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("mcpmesh_admit_ratio{kind=\"requests\"} 1\n"), std::string::npos);
}

// -- transfer codings, lingering close --------------------------------------------------------

/// Writes `request` whole on a fresh connection, then reads until the server closes; returns
/// what was read, or the error that ended it.
std::string exchange_raw(const asio::ip::tcp::endpoint& at, const std::string& request,
                         boost::system::error_code& ec) {
  asio::io_context cio;
  asio::ip::tcp::socket s(cio);
  s.connect(at, ec);
  if (ec) return {};
  asio::write(s, asio::buffer(request), ec);
  if (ec) return {};
  std::string answer;
  std::array<char, 4096> buf;
  for (;;) {
    auto n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    answer.append(buf.data(), n);
  }
  if (ec == asio::error::eof) ec = {};
  return answer;
}

std::string raw_head(std::uint16_t port, std::string_view extra) {
  return "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
         std::string(extra) + "\r\n";
}

TEST_F(HttpServerTest, TransferCodingsOtherThanChunkedAre501) {
  auto body = std::string(kPing);
  std::array<char, 8> hex;
  auto [end, e] = std::to_chars(hex.data(), hex.data() + hex.size(), body.size(), 16);
  auto chunked = std::string(hex.data(), end) + "\r\n" + body + "\r\n0\r\n\r\n";
  boost::system::error_code ec;
  for (std::string_view coding : {"gzip, chunked", "deflate", "gzip"}) {
    auto answer = exchange_raw(
        endpoint_,
        raw_head(endpoint_.port(), "Transfer-Encoding: " + std::string(coding) + "\r\n") + chunked,
        ec);
    EXPECT_FALSE(ec) << coding << ": " << ec.message();
    EXPECT_EQ(answer.rfind("HTTP/1.1 501 Not Implemented\r\n", 0), 0u) << coding << "\n" << answer;
    EXPECT_NE(answer.find("only chunked"), std::string::npos) << answer;
  }
  EXPECT_EQ(server_->metrics().transfer_coding_rejected_total.load(), 3u);
  // Plain chunked is served (the session is missing: 400, from the MCP layer, not 501).
  auto answer = exchange_raw(
      endpoint_,
      raw_head(endpoint_.port(), "Transfer-Encoding: chunked\r\nConnection: close\r\n") + chunked,
      ec);
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << answer;
}

TEST_F(HttpServerTest, ATooLargeBodyWrittenWholeStillGetsIts413) {
  // A client that writes its whole request before reading (as many do) must read the 413,
  // not a reset: the server reads and drops the body it refused before closing.
  std::string body(1 << 20, 'x');
  auto request =
      raw_head(endpoint_.port(), "Content-Length: " + std::to_string(body.size()) + "\r\n") + body;
  for (int i = 0; i < 3; ++i) {
    boost::system::error_code ec;
    auto answer = exchange_raw(endpoint_, request, ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(answer.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << answer;
  }
  EXPECT_EQ(server_->metrics().lingering_closes_total.load(), 3u);
}

// -- protocol switch (the cluster's relay links) ----------------------------------------------

TEST_F(HttpServerTest, AConnectionSwitchesProtocolsOnlyWhereAndAsTheRouteSays) {
  std::atomic<int> taken{0};
  std::string leftover_seen;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> kept;  // the taker's sockets
  http_->set_upgrade(
      UpgradeRoute{.path = "/switch",
                   .protocol = "test-proto/1",
                   .accept = [&](const HttpRequest& req, asio::ip::tcp::socket& socket,
                                 std::string leftover) -> std::optional<UpgradeRoute::Refusal> {
                     if (req["X-Key"] != "open sesame") return UpgradeRoute::Refusal{401, "no key"};
                     leftover_seen = leftover;
                     ++taken;  // before the answer: the client may look as soon as it reads it
                     auto s = std::make_unique<asio::ip::tcp::socket>(std::move(socket));
                     std::string answer =
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test-proto/1\r\n\r\ntaken";
                     boost::system::error_code ec;
                     s->non_blocking(false, ec);
                     asio::write(*s, asio::buffer(answer), ec);
                     s->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
                     kept.push_back(std::move(s));
                     return std::nullopt;
                   }});
  auto ask = [&](std::string_view path, std::string_view proto, std::string_view extra) {
    boost::system::error_code ec;
    std::string req = "GET " + std::string(path) +
                      " HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: Upgrade, close\r\n"
                      "Upgrade: " +
                      std::string(proto) + "\r\n" + std::string(extra) + "\r\n";
    return exchange_raw(endpoint_, req, ec);
  };
  // Refused by the route: its status and reason, as a JSON-RPC error; the connection closes.
  auto refused = ask("/switch", "test-proto/1", "");
  EXPECT_EQ(refused.rfind("HTTP/1.1 401 ", 0), 0u) << refused;
  EXPECT_NE(refused.find("no key"), std::string::npos) << refused;
  // Taken: the taker writes the answer; the Host check (a foreign name here) does not apply.
  auto switched = ask("/switch", "TEST-PROTO/1", "X-Key: open sesame\r\n");
  EXPECT_EQ(switched, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test-proto/1\r\n\r\ntaken");
  EXPECT_EQ(taken.load(), 1);
  // Another protocol or another path: an ordinary request (here refused by the Host check).
  auto other = ask("/switch", "websocket", "X-Key: open sesame\r\n");
  EXPECT_EQ(other.rfind("HTTP/1.1 403 ", 0), 0u) << other;
  auto elsewhere = ask("/mcp", "test-proto/1", "X-Key: open sesame\r\n");
  EXPECT_EQ(elsewhere.rfind("HTTP/1.1 403 ", 0), 0u) << elsewhere;
  EXPECT_EQ(taken.load(), 1);
  EXPECT_EQ(server_->metrics().upgrades_total.load(), 1u);
  EXPECT_EQ(server_->metrics().upgrades_refused_total.load(), 1u);
  // Bytes the client sent with its request (pipelined) go to the taker.
  boost::system::error_code ec;
  exchange_raw(endpoint_,
               "GET /switch HTTP/1.1\r\nHost: x\r\nUpgrade: test-proto/1\r\n"
               "X-Key: open sesame\r\n\r\nearly bytes",
               ec);
  EXPECT_EQ(leftover_seen, "early bytes");
  EXPECT_EQ(taken.load(), 2);
  // Withdrawn: the path is an ordinary one again.
  http_->set_upgrade(std::nullopt);
  auto gone = ask("/switch", "test-proto/1", "X-Key: open sesame\r\n");
  EXPECT_EQ(gone.rfind("HTTP/1.1 403 ", 0), 0u) << gone;
  EXPECT_EQ(taken.load(), 2);
  std::promise<void> cleared;
  asio::post(io_, [&] {
    kept.clear();
    cleared.set_value();
  });
  cleared.get_future().wait();
}

}  // namespace
}  // namespace mcpmesh::transport

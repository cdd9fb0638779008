#include "transport/admission.hpp"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <future>
#include <thread>

namespace mcpmesh::transport {
namespace {

using namespace std::chrono_literals;
using Clock = AdmissionClock;
namespace ip = asio::ip;

// ---------------------------------------------------------------------------------------------
// TokenBucket

TEST(TokenBucket, GrantsTheBurstThenPacesAtTheRate) {
  auto t0 = Clock::time_point() + 1h;
  TokenBucket b(10, 20, t0);  // 10/s, burst 20
  for (int i = 0; i < 20; ++i) EXPECT_EQ(b.take(t0).count(), 0) << i;
  auto wait = b.take(t0);
  EXPECT_GT(wait, 0ns);
  EXPECT_LE(wait, 100ms);  // one token comes every 100 ms
  EXPECT_EQ(b.take(t0 + 100ms).count(), 0);
  EXPECT_GT(b.take(t0 + 100ms).count(), 0);
}

TEST(TokenBucket, RefillStopsAtTheBurst) {
  auto t0 = Clock::time_point() + 1h;
  TokenBucket b(100, 5, t0);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(b.take(t0).count(), 0);
  EXPECT_FALSE(b.full(t0));
  auto later = t0 + 10s;  // 1,000 tokens' worth of time, but at most 5 are kept
  EXPECT_TRUE(b.full(later));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.take(later).count(), 0);
  EXPECT_GT(b.take(later).count(), 0);
}

TEST(TokenBucket, ABatchTakesOneTokenPerMessageAndWaitsForWhatIsMissing) {
  auto t0 = Clock::time_point() + 1h;
  TokenBucket b(10, 20, t0);
  EXPECT_EQ(b.take(t0, 15).count(), 0);
  auto wait = b.take(t0, 10);  // 5 left, 5 missing: half a second
  EXPECT_GE(wait, 490ms);
  EXPECT_LE(wait, 510ms);
  // More than a burst at once waits for a whole burst, rather than forever.
  EXPECT_EQ(b.take(t0 + 2s, 1000).count(), 0);
}

TEST(TokenBucket, ARateOfZeroIsNoLimit) {
  TokenBucket off;
  EXPECT_FALSE(off.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(off.take(Clock::now()).count(), 0);
}

// ---------------------------------------------------------------------------------------------
// ShedController: the zone and the admit ratios, one sample per tick

ShedController::Sample lag(std::chrono::milliseconds l, double memory = 0) {
  return {std::chrono::nanoseconds(l), memory};
}

TEST(ShedController, StaysGreenWhileTheLagIsLow) {
  ShedController c(50ms);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(c.update(lag(5ms)), Zone::kGreen);
  EXPECT_EQ(c.session_ratio(), 1);
  EXPECT_EQ(c.request_ratio(), 1);
}

TEST(ShedController, YellowIsAWarningThatShedsNothing) {
  ShedController c(50ms);
  EXPECT_EQ(c.update(lag(40ms)), Zone::kYellow);
  EXPECT_EQ(c.session_ratio(), 1);
  EXPECT_EQ(c.request_ratio(), 1);
  EXPECT_EQ(c.update(lag(1ms, 0.75)), Zone::kYellow) << "memory over 70%";
}

TEST(ShedController, ShedsNewSessionsFirstThenNewRequests) {
  ShedController c(50ms);
  EXPECT_EQ(c.update(lag(60ms)), Zone::kOrange);
  EXPECT_LT(c.session_ratio(), 1);
  EXPECT_EQ(c.request_ratio(), 1) << "requests only once no new session is admitted";
  int ticks = 1;
  while (c.session_ratio() > 0 && ticks < 20) {
    c.update(lag(60ms));
    ++ticks;
  }
  EXPECT_EQ(c.session_ratio(), 0);
  EXPECT_LE(ticks, 6) << "new sessions stop within a few ticks";
  EXPECT_EQ(c.update(lag(60ms)), Zone::kRed);
  EXPECT_EQ(c.request_ratio(), 0.75) << "just over the target: a gentle cut";
  for (int i = 0; i < 100; ++i) c.update(lag(500ms));
  EXPECT_EQ(c.request_ratio(), ShedController::kMinRequestRatio) << "never below the floor";
}

TEST(ShedController, FarOverTheTargetStopsSessionsAndCutsRequestsInTheSameTick) {
  // Ten times the capacity arriving at once: waiting five ticks for the sessions to be shed
  // first, then eight more of 0.75 cuts, would admit seconds of backlog.
  ShedController c(50ms);
  EXPECT_EQ(c.update(lag(200ms)), Zone::kOrange) << "one tick over: it may be a pause";
  EXPECT_EQ(c.request_ratio(), 1);
  EXPECT_EQ(c.update(lag(300ms)), Zone::kRed);
  EXPECT_EQ(c.session_ratio(), 0);
  EXPECT_EQ(c.request_ratio(), 0.5) << "cut by as much as it may in one tick";
  c.update(lag(5s));
  EXPECT_EQ(c.request_ratio(), 0.25) << "at most halved per tick";
  c.update(lag(6s));
  c.update(lag(7s));
  EXPECT_EQ(c.request_ratio(), 0.0625) << "a tenth of the capacity within five ticks";
}

TEST(ShedController, APauseShedsNoRequests) {
  // A process stopped for 300 ms (SIGSTOP, a stolen CPU) shows the pause's lag in a tick or
  // two (probes on other threads report the same wait in the next), then none.
  ShedController c(50ms);
  EXPECT_EQ(c.update(lag(300ms)), Zone::kOrange);
  EXPECT_EQ(c.update(lag(301ms)), Zone::kOrange);
  EXPECT_EQ(c.request_ratio(), 1);
  EXPECT_GT(c.session_ratio(), 0);
  int ticks = 0;
  while (c.update(lag(1ms)) != Zone::kGreen && ticks < 20) ++ticks;
  EXPECT_LE(ticks, 10) << "green again within a second";
  EXPECT_EQ(c.request_ratio(), 1);
}

TEST(ShedController, HoldsTheRatioWhileTheBacklogDrains) {
  ShedController c(50ms);
  c.update(lag(400ms));
  c.update(lag(450ms));
  auto cut = c.request_ratio();
  ASSERT_LT(cut, 1);
  // The lag falls tick after tick: what is admitted is under the capacity already.
  for (auto l : {300ms, 200ms, 120ms, 80ms}) {
    EXPECT_EQ(c.update(lag(l)), Zone::kRed);
    EXPECT_EQ(c.request_ratio(), cut) << l.count();
  }
  // Rising again: cut again.
  c.update(lag(150ms));
  EXPECT_LT(c.request_ratio(), cut);
}

TEST(ShedController, HoldsBetweenHalfTheTargetAndTheTarget) {
  ShedController c(50ms);
  for (int i = 0; i < 10; ++i) c.update(lag(200ms));
  auto sessions = c.session_ratio(), requests = c.request_ratio();
  for (int i = 0; i < 10; ++i) c.update(lag(40ms));
  EXPECT_EQ(c.session_ratio(), sessions);
  EXPECT_EQ(c.request_ratio(), requests);
}

TEST(ShedController, RecoversRequestsFirstThenSessionsAndIsGreenWithinSeconds) {
  ShedController c(50ms);
  for (int i = 0; i < 100; ++i) c.update(lag(500ms));
  ASSERT_EQ(c.zone(), Zone::kRed);
  int ticks = 0;
  bool sessions_stayed_shut_while_red = true;
  while (c.zone() != Zone::kGreen && ticks < 1000) {
    c.update(lag(1ms));
    ++ticks;
    if (c.request_ratio() < 1 && c.session_ratio() > 0) sessions_stayed_shut_while_red = false;
  }
  EXPECT_TRUE(sessions_stayed_shut_while_red);
  // At a 100 ms tick, the 10 s the node has to be green again after an overload are 100 ticks.
  EXPECT_LE(ticks, 50);
}

TEST(ShedController, ConvergesNearTheShareTheNodeCanServe) {
  // A node that can serve 1,000 requests a second offered 10,000: the lag of a tick grows with
  // what was admitted beyond the capacity. The ratio settles where the lag sits near its
  // target, around a tenth, and never stays far above it.
  ShedController c(50ms);
  double offered = 10000, capacity = 1000, backlog_s = 0;
  double sum = 0;
  int n = 0;
  for (int tick = 0; tick < 600; ++tick) {
    double admitted = offered * (c.session_ratio() > 0 ? 1 : c.request_ratio());
    backlog_s = std::max(0.0, backlog_s + (admitted - capacity) / capacity * 0.1);
    c.update(lag(std::chrono::milliseconds(static_cast<long>(backlog_s * 1000))));
    if (tick >= 300) {
      sum += c.request_ratio();
      ++n;
    }
  }
  double mean = sum / n;
  EXPECT_GT(mean, 0.06);
  EXPECT_LT(mean, 0.14);
}

TEST(ShedController, MemoryOverTheThresholdsShedsWhateverTheLag) {
  ShedController c(50ms);
  EXPECT_EQ(c.update(lag(1ms, 0.9)), Zone::kOrange);
  EXPECT_EQ(c.session_ratio(), 0);
  EXPECT_EQ(c.request_ratio(), 1);
  EXPECT_EQ(c.update(lag(1ms, 0.97)), Zone::kRed);
  EXPECT_LT(c.request_ratio(), 1);
  // Memory back under 85%: requests come back, then sessions.
  for (int i = 0; i < 100 && c.zone() != Zone::kGreen; ++i) c.update(lag(1ms, 0.5));
  EXPECT_EQ(c.zone(), Zone::kGreen);
}

// ---------------------------------------------------------------------------------------------
// Clients

TEST(ClientKey, Ipv4IsOneClientIpv6IsItsSlash64) {
  auto a = client_key(ip::make_address("192.0.2.7"));
  EXPECT_EQ(a.to_string(), "192.0.2.7");
  EXPECT_EQ(a, client_key(ip::make_address("::ffff:192.0.2.7"))) << "v4-mapped is the same";
  EXPECT_NE(a, client_key(ip::make_address("192.0.2.8")));
  auto b = client_key(ip::make_address("2001:db8:1:2:aaaa::1"));
  EXPECT_EQ(b, client_key(ip::make_address("2001:db8:1:2:ffff:ffff:ffff:ffff")));
  EXPECT_NE(b, client_key(ip::make_address("2001:db8:1:3::1")));
  EXPECT_EQ(b.to_string(), "2001:db8:1:2::/64");
}

TEST(ClientTable, SameKeySameEntryAndFullTableSharesOneEntry) {
  mcp::Metrics metrics;
  ClientTable table(2, 0, 0);
  auto now = Clock::now();
  auto a = table.get(client_key(ip::make_address("10.0.0.1")), now, metrics);
  EXPECT_EQ(a, table.get(client_key(ip::make_address("10.0.0.1")), now, metrics));
  auto b = table.get(client_key(ip::make_address("10.0.0.2")), now, metrics);
  EXPECT_NE(a, b);
  auto c = table.get(client_key(ip::make_address("10.0.0.3")), now, metrics);
  auto d = table.get(client_key(ip::make_address("10.0.0.4")), now, metrics);
  EXPECT_EQ(c, d) << "beyond max_clients, clients share the overflow entry";
  EXPECT_EQ(c->key.to_string(), "others");
  EXPECT_EQ(metrics.clients_overflow_total.load(), 2u);
  EXPECT_EQ(table.size(), 2u);
}

TEST(ClientTable, SweepForgetsOnlyEntriesNobodyHoldsWithFullBuckets) {
  mcp::Metrics metrics;
  ClientTable table(100, 10, 0);
  auto t0 = Clock::now();
  auto held = table.get(client_key(ip::make_address("10.0.0.1")), t0, metrics);
  {
    auto busy = table.get(client_key(ip::make_address("10.0.0.2")), t0, metrics);
    std::lock_guard lock(busy->mutex);
    ASSERT_EQ(busy->requests.take(t0).count(), 0);
  }
  (void)table.get(client_key(ip::make_address("10.0.0.3")), t0, metrics);  // idle, full
  EXPECT_EQ(table.sweep(t0), 2u) << "10.0.0.3 goes; 10.0.0.1 is held, 10.0.0.2 owes a token";
  EXPECT_EQ(table.sweep(t0 + 1s), 1u) << "10.0.0.2's bucket is full again";
  held.reset();
  EXPECT_EQ(table.sweep(t0 + 1s), 0u);
}

// ---------------------------------------------------------------------------------------------
// Admission: caps, buckets, proxies

AdmissionConfig quiet(AdmissionConfig c = {}) {
  c.client_request_rate = 0;
  c.client_session_rate = 0;
  return c;
}

TEST(Admission, PerClientCapsDefaultToAShareOfTheNodeCaps) {
  mcp::Metrics m;
  auto a = std::make_shared<Admission>(quiet(), 1000, 500, m);
  EXPECT_EQ(a->max_connections_per_client(), 250u);
  EXPECT_EQ(a->max_sessions_per_client(), 50u);
  AdmissionConfig c = quiet();
  c.max_connections_per_client = 7;
  c.max_sessions_per_client = 3;
  auto b = std::make_shared<Admission>(c, 1000, 500, m);
  EXPECT_EQ(b->max_connections_per_client(), 7u);
  EXPECT_EQ(b->max_sessions_per_client(), 3u);
}

TEST(Admission, ConnectionHoldsCountUntilReleased) {
  mcp::Metrics m;
  AdmissionConfig c = quiet();
  c.max_connections_per_client = 2;
  auto a = std::make_shared<Admission>(c, 100, 100, m);
  auto client = a->client(ip::make_address("10.1.1.1"));
  auto one = a->open_connection(client), two = a->open_connection(client);
  ASSERT_TRUE(one && two);
  EXPECT_FALSE(a->open_connection(client));
  EXPECT_EQ(m.client_connections_rejected_total.load(), 1u);
  EXPECT_TRUE(a->open_connection(a->client(ip::make_address("10.1.1.2")))) << "another client";
  one.reset();
  EXPECT_TRUE(a->open_connection(client));
}

TEST(Admission, SessionCapAndSessionRateAre429WithRetryAfter) {
  mcp::Metrics m;
  AdmissionConfig c = quiet();
  c.max_sessions_per_client = 2;
  auto a = std::make_shared<Admission>(c, 100, 100, m);
  auto client = a->client(ip::make_address("10.1.1.1"));
  Refusal r;
  auto s1 = a->admit_session(client, r), s2 = a->admit_session(client, r);
  ASSERT_TRUE(s1 && s2);
  EXPECT_FALSE(a->admit_session(client, r));
  EXPECT_EQ(r.status, 429u);
  EXPECT_GE(r.retry_after, 1s);
  EXPECT_NE(r.message.find("max 2"), std::string::npos) << r.message;
  EXPECT_EQ(m.client_sessions_rejected_total.load(), 1u);
  s1.reset();
  EXPECT_TRUE(a->admit_session(client, r)) << "a session that ended frees its place";

  AdmissionConfig rated = quiet();
  rated.client_session_rate = 5;  // burst max(10, 2 s worth) = 10
  auto b = std::make_shared<Admission>(rated, 100, 1000, m);
  auto other = b->client(ip::make_address("10.1.1.9"));
  std::vector<std::shared_ptr<void>> holds;
  for (int i = 0; i < 10; ++i) {
    holds.push_back(b->admit_session(other, r));
    ASSERT_TRUE(holds.back()) << i;
  }
  EXPECT_FALSE(b->admit_session(other, r));
  EXPECT_EQ(r.status, 429u);
  EXPECT_EQ(m.session_rate_limited_total.load(), 1u);
  EXPECT_EQ(other->sessions.load(), 10u) << "a refused session is not counted";
}

TEST(Admission, RequestBucketsPerClientAndNodeWide) {
  mcp::Metrics m;
  AdmissionConfig c = quiet();
  c.client_request_rate = 5;  // burst 10
  c.node_request_rate = 8;    // burst 16
  auto a = std::make_shared<Admission>(c, 100, 100, m);
  auto x = a->client(ip::make_address("10.2.0.1")), y = a->client(ip::make_address("10.2.0.2"));
  for (int i = 0; i < 10; ++i) ASSERT_FALSE(a->limit_requests(x, 1)) << i;
  auto refused = a->limit_requests(x, 1);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429u);
  EXPECT_GE(refused->retry_after, 1s);
  // y has its own bucket, but the node's (16) has 6 left.
  int admitted = 0;
  while (!a->limit_requests(y, 1) && admitted < 100) ++admitted;
  EXPECT_EQ(admitted, 6);
  EXPECT_EQ(m.rate_limited_total.load(), 2u);
}

TEST(Admission, RefusesNewWorkWhileTheWorkerQueueIsOverTheLagTarget) {
  // The pool's only thread is busy: the probe job queued behind it waits, and once it has
  // waited past the lag target, new requests and sessions are refused at once, long before the
  // first tick (2 s) could move a ratio. When the job ends, the probe runs and work is taken.
  mcp::Metrics m;
  AdmissionConfig c = quiet();
  c.shed_lag = 20ms;
  c.tick = 2s;  // the lag probes run every 500 ms
  auto a = std::make_shared<Admission>(c, 100, 100, m);
  asio::io_context io;
  asio::thread_pool workers(1);
  std::promise<void> release;
  asio::post(workers, [busy = release.get_future()] { busy.wait(); });
  a->start({&io}, workers.get_executor());
  std::thread runner([&io] { io.run_for(10s); });
  auto until = [](auto pred) {
    for (auto end = Clock::now() + 5s; Clock::now() < end; std::this_thread::sleep_for(5ms)) {
      if (pred()) return true;
    }
    return false;
  };
  EXPECT_TRUE(until([&] { return a->shed_request().has_value(); }));
  auto refused = a->shed_request();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503u);
  Refusal refusal;
  EXPECT_FALSE(a->admit_session(a->client(ip::make_address("10.0.0.1")), refusal));
  EXPECT_EQ(refusal.status, 503u);
  release.set_value();
  EXPECT_TRUE(until([&] { return !a->shed_request().has_value(); }));
  a->stop();
  io.stop();
  runner.join();
  workers.join();
}

TEST(WorkerQueueBound, EveryWorkerBusyPlusWhatTheyServeInTheWait) {
  // 4 threads, 2 ms a job: 2,000 jobs/s, so 25 ms of wait is 50 queued behind the 4 running.
  WorkerQueue q{0, 4, 2ms};
  EXPECT_DOUBLE_EQ(worker_queue_bound(q, 25ms), 54.0);
  EXPECT_DOUBLE_EQ(worker_queue_bound(q, 25ms, 0.5), 29.0);  // sessions: half the queue
  // Jobs longer than the wait: nothing may queue, only the workers' own jobs run.
  EXPECT_NEAR(worker_queue_bound({0, 4, 1s}, 25ms), 4.1, 1e-9);
  // No job ran yet, or no pool: no bound.
  EXPECT_EQ(worker_queue_bound({0, 4, 0ns}, 25ms), 0.0);
  EXPECT_EQ(worker_queue_bound({0, 0, 2ms}, 25ms), 0.0);
}

TEST(Admission, RefusesNewWorkPastTheWorkerQueueBoundAndTurnsRed) {
  // A pool of 2 threads at 10 ms a job with a 20 ms lag target (10 ms of wait: 2 jobs
  // queued): 4 jobs in flight is the bound for requests, 3 for sessions. Below it everything
  // is taken; at it new requests get 503 (counted), sessions already at 3; the ticks while it
  // refuses are red; with the queue back under the bound work is taken and the zone recovers.
  mcp::Metrics m;
  AdmissionConfig c = quiet();
  c.shed_lag = 20ms;
  c.tick = 20ms;
  auto a = std::make_shared<Admission>(c, 100, 100, m);
  asio::io_context io;
  std::atomic<std::size_t> jobs{0};
  a->start({&io}, {}, [&jobs] { return WorkerQueue{jobs.load(), 2, 10ms}; });
  auto client = a->client(ip::make_address("10.0.0.1"));
  Refusal refusal;
  jobs = 2;
  EXPECT_FALSE(a->shed_request());
  EXPECT_TRUE(a->admit_session(client, refusal));
  jobs = 3;
  EXPECT_FALSE(a->shed_request());
  EXPECT_FALSE(a->admit_session(client, refusal));
  EXPECT_EQ(refusal.status, 503u);
  jobs = 4;
  auto refused = a->shed_request();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503u);
  EXPECT_EQ(refused->retry_after, 1s);
  EXPECT_EQ(m.shed_requests_total.load(), 1u);
  EXPECT_EQ(m.shed_sessions_total.load(), 1u);
  auto run_until = [&io](auto pred) {
    for (auto end = Clock::now() + 5s; Clock::now() < end;) {
      if (pred()) return true;
      io.run_one_for(10ms);
    }
    return false;
  };
  EXPECT_TRUE(run_until([&] { return a->shed_request() && a->zone() == Zone::kRed; }));
  std::string metrics;
  a->render_metrics(metrics);
  EXPECT_NE(metrics.find("mcpmesh_worker_queue_jobs 4"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("mcpmesh_worker_queue_bound 4"), std::string::npos) << metrics;
  jobs = 1;
  EXPECT_FALSE(a->shed_request());
  EXPECT_TRUE(run_until([&] { return a->zone() < Zone::kOrange; }));
  a->stop();
}

TEST(Admission, NoWorkerQueueBoundWhenSheddingIsOff) {
  mcp::Metrics m;
  AdmissionConfig c = quiet();
  c.shed = false;
  auto a = std::make_shared<Admission>(c, 100, 100, m);
  asio::io_context io;
  a->start({&io}, {}, [] { return WorkerQueue{1000, 2, 10ms}; });
  EXPECT_FALSE(a->shed_request());
  Refusal refusal;
  EXPECT_TRUE(a->admit_session(a->client(ip::make_address("10.0.0.1")), refusal));
  a->stop();
}

TEST(Admission, TrustedProxiesNameTheirClientsInXForwardedFor) {
  mcp::Metrics m;
  AdmissionConfig c = quiet();
  c.trusted_proxies = {"127.0.0.1", "10.9.0.0/16", "fd00::/8"};
  auto a = std::make_shared<Admission>(c, 100, 100, m);
  EXPECT_TRUE(a->trusted_proxy(ip::make_address("127.0.0.1")));
  EXPECT_FALSE(a->trusted_proxy(ip::make_address("127.0.0.2")));
  EXPECT_TRUE(a->trusted_proxy(ip::make_address("10.9.200.1")));
  EXPECT_FALSE(a->trusted_proxy(ip::make_address("10.10.0.1")));
  EXPECT_TRUE(a->trusted_proxy(ip::make_address("fd12::1")));
  EXPECT_FALSE(a->trusted_proxy(ip::make_address("fe80::1")));

  auto proxy = a->client(ip::make_address("127.0.0.1"));
  // The last entry is the one the proxy appended; earlier ones are the client's own say.
  auto named = a->forwarded_client("6.6.6.6, 203.0.113.5", proxy);
  EXPECT_EQ(named->key.to_string(), "203.0.113.5");
  EXPECT_EQ(a->forwarded_client(" 203.0.113.5 ", proxy), named);
  EXPECT_EQ(a->forwarded_client("", proxy), proxy);
  EXPECT_EQ(a->forwarded_client("not-an-address", proxy), proxy);
  EXPECT_EQ(a->forwarded_client("2001:db8::1", proxy)->key.to_string(), "2001:db8::/64");

  AdmissionConfig bad = quiet();
  bad.trusted_proxies = {"10.0.0.0/33"};
  EXPECT_THROW(Admission(bad, 1, 1, m), std::invalid_argument);
  bad.trusted_proxies = {"proxy.example"};
  EXPECT_THROW(Admission(bad, 1, 1, m), std::invalid_argument);
}

}  // namespace
}  // namespace mcpmesh::transport

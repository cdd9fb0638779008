#include "bench/mcpmesh_bench/load_run.hpp"

#include <sys/resource.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <cmath>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "bench/mcpmesh_bench/client_connection.hpp"
#include "bench/mcpmesh_bench/sse_parser.hpp"

namespace mcpmesh::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;
using std::chrono::nanoseconds;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
// After a failed connect, a connection waits this long before it tries again, so a refused
// port does not turn the loop into a spin.
constexpr auto kReconnectPause = std::chrono::milliseconds(100);
// What a phase may take beyond its own deadlines before the run gives up on it.
constexpr auto kPhaseGrace = std::chrono::seconds(2);

struct SessionSlot {
  std::string id;       ///< empty for a server without sessions
  std::string version;  ///< negotiated protocolVersion
  bool open = false;
};

/// What every thread reads. The main thread writes it only between phases (a phase's units
/// are posted after the write, and the main thread reads after the units' last arrival).
struct RunPlan {
  explicit RunPlan(const BenchOptions& options) : o(options), requests(options) {}
  const BenchOptions& o;
  McpRequests requests;
  asio::ip::tcp::endpoint server;
  std::vector<SessionSlot> sessions;
  Clock::time_point setup_deadline, t0, warmup_end, end, stream_deadline;
  std::atomic<bool> stop{false};   ///< first SIGINT/SIGTERM: no more new work
  std::atomic<bool> abort{false};  ///< second: cut the closing short too
  // Read by the main thread while the streams run (their other counters are the threads').
  std::atomic<std::size_t> streams_opened{0};
  std::mutex stream_error_mutex;
  std::string first_stream_error;

  void stream_failed(std::string what) {
    std::lock_guard lock(stream_error_mutex);
    if (first_stream_error.empty()) first_stream_error = std::move(what);
  }
};

std::uint64_t elapsed_ns(Clock::time_point from, Clock::time_point to) {
  return to > from ? static_cast<std::uint64_t>(nanoseconds(to - from).count()) : 0;
}

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return to > from ? std::chrono::duration<double>(to - from).count() : 0.0;
}

bool is_ok(const Verdict& v) { return v.outcome == Outcome::kOk; }

/// One request connection: opens the sessions it owns, sends its share of the load over
/// them (or over the one it shares when there are fewer sessions than connections) and
/// closes them. Lives on one thread.
class RequestWorker {
 public:
  RequestWorker(RunPlan& plan, RunResult& stats, asio::io_context& ctx, std::size_t index,
                std::size_t connections, std::optional<asio::ip::address> source,
                std::vector<std::size_t> owned, std::vector<std::size_t> used, std::uint64_t quota)
      : plan_(plan),
        stats_(stats),
        conn_(ctx.get_executor(), plan.server, source),
        timer_(ctx),
        index_(index),
        connections_(connections),
        owned_(std::move(owned)),
        used_(std::move(used)),
        quota_(quota) {}

  asio::awaitable<void> setup() {
    for (std::size_t idx : owned_) {
      for (;;) {
        if (Clock::now() >= plan_.setup_deadline || plan_.stop.load()) {
          ++stats_.sessions_failed;
          stats_.sample_error(plan_.stop.load() ? "session setup: interrupted"
                                                : "session setup: --setup-timeout passed");
          break;
        }
        auto start = Clock::now();
        Verdict v = co_await open_session(plan_.sessions[idx], false);
        if (is_ok(v)) {
          ++stats_.sessions_created;
          stats_.session_open.record(elapsed_ns(start, Clock::now()));
          break;
        }
        // --honour-retry-after: a server that sheds new sessions (429/503 + Retry-After) is
        // asked again after the wait it named, as a client would, within --setup-timeout.
        if (plan_.o.honour_retry_after && retry_after_ && v.outcome != Outcome::kCancelled) {
          auto resume = Clock::now() + std::chrono::seconds(*retry_after_);
          if (resume < plan_.setup_deadline) {
            ++stats_.sessions_retried;
            co_await pause_until(resume);
            continue;
          }
        }
        ++stats_.sessions_failed;
        if (v.outcome != Outcome::kCancelled) stats_.sample_error("session setup: " + v.detail);
        break;
      }
    }
  }

  asio::awaitable<void> load() {
    if (used_.empty()) co_return;
    if (plan_.o.mode == Mode::kOpenLoop) {
      co_await load_open();
    } else {
      co_await load_closed();
    }
  }

  asio::awaitable<void> teardown() {
    if (plan_.o.keep_sessions) co_return;
    for (std::size_t idx : owned_) {
      SessionSlot& s = plan_.sessions[idx];
      if (!s.open) continue;
      if (plan_.abort.load()) {
        ++stats_.sessions_delete_failed;
        continue;
      }
      Verdict v = co_await close_session(s, false);
      if (is_ok(v)) {
        ++stats_.sessions_deleted;
        s.open = false;
      } else {
        ++stats_.sessions_delete_failed;
        if (v.outcome != Outcome::kCancelled) stats_.sample_error("session close: " + v.detail);
      }
    }
  }

  /// On its thread: ends a wait and the exchange in flight (it completes cancelled).
  void cancel() {
    timer_.cancel();
    conn_.close();
  }

  void count_connections(RunResult& into) const {
    into.connects += conn_.connects();
    into.idle_reconnects += conn_.idle_reconnects();
  }

 private:
  /// Sends out_ and reads answer_. kOk only says an answer came; the caller judges it.
  asio::awaitable<Verdict> transfer(bool measured) {
    Verdict v;
    retry_after_.reset();
    error_code ec = co_await conn_.exchange(out_, Clock::now() + plan_.o.timeout, answer_);
    if (ec) {
      if (plan_.stop.load() || plan_.abort.load()) {
        // Stopped: the connection was closed under this exchange, at whatever step it was.
        v.outcome = Outcome::kCancelled;
      } else if (ec == beast::error::timeout) {
        v.outcome = Outcome::kTimeout;
        v.detail = "no answer within --timeout (" + std::string(conn_.failed_step()) + ")";
      } else {
        v.outcome = Outcome::kSocketError;
        v.detail = std::string(conn_.failed_step()) + ": " + ec.message();
      }
      co_return v;
    }
    if (measured) stats_.count_status(answer_.status);
    if ((answer_.status == 429 || answer_.status == 503) && answer_.retry_after_s) {
      retry_after_ = answer_.retry_after_s;
      if (measured) ++stats_.retry_after_seen;
    }
    co_return v;
  }

  asio::awaitable<Verdict> request(bool measured, std::int64_t id, bool tool_call) {
    Verdict v = co_await transfer(measured);
    if (is_ok(v)) v = judge_response(answer_, id, tool_call);
    co_return v;
  }

  asio::awaitable<Verdict> open_session(SessionSlot& s, bool measured) {
    std::int64_t id = next_id_++;
    out_.clear();
    plan_.requests.initialize(out_, id);
    Verdict v = co_await transfer(measured);
    if (!is_ok(v)) co_return v;
    v = judge_response(answer_, id, false, true);
    if (!is_ok(v)) co_return v;
    s.id = answer_.session_id;
    s.version = v.protocol_version;
    out_.clear();
    plan_.requests.initialized(out_, s.id, s.version);
    Verdict n = co_await transfer(measured);
    if (is_ok(n)) n = judge_accepted(answer_);
    if (!is_ok(n)) {
      n.detail = "notifications/initialized: " + n.detail;
      co_return n;
    }
    s.open = true;
    co_return v;
  }

  asio::awaitable<Verdict> close_session(const SessionSlot& s, bool measured) {
    if (s.id.empty()) co_return Verdict{};  // no session to end
    out_.clear();
    plan_.requests.remove(out_, s.id, s.version);
    Verdict v = co_await transfer(measured);
    if (is_ok(v)) v = judge_deleted(answer_);
    co_return v;
  }

  asio::awaitable<Verdict> run_op(Op op, const SessionSlot& s, bool measured) {
    switch (op) {
      case Op::kToolsCall: {
        std::int64_t id = next_id_++;
        out_.clear();
        plan_.requests.tools_call(out_, s.id, s.version, id);
        co_return co_await request(measured, id, true);
      }
      case Op::kPing: {
        std::int64_t id = next_id_++;
        out_.clear();
        plan_.requests.ping(out_, s.id, s.version, id);
        co_return co_await request(measured, id, false);
      }
      case Op::kNotify: {
        out_.clear();
        plan_.requests.notify(out_, s.id, s.version);
        Verdict v = co_await transfer(measured);
        if (is_ok(v)) v = judge_accepted(answer_);
        co_return v;
      }
      case Op::kInitialize: {
        SessionSlot throwaway;
        Verdict v = co_await open_session(throwaway, measured);
        if (!throwaway.id.empty() && v.outcome != Outcome::kCancelled) {
          Verdict closed = co_await close_session(throwaway, measured);
          if (is_ok(v) && !is_ok(closed)) {
            closed.detail = "DELETE: " + closed.detail;
            v = std::move(closed);
          }
        }
        co_return v;
      }
    }
    co_return Verdict{};
  }

  const SessionSlot& next_session() {
    std::size_t idx = used_[next_used_];
    next_used_ = (next_used_ + 1) % used_.size();
    return plan_.sessions[idx];
  }

  void account(Op op, const Verdict& v, bool measured, Clock::time_point start) {
    if (v.outcome == Outcome::kCancelled) return;
    ++stats_.load_ops;
    if (!measured) {
      ++stats_.warmup_ops;
      return;
    }
    stats_.ops[static_cast<std::size_t>(op)].record(v.outcome, elapsed_ns(start, Clock::now()));
    if (!is_ok(v)) stats_.sample_error(std::string(op_name(op)) + ": " + v.detail);
  }

  /// Waits until `t` (or a cancel).
  asio::awaitable<void> pause_until(Clock::time_point t) {
    timer_.expires_at(t);
    co_await timer_.async_wait(kAwait);
  }

  /// Between two operations: honour a Retry-After when asked to, and do not hammer a port
  /// that refused the connection.
  asio::awaitable<void> after_op(const Verdict& v) {
    auto now = Clock::now();
    if (plan_.o.honour_retry_after && retry_after_) {
      auto resume = std::min(now + std::chrono::seconds(*retry_after_), plan_.end);
      ++stats_.retry_after_honoured;
      stats_.retry_after_waited_s += seconds_between(now, resume);
      co_await pause_until(resume);
    } else if (v.outcome == Outcome::kSocketError && !conn_.is_open() &&
               (conn_.failed_step() == "connect" || conn_.failed_step() == "bind" ||
                conn_.failed_step() == "socket")) {
      co_await pause_until(std::min(now + kReconnectPause, plan_.end));
    }
  }

  asio::awaitable<void> load_closed() {
    MixDealer dealer(plan_.o.mix, index_);
    std::uint64_t measured_done = 0;
    while (!plan_.stop.load(std::memory_order_relaxed)) {
      auto start = Clock::now();
      if (start >= plan_.end || (quota_ > 0 && measured_done >= quota_)) break;
      bool measured = start >= plan_.warmup_end;
      Op op = dealer.next();
      Verdict v = co_await run_op(op, next_session(), measured);
      account(op, v, measured, start);
      if (measured && v.outcome != Outcome::kCancelled) ++measured_done;
      co_await after_op(v);
    }
  }

  /// The time connection `index_` is due to send its k-th operation: the process's schedule
  /// sends one every 1/rate seconds, dealt to the connections in turn.
  Clock::time_point slot_time(std::uint64_t k) const {
    long double offset_s = (static_cast<long double>(index_) +
                            static_cast<long double>(k) * static_cast<long double>(connections_)) /
                           static_cast<long double>(plan_.o.rate);
    return plan_.t0 + nanoseconds(static_cast<std::int64_t>(std::llround(offset_s * 1e9L)));
  }

  asio::awaitable<void> load_open() {
    MixDealer dealer(plan_.o.mix, index_);
    std::uint64_t k = 0;
    for (Clock::time_point due = slot_time(k); due < plan_.end; due = slot_time(k)) {
      if (plan_.stop.load(std::memory_order_relaxed)) co_return;
      auto now = Clock::now();
      if (now >= plan_.end) break;  // this and the later sends of the window never went
      if (now < due) {
        co_await pause_until(due);
        if (plan_.stop.load(std::memory_order_relaxed)) co_return;
      }
      ++k;
      // Latency counts from when the operation was due, not from when the connection got
      // round to it: a server that stalls the schedule pays for every send it delayed.
      bool measured = due >= plan_.warmup_end;
      if (measured) ++stats_.intended;
      Op op = dealer.next();
      Verdict v = co_await run_op(op, next_session(), measured);
      account(op, v, measured, due);
      co_await after_op(v);
    }
    for (Clock::time_point due = slot_time(k); due < plan_.end; due = slot_time(++k)) {
      if (due >= plan_.warmup_end) {
        ++stats_.intended;
        ++stats_.unsent;
      }
    }
  }

  RunPlan& plan_;
  RunResult& stats_;
  ClientConnection conn_;
  asio::steady_timer timer_;
  std::size_t index_;
  std::size_t connections_;
  std::vector<std::size_t> owned_;
  std::vector<std::size_t> used_;
  std::size_t next_used_ = 0;
  std::uint64_t quota_;
  std::int64_t next_id_ = 1;
  std::string out_;
  HttpAnswer answer_;
  std::optional<std::uint32_t> retry_after_;
};

/// One held GET SSE stream on one session, on a connection of its own.
class StreamHolder {
 public:
  StreamHolder(RunPlan& plan, RunResult& stats, asio::io_context& ctx, std::size_t session,
               std::optional<asio::ip::address> source)
      : plan_(plan),
        stats_(stats),
        conn_(ctx.get_executor(), plan.server, source),
        session_(session) {}

  /// Opens the stream (arrives on `opened` once its head came, or it failed), then counts what
  /// it carries until close() or its end.
  asio::awaitable<void> run(Phase& opened) {
    const SessionSlot& s = plan_.sessions[session_];
    out_.clear();
    plan_.requests.open_stream(out_, s.id, s.version);
    auto deadline = std::min(Clock::now() + plan_.o.timeout, plan_.setup_deadline);
    error_code ec = co_await conn_.open_stream(out_, deadline, answer_);
    if (ec || answer_.status != 200 || !answer_.event_stream) {
      ++stats_.sse_failed;
      std::string what =
          ec ? "sse stream: " + std::string(conn_.failed_step()) + ": " + ec.message()
             : "sse stream: HTTP " + std::to_string(answer_.status) + " '" + answer_.content_type +
                   "'";
      if (!closing_) {
        stats_.sample_error(what);
        plan_.stream_failed(std::move(what));
      }
      conn_.close();
      opened.arrive();
      co_return;
    }
    ++stats_.sse_opened;
    ++plan_.streams_opened;
    opened.arrive();
    SseParser parser;
    std::vector<SseEvent> events;
    std::string why = "the server ended it";
    while (!closing_) {
      std::size_t got = 0;
      ec = co_await conn_.read_body(buffer_.data(), buffer_.size(), plan_.stream_deadline, got);
      if (ec) {
        why = std::string(conn_.failed_step()) + ": " + ec.message();
        break;
      }
      if (got == 0) break;
      stats_.sse_bytes += got;
      events.clear();
      std::uint64_t comments = parser.comments();
      if (!parser.feed(std::string_view(buffer_.data(), got), events)) {
        why = "an event past the parser's bounds";
        break;
      }
      stats_.sse_keepalives += parser.comments() - comments;
      stats_.sse_events += events.size();
      for (const auto& ev : events) {
        if (!ev.data.empty()) ++stats_.sse_messages;
      }
    }
    if (!closing_) {
      ++stats_.sse_ended_early;
      stats_.sample_error("sse stream ended early: " + why);
    }
    conn_.close();
  }

  void close() {
    closing_ = true;
    conn_.close();
  }

  void count_connections(RunResult& into) const { into.connects += conn_.connects(); }

 private:
  RunPlan& plan_;
  RunResult& stats_;
  ClientConnection conn_;
  std::size_t session_;
  std::string out_;
  HttpAnswer answer_;
  // Per stream (a read in flight fills it): small, since a memory benchmark may hold very many
  // streams; a longer event simply spans several reads.
  std::array<char, 4096> buffer_{};
  bool closing_ = false;
};

/// One I/O thread and what lives on it. Members in this order: the workers (their sockets
/// and timers) go before the io_context they belong to.
struct LoadThread {
  asio::io_context ctx{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  RunResult stats;
  std::vector<std::unique_ptr<RequestWorker>> workers;
  std::vector<std::unique_ptr<StreamHolder>> streams;
  std::thread thread;
};

void note_exception(RunResult& stats, const std::exception_ptr& e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    stats.sample_error(std::string("internal error: ") + ex.what());
  } catch (...) {
    stats.sample_error("internal error");
  }
}

/// Resolves the endpoint; with source addresses, to an address of their family.
std::optional<asio::ip::tcp::endpoint> resolve(const BenchOptions& o, std::string& error) {
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  error_code ec;
  auto results = resolver.resolve(o.endpoint.host, std::to_string(o.endpoint.port), ec);
  if (ec || results.empty()) {
    error = "cannot resolve " + o.endpoint.host + ": " + (ec ? ec.message() : "no address");
    return std::nullopt;
  }
  for (const auto& entry : results) {
    auto ep = entry.endpoint();
    if (o.source_addresses.empty() || o.source_addresses.front().is_v4() == ep.address().is_v4()) {
      return ep;
    }
  }
  error = "--source-addresses are " +
          std::string(o.source_addresses.front().is_v4() ? "IPv4" : "IPv6") + " but " +
          o.endpoint.host + " has no address of that family";
  return std::nullopt;
}

class Runner {
 public:
  Runner(const BenchOptions& o, const ProcessShare& share, ControlChannel& control)
      : o_(o), share_(share), control_(control), plan_(o), phase_(control), streams_(control) {}

  RunResult run(const ReadyHook& ready) {
    result_.sessions_requested = o_.sessions;
    result_.sse_requested = o_.sse_streams;
    std::string error;
    auto server = resolve(o_, error);
    if (!server) {
      result_.fatal = error;
      return finish();
    }
    plan_.server = *server;
    build();
    start_threads();

    // Sessions.
    auto setup_start = Clock::now();
    plan_.setup_deadline = setup_start + o_.setup_timeout;
    run_phase(
        [](LoadThread& t, Phase& p, const auto& spawn) {
          for (auto& w : t.workers) spawn(t, w->setup(), p);
        },
        plan_.setup_deadline + o_.timeout + kPhaseGrace);
    RunResult opened = counts();
    if (opened.sessions_created < o_.sessions) {
      std::string first = opened.error_samples.empty() ? "" : ": " + opened.error_samples.front();
      result_.fatal = plan_.stop.load() ? "interrupted while opening the sessions"
                      : opened.sessions_created == 0
                          ? "no session could be opened at " + o_.url + first
                          : "only " + std::to_string(opened.sessions_created) + " of " +
                                std::to_string(o_.sessions) + " sessions opened" + first;
    }

    // Held streams.
    if (result_.fatal.empty() && o_.sse_streams > 0) {
      plan_.stream_deadline =
          Clock::now() + o_.setup_timeout + o_.warmup + o_.duration + o_.timeout + o_.setup_timeout;
      streams_.start(o_.sse_streams);
      run_phase(
          [this](LoadThread& t, Phase& p, const auto& spawn) {
            for (auto& s : t.streams) spawn(t, s->run(p), streams_);
          },
          plan_.setup_deadline + o_.timeout + kPhaseGrace, o_.sse_streams);
      // The streams run on: read only what the main thread may read while they do.
      opened.sse_opened = plan_.streams_opened.load();
      if (opened.sse_opened < o_.sse_streams && result_.fatal.empty()) {
        std::string first;
        {
          std::lock_guard lock(plan_.stream_error_mutex);
          if (!plan_.first_stream_error.empty()) first = ": " + plan_.first_stream_error;
        }
        result_.fatal = plan_.stop.load()
                            ? "interrupted while opening the streams"
                            : "only " + std::to_string(opened.sse_opened) + " of " +
                                  std::to_string(o_.sse_streams) + " SSE streams opened" + first;
      }
    }
    result_.setup_s = seconds_between(setup_start, Clock::now());

    // Load or hold.
    if (result_.fatal.empty() && !plan_.stop.load() && (!ready || ready(control_, opened))) {
      CpuTimes before = process_cpu_times();
      if (o_.mode == Mode::kHold) {
        hold();
      } else {
        load();
      }
      CpuTimes after = process_cpu_times();
      result_.load_cpu_user_s = after.user_s - before.user_s;
      result_.load_cpu_system_s = after.system_s - before.system_s;
    }

    // Close the streams, then the sessions.
    if (o_.sse_streams > 0) {
      post_all([](LoadThread& t) {
        for (auto& s : t.streams) s->close();
      });
      wait_for(streams_, Clock::now() + o_.timeout + kPhaseGrace);
    }
    if (!o_.keep_sessions) {
      run_phase(
          [](LoadThread& t, Phase& p, const auto& spawn) {
            for (auto& w : t.workers) spawn(t, w->teardown(), p);
          },
          Clock::now() + o_.setup_timeout + o_.timeout + kPhaseGrace);
    }
    stop_threads();
    return finish();
  }

 private:
  /// Deals the sessions, connections and streams to the threads.
  void build() {
    const std::size_t n = o_.sessions, m = o_.connections;
    plan_.sessions.resize(n);
    threads_.reserve(o_.threads);
    for (std::size_t i = 0; i < o_.threads; ++i) threads_.push_back(std::make_unique<LoadThread>());
    auto source = [&](std::size_t global) -> std::optional<asio::ip::address> {
      if (o_.source_addresses.empty()) return std::nullopt;
      return o_.source_addresses[global % o_.source_addresses.size()];
    };
    for (std::size_t c = 0; c < m; ++c) {
      std::vector<std::size_t> owned, used;
      if (n >= m) {
        for (std::size_t s = c; s < n; s += m) owned.push_back(s);
        used = owned;
      } else {
        if (c < n) owned.push_back(c);
        used.push_back(c % n);
      }
      LoadThread& t = *threads_[c % threads_.size()];
      t.workers.push_back(std::make_unique<RequestWorker>(
          plan_, t.stats, t.ctx, c, m, source(share_.connection_offset + c), std::move(owned),
          std::move(used), o_.max_requests > 0 ? even_share(o_.max_requests, m, c) : 0));
    }
    for (std::size_t k = 0; k < o_.sse_streams; ++k) {
      LoadThread& t = *threads_[k % threads_.size()];
      t.streams.push_back(std::make_unique<StreamHolder>(
          plan_, t.stats, t.ctx, k * n / o_.sse_streams, source(share_.stream_offset + k)));
    }
  }

  void start_threads() {
    for (auto& t : threads_) {
      t->guard.emplace(t->ctx.get_executor());
      t->thread = std::thread([ctx = &t->ctx, busy = o_.busy_poll] {
        if (!busy) {
          ctx->run();
          return;
        }
        while (!ctx->stopped()) ctx->poll();
      });
    }
  }

  void stop_threads() {
    for (auto& t : threads_) t->guard.reset();
    for (auto& t : threads_) t->ctx.stop();
    for (auto& t : threads_) {
      if (t->thread.joinable()) t->thread.join();
    }
    for (auto& t : threads_) {
      for (auto& w : t->workers) w->count_connections(t->stats);
      for (auto& s : t->streams) s->count_connections(t->stats);
    }
  }

  template <typename F>
  void post_all(F f) {
    for (auto& t : threads_) asio::post(t->ctx, [f, tp = t.get()] { f(*tp); });
  }

  /// Starts `units` units (all the workers by default) through `start` on every thread and
  /// waits for them (see wait_for).
  template <typename Start>
  void run_phase(Start start, Clock::time_point deadline, std::size_t units = 0) {
    if (units == 0) units = o_.connections;
    phase_.start(units);
    post_all([start, this](LoadThread& t) {
      auto spawn = [](LoadThread& th, asio::awaitable<void> body, Phase& arrive_on) {
        asio::co_spawn(th.ctx, std::move(body), [&th, &arrive_on](std::exception_ptr e) {
          note_exception(th.stats, e);
          arrive_on.arrive();
        });
      };
      start(t, phase_, spawn);
    });
    wait_for(phase_, deadline);
  }

  /// Waits for `phase`. A first signal stops new work and cancels what waits or is in flight
  /// in the load; a second also cuts the closing short. Past the deadline everything is
  /// cancelled and the run is marked failed.
  void wait_for(Phase& phase, Clock::time_point deadline) {
    while (true) {
      auto ev = control_.wait(deadline, [&] { return phase.done(); });
      if (ev == ControlChannel::Event::kDone) return;
      if (ev == ControlChannel::Event::kSignal) {
        on_signal();
        continue;
      }
      if (result_.fatal.empty()) result_.fatal = "a phase of the run did not end by its deadline";
      plan_.stop = true;
      plan_.abort = true;
      cancel_all();
      // Everything was cancelled; the units arrive at once.
      if (control_.wait(Clock::now() + kPhaseGrace, [&] { return phase.done(); }) !=
          ControlChannel::Event::kDone) {
        return;
      }
    }
  }

  void on_signal() {
    if (!plan_.stop.exchange(true)) {
      post_all([](LoadThread& t) {
        for (auto& w : t.workers) w->cancel();
      });
      return;
    }
    plan_.abort = true;
    cancel_all();
  }

  void cancel_all() {
    post_all([](LoadThread& t) {
      for (auto& w : t.workers) w->cancel();
      for (auto& s : t.streams) s->close();
    });
  }

  void hold() {
    auto start = Clock::now();
    plan_.t0 = plan_.warmup_end = start;
    plan_.end = start + o_.duration;
    while (!plan_.stop.load()) {
      auto ev = control_.wait(plan_.end, {});
      if (ev == ControlChannel::Event::kSignal) {
        on_signal();
      } else {
        break;
      }
    }
    result_.measured_s = seconds_between(start, Clock::now());
  }

  void load() {
    plan_.t0 = Clock::now();
    plan_.warmup_end = plan_.t0 + o_.warmup;
    plan_.end = plan_.warmup_end + o_.duration;
    run_phase(
        [](LoadThread& t, Phase& p, const auto& spawn) {
          for (auto& w : t.workers) spawn(t, w->load(), p);
        },
        plan_.end + o_.timeout * 3 + kPhaseGrace);
    // Three exchanges bound an operation (initialize); the window ends at the end or when the
    // load stopped (signal, --requests).
    result_.measured_s = seconds_between(plan_.warmup_end, std::min(Clock::now(), plan_.end));
  }

  /// The counts so far (between phases: the threads are idle, the arrivals ordered them).
  RunResult counts() const {
    RunResult r;
    for (const auto& t : threads_) merge(r, t->stats);
    return r;
  }

  RunResult finish() {
    RunResult r = result_;
    for (const auto& t : threads_) merge(r, t->stats);
    r.sessions_requested = result_.sessions_requested;
    r.sse_requested = result_.sse_requested;
    CpuTimes cpu = process_cpu_times();
    r.cpu_user_s = cpu.user_s;
    r.cpu_system_s = cpu.system_s;
    return r;
  }

  const BenchOptions& o_;
  ProcessShare share_;
  ControlChannel& control_;
  RunPlan plan_;
  Phase phase_;
  Phase streams_;
  RunResult result_;
  std::vector<std::unique_ptr<LoadThread>> threads_;
};

}  // namespace

CpuTimes process_cpu_times() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return {secs(ru.ru_utime), secs(ru.ru_stime)};
}

RunResult run_load(const BenchOptions& options, const ProcessShare& share, ControlChannel& control,
                   const ReadyHook& ready) {
  Runner runner(options, share, control);
  return runner.run(ready);
}

}  // namespace mcpmesh::bench

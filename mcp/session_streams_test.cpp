#include "mcp/session_streams.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <string>
#include <vector>

namespace mcpmesh::mcp {
namespace {

using namespace std::chrono_literals;

Payload payload(std::string text) { return std::make_shared<const std::string>(std::move(text)); }

class SessionStreamsTest : public ::testing::Test {
 protected:
  std::shared_ptr<SessionStreams> make_streams(StreamLimits limits = {}) {
    return std::make_shared<SessionStreams>(limits, metrics_);
  }

  std::shared_ptr<EventQueue> make_queue(std::size_t bound = 64) {
    return std::make_shared<EventQueue>(io_.get_executor(), bound);
  }

  /// Pops what `queue` holds right now (never waits); the final status says how it ended:
  /// kTimeout = empty but open, kClosed, or kOverflow.
  std::pair<std::vector<StreamEvent>, EventQueue::Status> drain(EventQueue& queue) {
    std::vector<StreamEvent> events;
    auto status = EventQueue::Status::kItem;
    bool done = false;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          for (;;) {
            auto [s, ev] = co_await queue.pop(0ms);
            if (s != EventQueue::Status::kItem) {
              status = s;
              break;
            }
            events.push_back(std::move(*ev));
          }
          done = true;
        },
        asio::detached);
    io_.restart();
    io_.run_for(5s);
    EXPECT_TRUE(done);
    return {std::move(events), status};
  }

  static std::vector<std::string> ids(const std::vector<StreamEvent>& events) {
    std::vector<std::string> out;
    for (auto& e : events) {
      out.push_back(e.end ? "end" : e.disconnect ? "disconnect" : e.id);
    }
    return out;
  }

  asio::io_context io_;
  Metrics metrics_;
};

TEST_F(SessionStreamsTest, StandaloneEventIdsCountFromOne) {
  auto s = make_streams();
  s->deliver(payload("a"), false);
  s->deliver(payload("b"), false);
  auto q = make_queue();
  ASSERT_TRUE(s->attach(0, SessionStreams::kUndelivered, q));
  auto [events, status] = drain(*q);
  EXPECT_EQ(ids(events), (std::vector<std::string>{"0-1", "0-2"}));
  EXPECT_EQ(*events[0].data, "a");
  EXPECT_EQ(*events[1].data, "b");
  EXPECT_EQ(status, EventQueue::Status::kTimeout) << "the standalone stream never ends";
}

TEST_F(SessionStreamsTest, PostStreamsGetTheirOwnIdsAndSequences) {
  auto s = make_streams();
  auto first = s->open_post_stream(2);
  auto second = s->open_post_stream(1);
  EXPECT_NE(first, 0u);
  EXPECT_NE(first, second);
  auto q1 = make_queue();
  auto q2 = make_queue();
  ASSERT_TRUE(s->attach(first, 0, q1));
  ASSERT_TRUE(s->attach(second, 0, q2));
  s->channel(first)->deliver(payload("progress"), false);
  s->channel(second)->deliver(payload("answer-2"), true);
  s->channel(first)->deliver(payload("answer-1a"), true);
  s->channel(first)->deliver(payload("answer-1b"), true);

  auto [e1, st1] = drain(*q1);
  auto p = std::to_string(first) + "-";
  EXPECT_EQ(ids(e1), (std::vector<std::string>{p + "1", p + "2", p + "3", "end"}));
  EXPECT_FALSE(e1[0].is_response);
  EXPECT_TRUE(e1[1].is_response);
  auto [e2, st2] = drain(*q2);
  EXPECT_EQ(ids(e2), (std::vector<std::string>{std::to_string(second) + "-1", "end"}));
}

TEST_F(SessionStreamsTest, BufferIsBoundedAndEvictionsAreCounted) {
  auto s = make_streams({.buffer_events = 3});
  for (int i = 1; i <= 5; ++i) s->deliver(payload(std::to_string(i)), false);
  EXPECT_EQ(metrics_.sse_buffer_evicted_total.load(), 2u);
  auto q = make_queue();
  ASSERT_TRUE(s->attach(0, 0, q));
  auto [events, status] = drain(*q);
  EXPECT_EQ(ids(events), (std::vector<std::string>{"0-3", "0-4", "0-5"}));
  EXPECT_EQ(metrics_.sse_replayed_total.load(), 3u);
}

TEST_F(SessionStreamsTest, AttachAfterSeqReplaysOnlyLaterEvents) {
  auto s = make_streams();
  for (int i = 1; i <= 5; ++i) s->deliver(payload(std::to_string(i)), false);
  auto q = make_queue();
  ASSERT_TRUE(s->attach(0, 3, q));
  auto [events, status] = drain(*q);
  EXPECT_EQ(ids(events), (std::vector<std::string>{"0-4", "0-5"}));
  EXPECT_EQ(metrics_.sse_replayed_total.load(), 2u);

  // Events after attaching go straight to the live consumer.
  s->deliver(payload("6"), false);
  auto [live, live_status] = drain(*q);
  EXPECT_EQ(ids(live), (std::vector<std::string>{"0-6"}));

  // Resuming from the newest id replays nothing.
  auto q2 = make_queue();
  ASSERT_TRUE(s->attach(0, 6, q2));
  EXPECT_TRUE(drain(*q2).first.empty());
}

TEST_F(SessionStreamsTest, UndeliveredSkipsWhatAConsumerAlreadyGot) {
  auto s = make_streams();
  s->deliver(payload("1"), false);
  auto q1 = make_queue();
  ASSERT_TRUE(s->attach(0, SessionStreams::kUndelivered, q1));
  s->deliver(payload("2"), false);
  EXPECT_EQ(ids(drain(*q1).first), (std::vector<std::string>{"0-1", "0-2"}));
  s->detach(0, q1);

  // Nobody listens: these wait in the buffer.
  s->deliver(payload("3"), false);
  s->deliver(payload("4"), false);
  auto q2 = make_queue();
  ASSERT_TRUE(s->attach(0, SessionStreams::kUndelivered, q2));
  EXPECT_EQ(ids(drain(*q2).first), (std::vector<std::string>{"0-3", "0-4"}));
  EXPECT_EQ(metrics_.sse_replayed_total.load(), 0u) << "kUndelivered is not a resumption";

  // An explicit Last-Event-ID still replays from there.
  auto q3 = make_queue();
  ASSERT_TRUE(s->attach(0, 1, q3));
  EXPECT_EQ(ids(drain(*q3).first), (std::vector<std::string>{"0-2", "0-3", "0-4"}));
}

TEST_F(SessionStreamsTest, AttachingStandaloneStreamCreatesIt) {
  auto s = make_streams();
  auto q = make_queue();
  EXPECT_TRUE(s->attach(0, SessionStreams::kUndelivered, q));
  s->deliver(payload("x"), false);
  EXPECT_EQ(ids(drain(*q).first), (std::vector<std::string>{"0-1"}));
}

TEST_F(SessionStreamsTest, AttachToUnknownPostStreamFails) {
  auto s = make_streams();
  EXPECT_FALSE(s->attach(42, 0, make_queue()));
}

TEST_F(SessionStreamsTest, FinishedPostStreamReplaysThenEnds) {
  auto s = make_streams();
  auto id = s->open_post_stream(1);
  s->channel(id)->deliver(payload("note"), false);
  s->channel(id)->deliver(payload("answer"), true);
  auto q = make_queue();
  ASSERT_TRUE(s->attach(id, 0, q));
  auto [events, status] = drain(*q);
  auto p = std::to_string(id) + "-";
  EXPECT_EQ(ids(events), (std::vector<std::string>{p + "1", p + "2", "end"}));

  // Resuming after everything: only the end marker.
  auto q2 = make_queue();
  ASSERT_TRUE(s->attach(id, 2, q2));
  EXPECT_EQ(ids(drain(*q2).first), (std::vector<std::string>{"end"}));
}

TEST_F(SessionStreamsTest, ForgottenStreamIsGoneAndItsSuccessorStartsFresh) {
  auto s = make_streams();
  // A POST answered as JSON: two events, finished, detached, forgotten.
  auto first = s->open_post_stream(2);
  auto q = make_queue();
  ASSERT_TRUE(s->attach(first, 0, q));
  s->channel(first)->deliver(payload("a"), true);
  s->channel(first)->deliver(payload("b"), true);
  EXPECT_EQ(drain(*q).first.size(), 3u);  // a, b, end
  s->detach(first, q);
  s->forget(first);
  EXPECT_FALSE(s->attach(first, 0, make_queue()));  // nothing left to resume

  // The next stream (which may reuse the forgotten one's memory) knows nothing of it: a new
  // id, sequences from 1, only its own events, and it is not finished before its request is.
  auto second = s->open_post_stream(1);
  EXPECT_NE(second, first);
  auto q2 = make_queue();
  ASSERT_TRUE(s->attach(second, 0, q2));
  auto [none, open] = drain(*q2);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(open, EventQueue::Status::kTimeout);
  s->channel(second)->deliver(payload("c"), true);
  auto [events, status] = drain(*q2);
  auto p = std::to_string(second) + "-";
  EXPECT_EQ(ids(events), (std::vector<std::string>{p + "1", "end"}));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(*events[0].data, "c");
  // Resuming it from the start replays just its own event.
  auto q3 = make_queue();
  ASSERT_TRUE(s->attach(second, 0, q3));
  EXPECT_EQ(ids(drain(*q3).first), (std::vector<std::string>{p + "1", "end"}));
}

TEST_F(SessionStreamsTest, CancelledRequestFinishesTheStreamWithoutAnEvent) {
  auto s = make_streams();
  auto id = s->open_post_stream(1);
  auto q = make_queue();
  ASSERT_TRUE(s->attach(id, 0, q));
  s->channel(id)->deliver(nullptr, true);
  EXPECT_EQ(ids(drain(*q).first), (std::vector<std::string>{"end"}));
}

TEST_F(SessionStreamsTest, CloseStreamSendsDisconnectAndKeepsEventsForResumption) {
  auto s = make_streams();
  auto id = s->open_post_stream(1);
  auto q = make_queue();
  ASSERT_TRUE(s->attach(id, 0, q));
  auto channel = s->channel(id);
  channel->deliver(payload("before"), false);
  channel->close_stream();
  channel->deliver(payload("after"), false);
  channel->deliver(payload("answer"), true);
  auto p = std::to_string(id) + "-";
  EXPECT_EQ(ids(drain(*q).first), (std::vector<std::string>{p + "1", "disconnect"}));

  auto resumed = make_queue();
  ASSERT_TRUE(s->attach(id, 1, resumed));
  EXPECT_EQ(ids(drain(*resumed).first), (std::vector<std::string>{p + "2", p + "3", "end"}));
}

TEST_F(SessionStreamsTest, SlowConsumerOverflowsAndBufferStillHasEverything) {
  auto s = make_streams();
  auto q = make_queue(2);
  ASSERT_TRUE(s->attach(0, SessionStreams::kUndelivered, q));
  for (int i = 1; i <= 3; ++i) s->deliver(payload(std::to_string(i)), false);
  EXPECT_EQ(drain(*q).second, EventQueue::Status::kOverflow);

  auto q2 = make_queue();
  ASSERT_TRUE(s->attach(0, 2, q2));
  EXPECT_EQ(ids(drain(*q2).first), (std::vector<std::string>{"0-3"}));
}

TEST_F(SessionStreamsTest, NewConsumerReplacesAndClosesTheOldOne) {
  auto s = make_streams();
  auto old_q = make_queue();
  auto new_q = make_queue();
  ASSERT_TRUE(s->attach(0, SessionStreams::kUndelivered, old_q));
  ASSERT_TRUE(s->attach(0, SessionStreams::kUndelivered, new_q));
  s->deliver(payload("x"), false);
  EXPECT_EQ(drain(*old_q).second, EventQueue::Status::kClosed);
  EXPECT_EQ(ids(drain(*new_q).first), (std::vector<std::string>{"0-1"}));

  // A stale detach does not unhook the current consumer.
  s->detach(0, old_q);
  s->deliver(payload("y"), false);
  EXPECT_EQ(ids(drain(*new_q).first), (std::vector<std::string>{"0-2"}));
}

TEST_F(SessionStreamsTest, SessionCloseClosesEveryConsumer) {
  auto s = make_streams();
  auto q0 = make_queue();
  auto q1 = make_queue();
  ASSERT_TRUE(s->attach(0, SessionStreams::kUndelivered, q0));
  ASSERT_TRUE(s->attach(s->open_post_stream(1), 0, q1));
  s->on_session_closed();
  EXPECT_EQ(drain(*q0).second, EventQueue::Status::kClosed);
  EXPECT_EQ(drain(*q1).second, EventQueue::Status::kClosed);
}

TEST_F(SessionStreamsTest, OldFinishedStreamsArePruned) {
  auto s = make_streams({.max_streams = 2});
  std::vector<std::uint64_t> ids_opened;
  for (int i = 0; i < 4; ++i) {
    auto id = s->open_post_stream(1);
    s->channel(id)->deliver(payload("r"), true);
    ids_opened.push_back(id);
  }
  s->open_post_stream(1);  // pruning happens when a stream opens
  EXPECT_FALSE(s->attach(ids_opened[0], 0, make_queue()));
  EXPECT_FALSE(s->attach(ids_opened[1], 0, make_queue()));
  EXPECT_TRUE(s->attach(ids_opened[3], 0, make_queue()));
}

TEST(ParseEventId, Valid) {
  std::uint64_t stream = 99, seq = 99;
  ASSERT_TRUE(SessionStreams::parse_event_id("0-1", stream, seq));
  EXPECT_EQ(stream, 0u);
  EXPECT_EQ(seq, 1u);
  ASSERT_TRUE(SessionStreams::parse_event_id("12-0", stream, seq));
  EXPECT_EQ(stream, 12u);
  EXPECT_EQ(seq, 0u);
  ASSERT_TRUE(SessionStreams::parse_event_id("18446744073709551615-7", stream, seq));
  EXPECT_EQ(stream, 18446744073709551615u);
}

TEST(ParseEventId, Invalid) {
  std::uint64_t stream = 0, seq = 0;
  for (std::string_view text :
       {"", "-", "1-", "-1", "1", "a-1", "1-b", "1-2-3", " 1-2", "1 -2", "1-2 ", "+1-2", "1--2",
        "0x1-2", "18446744073709551616-1", "1-18446744073709551616", "1.5-2"}) {
    EXPECT_FALSE(SessionStreams::parse_event_id(text, stream, seq)) << "'" << text << "'";
  }
}

}  // namespace
}  // namespace mcpmesh::mcp

#pragma once
/// \file
/// Tasks, in both eras:
/// - the 2026-07-28 tasks extension (`io.modelcontextprotocol/tasks`): a tools/call the server
///   turns into a task is answered at once with the task's id, and its handler goes on; the
///   client polls `tasks/get` (the result is inlined there once it is done), answers the
///   handler's input requests with `tasks/update` and may `tasks/cancel` it;
/// - the 2025-11-25 session era (`session_tasks.hpp`): a tools/call with `params.task` is
///   answered with a CreateTaskResult; `tasks/get`, `tasks/list`, `tasks/cancel` and
///   `tasks/result` (which waits for the end and carries the handler's requests to the client)
///   see the tasks of their own session only.
/// One store holds both, bounded per node (max_tasks) and, for sessions, per session.
///
/// Thread-safety: every TaskStore member may be called from any thread (one mutex, never held
/// while calling out); a Task's fields are read and written under it.

#include "mcp/app.hpp"
#include "mcp/client_channel.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mcpmesh::mcp {

inline constexpr std::string_view kTasksExtension = "io.modelcontextprotocol/tasks";
/// The `_meta` key that ties a message to its task (2025-11-25): `{"taskId": ...}`.
inline constexpr std::string_view kRelatedTaskMeta = "io.modelcontextprotocol/related-task";

class InflightRequest;

enum class TaskStatus { kWorking, kInputRequired, kCompleted, kFailed, kCancelled };
[[nodiscard]] std::string_view to_string(TaskStatus s);
[[nodiscard]] inline bool is_terminal(TaskStatus s) {
  return s == TaskStatus::kCompleted || s == TaskStatus::kFailed || s == TaskStatus::kCancelled;
}

struct Task {
  std::string id;
  std::uint64_t seq = 0;  // creation order in its store (tasks/list's cursor)
  /// The session-era session that created it, the only one that sees it; empty for a task of
  /// the tasks extension (2026-07-28).
  std::string session_id;
  std::chrono::system_clock::time_point created;
  std::chrono::system_clock::time_point updated;
  std::chrono::milliseconds ttl{0};
  std::chrono::milliseconds poll_interval{0};
  TaskStatus status = TaskStatus::kWorking;
  json::value result = nullptr;  // kCompleted (a session's kFailed too: isError): its result
  json::value error = nullptr;   // kFailed: a JSON-RPC error object
  json::object input_requests;   // kInputRequired: what the handler waits for, by key
  json::object answers;          // tasks/update answers the handler has not taken yet
  // Where the handler runs, to wake it or cancel it.
  std::weak_ptr<InflightRequest> request;
  asio::any_io_executor executor;
  std::weak_ptr<asio::steady_timer> wake;  // the handler waits on it for input

  // The session era (2025-11-25).
  std::string status_message;  // why it failed or was cancelled
  /// A tasks/result request waiting for the task to end; the newest carries what the handler
  /// sends the client meanwhile.
  struct ResultStream {
    std::shared_ptr<ClientChannel> reply;
    std::weak_ptr<asio::steady_timer> wake;  // cancelled once the task has ended
  };
  std::vector<ResultStream> result_streams;  // oldest first
  /// The handler's requests to the client while no tasks/result waits (the client is told of
  /// them by input_required and fetches them with tasks/result).
  std::deque<Payload> outbox;
  std::size_t open_inputs = 0;  // requests to the client not answered yet
};

/// At most this many messages of a session-era task wait for a tasks/result (the oldest goes).
/// Each is a request the handler awaits (or its notifications/cancelled), so a handler that
/// asks one thing at a time never comes near it.
inline constexpr std::size_t kMaxTaskOutbox = 32;

class TaskStore {
 public:
  TaskStore(std::size_t max_tasks, std::chrono::milliseconds ttl,
            std::chrono::milliseconds poll_interval)
      : max_tasks_(max_tasks), ttl_(ttl), poll_interval_(poll_interval) {}

  /// A new working task named `id` (unique: a session id's form, so that in a cluster the id
  /// names the node that holds the task), or null when max_tasks live tasks exist (expired
  /// ones are dropped first).
  [[nodiscard]] std::shared_ptr<Task> create(std::string id);
  /// Null when unknown or expired (its ttl passed since it was created), and for a session's
  /// task.
  [[nodiscard]] std::shared_ptr<Task> find(std::string_view id);

  // The session era (2025-11-25).
  /// A new working task `id` of session `session_id`, kept `ttl` after its creation (what the
  /// client asked for, at most the store's ttl; the store's without). Null when max_tasks tasks
  /// are alive, or (`session_full` set) when `max_unfinished` of the session's are not finished.
  [[nodiscard]] std::shared_ptr<Task> create_for_session(
      std::string id, std::string session_id, std::optional<std::chrono::milliseconds> ttl,
      std::size_t max_unfinished, bool& session_full);
  /// Session `session_id`'s task `id`; null when unknown, expired or another's.
  [[nodiscard]] std::shared_ptr<Task> find_for_session(std::string_view id,
                                                       std::string_view session_id);
  /// Up to `limit` of the session's live tasks in creation order, from the one numbered `from`
  /// on; `next` is the number of the first one left out (0: none).
  [[nodiscard]] std::vector<std::shared_ptr<Task>> list_for_session(std::string_view session_id,
                                                                    std::uint64_t from,
                                                                    std::size_t limit,
                                                                    std::uint64_t& next);
  /// Whether `seq` numbers a task this store created (a tasks/list cursor it may have issued).
  [[nodiscard]] bool issued(std::uint64_t seq);
  /// Forgets every task of a session that ended; the unfinished ones are cancelled, and their
  /// requests returned to be cancelled.
  std::vector<std::shared_ptr<InflightRequest>> drop_session(std::string_view session_id);
  /// The 2025-11-25 Task object (the CreateTaskResult's `task`, tasks/get, tasks/list, status
  /// notifications).
  [[nodiscard]] json::object session_json(const Task& task);
  /// What tasks/result answers for a task that ended: exactly what its call would have answered
  /// (a result carries the related-task `_meta`); -32603 for a cancelled one, which has none.
  [[nodiscard]] Result<json::value> final_answer(const Task& task);
  /// A request to the client enters (`begin_input`) or leaves (`end_input`): the task is
  /// input_required while one is open. True when the status changed.
  bool begin_input(Task& task);
  bool end_input(Task& task);
  /// tasks/result: the final answer when the task has ended; otherwise `reply` becomes the
  /// newest stream for the handler's messages (`wake` is cancelled once the task ends), and what
  /// waited for one moves into `queued`, to be sent on it.
  std::optional<Result<json::value>> wait_for_result(Task& task,
                                                     std::shared_ptr<ClientChannel> reply,
                                                     std::weak_ptr<asio::steady_timer> wake,
                                                     std::deque<Payload>& queued);
  /// The tasks/result request answering on `reply` stopped waiting.
  void stop_waiting(Task& task, const ClientChannel* reply);
  /// Where a message of the task's handler goes: the newest waiting tasks/result stream, or
  /// null. With none and `queue` set, it waits for one in the outbox (`dropped`: the oldest
  /// there made room for it).
  std::shared_ptr<ClientChannel> route(Task& task, const Payload& message, bool queue,
                                       bool& dropped);
  /// Wakes the tasks/result requests waiting for a task that has ended (on its executor).
  void wake_result_streams(Task& task);

  /// The task's wire form: the CreateTaskResult (`detailed` false) or the tasks/get answer.
  [[nodiscard]] json::object to_json(const Task& task, bool detailed);

  /// Records the handler's final answer: `answer` is the JSON-RPC response it would have sent
  /// (null: it was cancelled). A session's task whose tool result has isError fails (2025-11-25);
  /// one of the extension completes. True when this ended the task (it was not cancelled).
  bool settle(Task& task, const Payload& answer);
  /// Adds tasks/update answers; returns the timer to wake the handler with (null: nothing
  /// waits, or some input is still missing).
  std::shared_ptr<asio::steady_timer> answer(Task& task, const json::object& answers);
  /// Marks it cancelled if it is not terminal; returns the request to cancel (may be null).
  std::shared_ptr<InflightRequest> cancel(Task& task, std::string_view why = {});
  /// Runs `f(task)` under the store's mutex.
  template <class F>
  auto with(Task& task, F&& f) {
    std::lock_guard lock(mutex_);
    return f(task);
  }

  [[nodiscard]] std::size_t size();

 private:
  using Tasks = std::map<std::string, std::shared_ptr<Task>, std::less<>>;
  /// A session's tasks by seq, and how many of them have not finished.
  struct SessionTasks {
    std::map<std::uint64_t, std::shared_ptr<Task>> tasks;
    std::size_t unfinished = 0;
  };
  [[nodiscard]] static bool expired(const Task& task, std::chrono::system_clock::time_point now) {
    // A finished task is kept for its ttl; a running one as long as it runs.
    return now > task.created + task.ttl && is_terminal(task.status);
  }
  void drop_expired_locked(std::chrono::system_clock::time_point now);
  std::shared_ptr<Task> add_locked(std::string id, std::string session_id,
                                   std::chrono::system_clock::time_point now,
                                   std::chrono::milliseconds ttl);
  Tasks::iterator erase_locked(Tasks::iterator it);
  std::shared_ptr<Task> find_locked(std::string_view id, std::string_view session_id);
  /// `t` just reached a terminal status: it no longer counts against its session's bound, and
  /// nothing waits to reach the client for it any more.
  void finished_locked(Task& t);

  const std::size_t max_tasks_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::milliseconds poll_interval_;
  std::mutex mutex_;
  Tasks tasks_;                                             // guarded by mutex_
  std::unordered_map<std::string, SessionTasks> sessions_;  // guarded by mutex_
  std::uint64_t next_seq_ = 1;                              // guarded by mutex_
};

/// The way back for a handler turned into a task: its notifications are dropped, its answer
/// settles the task.
class TaskChannel final : public ClientChannel {
 public:
  TaskChannel(TaskStore& store, std::shared_ptr<Task> task)
      : store_(store), task_(std::move(task)) {}
  void deliver(Payload message, bool completes_request) override {
    if (completes_request) store_.settle(*task_, message);
  }

 private:
  TaskStore& store_;
  std::shared_ptr<Task> task_;
};

}  // namespace mcpmesh::mcp

#pragma once
/// \file
/// Tasks (the 2026-07-28 tasks extension, `io.modelcontextprotocol/tasks`): a tools/call the
/// server turns into a task is answered at once with the task's id, and its handler goes on;
/// the client polls `tasks/get` (the result is inlined there once it is done), answers the
/// handler's input requests with `tasks/update` and may `tasks/cancel` it.
///
/// Thread-safety: every TaskStore member may be called from any thread (one mutex, never held
/// while calling out); a Task's fields are read and written under it.

#include "mcp/app.hpp"
#include "mcp/client_channel.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace mcpmesh::mcp {

inline constexpr std::string_view kTasksExtension = "io.modelcontextprotocol/tasks";

class InflightRequest;

enum class TaskStatus { kWorking, kInputRequired, kCompleted, kFailed, kCancelled };
[[nodiscard]] std::string_view to_string(TaskStatus s);
[[nodiscard]] inline bool is_terminal(TaskStatus s) {
  return s == TaskStatus::kCompleted || s == TaskStatus::kFailed || s == TaskStatus::kCancelled;
}

struct Task {
  std::string id;
  std::chrono::system_clock::time_point created;
  std::chrono::system_clock::time_point updated;
  std::chrono::milliseconds ttl{0};
  std::chrono::milliseconds poll_interval{0};
  TaskStatus status = TaskStatus::kWorking;
  json::value result = nullptr;  // kCompleted: the tool's result
  json::value error = nullptr;   // kFailed: a JSON-RPC error object
  json::object input_requests;   // kInputRequired: what the handler waits for, by key
  json::object answers;          // tasks/update answers the handler has not taken yet
  // Where the handler runs, to wake it or cancel it.
  std::weak_ptr<InflightRequest> request;
  asio::any_io_executor executor;
  std::weak_ptr<asio::steady_timer> wake;  // the handler waits on it for input
};

class TaskStore {
 public:
  TaskStore(std::size_t max_tasks, std::chrono::milliseconds ttl,
            std::chrono::milliseconds poll_interval)
      : max_tasks_(max_tasks), ttl_(ttl), poll_interval_(poll_interval) {}

  /// A new working task named `id` (unique: a session id's form, so that in a cluster the id
  /// names the node that holds the task), or null when max_tasks live tasks exist (expired
  /// ones are dropped first).
  [[nodiscard]] std::shared_ptr<Task> create(std::string id);
  /// Null when unknown or expired (its ttl passed since it was created).
  [[nodiscard]] std::shared_ptr<Task> find(std::string_view id);

  /// The task's wire form: the CreateTaskResult (`detailed` false) or the tasks/get answer.
  [[nodiscard]] json::object to_json(const Task& task, bool detailed);

  /// Records the handler's final answer: `answer` is the JSON-RPC response it would have sent
  /// (null: it was cancelled).
  void settle(Task& task, const Payload& answer);
  /// Adds tasks/update answers; returns the timer to wake the handler with (null: nothing
  /// waits, or some input is still missing).
  std::shared_ptr<asio::steady_timer> answer(Task& task, const json::object& answers);
  /// Marks it cancelled if it is not terminal; returns the request to cancel (may be null).
  std::shared_ptr<InflightRequest> cancel(Task& task);
  /// Runs `f(task)` under the store's mutex.
  template <class F>
  auto with(Task& task, F&& f) {
    std::lock_guard lock(mutex_);
    return f(task);
  }

  [[nodiscard]] std::size_t size();

 private:
  void drop_expired_locked(std::chrono::system_clock::time_point now);

  const std::size_t max_tasks_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::milliseconds poll_interval_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Task>, std::less<>> tasks_;  // guarded by mutex_
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

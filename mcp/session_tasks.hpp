#pragma once
/// \file
/// Tasks of the 2025-11-25 session era (MCP's experimental tasks utility). A tools/call that
/// carries `params.task` is answered at once with a CreateTaskResult and its handler goes on
/// as the task. Only the session that created a task sees it (`tasks/get`, `tasks/list`,
/// `tasks/cancel`, `tasks/result`). The handler's requests to the client (elicitation,
/// sampling, roots) carry the related-task `_meta` and turn the task `input_required`; they go
/// out on a waiting `tasks/result`, where the spec's client looks for them, or wait in the
/// task's outbox for one. Its notifications (progress, log) go there too, or on the session's
/// standalone stream, like every status change (`notifications/tasks/status`).
///
/// Threading: the functions run on the session's strand (the router's and the handler's);
/// the channels may be fed from any thread.

#include "mcp/router.hpp"
#include "mcp/tasks.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string_view>

namespace mcpmesh::mcp {

struct Metrics;

/// Whether `conversation` is a session of a revision with tasks (2025-11-25 and later).
[[nodiscard]] bool has_session_tasks(const Conversation& conversation);

/// The server's `tasks` capability in the initialize result: tasks/list, tasks/cancel and
/// task-augmented tools/call.
[[nodiscard]] json::object session_tasks_capability();

/// Adds the related-task `_meta` naming `task_id` to a message's `params`.
void add_related_task(json::object& params, std::string_view task_id);

/// What a session-era tools/call asks for in `params.task`.
struct TaskAugmentation {
  bool requested = false;
  std::optional<std::chrono::milliseconds> ttl;  // the lifetime the client asked for
};
/// Reads `params.task` of a tools/call of `tool`: -32602 when it is malformed; -32601 when the
/// tool forbids tasks and one is asked for (the spec's SHOULD) or requires one and none is
/// (its MUST).
[[nodiscard]] Result<TaskAugmentation> read_task_augmentation(const ToolSpec& tool,
                                                              const json::object& params);

/// The session's task that `params.taskId` names; -32602 when it is missing, unknown, expired
/// or another session's.
[[nodiscard]] Result<std::shared_ptr<Task>> find_session_task(TaskStore& store,
                                                              const Conversation& conversation,
                                                              std::string_view method,
                                                              const json::object& params);

/// Sends `notifications/tasks/status` (the Task as it is now) on the conversation's standalone
/// stream.
void announce_task_status(TaskStore& store, const Task& task, Conversation& conversation);

/// tasks/get, tasks/list (cursor paging, `page_size` a page) and tasks/cancel of a session
/// (tasks/result waits for the task: the router serves it as a coroutine).
[[nodiscard]] Result<json::value> serve_session_task_method(TaskStore& store,
                                                            Conversation& conversation,
                                                            std::string_view method,
                                                            const json::object& params,
                                                            std::size_t page_size);

/// The way back for a session task's handler: its answer settles the task (the tasks/result
/// requests waiting wake up, the status is announced); its notifications go on the newest
/// waiting tasks/result, else on the session's standalone stream.
class SessionTaskChannel final : public ClientChannel {
 public:
  SessionTaskChannel(TaskStore& store, std::shared_ptr<Task> task,
                     std::weak_ptr<Conversation> conversation)
      : store_(store), task_(std::move(task)), conversation_(std::move(conversation)) {}
  void deliver(Payload message, bool completes_request) override;

 private:
  TaskStore& store_;
  std::shared_ptr<Task> task_;
  std::weak_ptr<Conversation> conversation_;
};

/// Where a session task's handler sends its requests to the client: the newest waiting
/// tasks/result, else the task's outbox (bounded, kMaxTaskOutbox; what it drops is counted in
/// task_messages_dropped_total) until a tasks/result comes for them.
class TaskInputChannel final : public ClientChannel {
 public:
  TaskInputChannel(TaskStore& store, std::shared_ptr<Task> task, Metrics& metrics)
      : store_(store), task_(std::move(task)), metrics_(metrics) {}
  void deliver(Payload message, bool completes_request) override;

 private:
  TaskStore& store_;
  std::shared_ptr<Task> task_;
  Metrics& metrics_;
};

}  // namespace mcpmesh::mcp

#include "mcp/session_tasks.hpp"

#include "mcp/metrics.hpp"

#include <boost/asio/post.hpp>

namespace mcpmesh::mcp {

bool has_session_tasks(const Conversation& conversation) {
  if (conversation.stateless()) return false;
  auto client = conversation.client();
  // Revisions are dates: the ones from 2025-11-25 on have tasks.
  return client && client->protocol_version >= "2025-11-25";
}

json::object session_tasks_capability() {
  return {{"list", json::object{}},
          {"cancel", json::object{}},
          {"requests", {{"tools", {{"call", json::object{}}}}}}};
}

void add_related_task(json::object& params, std::string_view task_id) {
  auto& meta = params["_meta"];
  if (!meta.is_object()) meta = json::object();
  meta.get_object()[kRelatedTaskMeta] = json::object{{"taskId", task_id}};
}

Result<TaskAugmentation> read_task_augmentation(const ToolSpec& tool, const json::object& params) {
  TaskAugmentation out;
  if (auto* task = params.if_contains("task"); task && !task->is_null()) {
    if (!task->is_object()) {
      return RpcError(ErrorCode::kInvalidParams,
                      "params.task must be an object (TaskMetadata: an optional ttl)");
    }
    if (auto* ttl = task->get_object().if_contains("ttl"); ttl && !ttl->is_null()) {
      if (!ttl->is_int64() || ttl->get_int64() < 0) {
        return RpcError(ErrorCode::kInvalidParams,
                        "params.task.ttl must be a non-negative integer (milliseconds)");
      }
      out.ttl = std::chrono::milliseconds(ttl->get_int64());
    }
    out.requested = true;
  }
  if (out.requested && tool.task_support == TaskSupport::kForbidden) {
    return RpcError(ErrorCode::kMethodNotFound,
                    "tool '" + tool.name +
                        "' does not run as a task (execution.taskSupport forbidden): call it "
                        "without params.task");
  }
  if (!out.requested && tool.task_support == TaskSupport::kRequired) {
    return RpcError(ErrorCode::kMethodNotFound,
                    "tool '" + tool.name +
                        "' runs only as a task (execution.taskSupport required): call it with "
                        "params.task");
  }
  return out;
}

Result<std::shared_ptr<Task>> find_session_task(TaskStore& store, const Conversation& conversation,
                                                std::string_view method,
                                                const json::object& params) {
  auto id = get_string(params, "taskId");
  if (!id) {
    return RpcError(ErrorCode::kInvalidParams,
                    std::string(method) + " needs params.taskId (string)");
  }
  if (auto task = store.find_for_session(*id, conversation.session_id())) return task;
  return RpcError(ErrorCode::kInvalidParams,
                  "Failed to retrieve task: Task not found (unknown, expired, or another "
                  "session's): " +
                      std::string(id->substr(0, 128)),
                  json::object{{"taskId", *id}});
}

void announce_task_status(TaskStore& store, const Task& task, Conversation& conversation) {
  conversation.notify_client(
      make_notification("notifications/tasks/status", store.session_json(task)));
}

Result<json::value> serve_session_task_method(TaskStore& store, Conversation& conversation,
                                              std::string_view method, const json::object& params,
                                              std::size_t page_size) {
  if (method == "tasks/list") {
    std::uint64_t from = 1;
    if (auto* c = params.if_contains("cursor"); c && !c->is_null()) {
      auto cursor = parse_cursor(params);
      if (!cursor || !store.issued(*cursor)) {
        return RpcError(ErrorCode::kInvalidParams, "invalid cursor");
      }
      from = *cursor;
    }
    std::uint64_t next = 0;
    json::array tasks;
    for (auto& task : store.list_for_session(conversation.session_id(), from,
                                             std::max<std::size_t>(page_size, 1), next)) {
      tasks.push_back(store.session_json(*task));
    }
    json::object result{{"tasks", std::move(tasks)}};
    if (next != 0) result["nextCursor"] = std::to_string(next);
    return json::value(std::move(result));
  }
  auto task = find_session_task(store, conversation, method, params);
  if (!task) return task.error();
  if (method == "tasks/get") return json::value(store.session_json(**task));
  // tasks/cancel: a task that ended stays as it ended.
  auto status = store.with(**task, [](Task& t) { return t.status; });
  if (is_terminal(status)) {
    return RpcError(ErrorCode::kInvalidParams, "Cannot cancel task: already in terminal status '" +
                                                   std::string(to_string(status)) + "'");
  }
  if (auto request = store.cancel(**task, "The task was cancelled by request.")) {
    asio::post((*task)->executor, [request] { request->cancel(); });
  }
  store.wake_result_streams(**task);
  announce_task_status(store, **task, conversation);
  return json::value(store.session_json(**task));
}

void SessionTaskChannel::deliver(Payload message, bool completes_request) {
  if (completes_request) {
    if (!store_.settle(*task_, message)) return;  // cancelled before: announced then
    store_.wake_result_streams(*task_);
    if (auto conversation = conversation_.lock()) {
      announce_task_status(store_, *task_, *conversation);
    }
    return;
  }
  if (!message) return;
  bool dropped = false;
  if (auto stream = store_.route(*task_, message, false, dropped)) {
    stream->deliver(std::move(message), false);
  } else if (auto conversation = conversation_.lock()) {
    conversation->notify_client(std::move(message));
  }
}

void TaskInputChannel::deliver(Payload message, bool) {
  if (!message) return;
  bool dropped = false;
  if (auto stream = store_.route(*task_, message, true, dropped)) {
    stream->deliver(std::move(message), false);
  }
  if (dropped) Metrics::inc(metrics_.task_messages_dropped_total);
}

}  // namespace mcpmesh::mcp

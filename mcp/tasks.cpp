#include "mcp/tasks.hpp"

#include <array>
#include <cstdio>
#include <ctime>

namespace mcpmesh::mcp {

namespace {

std::string iso8601(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::array<char, 32> buf;
  std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf.data();
}

}  // namespace

std::string_view to_string(TaskStatus s) {
  switch (s) {
    case TaskStatus::kWorking:
      return "working";
    case TaskStatus::kInputRequired:
      return "input_required";
    case TaskStatus::kCompleted:
      return "completed";
    case TaskStatus::kFailed:
      return "failed";
    case TaskStatus::kCancelled:
      return "cancelled";
  }
  return "working";
}

void TaskStore::drop_expired_locked(std::chrono::system_clock::time_point now) {
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    if (now > it->second->created + it->second->ttl && is_terminal(it->second->status)) {
      it = tasks_.erase(it);
    } else {
      ++it;
    }
  }
}

std::shared_ptr<Task> TaskStore::create(std::string id) {
  auto now = std::chrono::system_clock::now();
  std::lock_guard lock(mutex_);
  if (tasks_.size() >= max_tasks_) drop_expired_locked(now);
  if (tasks_.size() >= max_tasks_) return nullptr;
  auto task = std::make_shared<Task>();
  task->id = std::move(id);
  task->created = task->updated = now;
  task->ttl = ttl_;
  task->poll_interval = poll_interval_;
  tasks_.emplace(task->id, task);
  return task;
}

std::shared_ptr<Task> TaskStore::find(std::string_view id) {
  std::lock_guard lock(mutex_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return nullptr;
  // A finished task is kept for its ttl; a running one as long as it runs.
  if (std::chrono::system_clock::now() > it->second->created + it->second->ttl &&
      is_terminal(it->second->status)) {
    tasks_.erase(it);
    return nullptr;
  }
  return it->second;
}

json::object TaskStore::to_json(const Task& t, bool detailed) {
  std::lock_guard lock(mutex_);
  json::object o{{"taskId", t.id},
                 {"status", to_string(t.status)},
                 {"createdAt", iso8601(t.created)},
                 {"lastUpdatedAt", iso8601(t.updated)},
                 {"ttlMs", static_cast<std::int64_t>(t.ttl.count())},
                 {"pollIntervalMs", static_cast<std::int64_t>(t.poll_interval.count())}};
  if (!detailed) return o;
  if (t.status == TaskStatus::kCompleted) o["result"] = t.result;
  if (t.status == TaskStatus::kFailed) o["error"] = t.error;
  if (t.status == TaskStatus::kInputRequired) o["inputRequests"] = t.input_requests;
  return o;
}

void TaskStore::settle(Task& t, const Payload& answer) {
  json::value parsed = nullptr;
  if (answer) {
    boost::system::error_code ec;
    parsed = json::parse(*answer, ec);
  }
  std::lock_guard lock(mutex_);
  t.updated = std::chrono::system_clock::now();
  t.input_requests.clear();
  if (!answer || t.status == TaskStatus::kCancelled) {
    t.status = TaskStatus::kCancelled;
    return;
  }
  if (parsed.is_object()) {
    auto& msg = parsed.get_object();
    if (auto* e = msg.if_contains("error")) {
      t.status = TaskStatus::kFailed;
      t.error = std::move(*e);
      return;
    }
    if (auto* r = msg.if_contains("result")) {
      t.status = TaskStatus::kCompleted;
      t.result = std::move(*r);
      return;
    }
  }
  t.status = TaskStatus::kFailed;
  t.error = json::object{{"code", static_cast<int>(ErrorCode::kInternalError)},
                         {"message", "the task's answer could not be read"}};
}

std::shared_ptr<asio::steady_timer> TaskStore::answer(Task& t, const json::object& answers) {
  std::lock_guard lock(mutex_);
  for (auto& [key, value] : answers) {
    if (!t.input_requests.contains(key)) continue;  // not asked for (or asked no more)
    t.answers[key] = value;
    t.input_requests.erase(key);
  }
  t.updated = std::chrono::system_clock::now();
  if (!t.input_requests.empty() || t.status != TaskStatus::kInputRequired) return nullptr;
  t.status = TaskStatus::kWorking;
  return t.wake.lock();
}

std::shared_ptr<InflightRequest> TaskStore::cancel(Task& t) {
  std::lock_guard lock(mutex_);
  if (is_terminal(t.status)) return nullptr;
  t.status = TaskStatus::kCancelled;
  t.updated = std::chrono::system_clock::now();
  t.input_requests.clear();
  return t.request.lock();
}

std::size_t TaskStore::size() {
  std::lock_guard lock(mutex_);
  return tasks_.size();
}

}  // namespace mcpmesh::mcp

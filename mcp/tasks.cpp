#include "mcp/tasks.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
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
    it = expired(*it->second, now) ? erase_locked(it) : std::next(it);
  }
}

TaskStore::Tasks::iterator TaskStore::erase_locked(Tasks::iterator it) {
  auto& task = *it->second;
  if (!task.session_id.empty()) {
    if (auto s = sessions_.find(task.session_id); s != sessions_.end()) {
      s->second.tasks.erase(task.seq);
      if (s->second.tasks.empty()) sessions_.erase(s);
    }
  }
  return tasks_.erase(it);
}

std::shared_ptr<Task> TaskStore::add_locked(std::string id, std::string session_id,
                                            std::chrono::system_clock::time_point now,
                                            std::chrono::milliseconds ttl) {
  auto task = std::make_shared<Task>();
  task->id = std::move(id);
  task->seq = next_seq_++;
  task->session_id = std::move(session_id);
  task->created = task->updated = now;
  task->ttl = ttl;
  task->poll_interval = poll_interval_;
  tasks_.emplace(task->id, task);
  if (!task->session_id.empty()) {
    auto& s = sessions_[task->session_id];
    s.tasks.emplace(task->seq, task);
    ++s.unfinished;
  }
  return task;
}

std::shared_ptr<Task> TaskStore::create(std::string id) {
  auto now = std::chrono::system_clock::now();
  std::lock_guard lock(mutex_);
  if (tasks_.size() >= max_tasks_) drop_expired_locked(now);
  if (tasks_.size() >= max_tasks_) return nullptr;
  return add_locked(std::move(id), {}, now, ttl_);
}

std::shared_ptr<Task> TaskStore::create_for_session(std::string id, std::string session_id,
                                                    std::optional<std::chrono::milliseconds> ttl,
                                                    std::size_t max_unfinished,
                                                    bool& session_full) {
  session_full = false;
  auto now = std::chrono::system_clock::now();
  std::lock_guard lock(mutex_);
  if (auto s = sessions_.find(session_id);
      s != sessions_.end() && s->second.unfinished >= max_unfinished) {
    session_full = true;
    return nullptr;
  }
  if (tasks_.size() >= max_tasks_) drop_expired_locked(now);
  if (tasks_.size() >= max_tasks_) return nullptr;
  return add_locked(std::move(id), std::move(session_id), now, ttl ? std::min(*ttl, ttl_) : ttl_);
}

std::shared_ptr<Task> TaskStore::find_locked(std::string_view id, std::string_view session_id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end() || it->second->session_id != session_id) return nullptr;
  if (expired(*it->second, std::chrono::system_clock::now())) {
    erase_locked(it);
    return nullptr;
  }
  return it->second;
}

std::shared_ptr<Task> TaskStore::find(std::string_view id) {
  std::lock_guard lock(mutex_);
  return find_locked(id, {});
}

std::shared_ptr<Task> TaskStore::find_for_session(std::string_view id,
                                                  std::string_view session_id) {
  if (session_id.empty()) return nullptr;
  std::lock_guard lock(mutex_);
  return find_locked(id, session_id);
}

std::vector<std::shared_ptr<Task>> TaskStore::list_for_session(std::string_view session_id,
                                                               std::uint64_t from,
                                                               std::size_t limit,
                                                               std::uint64_t& next) {
  next = 0;
  std::vector<std::shared_ptr<Task>> out;
  auto now = std::chrono::system_clock::now();
  std::lock_guard lock(mutex_);
  auto s = sessions_.find(std::string(session_id));
  if (s == sessions_.end()) return out;
  std::vector<std::string> gone;
  for (auto it = s->second.tasks.lower_bound(from); it != s->second.tasks.end(); ++it) {
    if (expired(*it->second, now)) {
      gone.push_back(it->second->id);
      continue;
    }
    if (out.size() == limit) {
      next = it->first;
      break;
    }
    out.push_back(it->second);
  }
  // Erased after the walk: erasing may drop the session's entry the walk is in.
  for (auto& id : gone) {
    if (auto it = tasks_.find(id); it != tasks_.end()) erase_locked(it);
  }
  return out;
}

bool TaskStore::issued(std::uint64_t seq) {
  std::lock_guard lock(mutex_);
  return seq > 0 && seq < next_seq_;
}

std::vector<std::shared_ptr<InflightRequest>> TaskStore::drop_session(std::string_view session_id) {
  std::vector<std::shared_ptr<InflightRequest>> requests;
  std::lock_guard lock(mutex_);
  auto s = sessions_.find(std::string(session_id));
  if (s == sessions_.end()) return requests;
  auto dropped = std::move(s->second.tasks);
  sessions_.erase(s);
  auto now = std::chrono::system_clock::now();
  for (auto& [seq, task] : dropped) {
    if (!is_terminal(task->status)) {
      task->status = TaskStatus::kCancelled;
      task->status_message = "the session ended";
      task->updated = now;
      task->outbox.clear();
      if (auto request = task->request.lock()) requests.push_back(std::move(request));
    }
    tasks_.erase(task->id);
  }
  return requests;
}

void TaskStore::finished_locked(Task& t) {
  t.input_requests.clear();
  t.outbox.clear();
  t.open_inputs = 0;
  if (t.session_id.empty()) return;
  if (auto s = sessions_.find(t.session_id); s != sessions_.end() && s->second.unfinished > 0) {
    --s->second.unfinished;
  }
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

bool TaskStore::settle(Task& t, const Payload& answer) {
  json::value parsed = nullptr;
  if (answer) {
    boost::system::error_code ec;
    parsed = json::parse(*answer, ec);
  }
  std::lock_guard lock(mutex_);
  if (is_terminal(t.status)) return false;  // cancelled already: it stays so
  t.updated = std::chrono::system_clock::now();
  finished_locked(t);
  if (!answer) {
    t.status = TaskStatus::kCancelled;
    return true;
  }
  if (parsed.is_object()) {
    auto& msg = parsed.get_object();
    if (auto* e = msg.if_contains("error")) {
      t.status = TaskStatus::kFailed;
      if (auto* text = e->is_object() ? e->get_object().if_contains("message") : nullptr;
          text && text->is_string()) {
        t.status_message = text->get_string();
      }
      t.error = std::move(*e);
      return true;
    }
    if (auto* r = msg.if_contains("result")) {
      t.status = TaskStatus::kCompleted;
      // 2025-11-25: a tool call whose result has isError is a failed task (its result stays
      // what tasks/result answers); the extension calls it completed.
      const auto* is_error = r->is_object() ? r->get_object().if_contains("isError") : nullptr;
      if (!t.session_id.empty() && is_error && is_error->is_bool() && is_error->get_bool()) {
        t.status = TaskStatus::kFailed;
        t.status_message = "the tool reported an error";
        if (auto* content = r->get_object().if_contains("content");
            content && content->is_array() && !content->get_array().empty()) {
          const auto& first = content->get_array().front();
          if (auto* text = first.is_object() ? first.get_object().if_contains("text") : nullptr;
              text && text->is_string()) {
            constexpr std::size_t kMaxStatusMessage = 200;
            t.status_message =
                std::string(std::string_view(text->get_string()).substr(0, kMaxStatusMessage));
          }
        }
      }
      t.result = std::move(*r);
      return true;
    }
  }
  t.status = TaskStatus::kFailed;
  t.error = json::object{{"code", static_cast<int>(ErrorCode::kInternalError)},
                         {"message", "the task's answer could not be read"}};
  t.status_message = "the task's answer could not be read";
  return true;
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

std::shared_ptr<InflightRequest> TaskStore::cancel(Task& t, std::string_view why) {
  std::lock_guard lock(mutex_);
  if (is_terminal(t.status)) return nullptr;
  t.status = TaskStatus::kCancelled;
  t.updated = std::chrono::system_clock::now();
  if (!why.empty()) t.status_message = why;
  finished_locked(t);
  return t.request.lock();
}

json::object TaskStore::session_json(const Task& t) {
  std::lock_guard lock(mutex_);
  json::object o{{"taskId", t.id},
                 {"status", to_string(t.status)},
                 {"createdAt", iso8601(t.created)},
                 {"lastUpdatedAt", iso8601(t.updated)},
                 {"ttl", static_cast<std::int64_t>(t.ttl.count())},
                 {"pollInterval", static_cast<std::int64_t>(t.poll_interval.count())}};
  if (!t.status_message.empty()) o["statusMessage"] = t.status_message;
  return o;
}

Result<json::value> TaskStore::final_answer(const Task& t) {
  std::lock_guard lock(mutex_);
  if (t.status == TaskStatus::kCancelled || (t.result.is_null() && t.error.is_null())) {
    return RpcError(ErrorCode::kInternalError, "task " + t.id + " was cancelled: it has no result");
  }
  if (!t.result.is_null()) {
    json::value result = t.result;
    if (result.is_object()) {
      auto& meta = result.get_object()["_meta"];
      if (!meta.is_object()) meta = json::object();
      meta.get_object()[kRelatedTaskMeta] = json::object{{"taskId", t.id}};
    }
    return result;
  }
  RpcError error(ErrorCode::kInternalError, "the task failed");
  if (t.error.is_object()) read_error_object(t.error.get_object(), error);
  return error;
}

bool TaskStore::begin_input(Task& t) {
  std::lock_guard lock(mutex_);
  ++t.open_inputs;
  if (t.status != TaskStatus::kWorking) return false;
  t.status = TaskStatus::kInputRequired;
  t.updated = std::chrono::system_clock::now();
  return true;
}

bool TaskStore::end_input(Task& t) {
  std::lock_guard lock(mutex_);
  if (t.open_inputs > 0) --t.open_inputs;
  if (t.open_inputs > 0 || t.status != TaskStatus::kInputRequired) return false;
  t.status = TaskStatus::kWorking;
  t.updated = std::chrono::system_clock::now();
  return true;
}

std::optional<Result<json::value>> TaskStore::wait_for_result(
    Task& t, std::shared_ptr<ClientChannel> reply, std::weak_ptr<asio::steady_timer> wake,
    std::deque<Payload>& queued) {
  {
    std::lock_guard lock(mutex_);
    if (!is_terminal(t.status)) {
      t.result_streams.push_back({std::move(reply), std::move(wake)});
      queued = std::move(t.outbox);
      t.outbox.clear();
      return std::nullopt;
    }
  }
  return final_answer(t);
}

void TaskStore::stop_waiting(Task& t, const ClientChannel* reply) {
  std::lock_guard lock(mutex_);
  std::erase_if(t.result_streams,
                [&](const Task::ResultStream& s) { return s.reply.get() == reply; });
}

std::shared_ptr<ClientChannel> TaskStore::route(Task& t, const Payload& message, bool queue,
                                                bool& dropped) {
  dropped = false;
  std::lock_guard lock(mutex_);
  if (!t.result_streams.empty()) return t.result_streams.back().reply;
  if (queue && !is_terminal(t.status)) {
    if (t.outbox.size() >= kMaxTaskOutbox) {
      t.outbox.pop_front();
      dropped = true;
    }
    t.outbox.push_back(message);
  }
  return nullptr;
}

void TaskStore::wake_result_streams(Task& t) {
  std::vector<std::shared_ptr<asio::steady_timer>> timers;
  asio::any_io_executor executor;
  {
    std::lock_guard lock(mutex_);
    for (auto& s : t.result_streams) {
      if (auto timer = s.wake.lock()) timers.push_back(std::move(timer));
    }
    executor = t.executor;
  }
  if (timers.empty() || !executor) return;
  asio::post(executor, [timers = std::move(timers)] {
    for (auto& timer : timers) timer->cancel();
  });
}

std::size_t TaskStore::size() {
  std::lock_guard lock(mutex_);
  return tasks_.size();
}

}  // namespace mcpmesh::mcp

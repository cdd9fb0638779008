#include "bench/mcpmesh_bench/process_fanout.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "bench/mcpmesh_bench/control_channel.hpp"
#include "bench/mcpmesh_bench/load_run.hpp"

namespace mcpmesh::bench {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

std::uint64_t shares_before(std::uint64_t total, std::size_t parts, std::size_t index) {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < index; ++i) n += even_share(total, parts, i);
  return n;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// The child's side: run its share, report `ready`, wait for the go (one byte 'g'; EOF means
/// "do not start"), report the result. Returns the exit status.
int child_main(const BenchOptions& options, const ProcessShare& share, int result_fd, int go_fd) {
  ControlChannel control;
  auto ready = [&](ControlChannel& c, const RunResult& opened) {
    json::object line{{"ready", json::object{{"sessions", opened.sessions_created},
                                             {"streams", opened.sse_opened}}}};
    if (!write_all(result_fd, json::serialize(line) + "\n")) return false;
    // The other processes may take up to their own setup deadline to be ready.
    auto deadline =
        Clock::now() + options.setup_timeout + options.timeout + std::chrono::seconds(5);
    std::size_t which = 0;
    const int fds[] = {go_fd};
    if (c.wait(deadline, {}, fds, &which) != ControlChannel::Event::kReadable) return false;
    char go = 0;
    return ::read(go_fd, &go, 1) == 1 && go == 'g';
  };
  RunResult result = run_load(options, share, control, ready);
  json::object line{{"result", to_raw_json(result)}};
  return write_all(result_fd, json::serialize(line) + "\n") ? 0 : 1;
}

struct Child {
  pid_t pid = -1;
  int result_fd = -1;  ///< read end of the child's result pipe
  int go_fd = -1;      ///< write end of the child's go pipe
  std::string pending;
  bool ready = false;
  bool ended = false;  ///< its pipe closed
  std::uint64_t sessions = 0, streams = 0;
  std::optional<RunResult> result;
};

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

/// Reads what the child wrote; handles complete lines. False on EOF.
bool read_child(Child& c) {
  char buf[65536];
  ssize_t n = ::read(c.result_fd, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  c.pending.append(buf, static_cast<std::size_t>(n));
  std::size_t nl;
  while ((nl = c.pending.find('\n')) != std::string::npos) {
    boost::system::error_code ec;
    json::value v = json::parse(std::string_view(c.pending).substr(0, nl), ec);
    c.pending.erase(0, nl + 1);
    if (ec || !v.is_object()) continue;
    const json::object& o = v.get_object();
    if (const json::value* r = o.if_contains("ready"); r && r->is_object()) {
      c.ready = true;
      c.sessions = r->get_object().contains("sessions")
                       ? r->get_object().at("sessions").to_number<std::uint64_t>(ec)
                       : 0;
      c.streams = r->get_object().contains("streams")
                      ? r->get_object().at("streams").to_number<std::uint64_t>(ec)
                      : 0;
    } else if (const json::value* r = o.if_contains("result")) {
      c.result = from_raw_json(*r);
    }
  }
  return true;
}

}  // namespace

BenchOptions share_options(const BenchOptions& o, std::size_t index, ProcessShare& share) {
  const std::size_t p = o.processes;
  BenchOptions s = o;
  s.processes = 1;
  s.sessions = even_share(o.sessions, p, index);
  s.connections = even_share(o.connections, p, index);
  s.sse_streams = even_share(o.sse_streams, p, index);
  s.rate = o.rate / static_cast<double>(p);
  s.max_requests =
      o.max_requests > 0 ? std::max<std::uint64_t>(1, even_share(o.max_requests, p, index)) : 0;
  share.connection_offset = shares_before(o.connections, p, index);
  share.stream_offset = o.connections + shares_before(o.sse_streams, p, index);
  return s;
}

RunResult run_processes(const BenchOptions& o,
                        const std::function<void(std::uint64_t, std::uint64_t)>& on_ready) {
  ControlChannel control;  // blocks the signals; the children inherit the mask
  std::vector<Child> children(o.processes);
  RunResult merged;
  for (std::size_t i = 0; i < children.size(); ++i) {
    int result_pipe[2], go_pipe[2];
    if (::pipe2(result_pipe, O_CLOEXEC) != 0 || ::pipe2(go_pipe, O_CLOEXEC) != 0) {
      merged.fatal = "pipe: " + std::string(std::strerror(errno));
      break;
    }
    ProcessShare share;
    BenchOptions mine = share_options(o, i, share);
    pid_t pid = ::fork();
    if (pid == 0) {
      // The child: its own process group (a terminal's Ctrl-C goes to the parent, which
      // passes it on), SIGTERM when the parent dies, none of the parent's descriptors.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      control.close_descriptors();
      for (std::size_t j = 0; j < i; ++j) {
        close_fd(children[j].result_fd);
        close_fd(children[j].go_fd);
      }
      ::close(result_pipe[0]);
      ::close(go_pipe[1]);
      std::fflush(stdout);
      ::_exit(child_main(mine, share, result_pipe[1], go_pipe[0]));
    }
    ::close(result_pipe[1]);
    ::close(go_pipe[0]);
    if (pid < 0) {
      ::close(result_pipe[0]);
      ::close(go_pipe[1]);
      merged.fatal = "fork: " + std::string(std::strerror(errno));
      break;
    }
    children[i] = Child{.pid = pid, .result_fd = result_pipe[0], .go_fd = go_pipe[1]};
    ::fcntl(children[i].result_fd, F_SETFL, O_NONBLOCK);
  }

  // Every phase of every child is bounded; so is the whole.
  auto deadline = Clock::now() + 2 * o.setup_timeout + o.warmup + o.duration + 8 * o.timeout +
                  std::chrono::seconds(15);
  bool go_sent = false;
  if (!merged.fatal.empty()) {
    // Not every process could be started: those that were close what they opened and report.
    for (auto& c : children) close_fd(c.go_fd);
    go_sent = true;
  }
  auto forward = [&](int sig) {
    for (auto& c : children) {
      if (c.pid > 0 && !c.ended) ::kill(c.pid, sig);
    }
  };
  while (true) {
    std::vector<int> fds;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < children.size(); ++i) {
      if (children[i].pid > 0 && !children[i].ended) {
        fds.push_back(children[i].result_fd);
        index.push_back(i);
      }
    }
    if (fds.empty()) break;
    std::size_t which = 0;
    auto ev = control.wait(deadline, {}, fds, &which);
    if (ev == ControlChannel::Event::kSignal) {
      forward(SIGTERM);
      continue;
    }
    if (ev == ControlChannel::Event::kDeadline) {
      if (merged.fatal.empty()) merged.fatal = "the processes did not finish by their deadline";
      forward(SIGKILL);
      for (auto& c : children) c.ended = true;
      break;
    }
    if (ev != ControlChannel::Event::kReadable) continue;
    Child& c = children[index[which]];
    if (!read_child(c)) c.ended = true;
    if (!go_sent) {
      // Start when every child is ready; when one ended (or reported) without being ready,
      // start none: closing the go pipes tells them so.
      bool all_ready = true, one_failed = false;
      for (const auto& k : children) {
        all_ready = all_ready && k.ready;
        one_failed = one_failed || (!k.ready && (k.ended || k.result));
      }
      if (all_ready) {
        std::uint64_t sessions = 0, streams = 0;
        for (const auto& k : children) {
          sessions += k.sessions;
          streams += k.streams;
        }
        if (on_ready) on_ready(sessions, streams);
        for (auto& k : children) {
          [[maybe_unused]] bool sent = write_all(k.go_fd, "g");
        }
        go_sent = true;
      } else if (one_failed) {
        for (auto& k : children) close_fd(k.go_fd);
        go_sent = true;
      }
    }
  }
  for (std::size_t i = 0; i < children.size(); ++i) {
    Child& c = children[i];
    close_fd(c.go_fd);
    close_fd(c.result_fd);
    if (c.pid <= 0) continue;
    int status = 0;
    while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (c.result) {
      merge(merged, *c.result);
    } else if (merged.fatal.empty()) {
      merged.fatal = "process " + std::to_string(i) + " of " + std::to_string(o.processes) +
                     " ended without a result (" +
                     (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                          : "exit " + std::to_string(WEXITSTATUS(status))) +
                     ")";
    }
  }
  CpuTimes own = process_cpu_times();
  merged.cpu_user_s += own.user_s;
  merged.cpu_system_s += own.system_s;
  merged.sessions_requested = o.sessions;
  merged.sse_requested = o.sse_streams;
  return merged;
}

}  // namespace mcpmesh::bench

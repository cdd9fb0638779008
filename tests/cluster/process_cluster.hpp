#pragma once
// Test helper: starts membership processes on loopback and watches them through the admin
// service. The binary is $MCPMESH_CLUSTER_NODE_BIN (default: mcpmesh-cluster-agent), started
// as `BIN --node-id ID --cluster 127.0.0.1:PORT --seeds A,B --cluster-profile
// ${MCPMESH_CLUSTER_PROFILE:-fast} --cluster-secret-file DIR/cluster.secret
// $MCPMESH_CLUSTER_NODE_ARGS`; it must print "cluster listening on HOST:PORT" to stderr or
// stdout. Every wait has a deadline. The cluster's secret is made fresh for each cluster; admin
// calls carry its call tokens.

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster/auth.hpp"
#include "proto/admin.grpc.pb.h"

extern char** environ;

namespace mcpmesh::testing {

namespace pb = ::mcpmesh::v1;
using SteadyClock = std::chrono::steady_clock;

inline std::string node_binary() {
  if (const char* b = std::getenv("MCPMESH_CLUSTER_NODE_BIN"); b && *b) return b;
  return MCPMESH_DEFAULT_CLUSTER_NODE_BIN;
}

struct NodeProcess {
  std::string id;
  pid_t pid = -1;
  std::string addr;  // HOST:PORT of the cluster gRPC server
  std::string log;
  bool stopped = false;
  std::string http;  // HOST:PORT of its HTTP endpoint, if it printed "listening on http://..."
};

/// What one start may do differently from the cluster's defaults.
struct StartOptions {
  std::string secret_file;                       // empty: the cluster's own
  std::optional<std::vector<std::string>> args;  // instead of $MCPMESH_CLUSTER_NODE_ARGS
};

class ProcessCluster {
 public:
  /// Node logs go to a fresh directory under $TMPDIR (or /tmp), removed with the cluster
  /// unless keep_logs() was called (a failed test keeps them and prints where they are).
  explicit ProcessCluster(std::string tag) : tag_(std::move(tag)) {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string templ = (base / ("mcpmesh-" + tag_ + "-XXXXXX")).string();
    if (::mkdtemp(templ.data()) != nullptr) {
      log_dir_ = templ;
      secret_file_ = log_dir_ + "/cluster.secret";
      std::ofstream(secret_file_) << random_secret() << "\n";
      std::filesystem::permissions(
          secret_file_, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
      auth_ = std::make_unique<cluster::ClusterAuth>(cluster::load_cluster_secret(secret_file_),
                                                     "test");
    } else {
      std::fprintf(stderr, "cannot create a log directory %s: %s\n", templ.c_str(),
                   std::strerror(errno));
    }
  }
  ~ProcessCluster() {
    for (auto& n : nodes_) kill_hard(n);
    if (log_dir_.empty()) return;
    if (keep_logs_) {
      std::fprintf(stderr, "node logs kept in %s\n", log_dir_.c_str());
    } else {
      std::error_code ec;
      std::filesystem::remove_all(log_dir_, ec);
    }
  }
  ProcessCluster(const ProcessCluster&) = delete;
  ProcessCluster& operator=(const ProcessCluster&) = delete;

  void keep_logs() { keep_logs_ = true; }
  /// The file every node of this cluster reads its secret from.
  [[nodiscard]] const std::string& secret_file() const { return secret_file_; }
  /// Call tokens of this cluster (tests that talk gRPC to the nodes themselves).
  [[nodiscard]] cluster::ClusterAuth& auth() { return *auth_; }
  [[nodiscard]] const std::string& log_dir() const { return log_dir_; }

  /// 32 random bytes, hex.
  static std::string random_secret() {
    std::ifstream urandom("/dev/urandom", std::ios::binary);
    std::string bytes(32, '\0');
    urandom.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    return out;
  }

  /// Starts a node; `port` 0 picks one. Returns nullptr if it did not bind within 10 s.
  NodeProcess* start(const std::string& id, const std::vector<std::string>& seeds,
                     const std::string& addr = "127.0.0.1:0", const StartOptions& options = {}) {
    NodeProcess* n = find(id);
    if (!n) {
      nodes_.push_back(NodeProcess{id});
      n = &nodes_.back();
    }
    if (log_dir_.empty()) return nullptr;
    n->log = log_dir_ + "/" + id + ".log";
    std::string seed_list;
    for (const auto& s : seeds) seed_list += (seed_list.empty() ? "" : ",") + s;
    const char* profile = std::getenv("MCPMESH_CLUSTER_PROFILE");  // default: fast
    const std::string& secret = options.secret_file.empty() ? secret_file_ : options.secret_file;
    std::vector<std::string> args = {node_binary(),
                                     "--node-id",
                                     id,
                                     "--cluster",
                                     addr,
                                     "--cluster-profile",
                                     profile ? profile : "fast",
                                     "--cluster-secret-file",
                                     secret};
    if (!seed_list.empty()) {
      args.push_back("--seeds");
      args.push_back(seed_list);
    }
    if (options.args) {
      args.insert(args.end(), options.args->begin(), options.args->end());
    } else if (const char* extra = std::getenv("MCPMESH_CLUSTER_NODE_ARGS")) {
      std::stringstream ss(extra);
      for (std::string a; ss >> a;) args.push_back(a);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, n->log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return nullptr;
    n->pid = pid;
    n->stopped = false;
    static const std::regex kListening("cluster listening on ([0-9.]+:[0-9]+)");
    auto deadline = SteadyClock::now() + std::chrono::seconds(10);
    while (SteadyClock::now() < deadline) {
      std::ifstream in(n->log);
      std::stringstream buf;
      buf << in.rdbuf();
      std::smatch m;
      std::string text = buf.str();
      if (std::regex_search(text, m, kListening)) {
        n->addr = m[1];
        static const std::regex kHttp("listening on http://([0-9.]+:[0-9]+)/");
        if (std::smatch h; std::regex_search(text, h, kHttp)) n->http = h[1];
        return n;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return nullptr;
  }

  NodeProcess* find(const std::string& id) {
    for (auto& n : nodes_)
      if (n.id == id) return &n;
    return nullptr;
  }
  std::deque<NodeProcess>& nodes() { return nodes_; }

  void signal(NodeProcess& n, int sig) {
    if (n.pid > 0) ::kill(n.pid, sig);
  }
  void kill_hard(NodeProcess& n) {
    if (n.pid <= 0) return;
    ::kill(n.pid, SIGCONT);
    ::kill(n.pid, SIGKILL);
    waitpid(n.pid, nullptr, 0);
    n.pid = -1;
  }
  /// SIGTERM (unless already sent: a second one may kill a node that is shutting down) and
  /// wait (bounded) for a clean exit; falls back to SIGKILL.
  bool terminate(NodeProcess& n, std::chrono::milliseconds limit, bool already_signalled = false) {
    if (n.pid <= 0) return true;
    if (!already_signalled) ::kill(n.pid, SIGTERM);
    auto deadline = SteadyClock::now() + limit;
    while (SteadyClock::now() < deadline) {
      int status = 0;
      if (waitpid(n.pid, &status, WNOHANG) == n.pid) {
        n.pid = -1;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
        std::fprintf(stderr, "%s exited with status %d (signal %d)\n", n.id.c_str(),
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill_hard(n);
    return false;
  }

  /// One admin Members call with a deadline; nullopt on any failure.
  std::optional<pb::MembersResponse> members(
      const std::string& addr, std::chrono::milliseconds timeout = std::chrono::milliseconds(500)) {
    auto it = stubs_.find(addr);
    if (it == stubs_.end())
      it = stubs_
               .emplace(addr, pb::Admin::NewStub(
                                  grpc::CreateChannel(addr, grpc::InsecureChannelCredentials())))
               .first;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    if (auth_) auth_->stamp(ctx, "/mcpmesh.v1.Admin/Members");
    pb::MembersRequest req;
    pb::MembersResponse resp;
    if (!it->second->Members(&ctx, req, &resp).ok()) return std::nullopt;
    return resp;
  }

  /// State of `target` as `observer` sees it (UNSPECIFIED if unknown or unreachable).
  pb::MemberState state(NodeProcess& observer, const std::string& target) {
    auto r = members(observer.addr);
    if (!r) return pb::MEMBER_STATE_UNSPECIFIED;
    for (const auto& m : r->members())
      if (m.node_id() == target) return m.state();
    return pb::MEMBER_STATE_UNSPECIFIED;
  }

  /// True if every running node other than `target` sees `target` in `state`.
  bool all_see(const std::string& target, pb::MemberState st) {
    for (auto& n : nodes_) {
      if (n.pid <= 0 || n.stopped || n.id == target) continue;
      if (state(n, target) != st) return false;
    }
    return true;
  }

  /// True if every running node sees exactly `count` alive members.
  bool all_alive(size_t count) {
    for (auto& n : nodes_) {
      if (n.pid <= 0 || n.stopped) continue;
      auto r = members(n.addr);
      if (!r) return false;
      size_t alive = 0;
      for (const auto& m : r->members()) alive += m.state() == pb::MEMBER_STATE_ALIVE;
      if (alive != count) return false;
    }
    return true;
  }

 private:
  std::string tag_;
  std::string log_dir_;
  std::string secret_file_;
  std::unique_ptr<cluster::ClusterAuth> auth_;
  bool keep_logs_ = false;
  std::deque<NodeProcess> nodes_;
  std::map<std::string, std::unique_ptr<pb::Admin::Stub>> stubs_;
};

/// Polls `pred` every 10 ms until it holds or `limit` passes; seconds taken, or -1.
template <typename Pred>
double wait_for(Pred pred, std::chrono::milliseconds limit) {
  auto start = SteadyClock::now();
  while (SteadyClock::now() - start < limit) {
    if (pred()) return std::chrono::duration<double>(SteadyClock::now() - start).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

}  // namespace mcpmesh::testing

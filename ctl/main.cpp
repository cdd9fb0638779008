// mcpmesh-ctl: admin CLI over a node's gRPC admin service. Table output for people, --json for
// scripts. Every call has a deadline (--timeout-ms) and carries a cluster call token (the node's
// cluster port refuses calls without one); the secret comes from a file, never from argv, so it
// does not show in `ps` or shell history. Optional mutual TLS (--tls-cert/--tls-key/--tls-ca).
//
// Thread-safety: single-threaded; one blocking call per run.

#include <grpcpp/grpcpp.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "cluster/auth.hpp"
#include "proto/admin.grpc.pb.h"

namespace po = boost::program_options;
namespace json = boost::json;
namespace pb = mcpmesh::v1;
namespace mc = mcpmesh::cluster;

namespace {

const char* state_name(pb::MemberState s) {
  switch (s) {
    case pb::MEMBER_STATE_ALIVE:
      return "alive";
    case pb::MEMBER_STATE_SUSPECT:
      return "suspect";
    case pb::MEMBER_STATE_DEAD:
      return "dead";
    case pb::MEMBER_STATE_LEFT:
      return "left";
    default:
      return "unknown";
  }
}

std::string age(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs ago", static_cast<double>(now - unix_ms) / 1000.0);
  return buf;
}

/// What every call needs besides its request: the channel (TLS or not) and the token maker.
struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<mc::ClusterAuth> auth;
};

int members(const Connection& conn, const std::string& node, bool as_json, int timeout_ms) {
  static const std::string kMethod = std::string("/") + pb::Admin::service_full_name() + "/Members";
  auto stub = pb::Admin::NewStub(conn.channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  conn.auth->stamp(ctx, kMethod);
  pb::MembersRequest req;
  pb::MembersResponse resp;
  grpc::Status status = stub->Members(&ctx, req, &resp);
  if (!status.ok()) {
    std::cerr << "mcpmesh-ctl: " << node << ": " << status.error_message() << " (code "
              << status.error_code() << ")\n";
    return 1;
  }
  if (as_json) {
    json::object out;
    out["node"] = resp.node_id();
    out["cluster"] = resp.cluster();
    out["local_health"] = resp.local_health();
    json::array arr;
    for (const auto& m : resp.members()) {
      json::object o;
      o["node_id"] = m.node_id();
      o["state"] = state_name(m.state());
      o["incarnation"] = m.incarnation();
      o["grpc_addr"] = m.grpc_addr();
      o["http_addr"] = m.http_addr();
      o["version"] = m.version();
      o["load"] = m.load();
      o["last_change_unix_ms"] = m.last_change_unix_ms();
      o["is_self"] = m.is_self();
      arr.push_back(std::move(o));
    }
    out["members"] = std::move(arr);
    json::object counters;
    for (const auto& [k, v] : resp.counters()) counters[k] = v;
    out["counters"] = std::move(counters);
    std::cout << json::serialize(out) << "\n";
    return 0;
  }
  std::printf("node %s  cluster %s  local health %u\n", resp.node_id().c_str(),
              resp.cluster().c_str(), resp.local_health());
  std::printf("%-16s %-8s %-16s %-22s %-22s %-10s %s\n", "NODE", "STATE", "INCARNATION", "GRPC",
              "HTTP", "VERSION", "LAST CHANGE");
  for (const auto& m : resp.members()) {
    std::printf("%-16s %-8s %-16llu %-22s %-22s %-10s %s%s\n", m.node_id().c_str(),
                state_name(m.state()), static_cast<unsigned long long>(m.incarnation()),
                m.grpc_addr().c_str(), m.http_addr().empty() ? "-" : m.http_addr().c_str(),
                m.version().empty() ? "-" : m.version().c_str(),
                age(m.last_change_unix_ms()).c_str(), m.is_self() ? "  (self)" : "");
  }
  return 0;
}

/// `drain NODE_ID`: asks --node to drain NODE_ID (itself, or another member it relays to).
int drain(const Connection& conn, const std::string& node, const std::string& target, bool as_json,
          int timeout_ms) {
  static const std::string kMethod = std::string("/") + pb::Admin::service_full_name() + "/Drain";
  auto stub = pb::Admin::NewStub(conn.channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  conn.auth->stamp(ctx, kMethod);
  pb::DrainRequest req;
  req.set_node_id(target);
  pb::DrainResponse resp;
  grpc::Status status = stub->Drain(&ctx, req, &resp);
  if (!status.ok()) {
    std::cerr << "mcpmesh-ctl: " << node << ": drain " << target << ": " << status.error_message()
              << " (code " << status.error_code() << ")\n";
    return 1;
  }
  if (as_json) {
    json::object out{{"node_id", resp.node_id()}, {"started", resp.started()}};
    std::cout << json::serialize(out) << "\n";
  } else {
    std::printf("%s: %s\n", resp.node_id().c_str(),
                resp.started() ? "draining: it hands its sessions over, finishes its requests, "
                                 "leaves the cluster and exits"
                               : "already draining");
  }
  return 0;
}

/// Reads the secret and the TLS files named on the command line (or the secret file named by
/// MCPMESH_CLUSTER_SECRET_FILE) and opens the channel. Returns nullopt after printing why (the
/// caller exits 2: a usage or configuration error, not a failed call).
std::optional<Connection> open_connection(const std::string& node, std::string secret_file,
                                          const mc::TlsFiles& tls_flags) {
  if (secret_file.empty()) {
    const char* env = std::getenv("MCPMESH_CLUSTER_SECRET_FILE");
    if (env != nullptr) secret_file = env;
  }
  if (secret_file.empty()) {
    std::cerr << "mcpmesh-ctl: no cluster secret: pass --cluster-secret-file PATH or set "
                 "MCPMESH_CLUSTER_SECRET_FILE (the node refuses calls without it)\n";
    return std::nullopt;
  }
  const int tls_given = (tls_flags.cert.empty() ? 0 : 1) + (tls_flags.key.empty() ? 0 : 1) +
                        (tls_flags.ca.empty() ? 0 : 1);
  if (tls_given != 0 && tls_given != 3) {
    std::cerr << "mcpmesh-ctl: --tls-cert, --tls-key and --tls-ca go together (all three or "
                 "none)\n";
    return std::nullopt;
  }
  std::optional<mc::TlsFiles> tls;
  if (tls_given == 3) tls = tls_flags;
  try {
    Connection conn;
    conn.auth = std::make_unique<mc::ClusterAuth>(mc::load_cluster_secret(secret_file), "ctl");
    grpc::ChannelArguments args;
    mc::apply_tls_channel_args(args, tls);
    conn.channel = grpc::CreateCustomChannel(node, mc::channel_credentials(tls), args);
    return conn;
  } catch (const std::exception& e) {
    std::cerr << "mcpmesh-ctl: " << e.what() << "\n";
    return std::nullopt;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Library warnings (a world-readable secret file, a certificate without the cluster name) go
  // to stderr: stdout carries the table or the JSON.
  spdlog::set_default_logger(spdlog::stderr_color_st("mcpmesh-ctl"));
  std::string node, command, argument, secret_file;
  mc::TlsFiles tls;
  bool as_json = false;
  int timeout_ms = 3000;
  po::options_description desc(
      "mcpmesh-ctl [options] COMMAND [ARG]\n\ncommands:\n"
      "  members         list cluster members as seen by --node\n"
      "  drain NODE_ID   drain a node: it stops taking sessions, hands them to its heir, lets\n"
      "                  requests in flight finish, leaves the cluster and exits\n\n"
      "exit status: 0 done, 1 the call failed, 2 usage or configuration error\n\noptions");
  desc.add_options()("help,h", "show help")(
      "node", po::value(&node)->default_value("127.0.0.1:7001"),
      "a node's --cluster address HOST:PORT (the default is the first node of the README)")(
      "json", po::bool_switch(&as_json), "machine-readable output")(
      "timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms), "RPC deadline")(
      "cluster-secret-file", po::value(&secret_file),
      "file holding the cluster secret (required unless MCPMESH_CLUSTER_SECRET_FILE is set)")(
      "tls-cert", po::value(&tls.cert),
      "PEM client certificate for mutual TLS (with --tls-key, --tls-ca)")(
      "tls-key", po::value(&tls.key), "PEM private key of --tls-cert")(
      "tls-ca", po::value(&tls.ca), "PEM cluster CA that signed the node certificates");
  po::options_description hidden;
  hidden.add_options()("command", po::value(&command))("argument", po::value(&argument));
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description pos;
  pos.add("command", 1).add("argument", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help") || command.empty()) {
    std::cout << desc << "\n";
    return command.empty() && !vm.count("help") ? 2 : 0;
  }
  if (command != "members" && command != "drain") {
    std::cerr << "mcpmesh-ctl: unknown command " << command << "\n" << desc << "\n";
    return 2;
  }
  if (command == "drain" && argument.empty()) {
    std::cerr << "mcpmesh-ctl: drain needs the id of the node to drain\n";
    return 2;
  }
  auto conn = open_connection(node, secret_file, tls);
  if (!conn) return 2;
  if (command == "drain") return drain(*conn, node, argument, as_json, timeout_ms);
  return members(*conn, node, as_json, timeout_ms);
}

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
#include <set>
#include <string>
#include <string_view>
#include <vector>

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
  std::optional<mc::TlsFiles> tls;

  /// A channel to another member (the same credentials).
  [[nodiscard]] std::shared_ptr<grpc::Channel> channel_to(const std::string& address) const {
    grpc::ChannelArguments args;
    mc::apply_tls_channel_args(args, tls);
    return grpc::CreateCustomChannel(address, mc::channel_credentials(tls), args);
  }
};

/// A client context with the deadline and the call token for `method` (`/pkg.Service/Name`).
std::unique_ptr<grpc::ClientContext> call_context(const Connection& conn, std::string_view method,
                                                  int timeout_ms) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  conn.auth->stamp(*ctx, method);
  return ctx;
}

int failed(const std::string& node, std::string_view what, const grpc::Status& status) {
  std::cerr << "mcpmesh-ctl: " << node << ": " << what << (what.empty() ? "" : ": ")
            << status.error_message() << " (code " << status.error_code() << ")\n";
  return 1;
}

/// The live members' (id, cluster address) as `node` sees them, itself first; nullopt after
/// printing why.
std::optional<std::vector<std::pair<std::string, std::string>>> live_members(
    const Connection& conn, const std::string& node, int timeout_ms) {
  static const std::string kMethod = std::string("/") + pb::Admin::service_full_name() + "/Members";
  auto stub = pb::Admin::NewStub(conn.channel);
  auto ctx = call_context(conn, kMethod, timeout_ms);
  pb::MembersResponse resp;
  auto status = stub->Members(ctx.get(), pb::MembersRequest{}, &resp);
  if (!status.ok()) {
    failed(node, "members", status);
    return std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : resp.members()) {
    if (m.is_self()) out.insert(out.begin(), {m.node_id(), node});
  }
  for (const auto& m : resp.members()) {
    if (!m.is_self() &&
        (m.state() == pb::MEMBER_STATE_ALIVE || m.state() == pb::MEMBER_STATE_SUSPECT)) {
      out.emplace_back(m.node_id(), m.grpc_addr());
    }
  }
  return out;
}

/// `sessions`: every live member's session counts; `sessions ID`: where that session is, as
/// --node resolves it, and what its holder knows of it.
int sessions(const Connection& conn, const std::string& node, const std::string& id, bool as_json,
             int timeout_ms) {
  static const std::string kMethod =
      std::string("/") + pb::NodeAdmin::service_full_name() + "/Sessions";
  auto ask = [&](const std::shared_ptr<grpc::Channel>& channel, const std::string& session_id,
                 pb::SessionsResponse& resp) {
    auto stub = pb::NodeAdmin::NewStub(channel);
    auto ctx = call_context(conn, kMethod, timeout_ms);
    pb::SessionsRequest req;
    req.set_session_id(session_id);
    return stub->Sessions(ctx.get(), req, &resp);
  };
  if (!id.empty()) {
    pb::SessionsResponse here;
    auto status = ask(conn.channel, id, here);
    if (!status.ok()) return failed(node, "sessions", status);
    pb::SessionInfo info = here.session();
    std::string asked = here.node_id();
    if (!info.held_here() && !info.holder().empty()) {
      // The holder knows the rest (phase, version, subscriptions).
      auto members = live_members(conn, node, timeout_ms);
      if (!members) return 1;
      for (auto& [member, address] : *members) {
        if (member != info.holder()) continue;
        pb::SessionsResponse there;
        auto s2 = ask(conn.channel_to(address), id, there);
        if (!s2.ok()) return failed(address, "sessions", s2);
        if (there.session().held_here()) {
          info = there.session();
        } else if (there.session().holder().empty() && !there.session().unavailable()) {
          // The node it resolves to does not hold it either: gone.
          info.clear_holder();
          info.clear_heir();
        }
      }
    }
    const bool gone = info.holder().empty() && !info.unavailable();
    if (as_json) {
      json::object o{{"id", info.id()},
                     {"owner", info.owner()},
                     {"epoch", info.epoch()},
                     {"holder", info.holder()},
                     {"heir", info.heir()},
                     {"state", gone                 ? "gone"
                               : info.unavailable() ? "unavailable"
                                                    : "live"},
                     {"phase", info.phase()},
                     {"protocol_version", info.protocol_version()},
                     {"client_name", info.client_name()},
                     {"asked", asked}};
      json::array subs;
      for (const auto& u : info.subscriptions()) subs.emplace_back(u);
      o["subscriptions"] = std::move(subs);
      std::cout << json::serialize(o) << "\n";
    } else {
      std::printf("session   %s\n", info.id().c_str());
      std::printf("owner     %s (epoch %llu)\n", info.owner().c_str(),
                  static_cast<unsigned long long>(info.epoch()));
      std::printf("holder    %s\n", gone                 ? "- (gone: 404)"
                                    : info.unavailable() ? "- (its holder is failing; retry)"
                                                         : info.holder().c_str());
      std::printf("heir      %s\n", info.heir().empty() ? "-" : info.heir().c_str());
      if (!info.phase().empty()) {
        std::printf("phase     %s\n", info.phase().c_str());
        std::printf("version   %s\n",
                    info.protocol_version().empty() ? "-" : info.protocol_version().c_str());
        std::printf("client    %s\n",
                    info.client_name().empty() ? "-" : info.client_name().c_str());
        std::printf("subscriptions (%d)\n", info.subscriptions_size());
        for (const auto& u : info.subscriptions()) std::printf("  %s\n", u.c_str());
      }
    }
    return gone ? 3 : 0;
  }
  auto members = live_members(conn, node, timeout_ms);
  if (!members) return 1;
  json::array rows;
  std::uint64_t total = 0;
  int rc = 0;
  if (!as_json) std::printf("%-16s %10s %10s %12s\n", "NODE", "SESSIONS", "REPLICAS", "MAX");
  for (auto& [member, address] : *members) {
    pb::SessionsResponse resp;
    auto status = ask(address == node ? conn.channel : conn.channel_to(address), "", resp);
    if (!status.ok()) {
      rc = failed(address, "sessions", status);
      continue;
    }
    total += resp.local();
    if (as_json) {
      rows.push_back(json::object{{"node_id", resp.node_id()},
                                  {"sessions", resp.local()},
                                  {"replicas", resp.replicas()},
                                  {"max_sessions", resp.max_sessions()}});
    } else {
      std::printf("%-16s %10llu %10llu %12llu\n", resp.node_id().c_str(),
                  static_cast<unsigned long long>(resp.local()),
                  static_cast<unsigned long long>(resp.replicas()),
                  static_cast<unsigned long long>(resp.max_sessions()));
    }
  }
  if (as_json) {
    std::cout << json::serialize(json::object{{"nodes", std::move(rows)}, {"sessions", total}})
              << "\n";
  } else {
    std::printf("%-16s %10llu\n", "total", static_cast<unsigned long long>(total));
  }
  return rc;
}

/// `health`: every live member's readiness and health zone.
int health(const Connection& conn, const std::string& node, bool as_json, int timeout_ms) {
  static const std::string kMethod =
      std::string("/") + pb::NodeAdmin::service_full_name() + "/Health";
  auto members = live_members(conn, node, timeout_ms);
  if (!members) return 1;
  json::array rows;
  int rc = 0;
  if (!as_json)
    std::printf("%-16s %-6s %-8s %-9s %s\n", "NODE", "ZONE", "READY", "DRAINING", "WHY");
  for (auto& [member, address] : *members) {
    auto stub = pb::NodeAdmin::NewStub(address == node ? conn.channel : conn.channel_to(address));
    auto ctx = call_context(conn, kMethod, timeout_ms);
    pb::HealthResponse resp;
    auto status = stub->Health(ctx.get(), pb::HealthRequest{}, &resp);
    if (!status.ok()) {
      rc = failed(address, "health", status);
      continue;
    }
    if (as_json) {
      rows.push_back(json::object{{"node_id", resp.node_id()},
                                  {"zone", resp.zone()},
                                  {"ready", resp.ready()},
                                  {"not_ready_because", resp.not_ready_because()},
                                  {"draining", resp.draining()}});
    } else {
      std::printf("%-16s %-6s %-8s %-9s %s\n", resp.node_id().c_str(), resp.zone().c_str(),
                  resp.ready() ? "yes" : "no", resp.draining() ? "yes" : "no",
                  resp.not_ready_because().empty() ? "-" : resp.not_ready_because().c_str());
    }
  }
  if (as_json) std::cout << json::serialize(json::object{{"nodes", std::move(rows)}}) << "\n";
  return rc;
}

/// `registry`: --node's session registry, the interest sets it knows, the adoptions table.
int registry(const Connection& conn, const std::string& node, bool as_json, int timeout_ms) {
  static const std::string kMethod =
      std::string("/") + pb::NodeAdmin::service_full_name() + "/Registry";
  auto stub = pb::NodeAdmin::NewStub(conn.channel);
  auto ctx = call_context(conn, kMethod, timeout_ms);
  pb::RegistryResponse resp;
  auto status = stub->Registry(ctx.get(), pb::RegistryRequest{}, &resp);
  if (!status.ok()) return failed(node, "registry", status);
  if (as_json) {
    json::array interest, adoptions;
    for (const auto& i : resp.interest()) {
      interest.push_back(
          json::object{{"node_id", i.node_id()}, {"version", i.version()}, {"uris", i.uris()}});
    }
    for (const auto& a : resp.adoptions()) {
      adoptions.push_back(json::object{{"node_id", a.node_id()},
                                       {"epoch", a.epoch()},
                                       {"holder", a.holder()},
                                       {"version", a.version()}});
    }
    std::cout << json::serialize(json::object{{"node_id", resp.node_id()},
                                              {"shards", resp.shards()},
                                              {"sessions", resp.sessions()},
                                              {"subscribed_uris", resp.subscribed_uris()},
                                              {"interest", std::move(interest)},
                                              {"interest_uris", resp.interest_uris()},
                                              {"adoptions", std::move(adoptions)}})
              << "\n";
    return 0;
  }
  std::printf("node %s: %llu sessions in %llu shards, %llu URIs subscribed here\n",
              resp.node_id().c_str(), static_cast<unsigned long long>(resp.sessions()),
              static_cast<unsigned long long>(resp.shards()),
              static_cast<unsigned long long>(resp.subscribed_uris()));
  std::printf("\ninterest sets (%llu URIs with a subscriber elsewhere)\n%-16s %10s %8s\n",
              static_cast<unsigned long long>(resp.interest_uris()), "NODE", "VERSION", "URIS");
  for (const auto& i : resp.interest()) {
    std::printf("%-16s %10llu %8llu\n", i.node_id().c_str(),
                static_cast<unsigned long long>(i.version()),
                static_cast<unsigned long long>(i.uris()));
  }
  std::printf("\nadoptions\n%-16s %-16s %-16s %s\n", "NODE", "EPOCH", "CONTINUED BY", "VERSION");
  for (const auto& a : resp.adoptions()) {
    std::printf("%-16s %-16llu %-16s %llu\n", a.node_id().c_str(),
                static_cast<unsigned long long>(a.epoch()), a.holder().c_str(),
                static_cast<unsigned long long>(a.version()));
  }
  return 0;
}

/// `metrics`: --node's Prometheus text, as its /metrics answers.
int metrics(const Connection& conn, const std::string& node, bool as_json, int timeout_ms) {
  static const std::string kMethod =
      std::string("/") + pb::NodeAdmin::service_full_name() + "/Metrics";
  auto stub = pb::NodeAdmin::NewStub(conn.channel);
  auto ctx = call_context(conn, kMethod, timeout_ms);
  pb::MetricsResponse resp;
  auto status = stub->Metrics(ctx.get(), pb::MetricsRequest{}, &resp);
  if (!status.ok()) return failed(node, "metrics", status);
  if (as_json) {
    std::cout << json::serialize(json::object{{"node_id", resp.node_id()}, {"text", resp.text()}})
              << "\n";
  } else {
    std::fwrite(resp.text().data(), 1, resp.text().size(), stdout);
  }
  return 0;
}

int members(const Connection& conn, const std::string& node, bool as_json, int timeout_ms) {
  static const std::string kMethod = std::string("/") + pb::Admin::service_full_name() + "/Members";
  auto stub = pb::Admin::NewStub(conn.channel);
  auto ctx = call_context(conn, kMethod, timeout_ms);
  pb::MembersResponse resp;
  grpc::Status status = stub->Members(ctx.get(), pb::MembersRequest{}, &resp);
  if (!status.ok()) return failed(node, "", status);
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
  auto ctx = call_context(conn, kMethod, timeout_ms);
  pb::DrainRequest req;
  req.set_node_id(target);
  pb::DrainResponse resp;
  grpc::Status status = stub->Drain(ctx.get(), req, &resp);
  if (!status.ok()) return failed(node, "drain " + target, status);
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
    conn.tls = tls;
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
      "  sessions        sessions and replica copies held by each live member\n"
      "  sessions ID     one session: owner, epoch, holder, heir, phase, subscriptions\n"
      "  registry        --node's session registry, interest sets and adoptions\n"
      "  health          each live member's health zone and readiness\n"
      "  metrics         --node's metrics (Prometheus text, as /metrics)\n"
      "  drain NODE_ID   drain a node: it stops taking sessions, hands them to its heir, lets\n"
      "                  requests in flight finish, leaves the cluster and exits\n\n"
      "exit status: 0 done, 1 the call failed, 2 usage or configuration error,\n"
      "3 (sessions ID) the session is gone\n\noptions");
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
  static const std::set<std::string> kCommands = {"members",  "drain",  "sessions",
                                                  "registry", "health", "metrics"};
  if (!kCommands.contains(command)) {
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
  if (command == "sessions") return sessions(*conn, node, argument, as_json, timeout_ms);
  if (command == "registry") return registry(*conn, node, as_json, timeout_ms);
  if (command == "health") return health(*conn, node, as_json, timeout_ms);
  if (command == "metrics") return metrics(*conn, node, as_json, timeout_ms);
  return members(*conn, node, as_json, timeout_ms);
}

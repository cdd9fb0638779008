#include "cluster/node_membership.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <future>
#include <random>
#include <stdexcept>
#include <thread>

#include "cluster/event_loop.hpp"
#include "cluster/grpc_transport.hpp"
#include "cluster/membership.hpp"

namespace mcpmesh::cluster {

struct NodeMembership::Impl {
  NodeClusterConfig cfg;
  std::string bound;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<GrpcTransport> transport;
  std::unique_ptr<Membership> membership;
  std::unique_ptr<MembershipService> membership_service;
  std::unique_ptr<AdminService> admin_service;
  std::unique_ptr<grpc::Server> server;
  bool stopped = false;

  /// Runs `fn` on the loop and waits for it (bounded).
  template <typename Fn>
  void run_on_loop(Fn fn) {
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    loop->post([fn = std::move(fn), done]() mutable {
      fn();
      done->set_value();
    });
    fut.wait_for(std::chrono::seconds(5));
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    run_on_loop([this] { membership->stop(); });
    transport->shutdown();
    loop->join();  // nothing may touch the membership once this returns
  }
};

namespace {
std::pair<std::string, std::string> split_host_port(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("expected HOST:PORT: " + addr);
  return {addr.substr(0, colon), addr.substr(colon + 1)};
}
}  // namespace

std::unique_ptr<NodeMembership> NodeMembership::start(const NodeClusterConfig& cfg) {
  if (cfg.node_id.empty()) throw std::invalid_argument("cluster: node id is required");
  MembershipConfig mcfg = MembershipConfig::profile(cfg.profile);
  mcfg.cluster_name = cfg.cluster_name;
  auto [host, port] = split_host_port(cfg.cluster_addr);

  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  impl->loop = std::make_unique<EventLoop>();
  impl->transport = std::make_unique<GrpcTransport>(*impl->loop, 16, mcfg.max_state_members);

  // The services need the Membership at registration; its advertised address needs the bound
  // port. So: create it with a provisional address, bind, then fix the address on the loop
  // before start() (nobody can know our port before that, so nobody has talked to us yet).
  std::string adv_host = host.empty() || host == "0.0.0.0" || host == "[::]" ? "127.0.0.1" : host;
  MemberMeta self;
  self.node_id = cfg.node_id;
  self.grpc_addr = adv_host + ":" + port;
  self.http_addr = cfg.http_addr;
  self.version = cfg.version;
  impl->membership = std::make_unique<Membership>(mcfg, self, *impl->loop, *impl->transport,
                                                  std::random_device{}());
  impl->membership_service =
      std::make_unique<MembershipService>(*impl->loop, *impl->membership, mcfg);
  impl->admin_service = std::make_unique<AdminService>(*impl->loop, *impl->membership,
                                                       impl->membership_service.get());
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(cfg.cluster_addr, grpc::InsecureServerCredentials(), &bound_port);
  builder.SetMaxReceiveMessageSize(4 << 20);
  builder.RegisterService(impl->membership_service.get());
  builder.RegisterService(impl->admin_service.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || bound_port == 0) {
    impl->transport->shutdown();
    throw std::runtime_error("cluster: cannot listen on " + cfg.cluster_addr);
  }
  impl->bound = adv_host + ":" + std::to_string(bound_port);

  Membership* m = impl->membership.get();
  std::string node_id = cfg.node_id;
  m->set_on_change([node_id](const MemberView& v, MemberState old) {
    spdlog::info("cluster {}: {} is {} (was {}, incarnation {}, {})", node_id, v.meta.node_id,
                 to_string(v.state), to_string(old), v.incarnation, v.meta.grpc_addr);
  });
  std::vector<std::string> seeds = cfg.seeds;
  std::string bound = impl->bound;
  impl->run_on_loop([m, seeds, bound] {
    m->set_self_addr(bound);
    m->start(seeds);
  });
  spdlog::info("cluster {} listening on {} (profile {}, {} seeds)", cfg.node_id, impl->bound,
               cfg.profile, cfg.seeds.size());
  return std::unique_ptr<NodeMembership>(new NodeMembership(std::move(impl)));
}

NodeMembership::NodeMembership(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NodeMembership::~NodeMembership() {
  if (impl_) impl_->stop();
}

std::string NodeMembership::bound_address() const { return impl_->bound; }

void NodeMembership::leave(std::chrono::milliseconds deadline) {
  if (impl_->stopped) return;
  auto until = std::chrono::steady_clock::now() + deadline;
  Membership* m = impl_->membership.get();
  impl_->run_on_loop([m] { m->leave(); });
  // The direct `left` notices are one-way RPCs with their own deadline: wait for them, and a
  // little gossip, but never past the caller's deadline.
  while (std::chrono::steady_clock::now() < until && impl_->transport->oneway_in_flight() > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  impl_->stop();
}

}  // namespace mcpmesh::cluster

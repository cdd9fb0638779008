#include "transport/io_pool.hpp"

#include <gtest/gtest.h>
#include <boost/asio/post.hpp>

#include <memory>

namespace mcpmesh::transport {
namespace {

namespace asio = boost::asio;

/// A service that records when its context destroys it.
struct Probe : asio::execution_context::service {
  static inline asio::execution_context::id id;
  Probe(asio::execution_context& owner, std::shared_ptr<bool> destroyed)
      : service(owner), destroyed_(std::move(destroyed)) {}
  ~Probe() override { *destroyed_ = true; }
  void shutdown() override {}
  std::shared_ptr<bool> destroyed_;
};

/// Held by a handler that never runs: notes whether the other context's services were already
/// destroyed when the handler is.
struct Witness {
  std::shared_ptr<bool> other_destroyed;
  std::shared_ptr<int> late;
  ~Witness() {
    if (other_destroyed && *other_destroyed) ++*late;
  }
};

TEST(IoPool, PendingHandlersGoBeforeAnyContextsServices) {
  auto late = std::make_shared<int>(0);
  {
    IoPool pool(3);
    for (std::size_t i = 0; i < pool.size(); ++i) {
      auto destroyed = std::make_shared<bool>(false);
      asio::make_service<Probe>(pool.at(i), destroyed);
      // A handler on every other context refers to this context's services. The pool never
      // runs, so each handler is destroyed at teardown.
      for (std::size_t j = 0; j < pool.size(); ++j) {
        if (j == i) continue;
        asio::post(pool.at(j), [w = std::make_shared<Witness>(Witness{destroyed, late})] {});
      }
    }
  }
  EXPECT_EQ(*late, 0) << "handlers outlived another context's services";
}

}  // namespace
}  // namespace mcpmesh::transport

#include "node/apps/apps.hpp"

namespace mcpmesh::node {

std::shared_ptr<void> install_conformance_app(mcp::App& app) { return nullptr; }

}  // namespace mcpmesh::node

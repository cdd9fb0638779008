#pragma once
// Built-in apps served by `mcpmesh-node --app NAME`.

#include "mcp/app.hpp"

#include <memory>

namespace mcpmesh::node {

/// The demo: echo, add, slow, burn, note_set, whoami, log, ask_llm, ask_user; note://{name};
/// the summarize prompt with completions. Returns state the app needs kept alive.
std::shared_ptr<void> install_demo_app(mcp::App& app);

/// The fixture the official MCP conformance suite expects (tools test_*, test:// resources).
std::shared_ptr<void> install_conformance_app(mcp::App& app);

}  // namespace mcpmesh::node

#pragma once
// Protocol revisions this node speaks and what each allows.

#include <array>
#include <string_view>

namespace mcpmesh::mcp {

/// Stateless-era revisions (no initialize and no session: every request carries its protocol
/// version, client capabilities and client info in `_meta`), newest first.
inline constexpr std::array<std::string_view, 1> kStatelessVersions = {"2026-07-28"};

/// Session-era revisions, newest first.
inline constexpr std::array<std::string_view, 4> kSupportedVersions = {"2025-11-25", "2025-06-18",
                                                                       "2025-03-26", "2024-11-05"};
inline constexpr std::string_view kLatestVersion = kSupportedVersions[0];

[[nodiscard]] constexpr bool is_supported_version(std::string_view v) {
  for (auto s : kSupportedVersions) {
    if (s == v) return true;
  }
  return false;
}

[[nodiscard]] constexpr bool is_stateless_version(std::string_view v) {
  for (auto s : kStatelessVersions) {
    if (s == v) return true;
  }
  return false;
}

/// Every revision this node speaks, newest first (server/discover's supportedVersions and the
/// list an unsupported-version error names).
inline constexpr std::array<std::string_view, kStatelessVersions.size() + kSupportedVersions.size()>
    kAllVersions = {kStatelessVersions[0], kSupportedVersions[0], kSupportedVersions[1],
                    kSupportedVersions[2], kSupportedVersions[3]};

/// The version the server answers an initialize with: the client's if supported, else latest.
[[nodiscard]] constexpr std::string_view negotiate_version(std::string_view requested) {
  return is_supported_version(requested) ? requested : kLatestVersion;
}

/// JSON-RPC batches exist only in 2025-03-26 (added there, removed in 2025-06-18).
[[nodiscard]] constexpr bool version_allows_batches(std::string_view v) {
  return v == "2025-03-26";
}

}  // namespace mcpmesh::mcp

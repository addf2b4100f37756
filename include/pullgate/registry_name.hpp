// Registry names: what containerd's `ns` parameter, allowlist entries and
// credential keys say, normalised into one comparable form. Pure; no I/O.
#pragma once

#include "pullgate/error.hpp"

#include <boost/system/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace pullgate {

// A normalised registry: lowercase host, port only when not the default.
// Docker Hub's aliases (docker.io, index.docker.io, registry-1.docker.io) are
// all named "docker.io" and dialled at registry-1.docker.io.
struct registry_name {
    std::string host;        // "ghcr.io", "127.0.0.1", "[::1]"
    std::uint16_t port = 0;  // 0 = the scheme's default port

    // "host" or "host:port": the key used in config, logs and policy.
    std::string key() const;
    // The host to dial and to verify the certificate against (no brackets).
    std::string endpoint_host() const;
    bool is_ip_literal() const;
    friend bool operator==(const registry_name&, const registry_name&) = default;
};

// Parses `host[:port]`. Rejects userinfo, paths, queries, empty or malformed
// hosts and ports, unspecified/multicast/broadcast addresses and IPv4-mapped
// IPv6, with a message saying what is wrong. Link-local addresses parse, but
// only an allowlist entry naming that exact address can allow them.
boost::system::result<registry_name, std::string> parse_registry_name(std::string_view text);

// A registry reference as written in allowlist entries and credential keys:
// optionally `https://`/`http://`, a registry, optionally `/path`. Docker's
// legacy URL keys `https://host/v1/` (and `/v2/`) name the registry, not a
// repository "v1"; so does `index.docker.io/v1` without a scheme.
// Host may start with "*." when `allow_wildcard` is set.
struct registry_pattern {
    std::string host;         // lowercase; may be "*.example.com"
    std::uint16_t port = 0;   // 0 = default port only
    std::string path_prefix;  // repository prefix without slashes at the ends; may be empty
};

boost::system::result<registry_pattern, std::string> parse_registry_pattern(std::string_view text, bool allow_wildcard);

// A kubelet `matchImages` entry or credential-provider `auth` key:
// `host[:port][/path]` without a scheme, where each host label may be a glob
// (`*`, `?`, `[...]`, as Go's filepath.Match), e.g. `*.dkr.ecr.*.amazonaws.com`.
// Hosts without glob characters are normalised as parse_registry_pattern does
// (Docker Hub aliases, default port). Match it with match_rules::kubelet.
boost::system::result<registry_pattern, std::string> parse_match_image(std::string_view text);

// Canonical text of a pattern, e.g. "ghcr.io/acme", "127.0.0.1:5443".
std::string to_string(const registry_pattern& p);

}  // namespace pullgate

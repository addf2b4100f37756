// A containers-registries.conf.d(5) drop-in that routes the pulls of
// containers/image clients (podman, skopeo, buildah, CRI-O) through pullgate
// in the registry-in-path form. Pure; no I/O.
#pragma once

#include "pullgate/policy.hpp"

#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

// Where the clients reach pullgate: "host:port" (IPv4 or DNS name; the
// reference grammar of containers/image 5.23 cannot name an IPv6 address),
// and whether that listener speaks TLS.
struct registries_conf_mirror {
    std::string host_port;  // "127.0.0.1:5000"
    bool tls = false;       // false: plain HTTP, written as `insecure = true`
    bool loopback = false;  // 127.0.0.0/8 or localhost
};

// Parses --mirror: "HOST:PORT" or "http://HOST:PORT" (pullgate's plain
// listener) or "https://HOST:PORT" (a TLS front). Fails with a message for
// anything else: no port, a path, userinfo, an IPv6 or unspecified address.
boost::system::result<registries_conf_mirror, std::string> parse_registries_conf_mirror(std::string_view text);

// What the drop-in says, decided from the allowlist and the credential keys.
struct registries_conf_plan {
    // A registry on the default port: `prefix = host`, rewritten to
    // `<mirror>/host`. pullgate itself enforces repository prefixes, so a
    // `host/path` rule routes the whole host (a denial is then pullgate's, logged).
    struct route {
        std::string host;                // "quay.io", "docker.io", "127.0.0.2"
        std::vector<std::string> rules;  // the allowlist entries / credential keys naming it
    };
    // A registry the path form cannot reach: `blocked = true`, so that pulls
    // are refused by the client instead of going to the registry directly.
    struct block {
        std::string prefix;  // "*.corp.example", "registry.example.com:5443"
        std::string why;
        std::vector<std::string> rules;
    };
    // A registry that containers/image cannot name at all (IPv6 literal):
    // no entry, only a comment.
    struct unroutable {
        std::string rule;
        std::string why;
    };
    std::vector<route> routes;  // sorted by host
    std::vector<block> blocks;  // sorted by prefix
    std::vector<unroutable> skipped;
};

// Plans the drop-in for these rules (allowlist entries, then credential keys).
registries_conf_plan plan_registries_conf(const std::vector<policy_rule>& allow_list,
                                          const std::vector<policy_rule>& credential_keys);

// The drop-in's text: a comment block stating the limits, then one
// `[[registry]]` per route (rewriting `location`, never a `[[registry.mirror]]`:
// mirrors fall back to the registry on any error) and per block.
std::string render_registries_conf(const registries_conf_plan& plan, const registries_conf_mirror& mirror);

}  // namespace pullgate

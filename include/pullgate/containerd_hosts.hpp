// containerd's registry host configuration (certs.d / hosts.toml) that routes
// every pull through pullgate with no way around it (README "Pointing containerd at pullgate").
#pragma once

#include <string>
#include <vector>

namespace pullgate {

// The text of _default/hosts.toml for a mirror at `mirror_url`
// (e.g. "http://127.0.0.1:5000"). The empty [host] table is required by
// containerd 1.6 and leaves no fallback to the upstream registry. Throws
// std::invalid_argument for anything but a plain http(s) URL.
std::string no_bypass_hosts_toml(const std::string& mirror_url);

// Writes DIR/_default/hosts.toml (atomically, via a temporary file). Returns
// the directories under DIR other than _default: containerd uses those
// instead of _default for their registries, so they bypass the mirror.
// Throws std::runtime_error naming the path on I/O failure.
std::vector<std::string> write_no_bypass_hosts(const std::string& dir, const std::string& mirror_url);

}  // namespace pullgate

// The admin commands of the command line (everything but `serve`). Each
// writes its report to `out`, problems to `err`, and returns the exit status.
#pragma once

#include <iosfwd>
#include <string>

namespace pullgate {

// Validates the config, the credentials file and the TLS files it names;
// prints what is allowed and which credential keys exist (never secrets).
// 0 valid, 1 invalid.
int check_config(const std::string& config_path, std::ostream& out, std::ostream& err);

// Would a pull of `image` be allowed, by which rule, with which credential?
// 0 allow, 1 deny, 2 bad reference or config.
int explain(const std::string& config_path, const std::string& image, std::ostream& out, std::ostream& err);

// Writes DIR/_default/hosts.toml for `mirror_url` (default: http://<listen>
// from the config) and warns about per-registry directories that win over it.
// Prints a containers-registries.conf.d drop-in routing the allowlisted
// registries and credential keys through pullgate at `mirror` ("HOST:PORT",
// http:// or https://; default: the config's listen address). 0 written,
// 1 config error, 2 bad --mirror.
int registries_conf(const std::string& config_path, const std::string& mirror, std::ostream& out, std::ostream& err);

int containerd_hosts(const std::string& config_path, const std::string& dir, std::string mirror_url, std::ostream& out,
                     std::ostream& err);

}  // namespace pullgate

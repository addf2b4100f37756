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
// from the config), re-reads it with the node check and warns about
// per-registry directories that win over it and are not in the same form.
// 0 written and re-checked, 1 failed, 2 bad arguments.
int containerd_hosts(const std::string& config_path, const std::string& dir, std::string mirror_url, std::ostream& out,
                     std::ostream& err);

// Prints a containers-registries.conf.d drop-in routing the allowlisted
// registries and credential keys through pullgate at `mirror` ("HOST:PORT",
// http:// or https://; default: the config's listen address). 0 written,
// 1 config error, 2 bad --mirror.
int registries_conf(const std::string& config_path, const std::string& mirror, std::ostream& out, std::ostream& err);

struct check_node_options {
    std::string config_path;        // pullgate's config: listen, node.*
    bool config_given = false;      // --config on the command line
    std::string containerd_config;  // "" = node.containerdConfig
    std::string certs_dir;          // "" = node.certsDir
    std::string mirror;             // "" = http://<listen>
    bool json = false;
};

// Is containerd on this node gated by pullgate (README "Is this node gated?")? Prints every
// finding with file, problem and fix (or JSON). 0 gated, 1 not gated, 2 the
// config cannot be read or the arguments are wrong.
int check_node(const check_node_options& options, std::ostream& out, std::ostream& err);

}  // namespace pullgate

// pullgate's configuration: plain values parsed and validated once from YAML,
// immutable afterwards. A reload builds a whole new `config`.
#pragma once

#include "pullgate/policy.hpp"
#include "pullgate/registry_name.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

// A configuration error; what() names the file, line, column and key.
struct config_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct listen_address {
    std::string host;  // IP literal, without brackets
    std::uint16_t port = 0;
    std::string text;  // as written
};

// How pullgate talks to one upstream registry.
struct registry_transport {
    std::string ca_file;      // extra CA bundle, on top of the system CAs
    std::string client_cert;  // PEM, for mutual TLS
    std::string client_key;
    bool insecure_http = false;  // plain HTTP; never the default
};

struct limits {
    std::size_t max_connections = 1024;        // downstream connections at once
    std::size_t max_header_bytes = 16 * 1024;  // request line + headers
    std::size_t max_manifest_bytes = 4 * 1024 * 1024;
    std::size_t relay_buffer_bytes = 256 * 1024;             // per relay (less for a smaller body)
    std::size_t relay_buffer_total_bytes = 2 * 1024 * 1024;  // all relays at once; beyond, 16 KiB each
    std::chrono::seconds client_header_timeout{30};          // a request's headers must arrive within
    std::chrono::seconds client_idle_timeout{120};           // keep-alive idle, and a stalled client write
    std::chrono::seconds upstream_connect_timeout{10};       // DNS + TCP + TLS
    std::chrono::seconds upstream_stall_timeout{60};         // no upstream progress for this long cuts the relay
    std::chrono::seconds upstream_idle_timeout{60};          // pooled idle upstream connections are closed after
    std::chrono::seconds shutdown_grace{25};                 // SIGTERM: in-flight relays get this long
    unsigned max_redirects = 5;
    std::size_t max_upstream_connections_per_origin = 64;  // beyond, requests wait for a connection
};

// What happens to pulls while the decision log cannot be written.
enum class log_write_error_policy {
    serve,  // keep serving; lost lines are counted and reported
    deny,   // refuse pulls with 503 until a line can be written again
};

// Whether containerd on this node is gated: what the daemon checks.
struct node_settings {
    bool check = true;  // false where pullgate does not run on the node it guards
    std::string containerd_config = "/etc/containerd/config.toml";
    std::string certs_dir = "/etc/containerd/certs.d";
};

struct reload_settings {
    bool watch_files = true;  // reload when the config or the files it names change
};

// Docker credential helpers (`credHelpers`, `credsStore` in the credentials file).
struct credential_helper_settings {
    std::string path = "/usr/local/bin:/usr/bin:/bin";  // where docker-credential-<name> is looked up
    std::chrono::seconds timeout{10};                   // a helper run is killed after
    std::chrono::seconds cache{300};                    // an answer is reused for; 0 = ask every time
};

// Kubelet image credential provider plugins.
struct credential_provider_settings {
    std::string config;   // the kubelet's CredentialProviderConfig (YAML or JSON); "" = none
    std::string bin_dir;  // the plugin directory
};

// What happens to a registry that is neither allowlisted nor has credentials.
enum class unlisted_policy { deny, anonymous };

struct config {
    std::string source;  // file the config came from ("" when parsed from text)
    listen_address listen{"127.0.0.1", 5000, "127.0.0.1:5000"};
    std::optional<listen_address> admin_listen;
    std::vector<policy_rule> allow_list;  // containerRegistry.privateBaseImageAllowList
    std::string credentials_file;         // docker config.json; "" = none
    std::optional<registry_name> default_registry;
    std::map<std::string, registry_transport> registries;  // by registry_name::key()
    std::string decision_log_path = "/var/log/pullgate/decisions.log";
    log_write_error_policy decision_log_on_write_error = log_write_error_policy::serve;
    struct limits limits;
    unsigned threads = 0;  // 0 = one per core
    node_settings node;
    reload_settings reload;
    credential_helper_settings credential_helpers;
    credential_provider_settings credential_providers;
    unlisted_policy unlisted_registries = unlisted_policy::deny;

    // The transport settings for `r`, or nullptr for the defaults (HTTPS, system CAs).
    const registry_transport* transport_for(const registry_name& r) const;
};

// Parses and validates YAML text. Throws config_error naming `source`, the
// line and column, and the key. Unknown keys are errors (they are typos), so
// are keys given twice and an empty document.
config parse_config(std::string_view yaml_text, std::string_view source);

// Reads and parses `path`. Throws config_error (also when unreadable).
config load_config(const std::string& path);

// Parses "host:port" / "[v6]:port" with an IP-literal host.
std::optional<listen_address> parse_listen_address(std::string_view text);

}  // namespace pullgate

// The kubelet image credential provider protocol (KEP-2133), client side, as
// the kubelet's pkg/credentialprovider/plugin speaks it: the kubelet's own
// CredentialProviderConfig file, the v1 CredentialProviderRequest on a
// plugin's stdin and the CredentialProviderResponse on its stdout. Pure;
// reading the config file is the only I/O. Running plugins is
// credential_resolver's job.
#pragma once

#include "pullgate/policy.hpp"
#include "pullgate/registry_name.hpp"

#include <boost/system/result.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pullgate {

// "credentialprovider.kubelet.k8s.io/v1"
extern const std::string_view provider_api_v1;

// One `providers[]` entry of a CredentialProviderConfig.
struct credential_provider {
    std::string name;                       // the plugin's file name in binDir
    std::vector<policy_rule> match_images;  // read with match_rules::kubelet
    std::chrono::nanoseconds default_cache_duration{0};
    std::string api_version;  // of the request/response; v1 only
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env;
};

struct provider_config {
    std::string source;  // the file it came from
    std::vector<credential_provider> providers;

    // The first provider (config order) with a matchImages pattern covering
    // `registry`/`repository`, or nullptr.
    const credential_provider* provider_for(const registry_name& registry, std::string_view repository) const;
};

// Parses a CredentialProviderConfig (YAML or JSON; apiVersion
// kubelet.config.k8s.io/v1, kind CredentialProviderConfig). Throws
// config_error naming `source`, line:column and the key.
provider_config parse_provider_config(std::string_view text, std::string_view source);

// Reads and parses `path`. Throws config_error (also when unreadable).
provider_config load_provider_config(const std::string& path);

// Go's time.ParseDuration: "12h", "1h30m", "1.5s", "300ms", "0s", "0"; units
// ns us µs ms s m h; a leading sign. Negative durations are an error here.
boost::system::result<std::chrono::nanoseconds, std::string> parse_go_duration(std::string_view text);

enum class cache_key_type { image, registry, global };

// The cache key a response applies to: Image "<registry>/<repository>",
// Registry "<registry>", Global "" (as the kubelet's cache keys them).
std::string provider_cache_key(cache_key_type type, const registry_name& registry, std::string_view repository);

// The request written to a plugin's stdin for image "<registry>/<repository>".
std::string provider_request(const registry_name& registry, std::string_view repository);

struct provider_auth {
    std::string pattern_text;
    registry_pattern pattern;
    std::string username;
    std::string password;
};

struct provider_response {
    cache_key_type key_type = cache_key_type::image;
    std::optional<std::chrono::nanoseconds> cache_duration;  // absent: the provider's default
    std::vector<provider_auth> auth;

    // The most specific `auth` pattern covering `registry`/`repository` (the
    // longest path, then the fewest wildcards), or nullptr.
    const provider_auth* auth_for(const registry_name& registry, std::string_view repository) const;
};

// Reads a plugin's stdout. Fails (with a message that never quotes the
// output: it may hold a secret) for anything but a v1
// CredentialProviderResponse with a valid cacheKeyType, cacheDuration and
// auth patterns.
boost::system::result<provider_response, std::string> parse_provider_response(std::string_view stdout_text);

}  // namespace pullgate

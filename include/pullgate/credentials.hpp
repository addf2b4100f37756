// Registry credentials the admin stored, in the docker config.json format
// that `docker login`, `skopeo login` and `kubectl create secret
// docker-registry` write. Pure; reading the file is the only I/O.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/policy.hpp"
#include "pullgate/registry_name.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

// One `auths` entry. Secrets live only here; `key` and `fingerprint` are
// safe to log.
struct credential {
    std::string key;  // as written in the file, e.g. "ghcr.io/acme"
    registry_pattern pattern;
    std::string username;
    std::string password;
    std::string identity_token;  // OAuth2 refresh token (identitytoken)
    std::string registry_token;  // bearer token used as is (registrytoken)
    std::string fingerprint;     // short hash of the secrets: tells token cache entries apart

    bool has_basic() const { return !username.empty() || !password.empty(); }
};

class credential_store {
public:
    credential_store() = default;
    explicit credential_store(std::vector<credential> entries);

    // The credential for `registry`/`repository`: the matching key with the
    // longest repository prefix (so two orgs on one host can differ).
    const credential* lookup(const registry_name& registry, std::string_view repository) const;

    // Every key as a policy rule (the seed rule: stored credentials allow).
    std::vector<policy_rule> keys() const;
    const std::vector<credential>& entries() const { return entries_; }
    std::string source;  // the file it came from

private:
    std::vector<credential> entries_;
};

// Parses config.json text. Throws config_error naming `source` and the key
// (never a secret) for malformed JSON, a bad `auth` value or a bad key.
credential_store parse_credentials(std::string_view json_text, std::string_view source);

// Where the credentials come from: $CREDENTIALS_DIRECTORY/docker-config.json
// when systemd passed it (LoadCredential=docker-config.json:...), otherwise
// the config's credentialsFile; nullopt when neither exists/is set.
std::optional<std::string> credentials_path(const config& cfg);

// Reads and parses the credentials for `cfg` (empty store when there are
// none). Throws config_error.
credential_store load_credentials(const config& cfg);

}  // namespace pullgate

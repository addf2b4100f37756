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

// A `credHelpers` entry: the helper `docker-credential-<helper>` answers for
// exactly this registry.
struct helper_entry {
    std::string key;  // as written, e.g. "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    registry_name registry;
    std::string helper;  // program name suffix, e.g. "ecr-login"
};

// An `auths` entry without a secret (as `docker login` leaves it when a
// `credsStore` holds the secret).
struct secretless_entry {
    std::string key;
    registry_pattern pattern;
};

class credential_store {
public:
    credential_store() = default;
    explicit credential_store(std::vector<credential> entries, std::vector<helper_entry> helpers = {},
                              std::vector<secretless_entry> secretless = {}, std::string creds_store = {});

    // The credential for `registry`/`repository`: the matching key with the
    // longest repository prefix (so two orgs on one host can differ).
    const credential* lookup(const registry_name& registry, std::string_view repository) const;

    // The `credHelpers` entry for exactly `registry`, or nullptr.
    const helper_entry* helper_for(const registry_name& registry) const;

    // The secretless `auths` entry for `registry`/`repository` (longest
    // prefix), or nullptr.
    const secretless_entry* secretless_for(const registry_name& registry, std::string_view repository) const;

    // Every key with a secret and every `credHelpers` key as a policy rule
    // (the seed rule: stored credentials allow). Secretless `auths` keys and
    // `credsStore` extend nothing.
    std::vector<policy_rule> keys() const;
    const std::vector<credential>& entries() const { return entries_; }
    const std::vector<helper_entry>& helpers() const { return helpers_; }
    const std::vector<secretless_entry>& secretless() const { return secretless_; }
    // `credsStore`: the helper for secretless `auths` entries; "" = none.
    const std::string& creds_store() const { return creds_store_; }
    std::string source;  // the file it came from

private:
    std::vector<credential> entries_;
    std::vector<helper_entry> helpers_;
    std::vector<secretless_entry> secretless_;
    std::string creds_store_;
};

// True for a usable helper name: [A-Za-z0-9._-], not starting with '.', at
// most 64 characters (it becomes part of a program file name).
bool is_valid_helper_name(std::string_view name);

// The short hash of a credential's secrets (credential::fingerprint).
std::string credential_fingerprint(const credential& c);

// Parses config.json text: `auths`, `credHelpers`, `credsStore`. Throws
// config_error naming `source` and the key (never a secret) for malformed
// JSON, a bad `auth` value, a bad key or helper name, and an `auths` entry
// without a secret when no `credsStore` is set.
credential_store parse_credentials(std::string_view json_text, std::string_view source);

// Where the credentials come from: $CREDENTIALS_DIRECTORY/docker-config.json
// when systemd passed it (LoadCredential=docker-config.json:...), otherwise
// the config's credentialsFile; nullopt when neither exists/is set.
std::optional<std::string> credentials_path(const config& cfg);

// Reads and parses the credentials for `cfg` (empty store when there are
// none). Throws config_error.
credential_store load_credentials(const config& cfg);

}  // namespace pullgate

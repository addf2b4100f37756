// Which credential source answers for a pull, first match wins:
// an `auths` entry with a secret (longest prefix) → `credHelpers` (exact
// registry) → an `auths` entry without a secret + `credsStore` → a provider
// whose matchImages matches (config order) → anonymous. Pure.
#pragma once

#include "pullgate/credential_provider.hpp"
#include "pullgate/credentials.hpp"

#include <string>
#include <string_view>

namespace pullgate {

struct credential_source {
    enum class kind { auths, helper, provider, anonymous };
    kind type = kind::anonymous;
    // "auths:KEY", "helper:NAME", "provider:NAME" or "anonymous": the
    // decision log's `credential`, never a secret.
    std::string name;
    const credential* stored = nullptr;             // kind::auths
    std::string helper;                             // kind::helper: the helper name
    const credential_provider* provider = nullptr;  // kind::provider
};

// The source for `registry`/`repository`. `providers` may be nullptr.
credential_source pick_credential_source(const credential_store& store, const provider_config* providers,
                                         const registry_name& registry, std::string_view repository);

}  // namespace pullgate

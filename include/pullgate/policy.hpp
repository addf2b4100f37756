// Which registries and repositories may be pulled: a pure function of the
// allowlist, the credential keys, the registry and the repository.
#pragma once

#include "pullgate/outcome.hpp"
#include "pullgate/registry_name.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

// An allowlist entry or credential key, with the text the admin wrote.
struct policy_rule {
    std::string text;  // as written in the config / credentials file
    registry_pattern pattern;
};

struct policy_decision {
    bool allowed = false;
    reason_code reason =
        reason_code::not_allowlisted;  // allowlisted | has_credentials | anonymous_unlisted | not_allowlisted
    std::string rule;                  // the entry or key that allowed it; empty on deny
    std::string suggestion;            // on deny: the allowlist entry that would allow it
};

// How a pattern is read. `allowlist`: the allowlist and credential keys.
// `kubelet`: the kubelet's `matchImages` rules (credential provider patterns):
// every host label may be a glob and the label counts must be equal; the
// path is a plain string prefix, as the kubelet compares it.
enum class match_rules { allowlist, kubelet };

// True when `pattern` covers `registry` and `repository`: same host (a
// leading "*." matches exactly one DNS label), same port (no port in the
// pattern means the default port), repository equal to the prefix or below it
// on a '/' boundary; with match_rules::kubelet as described there.
bool matches(const registry_pattern& pattern, const registry_name& registry, std::string_view repository,
             match_rules rules = match_rules::allowlist);

// Allowlist entries first, then credential keys (seed rule); within each,
// the most specific match (longest repository prefix) is the rule reported.
// Default deny; with `anonymous_unlisted` (unlistedRegistries: anonymous) a
// registry matched by neither is allowed with reason "anonymous_unlisted",
// to be pulled with no credentials from any source.
policy_decision decide(const std::vector<policy_rule>& allow_list, const std::vector<policy_rule>& credential_keys,
                       const registry_name& registry, std::string_view repository, bool anonymous_unlisted = false);

}  // namespace pullgate

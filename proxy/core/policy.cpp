#include "pullgate/policy.hpp"

namespace pullgate {
namespace {

bool host_matches(std::string_view pattern, std::string_view host) {
    if (!pattern.starts_with("*.")) return pattern == host;
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() <= suffix.size() || !host.ends_with(suffix)) return false;
    std::string_view label = host.substr(0, host.size() - suffix.size());
    return label.find('.') == std::string_view::npos;
}

bool repository_matches(std::string_view prefix, std::string_view repository) {
    if (prefix.empty()) return true;
    if (!repository.starts_with(prefix)) return false;
    return repository.size() == prefix.size() || repository[prefix.size()] == '/';
}

// The matching rule with the longest repository prefix (the most specific;
// the same rule credential lookup picks), the first of equals.
const policy_rule* best_match(const std::vector<policy_rule>& rules, const registry_name& registry,
                              std::string_view repository) {
    const policy_rule* best = nullptr;
    for (const auto& r : rules)
        if (matches(r.pattern, registry, repository) &&
            (!best || r.pattern.path_prefix.size() > best->pattern.path_prefix.size()))
            best = &r;
    return best;
}

}  // namespace

bool matches(const registry_pattern& pattern, const registry_name& registry, std::string_view repository) {
    return pattern.port == registry.port && host_matches(pattern.host, registry.host) &&
           repository_matches(pattern.path_prefix, repository);
}

policy_decision decide(const std::vector<policy_rule>& allow_list, const std::vector<policy_rule>& credential_keys,
                       const registry_name& registry, std::string_view repository) {
    if (const auto* r = best_match(allow_list, registry, repository))
        return {true, reason_code::allowlisted, r->text, {}};
    if (const auto* r = best_match(credential_keys, registry, repository))
        return {true, reason_code::has_credentials, r->text, {}};
    return {false, reason_code::not_allowlisted, {}, registry.key()};
}

}  // namespace pullgate

#include "pullgate/policy.hpp"

#include <fnmatch.h>

#include <string>

namespace pullgate {
namespace {

bool host_matches(std::string_view pattern, std::string_view host) {
    if (!pattern.starts_with("*.")) return pattern == host;
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() <= suffix.size() || !host.ends_with(suffix)) return false;
    std::string_view label = host.substr(0, host.size() - suffix.size());
    return label.find('.') == std::string_view::npos;
}

// The kubelet's rule (credentialprovider.URLsMatch): as many labels as the
// pattern, each matched as a glob (fnmatch, like Go's filepath.Match).
bool host_globs_match(std::string_view pattern, std::string_view host) {
    for (;;) {
        const auto pd = pattern.find('.');
        const auto hd = host.find('.');
        if ((pd == std::string_view::npos) != (hd == std::string_view::npos)) return false;
        const std::string p(pattern.substr(0, pd));
        const std::string h(host.substr(0, hd));
        if (::fnmatch(p.c_str(), h.c_str(), 0) != 0) return false;
        if (pd == std::string_view::npos) return true;
        pattern.remove_prefix(pd + 1);
        host.remove_prefix(hd + 1);
    }
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

bool matches(const registry_pattern& pattern, const registry_name& registry, std::string_view repository,
             match_rules rules) {
    if (pattern.port != registry.port) return false;
    if (rules == match_rules::kubelet)
        return host_globs_match(pattern.host, registry.host) && repository.starts_with(pattern.path_prefix);
    return host_matches(pattern.host, registry.host) && repository_matches(pattern.path_prefix, repository);
}

policy_decision decide(const std::vector<policy_rule>& allow_list, const std::vector<policy_rule>& credential_keys,
                       const registry_name& registry, std::string_view repository, bool anonymous_unlisted) {
    if (const auto* r = best_match(allow_list, registry, repository))
        return {true, reason_code::allowlisted, r->text, {}};
    if (const auto* r = best_match(credential_keys, registry, repository))
        return {true, reason_code::has_credentials, r->text, {}};
    if (anonymous_unlisted) return {true, reason_code::anonymous_unlisted, {}, {}};
    return {false, reason_code::not_allowlisted, {}, registry.key()};
}

}  // namespace pullgate

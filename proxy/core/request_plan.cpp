#include "pullgate/request_plan.hpp"

namespace pullgate {
namespace {

std::string upstream_path(const oci_request& r) {
    std::string t = "/v2/" + r.repository;
    switch (r.kind) {
        case request_kind::manifest:
            t += "/manifests/" + r.reference;
            break;
        case request_kind::blob:
            t += "/blobs/" + r.reference;
            break;
        case request_kind::tags:
            t += "/tags/list";
            break;
        case request_kind::referrers:
            t += "/referrers/" + r.reference;
            break;
        case request_kind::ping:
            t = "/v2/";
            break;
    }
    if (!r.upstream_query.empty()) t += "?" + r.upstream_query;
    return t;
}

request_plan refused(request_plan p, failure f, verdict decision) {
    p.action = plan_action::refuse;
    p.decision = decision;
    p.reason = f.reason;
    p.refusal = std::move(f);
    return p;
}

}  // namespace

std::string deny_message(const registry_name& registry, std::string_view suggestion, const config& cfg) {
    const std::string where = cfg.source.empty() ? "the config" : cfg.source;
    return "registry " + registry.key() + " is not allowed: add \"" + std::string(suggestion) +
           "\" to containerRegistry.privateBaseImageAllowList in " + where +
           ", or store credentials for it in the credentials file";
}

request_plan plan_request(const plan_input& in, const config& cfg, const std::vector<policy_rule>& credential_keys) {
    request_plan p;
    const bool head = in.method == "HEAD";
    if (in.method != "GET" && !head)
        return refused(std::move(p),
                       unsupported("pullgate serves pulls only: " + std::string(in.method) + " is not supported"),
                       verdict::deny);

    auto parsed = parse_request_target(in.target);
    if (!parsed) return refused(std::move(p), parsed.error(), verdict::error);
    const oci_request& r = *parsed;
    p.kind = r.kind;
    p.repository = r.repository;
    p.reference = r.reference;

    if (r.kind == request_kind::ping) {
        p.action = plan_action::answer_ping;
        p.decision = verdict::allow;
        p.reason = reason_code::ping;
        return p;
    }
    if (head && (r.kind == request_kind::tags || r.kind == request_kind::referrers))
        return refused(std::move(p), unsupported("HEAD is not supported for " + std::string(to_string(r.kind))),
                       verdict::deny);

    // The upstream registry: containerd's ns, else a registry named in the path (podman,
    // skopeo, CRI-O), else defaultRegistry; validated and normalised, never dialled as given.
    if (r.ns) {
        auto name = parse_registry_name(*r.ns);
        if (!name)
            return refused(std::move(p), bad_request("NAME_INVALID", "invalid ns parameter: " + name.error()),
                           verdict::error);
        p.registry = *name;
    } else if (r.path_registry) {
        // The registry-in-path form of containers/image mirrors.
        auto name = parse_registry_name(*r.path_registry);
        if (!name)
            return refused(std::move(p), bad_request("NAME_INVALID", "invalid registry in the path: " + name.error()),
                           verdict::error);
        p.registry = *name;
    } else if (cfg.default_registry) {
        p.registry = *cfg.default_registry;
    } else {
        return refused(std::move(p),
                       not_found("NAME_UNKNOWN",
                                 "the request names no registry (no ns parameter) and defaultRegistry is not set in "
                                 "the config",
                                 reason_code::no_registry),
                       verdict::deny);
    }

    const policy_decision policy = decide(cfg.allow_list, credential_keys, *p.registry, r.repository,
                                          cfg.unlisted_registries == unlisted_policy::anonymous);
    if (!policy.allowed) {
        p.rule = policy.suggestion;
        return refused(std::move(p), denied(deny_message(*p.registry, policy.suggestion, cfg), policy.reason),
                       verdict::deny);
    }
    p.action = plan_action::forward;
    p.decision = verdict::allow;
    p.reason = policy.reason;
    p.rule = policy.rule;
    p.head = head;
    p.upstream_target = upstream_path(r);
    // What is addressed by digest and fetched whole is verified while it streams.
    if (!head && !in.has_range &&
        (r.kind == request_kind::blob || (r.kind == request_kind::manifest && is_digest(r.reference))))
        p.verify = r.reference;
    p.bounded_body = r.kind != request_kind::blob;
    return p;
}

}  // namespace pullgate

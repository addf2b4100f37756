// The request plan: everything pullgate decides about a client request
// before any I/O. Which registry it names (containerd's `ns`, or
// `defaultRegistry`), whether policy allows it, and if so what to ask the
// upstream and how to check the answer; otherwise the refusal pullgate
// answers itself. Pure; no I/O; table-tested.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/error.hpp"
#include "pullgate/oci_path.hpp"
#include "pullgate/outcome.hpp"
#include "pullgate/policy.hpp"
#include "pullgate/registry_name.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

// What the client sent, as far as the plan needs it.
struct plan_input {
    std::string_view method;  // "GET", "HEAD", ...
    std::string_view target;  // origin-form request target
    bool has_range = false;   // a Range header: the answer is a part, not verifiable
};

enum class plan_action {
    refuse,       // answer `refusal` without contacting anyone
    answer_ping,  // GET /v2/: pullgate answers 200 {} itself
    forward,      // ask the upstream registry
};

struct request_plan {
    plan_action action = plan_action::refuse;

    // What the request names, as far as it could be parsed (also on refusal).
    std::optional<request_kind> kind;
    std::string repository;
    std::string reference;
    std::optional<registry_name> registry;

    // The decision, as the decision log reports it.
    verdict decision = verdict::error;
    reason_code reason = reason_code::bad_request;
    std::string rule;  // allow: the deciding entry or key; deny by policy: the entry that would allow it

    std::optional<failure> refusal;  // set when action == refuse

    // For action == forward:
    bool head = false;                   // HEAD stays HEAD
    std::string upstream_target;         // "/v2/<repository>/<kind>/<ref>[?query]", ns removed
    std::optional<std::string> verify;   // a 200 answer's body must hash to this digest
    bool bounded_body = false;           // manifests, tag lists, referrers: limits.maxManifestBytes
};

// Plans `in` under `cfg` (allowlist, defaultRegistry) and the credential keys
// of the seed rule. Never fails: a request it refuses gets a plan with a
// refusal (405 UNSUPPORTED for methods other than GET/HEAD, the OCI error of
// a malformed target or ns, 404 NAME_UNKNOWN when no registry is named, 403
// DENIED naming the config key that would allow it).
request_plan plan_request(const plan_input& in, const config& cfg, const std::vector<policy_rule>& credential_keys);

// The 403 message of a policy denial: names the registry, the allowlist
// entry to add and the file to add it to.
std::string deny_message(const registry_name& registry, std::string_view suggestion, const config& cfg);

}  // namespace pullgate

// Tests for include/pullgate/request_plan.hpp: every decision pullgate takes
// about a request before any I/O, as one table.
#include "pullgate/request_plan.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace pullgate;

namespace {

const std::string hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string digest = "sha256:" + hex64;

config make_config(const std::vector<std::string>& allow, const std::string& default_registry = "") {
    std::string yaml = "listen: 127.0.0.1:5000\ncontainerRegistry:\n  privateBaseImageAllowList: [";
    for (std::size_t i = 0; i < allow.size(); ++i) yaml += (i ? ", \"" : "\"") + allow[i] + "\"";
    yaml += "]\n";
    if (!default_registry.empty()) yaml += "defaultRegistry: \"" + default_registry + "\"\n";
    return parse_config(yaml, "/etc/pullgate/config.yaml");
}

std::vector<policy_rule> keys(const std::vector<std::string>& texts) {
    std::vector<policy_rule> out;
    for (const auto& t : texts) {
        auto p = parse_registry_pattern(t, false);
        REQUIRE_MESSAGE(p.has_value(), t);
        out.push_back({t, *p});
    }
    return out;
}

struct plan_case {
    std::string name;
    std::string method;
    std::string target;
    bool range;
    std::vector<std::string> allow;
    std::vector<std::string> credential_keys;
    std::string default_registry;
    // expected
    plan_action action;
    std::string decision;
    std::string reason;
    unsigned status;       // refusals: the status pullgate answers; 0 otherwise
    std::string code;      // refusals: the OCI error code
    std::string registry;  // "" when none was resolved
    std::string rule;
    std::string upstream;  // forward: the upstream target
    std::string verify;    // forward: the digest a 200 answer must have
    bool bounded;
};

}  // namespace

TEST_CASE("plan_request: method, path, registry, policy, upstream target, verification") {
    const std::string m = "/v2/team/app/manifests/";
    const std::string b = "/v2/team/app/blobs/";
    // One row per case reads as a table.
    // clang-format off
    const std::vector<plan_case> cases = {
        // allowed, forwarded
        {"allowlisted manifest by tag", "GET", m + "v1?ns=ghcr.io", false, {"ghcr.io"}, {}, "", plan_action::forward,
         "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io", m + "v1", "", true},
        {"HEAD stays HEAD, nothing to verify", "HEAD", m + digest + "?ns=ghcr.io", false, {"ghcr.io"}, {}, "",
         plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io", m + digest, "", true},
        {"manifest by digest is verified", "GET", m + digest + "?ns=ghcr.io", false, {"ghcr.io"}, {}, "",
         plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io", m + digest, digest, true},
        {"blob is verified and unbounded", "GET", b + digest + "?ns=ghcr.io", false, {"ghcr.io"}, {}, "",
         plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io", b + digest, digest, false},
        {"a Range request is not verified", "GET", b + digest + "?ns=ghcr.io", true, {"ghcr.io"}, {}, "",
         plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io", b + digest, "", false},
        {"seed rule: credentials allow", "GET", m + "v1?ns=127.0.0.1%3A5443", false, {}, {"127.0.0.1:5443"}, "",
         plan_action::forward, "allow", "has_credentials", 0, "", "127.0.0.1:5443", "127.0.0.1:5443", m + "v1", "",
         true},
        {"ns is stripped, other parameters kept", "GET", "/v2/team/app/tags/list?n=10&ns=ghcr.io&last=a", false,
         {"ghcr.io"}, {}, "", plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io",
         "/v2/team/app/tags/list?n=10&last=a", "", true},
        {"referrers", "GET", "/v2/team/app/referrers/" + digest + "?ns=ghcr.io", false, {"ghcr.io"}, {}, "",
         plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io", "/v2/team/app/referrers/" + digest,
         "", true},
        {"Docker Hub aliases are one registry", "GET", "/v2/library/alpine/manifests/3?ns=index.docker.io", false,
         {"docker.io"}, {}, "", plan_action::forward, "allow", "allowlisted", 0, "", "docker.io", "docker.io",
         "/v2/library/alpine/manifests/3", "", true},
        {"no ns: defaultRegistry", "GET", m + "v1", false, {"registry.example.com"}, {}, "registry.example.com",
         plan_action::forward, "allow", "allowlisted", 0, "", "registry.example.com", "registry.example.com", m + "v1",
         "", true},
        {"ns wins over defaultRegistry", "GET", m + "v1?ns=ghcr.io", false, {"ghcr.io"}, {}, "registry.example.com",
         plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io", m + "v1", "", true},
        {"most specific repository prefix decides", "GET", m + "v1?ns=ghcr.io", false, {"ghcr.io", "ghcr.io/team"}, {},
         "", plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io/team", m + "v1", "", true},
        // the registry-in-path form (containers/image mirrors: no ns)
        {"registry in the path", "GET", "/v2/quay.io/org/app/manifests/1", false, {"quay.io"}, {}, "",
         plan_action::forward, "allow", "allowlisted", 0, "", "quay.io", "quay.io", "/v2/org/app/manifests/1", "",
         true},
        {"localhost in the path", "GET", "/v2/localhost/app/blobs/" + digest, false, {"localhost"}, {}, "",
         plan_action::forward, "allow", "allowlisted", 0, "", "localhost", "localhost", "/v2/app/blobs/" + digest,
         digest, false},
        {"path registry wins over defaultRegistry", "GET", "/v2/quay.io/org/app/manifests/1", false, {"quay.io"}, {},
         "docker.io", plan_action::forward, "allow", "allowlisted", 0, "", "quay.io", "quay.io",
         "/v2/org/app/manifests/1", "", true},
        {"ns wins: a dotted first component is repository", "GET", "/v2/my.org/app/manifests/v1?ns=ghcr.io", false,
         {"ghcr.io"}, {}, "", plan_action::forward, "allow", "allowlisted", 0, "", "ghcr.io", "ghcr.io",
         "/v2/my.org/app/manifests/v1", "", true},
        {"Docker Engine's Hub-only mirror path: defaultRegistry", "GET", "/v2/library/nginx/manifests/latest", false,
         {"docker.io"}, {}, "docker.io", plan_action::forward, "allow", "allowlisted", 0, "", "docker.io", "docker.io",
         "/v2/library/nginx/manifests/latest", "", true},
        {"a registry in the path is policy-checked", "GET", "/v2/quay.io/org/app/manifests/1", false, {"ghcr.io"}, {},
         "", plan_action::refuse, "deny", "not_allowlisted", 403, "DENIED", "quay.io", "quay.io", "", "", false},
        // ping
        {"ping", "GET", "/v2/", false, {}, {}, "", plan_action::answer_ping, "allow", "ping", 0, "", "", "", "", "",
         false},
        // refusals
        {"policy denial names the entry to add", "GET", m + "v1?ns=quay.io", false, {"ghcr.io"}, {}, "",
         plan_action::refuse, "deny", "not_allowlisted", 403, "DENIED", "quay.io", "quay.io", "", "", false},
        {"a repository outside an allowlisted prefix", "GET", "/v2/other/app/manifests/v1?ns=ghcr.io", false,
         {"ghcr.io/team"}, {}, "", plan_action::refuse, "deny", "not_allowlisted", 403, "DENIED", "ghcr.io", "ghcr.io",
         "", "", false},
        {"no ns, no defaultRegistry", "GET", m + "v1", false, {"ghcr.io"}, {}, "", plan_action::refuse, "deny",
         "no_registry", 404, "NAME_UNKNOWN", "", "", "", "", false},
        {"PUT is 405", "PUT", m + "v1?ns=ghcr.io", false, {"ghcr.io"}, {}, "", plan_action::refuse, "deny",
         "unsupported", 405, "UNSUPPORTED", "", "", "", "", false},
        {"PATCH is 405", "PATCH", b + "uploads/x?ns=ghcr.io", false, {"ghcr.io"}, {}, "", plan_action::refuse, "deny",
         "unsupported", 405, "UNSUPPORTED", "", "", "", "", false},
        {"DELETE is 405", "DELETE", m + digest + "?ns=ghcr.io", false, {"ghcr.io"}, {}, "", plan_action::refuse, "deny",
         "unsupported", 405, "UNSUPPORTED", "", "", "", "", false},
        {"HEAD of a tag list is 405", "HEAD", "/v2/team/app/tags/list?ns=ghcr.io", false, {"ghcr.io"}, {}, "",
         plan_action::refuse, "deny", "unsupported", 405, "UNSUPPORTED", "", "", "", "", false},
        {"invalid ns", "GET", m + "v1?ns=user%40evil.example", false, {"ghcr.io"}, {}, "", plan_action::refuse, "error",
         "bad_request", 400, "NAME_INVALID", "", "", "", "", false},
        {"an invalid tag is an unknown manifest", "GET", m + ".INVALID_MANIFEST_NAME?ns=ghcr.io", false, {"ghcr.io"},
         {}, "", plan_action::refuse, "error", "bad_request", 404, "MANIFEST_UNKNOWN", "", "", "", "", false},
        {"HEAD of an invalid tag too", "HEAD", m + ".INVALID_MANIFEST_NAME?ns=ghcr.io", false, {"ghcr.io"}, {}, "",
         plan_action::refuse, "error", "bad_request", 404, "MANIFEST_UNKNOWN", "", "", "", "", false},
        {"invalid blob digest", "GET", b + "sha256:abc?ns=ghcr.io", false, {"ghcr.io"}, {}, "", plan_action::refuse,
         "error", "bad_request", 400, "DIGEST_INVALID", "", "", "", "", false},
        {"invalid repository name", "GET", "/v2/Team/manifests/v1?ns=ghcr.io", false, {"ghcr.io"}, {}, "",
         plan_action::refuse, "error", "bad_request", 400, "NAME_INVALID", "", "", "", "", false},
        {"outside the read API", "GET", "/v2/_catalog?ns=ghcr.io", false, {"ghcr.io"}, {}, "", plan_action::refuse,
         "error", "bad_request", 404, "NAME_UNKNOWN", "", "", "", "", false},
    };
    // clang-format on
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const config cfg = make_config(c.allow, c.default_registry);
        const request_plan p = plan_request({c.method, c.target, c.range}, cfg, keys(c.credential_keys));
        CHECK(p.action == c.action);
        CHECK(to_string(p.decision) == c.decision);
        CHECK(to_string(p.reason) == c.reason);
        CHECK(p.refusal.has_value() == (c.action == plan_action::refuse));
        if (p.refusal) {
            CHECK(p.refusal->status == c.status);
            CHECK(p.refusal->code == c.code);
            CHECK(p.refusal->reason == p.reason);
        }
        CHECK((p.registry ? p.registry->key() : "") == c.registry);
        CHECK(p.rule == c.rule);
        if (c.action == plan_action::forward) {
            CHECK(p.upstream_target == c.upstream);
            CHECK(p.verify.value_or("") == c.verify);
            CHECK(p.bounded_body == c.bounded);
            CHECK(p.head == (c.method == "HEAD"));
        }
    }
}

TEST_CASE("plan_request: a refusal still says what was asked") {
    const config cfg = make_config({"ghcr.io"});
    const request_plan p = plan_request({"GET", "/v2/other/app/manifests/v2?ns=quay.io", false}, cfg, {});
    REQUIRE(p.action == plan_action::refuse);
    CHECK(p.kind == request_kind::manifest);
    CHECK(p.repository == "other/app");
    CHECK(p.reference == "v2");
    REQUIRE(p.registry);
    CHECK(p.registry->key() == "quay.io");
    // The denial names the registry, the entry to add and the file.
    CHECK(p.refusal->message ==
          "registry quay.io is not allowed: add \"quay.io\" to containerRegistry.privateBaseImageAllowList in "
          "/etc/pullgate/config.yaml, or store credentials for it in the credentials file");
}

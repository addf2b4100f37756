// Tests for include/pullgate/policy.hpp: the allowlist and the credential-key
// seed rule, a pure function of (rules, registry, repository) (README "Allowlist entries").
#include "pullgate/policy.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace pullgate;

namespace {

// Rules as config.cpp / credentials.cpp build them: the text as written plus its pattern.
std::vector<policy_rule> rules(const std::vector<std::string>& texts, bool allow_wildcard) {
    std::vector<policy_rule> out;
    for (const auto& t : texts) {
        auto p = parse_registry_pattern(t, allow_wildcard);
        REQUIRE_MESSAGE(p.has_value(), t);
        out.push_back({t, *p});
    }
    return out;
}

registry_name registry(const std::string& text) {
    auto r = parse_registry_name(text);
    REQUIRE_MESSAGE(r.has_value(), text);
    return *r;
}

struct match_case {
    registry_pattern pattern;
    std::string registry;
    std::string repository;
    bool matches;
};

struct decide_case {
    std::string name;
    std::vector<std::string> allow_list;
    std::vector<std::string> credential_keys;
    std::string registry;
    std::string repository;
    bool allowed;
    std::string reason;
    std::string rule;
    std::string suggestion;
};

}  // namespace

TEST_CASE("matches: host, port and repository prefix") {
    const std::vector<match_case> cases = {
        // exact host
        {{"ghcr.io", 0, ""}, "ghcr.io", "acme/app", true},
        {{"ghcr.io", 0, ""}, "quay.io", "acme/app", false},
        {{"ghcr.io", 0, ""}, "ghcr.io.evil.example", "acme/app", false},
        {{"ghcr.io", 0, ""}, "evilghcr.io", "acme/app", false},
        // a port in the pattern must match; no port means the default port only
        {{"registry.example.com", 5443, ""}, "registry.example.com:5443", "x", true},
        {{"registry.example.com", 5443, ""}, "registry.example.com", "x", false},
        {{"registry.example.com", 5443, ""}, "registry.example.com:5444", "x", false},
        {{"registry.example.com", 0, ""}, "registry.example.com:5443", "x", false},
        {{"registry.example.com", 0, ""}, "registry.example.com:443", "x", true},
        {{"127.0.0.1", 15443, ""}, "127.0.0.1:15443", "x", true},
        {{"127.0.0.1", 15443, ""}, "127.0.0.2:15443", "x", false},
        {{"[::1]", 5000, ""}, "[::1]:5000", "x", true},
        // "*." matches exactly one DNS label
        {{"*.example.com", 0, ""}, "a.example.com", "x", true},
        {{"*.example.com", 0, ""}, "registry-7.example.com", "x", true},
        {{"*.example.com", 0, ""}, "example.com", "x", false},
        {{"*.example.com", 0, ""}, "a.b.example.com", "x", false},
        {{"*.example.com", 0, ""}, "aexample.com", "x", false},
        {{"*.example.com", 0, ""}, "a.example.com.evil.example", "x", false},
        {{"*.example.com", 0, ""}, "a.example.com:5000", "x", false},
        {{"*.example.com", 5000, ""}, "a.example.com:5000", "x", true},
        {{"*.example.com", 5000, ""}, "a.example.com", "x", false},
        // repository prefix on '/' boundaries
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "acme", true},
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "acme/app", true},
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "acme/team/app", true},
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "acmecorp", false},
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "acmecorp/app", false},
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "other/acme", false},
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "acm", false},
        {{"ghcr.io", 0, "acme"}, "ghcr.io", "", false},
        {{"ghcr.io", 0, "acme/team"}, "ghcr.io", "acme/team/app", true},
        {{"ghcr.io", 0, "acme/team"}, "ghcr.io", "acme/teamx", false},
        {{"ghcr.io", 0, "acme/team"}, "ghcr.io", "acme", false},
        {{"ghcr.io", 0, "acme"}, "quay.io", "acme/app", false},
        // Docker Hub, by any of its names
        {{"docker.io", 0, "library"}, "index.docker.io", "library/alpine", true},
        {{"docker.io", 0, "library"}, "registry-1.docker.io", "library/alpine", true},
    };
    for (const auto& c : cases) {
        CAPTURE(to_string(c.pattern));
        CAPTURE(c.registry);
        CAPTURE(c.repository);
        CHECK(matches(c.pattern, registry(c.registry), c.repository) == c.matches);
    }
}

TEST_CASE("decide: allowlist, then credential keys, then deny") {
    const std::string hub_key = "https://index.docker.io/v1/";
    const std::vector<decide_case> cases = {
        {"exact host", {"ghcr.io"}, {}, "ghcr.io", "acme/app", true, "allowlisted", "ghcr.io", ""},
        {"rule is the text as written", {"GHCR.IO"}, {}, "ghcr.io", "acme/app", true, "allowlisted", "GHCR.IO", ""},
        {"other host denied", {"quay.io"}, {}, "ghcr.io", "acme/app", false, "not_allowlisted", "", "ghcr.io"},
        {"host:port",
         {"registry.example.com:5443"},
         {},
         "registry.example.com:5443",
         "x",
         true,
         "allowlisted",
         "registry.example.com:5443",
         ""},
        {"entry port must match",
         {"registry.example.com:5443"},
         {},
         "registry.example.com",
         "x",
         false,
         "not_allowlisted",
         "",
         "registry.example.com"},
        {"entry without port: default port only",
         {"registry.example.com"},
         {},
         "registry.example.com:5443",
         "x",
         false,
         "not_allowlisted",
         "",
         "registry.example.com:5443"},
        {"wildcard one label", {"*.example.com"}, {}, "a.example.com", "x", true, "allowlisted", "*.example.com", ""},
        {"wildcard not the apex",
         {"*.example.com"},
         {},
         "example.com",
         "x",
         false,
         "not_allowlisted",
         "",
         "example.com"},
        {"wildcard not two labels",
         {"*.example.com"},
         {},
         "a.b.example.com",
         "x",
         false,
         "not_allowlisted",
         "",
         "a.b.example.com"},
        {"prefix: the repository itself",
         {"ghcr.io/acme"},
         {},
         "ghcr.io",
         "acme",
         true,
         "allowlisted",
         "ghcr.io/acme",
         ""},
        {"prefix: below it", {"ghcr.io/acme"}, {}, "ghcr.io", "acme/x", true, "allowlisted", "ghcr.io/acme", ""},
        {"prefix: not a longer name",
         {"ghcr.io/acme"},
         {},
         "ghcr.io",
         "acmecorp",
         false,
         "not_allowlisted",
         "",
         "ghcr.io"},
        {"prefix with trailing slash",
         {"ghcr.io/acme/"},
         {},
         "ghcr.io",
         "acme/x",
         true,
         "allowlisted",
         "ghcr.io/acme/",
         ""},
        // within a list the most specific entry (longest repository prefix) is the rule, whatever the order
        {"most specific allowlist entry",
         {"ghcr.io", "ghcr.io/acme"},
         {},
         "ghcr.io",
         "acme/x",
         true,
         "allowlisted",
         "ghcr.io/acme",
         ""},
        {"most specific allowlist entry (reversed)",
         {"ghcr.io/acme", "ghcr.io"},
         {},
         "ghcr.io",
         "acme/x",
         true,
         "allowlisted",
         "ghcr.io/acme",
         ""},
        {"most specific of three",
         {"ghcr.io/acme", "ghcr.io/acme/team", "ghcr.io"},
         {},
         "ghcr.io",
         "acme/team/app",
         true,
         "allowlisted",
         "ghcr.io/acme/team",
         ""},
        {"a longer prefix that does not match is no rule",
         {"ghcr.io", "ghcr.io/acme/team"},
         {},
         "ghcr.io",
         "acme/other",
         true,
         "allowlisted",
         "ghcr.io",
         ""},
        {"first of equally specific entries",
         {"ghcr.io", "GHCR.io:443"},
         {},
         "ghcr.io",
         "acme/x",
         true,
         "allowlisted",
         "ghcr.io",
         ""},
        {"first of equally specific entries (reversed)",
         {"GHCR.io:443", "ghcr.io"},
         {},
         "ghcr.io",
         "acme/x",
         true,
         "allowlisted",
         "GHCR.io:443",
         ""},
        {"most specific credential key",
         {},
         {"ghcr.io", "ghcr.io/acme"},
         "ghcr.io",
         "acme/app",
         true,
         "has_credentials",
         "ghcr.io/acme",
         ""},
        {"a more specific credential key does not beat the allowlist",
         {"ghcr.io"},
         {"ghcr.io/acme"},
         "ghcr.io",
         "acme/app",
         true,
         "allowlisted",
         "ghcr.io",
         ""},
        {"allowlist before credentials",
         {"docker.io"},
         {hub_key},
         "index.docker.io",
         "library/alpine",
         true,
         "allowlisted",
         "docker.io",
         ""},
        {"credential key seeds the allowlist",
         {},
         {hub_key},
         "docker.io",
         "library/alpine",
         true,
         "has_credentials",
         hub_key,
         ""},
        {"credential key when the allowlist does not match",
         {"ghcr.io/acme"},
         {"ghcr.io"},
         "ghcr.io",
         "other/x",
         true,
         "has_credentials",
         "ghcr.io",
         ""},
        {"allowlist wins when both match",
         {"ghcr.io/acme"},
         {"ghcr.io"},
         "ghcr.io",
         "acme/x",
         true,
         "allowlisted",
         "ghcr.io/acme",
         ""},
        {"credential key with a path",
         {},
         {"ghcr.io/acme"},
         "ghcr.io",
         "acme/app",
         true,
         "has_credentials",
         "ghcr.io/acme",
         ""},
        {"credential key with a path, other org",
         {},
         {"ghcr.io/acme"},
         "ghcr.io",
         "other/app",
         false,
         "not_allowlisted",
         "",
         "ghcr.io"},
        {"credential key with a port",
         {},
         {"127.0.0.1:15443"},
         "127.0.0.1:15443",
         "team/app",
         true,
         "has_credentials",
         "127.0.0.1:15443",
         ""},
        {"credential key without the port",
         {},
         {"127.0.0.1"},
         "127.0.0.1:15443",
         "team/app",
         false,
         "not_allowlisted",
         "",
         "127.0.0.1:15443"},
        {"empty config denies docker.io",
         {},
         {},
         "docker.io",
         "library/alpine",
         false,
         "not_allowlisted",
         "",
         "docker.io"},
        {"empty config denies an IP registry",
         {},
         {},
         "127.0.0.1:15443",
         "team/app",
         false,
         "not_allowlisted",
         "",
         "127.0.0.1:15443"},
        {"empty config denies IPv6", {}, {}, "[::1]:5000", "a", false, "not_allowlisted", "", "[::1]:5000"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        auto d = decide(rules(c.allow_list, true), rules(c.credential_keys, false), registry(c.registry), c.repository);
        CHECK(d.allowed == c.allowed);
        CHECK(to_string(d.reason) == c.reason);
        CHECK(d.rule == c.rule);
        CHECK(d.suggestion == c.suggestion);
    }
}

TEST_CASE("decide: the suggestion of a denial is an entry that would allow the pull") {
    const std::vector<std::string> registries = {"docker.io",       "ghcr.io",    "registry.example.com:5443",
                                                 "127.0.0.1:15443", "[::1]:5000", "a.b.example.com"};
    for (const auto& text : registries) {
        CAPTURE(text);
        const registry_name r = registry(text);
        auto denied = decide({}, {}, r, "team/app");
        REQUIRE_FALSE(denied.allowed);
        // writing the suggestion into the allowlist must allow exactly this pull
        auto allowed = decide(rules({denied.suggestion}, true), {}, r, "team/app");
        CHECK(allowed.allowed);
        CHECK(allowed.reason == reason_code::allowlisted);
        CHECK(allowed.rule == denied.suggestion);
    }
}

TEST_CASE("matches: kubelet matchImages rules next to the allowlist's") {
    struct row {
        std::string pattern, registry, repository;
        bool allowlist, kubelet;  // the same pattern read by both rule sets (allowlist only when it parses as one)
    };
    const std::vector<row> rows = {
        // one label per '*' in both
        {"*.example.com", "a.example.com", "x", true, true},
        {"*.example.com", "a.b.example.com", "x", false, false},
        {"*.example.com", "example.com", "x", false, false},
        // a port must match in both
        {"r.example.com:5000", "r.example.com:5000", "x", true, true},
        {"r.example.com:5000", "r.example.com", "x", false, false},
        {"r.example.com", "r.example.com:5000", "x", false, false},
        // the path: a '/' boundary for the allowlist, a plain string prefix for the kubelet
        {"r.example.com/team", "r.example.com", "team/app", true, true},
        {"r.example.com/team", "r.example.com", "teamster/app", false, true},
        {"r.example.com/team", "r.example.com", "other/app", false, false},
        // Docker Hub aliases are one registry in both
        {"index.docker.io", "docker.io", "library/nginx", true, true},
    };
    for (const auto& r : rows) {
        CAPTURE(r.pattern);
        CAPTURE(r.registry);
        CAPTURE(r.repository);
        auto allow = parse_registry_pattern(r.pattern, true);
        REQUIRE(allow.has_value());
        CHECK(matches(*allow, registry(r.registry), r.repository) == r.allowlist);
        auto kubelet = parse_match_image(r.pattern);
        REQUIRE(kubelet.has_value());
        CHECK(matches(*kubelet, registry(r.registry), r.repository, match_rules::kubelet) == r.kubelet);
    }
}

TEST_CASE("matches: kubelet globs in any label, never across labels") {
    struct row {
        std::string pattern, registry;
        bool kubelet;
    };
    const std::vector<row> rows = {
        {"*.dkr.ecr.*.amazonaws.com", "111.dkr.ecr.eu-west-1.amazonaws.com", true},
        {"*.dkr.ecr.*.amazonaws.com", "111.dkr.ecr.eu-west-1.amazonaws.com.cn", false},
        {"*.dkr.ecr.*.amazonaws.com", "dkr.ecr.eu-west-1.amazonaws.com", false},
        {"*.dkr.ecr.*.amazonaws.com", "111.dkr.ecr.evil.example.com", false},
        {"*-docker.pkg.dev", "europe-docker.pkg.dev", true},
        {"*-docker.pkg.dev", "europe.docker.pkg.dev", false},
        {"registry-?.example.com", "registry-7.example.com", true},
        {"registry-?.example.com", "registry-17.example.com", false},
        {"*.azurecr.io", "myreg.azurecr.io", true},
        {"*.azurecr.io", "myreg.azurecr.io:5000", false},
        {"*.azurecr.io:5000", "myreg.azurecr.io:5000", true},
    };
    for (const auto& r : rows) {
        CAPTURE(r.pattern);
        CAPTURE(r.registry);
        auto kubelet = parse_match_image(r.pattern);
        REQUIRE(kubelet.has_value());
        CHECK(matches(*kubelet, registry(r.registry), "app", match_rules::kubelet) == r.kubelet);
        // the allowlist never reads a glob in the middle of a host
        if (r.pattern.find('*', 1) != std::string::npos || r.pattern.find('?') != std::string::npos)
            CHECK_FALSE(parse_registry_pattern(r.pattern, true).has_value());
    }
    for (std::string bad : {"", "https://x.io", "*..io", "a_b.*.io", "*.io:0", "*.io:99999", "*.io:x"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_match_image(bad).has_value());
    }
}

TEST_CASE("decide: unlistedRegistries anonymous allows what nothing else allows, with its own reason") {
    const auto allow = rules({"ghcr.io/acme"}, true);
    const auto keys = rules({"quay.io"}, false);
    CHECK(decide(allow, keys, registry("ghcr.io"), "acme/app", true).reason == reason_code::allowlisted);
    CHECK(decide(allow, keys, registry("quay.io"), "x/y", true).reason == reason_code::has_credentials);
    const auto unlisted = decide(allow, keys, registry("registry.example.com"), "x/y", true);
    CHECK(unlisted.allowed);
    CHECK(unlisted.reason == reason_code::anonymous_unlisted);
    CHECK(unlisted.rule.empty());
    const auto denied = decide(allow, keys, registry("registry.example.com"), "x/y", false);
    CHECK_FALSE(denied.allowed);
    CHECK(denied.reason == reason_code::not_allowlisted);
    CHECK_FALSE(decide(allow, keys, registry("registry.example.com"), "x/y").allowed);
}

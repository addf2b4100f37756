// Tests for include/pullgate/registry_name.hpp: `ns` values, allowlist entries
// and credential keys normalised into one comparable form (docs/ARCHITECTURE.md, "A request"; README "Allowlist
// entries").
#include "pullgate/registry_name.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

struct name_case {
    std::string text;
    std::string host;
    std::uint16_t port;
    std::string key;
    std::string endpoint_host;
    bool ip_literal;
};

struct pattern_case {
    std::string text;
    bool allow_wildcard;
    std::string host;
    std::uint16_t port;
    std::string path_prefix;
    std::string canonical;  // to_string()
};

struct rejected_pattern_case {
    std::string text;
    bool allow_wildcard;
};

}  // namespace

TEST_CASE("parse_registry_name normalises host[:port]") {
    const std::vector<name_case> cases = {
        {"ghcr.io", "ghcr.io", 0, "ghcr.io", "ghcr.io", false},
        {"GHCR.IO", "ghcr.io", 0, "ghcr.io", "ghcr.io", false},
        {"ghcr.io:443", "ghcr.io", 0, "ghcr.io", "ghcr.io", false},
        {"Registry.Example.com:5443", "registry.example.com", 5443, "registry.example.com:5443", "registry.example.com",
         false},
        {"localhost:5000", "localhost", 5000, "localhost:5000", "localhost", false},
        {"a-b.example.com", "a-b.example.com", 0, "a-b.example.com", "a-b.example.com", false},
        {"xn--bcher-kva.example", "xn--bcher-kva.example", 0, "xn--bcher-kva.example", "xn--bcher-kva.example", false},
        {"r.example.com:65535", "r.example.com", 65535, "r.example.com:65535", "r.example.com", false},
        {"r.example.com:1", "r.example.com", 1, "r.example.com:1", "r.example.com", false},
        // Docker Hub aliases: one registry, dialled at registry-1.docker.io
        {"docker.io", "docker.io", 0, "docker.io", "registry-1.docker.io", false},
        {"index.docker.io", "docker.io", 0, "docker.io", "registry-1.docker.io", false},
        {"registry-1.docker.io", "docker.io", 0, "docker.io", "registry-1.docker.io", false},
        {"INDEX.Docker.IO:443", "docker.io", 0, "docker.io", "registry-1.docker.io", false},
        // on another port it is not Docker Hub, so it is dialled where it says
        {"docker.io:5000", "docker.io", 5000, "docker.io:5000", "docker.io", false},
        {"index.docker.io:5000", "index.docker.io", 5000, "index.docker.io:5000", "index.docker.io", false},
        // IP literals
        {"127.0.0.1:15443", "127.0.0.1", 15443, "127.0.0.1:15443", "127.0.0.1", true},
        {"10.1.2.3", "10.1.2.3", 0, "10.1.2.3", "10.1.2.3", true},
        {"[::1]:5000", "[::1]", 5000, "[::1]:5000", "::1", true},
        {"[::1]", "[::1]", 0, "[::1]", "::1", true},
        {"[2001:DB8:0:0::1]:443", "[2001:db8::1]", 0, "[2001:db8::1]", "2001:db8::1", true},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        auto r = parse_registry_name(c.text);
        REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error()));
        CHECK(r->host == c.host);
        CHECK(r->port == c.port);
        CHECK(r->key() == c.key);
        CHECK(r->endpoint_host() == c.endpoint_host);
        CHECK(r->is_ip_literal() == c.ip_literal);
    }
}

TEST_CASE("parse_registry_name: spellings of one registry compare equal") {
    const std::vector<std::vector<std::string>> groups = {
        {"docker.io", "index.docker.io", "registry-1.docker.io", "Docker.IO:443", "index.docker.io:443"},
        {"ghcr.io", "GHCR.io", "ghcr.io:443"},
        {"127.0.0.1:15443", "127.0.0.1:15443"},
        {"[::1]:5000", "[0:0:0:0:0:0:0:1]:5000"},
    };
    for (const auto& group : groups) {
        auto first = parse_registry_name(group.front());
        REQUIRE(first.has_value());
        for (const auto& text : group) {
            CAPTURE(text);
            auto r = parse_registry_name(text);
            REQUIRE(r.has_value());
            CHECK(*r == *first);
        }
    }
    // and different registries do not
    CHECK_FALSE(*parse_registry_name("ghcr.io") == *parse_registry_name("ghcr.io:5000"));
    CHECK_FALSE(*parse_registry_name("docker.io") == *parse_registry_name("docker.io:5000"));
}

TEST_CASE("parse_registry_name rejects what is not host[:port]") {
    const std::vector<std::string> cases = {
        "",
        "u@h",
        "u@ghcr.io",
        "user:secret@ghcr.io",
        "ghcr.io/library",
        "ghcr.io/",
        "ghcr.io?x=1",
        "ghcr.io#x",
        "h:",
        "h:0",
        "h:70000",
        "h:65536",
        "h:999999",
        "h:abc",
        "h:-1",
        "ghcr.io:5000:1",
        "127.1",
        "0x7f.1",
        "2130706433",
        "1.2.3.4.5",
        "-a.com",
        "a-.com",
        "a..com",
        ".a.com",
        "a.com.",
        "under_score.example",
        "exa mple.com",
        "exa%6dple.com",
        "*.example.com",
        "::1",
        "[::1",
        "[::1]x",
        std::string(64, 'a') + ".example",
        std::string(300, 'a'),
    };
    for (const auto& text : cases) {
        CAPTURE(text);
        auto r = parse_registry_name(text);
        CHECK_FALSE(r.has_value());
        if (!r) CHECK_FALSE(r.error().empty());
    }
}

TEST_CASE("parse_registry_pattern normalises allowlist entries and credential keys") {
    const std::vector<pattern_case> cases = {
        // Docker's legacy credential key names Docker Hub, not a repository "v1"
        {"https://index.docker.io/v1/", false, "docker.io", 0, "", "docker.io"},
        {"index.docker.io/v1/", false, "docker.io", 0, "", "docker.io"},
        {"http://registry-1.docker.io/v2/", false, "docker.io", 0, "", "docker.io"},
        {"docker.io/library", false, "docker.io", 0, "library", "docker.io/library"},
        {"index.docker.io/library/alpine", false, "docker.io", 0, "library/alpine", "docker.io/library/alpine"},
        // repository prefixes without slashes at the ends
        {"ghcr.io/acme/", false, "ghcr.io", 0, "acme", "ghcr.io/acme"},
        {"ghcr.io/acme", true, "ghcr.io", 0, "acme", "ghcr.io/acme"},
        {"ghcr.io/acme/team///", false, "ghcr.io", 0, "acme/team", "ghcr.io/acme/team"},
        {"GHCR.io/acme", false, "ghcr.io", 0, "acme", "ghcr.io/acme"},
        {"HTTPS://ghcr.io", false, "ghcr.io", 0, "", "ghcr.io"},
        {"ghcr.io:443/acme", false, "ghcr.io", 0, "acme", "ghcr.io/acme"},
        // ports
        {"registry.example.com:5443", false, "registry.example.com", 5443, "", "registry.example.com:5443"},
        // README "Credentials": credential keys may be `https://host/v1/` for any host, naming the registry
        {"https://registry.example.com:5443/v1/", false, "registry.example.com", 5443, "", "registry.example.com:5443"},
        {"https://quay.io/v1/", false, "quay.io", 0, "", "quay.io"},
        {"127.0.0.1:5443", false, "127.0.0.1", 5443, "", "127.0.0.1:5443"},
        {"[::1]:5000/team", false, "[::1]", 5000, "team", "[::1]:5000/team"},
        // wildcards, when allowed
        {"*.corp.example", true, "*.corp.example", 0, "", "*.corp.example"},
        {"*.CORP.example:5000", true, "*.corp.example", 5000, "", "*.corp.example:5000"},
        {"*.corp.example/team", true, "*.corp.example", 0, "team", "*.corp.example/team"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CAPTURE(c.allow_wildcard);
        auto r = parse_registry_pattern(c.text, c.allow_wildcard);
        REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error()));
        CHECK(r->host == c.host);
        CHECK(r->port == c.port);
        CHECK(r->path_prefix == c.path_prefix);
        CHECK(to_string(*r) == c.canonical);

        // the canonical text reads back as the same pattern
        auto again = parse_registry_pattern(to_string(*r), c.allow_wildcard);
        REQUIRE(again.has_value());
        CHECK(again->host == r->host);
        CHECK(again->port == r->port);
        CHECK(again->path_prefix == r->path_prefix);
    }
}

TEST_CASE("parse_registry_pattern rejects malformed entries") {
    const std::vector<rejected_pattern_case> cases = {
        {"*.corp.example", false},
        {"*.corp.example/team", false},
        {"*.1.2.3.4", true},
        {"*.[::1]", true},
        {"*", true},
        {"*.", true},
        {"**.corp.example", true},
        {"a.*.corp.example", true},
        {"*corp.example", true},
        {"ghcr.io/Acme", true},
        {"ghcr.io//acme", false},
        {"ghcr.io/acme..x", false},
        {"ghcr.io/acme/../x", false},
        {"ghcr.io/-acme", false},
        {"ghcr.io/acme?x=1", false},
        {"u@ghcr.io/acme", false},
        {"https://user:secret@ghcr.io", false},
        {"ftp://ghcr.io", false},
        {"ghcr.io:0", false},
        {"ghcr.io:70000/acme", false},
        {"127.1", false},
        {"https://", false},
        {"/acme", false},
        {"", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CAPTURE(c.allow_wildcard);
        auto r = parse_registry_pattern(c.text, c.allow_wildcard);
        CHECK_FALSE(r.has_value());
        if (!r) CHECK_FALSE(r.error().empty());
    }
}

TEST_CASE("to_string of a registry_pattern") {
    struct case_t {
        registry_pattern pattern;
        std::string text;
    };
    const std::vector<case_t> cases = {
        {{"ghcr.io", 0, ""}, "ghcr.io"},
        {{"ghcr.io", 0, "acme"}, "ghcr.io/acme"},
        {{"ghcr.io", 0, "acme/team"}, "ghcr.io/acme/team"},
        {{"127.0.0.1", 5443, ""}, "127.0.0.1:5443"},
        {{"[::1]", 5000, "x"}, "[::1]:5000/x"},
        {{"*.corp.example", 8443, ""}, "*.corp.example:8443"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(to_string(c.pattern) == c.text);
    }
}

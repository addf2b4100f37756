// Tests for include/pullgate/origin.hpp: upstream origins, Host headers and
// the redirect rule (resolution against the answering URL, no downgrade).
#include "pullgate/origin.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace pullgate;

TEST_CASE("registry_origin, key and host_header") {
    struct row {
        std::string registry;
        bool insecure;
        std::string key;
        std::string host;
    };
    const std::vector<row> rows = {
        {"ghcr.io", false, "https://ghcr.io:443", "ghcr.io"},
        {"docker.io", false, "https://registry-1.docker.io:443", "registry-1.docker.io"},
        {"127.0.0.1:5443", false, "https://127.0.0.1:5443", "127.0.0.1:5443"},
        {"[::1]:5000", false, "https://[::1]:5000", "[::1]:5000"},
        {"[::1]", false, "https://[::1]:443", "[::1]"},
        {"registry.internal", true, "http://registry.internal:80", "registry.internal"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.registry);
        auto name = parse_registry_name(r.registry);
        REQUIRE(name.has_value());
        registry_transport t;
        t.insecure_http = r.insecure;
        const origin o = registry_origin(*name, r.insecure ? &t : nullptr);
        CHECK(o.key() == r.key);
        CHECK(host_header(o) == r.host);
    }
}

TEST_CASE("redirect_target: resolved against the answering URL; never https to http") {
    const origin registry{true, "registry.example.com", 443};
    const std::string from = "/v2/team/app/blobs/sha256:abc";
    struct row {
        std::string location;
        bool usable;
        std::string key;
        std::string target;
    };
    const std::vector<row> rows = {
        {"https://cdn.example.net/blob/1?X-Sig=a%2Fb&e=1", true, "https://cdn.example.net:443", "/blob/1?X-Sig=a%2Fb&e=1"},
        {"https://cdn.example.net:8443/x", true, "https://cdn.example.net:8443", "/x"},
        {"/other/path?q=1", true, "https://registry.example.com:443", "/other/path?q=1"},
        {"relative", true, "https://registry.example.com:443", "/v2/team/app/blobs/relative"},
        {"//cdn.example.net/p", true, "https://cdn.example.net:443", "/p"},
        {"https://[2001:db8::1]:9000/p", true, "https://[2001:db8::1]:9000", "/p"},
        {"https://cdn.example.net", true, "https://cdn.example.net:443", "/"},
        {"http://cdn.example.net/p", false, "", ""},   // downgrade
        {"ftp://cdn.example.net/p", false, "", ""},    // not http(s)
        {"https://cdn.example.net:0/p", false, "", ""},
        {"https:///nohost", false, "", ""},
        {"ht tp://bad", false, "", ""},
    };
    for (const auto& r : rows) {
        CAPTURE(r.location);
        auto next = redirect_target(registry, from, r.location);
        CHECK(next.has_value() == r.usable);
        if (next && r.usable) {
            CHECK(next->to.key() == r.key);
            CHECK(next->target == r.target);
        }
    }
    // From plain HTTP, both schemes are fine.
    const origin plain{false, "registry.internal", 80};
    auto up = redirect_target(plain, "/v2/a/blobs/x", "https://cdn.example.net/p");
    REQUIRE(up);
    CHECK(up->to.tls);
    auto same = redirect_target(plain, "/v2/a/blobs/x", "http://cdn.example.net/p");
    REQUIRE(same);
    CHECK_FALSE(same->to.tls);
}

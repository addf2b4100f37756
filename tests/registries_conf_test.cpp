// Tests for include/pullgate/registries_conf.hpp: the containers-registries.conf
// drop-in, planned from allowlist entries and credential keys,
// rendered, and parsed back with toml++ to check what a client would read.
#include "pullgate/registries_conf.hpp"

#include "pullgate/registry_name.hpp"

#include <doctest/doctest.h>
#include <toml++/toml.h>

#include <optional>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

std::vector<policy_rule> rules(const std::vector<std::string>& texts) {
    std::vector<policy_rule> out;
    for (const auto& t : texts) {
        auto p = parse_registry_pattern(t, true);
        REQUIRE_MESSAGE(p.has_value(), t);
        out.push_back({t, *p});
    }
    return out;
}

registries_conf_mirror mirror(const std::string& text) {
    auto m = parse_registries_conf_mirror(text);
    REQUIRE_MESSAGE(m.has_value(), text);
    return *m;
}

// One [[registry]] table as a client reads it.
struct entry {
    std::string prefix;
    std::optional<std::string> location;
    bool insecure = false;
    bool blocked = false;
    bool has_mirror = false;
};

std::vector<entry> parse_back(const std::string& text) {
    toml::table doc;
    try {
        doc = toml::parse(text);
    } catch (const toml::parse_error& e) {
        FAIL("the drop-in is not valid TOML: " << e.description() << "\n" << text);
    }
    std::vector<entry> out;
    const toml::array* regs = doc["registry"].as_array();
    if (!regs) return out;
    for (const auto& node : *regs) {
        const toml::table* t = node.as_table();
        REQUIRE(t != nullptr);
        entry e;
        e.prefix = (*t)["prefix"].value_or(std::string());
        if (auto loc = (*t)["location"].value<std::string>()) e.location = *loc;
        e.insecure = (*t)["insecure"].value_or(false);
        e.blocked = (*t)["blocked"].value_or(false);
        e.has_mirror = t->contains("mirror");
        out.push_back(e);
    }
    return out;
}

const entry* find(const std::vector<entry>& v, const std::string& prefix) {
    for (const auto& e : v)
        if (e.prefix == prefix) return &e;
    return nullptr;
}

}  // namespace

TEST_CASE("parse_registries_conf_mirror") {
    struct ok_case {
        std::string text;
        std::string host_port;
        bool tls;
        bool loopback;
    };
    const std::vector<ok_case> ok = {
        {"127.0.0.1:5000", "127.0.0.1:5000", false, true},
        {"http://127.0.0.1:5000", "127.0.0.1:5000", false, true},
        {"http://127.0.0.1:5000/", "127.0.0.1:5000", false, true},
        {"127.0.0.53:5000", "127.0.0.53:5000", false, true},
        {"localhost:5000", "localhost:5000", false, true},
        {"LocalHost:5000", "localhost:5000", false, true},
        {"10.1.2.3:5000", "10.1.2.3:5000", false, false},
        {"pullgate.internal:5000", "pullgate.internal:5000", false, false},
        {"https://pullgate.internal", "pullgate.internal", true, false},
        {"https://pullgate.internal:8443", "pullgate.internal:8443", true, false},
    };
    for (const auto& c : ok) {
        CAPTURE(c.text);
        auto m = parse_registries_conf_mirror(c.text);
        REQUIRE_MESSAGE(m.has_value(), m.error());
        CHECK(m->host_port == c.host_port);
        CHECK(m->tls == c.tls);
        CHECK(m->loopback == c.loopback);
    }
    struct bad_case {
        std::string text;
        std::string says;
    };
    const std::vector<bad_case> bad = {
        {"", "invalid mirror"},
        {"127.0.0.1", "port"},
        {"http://127.0.0.1", "port"},
        {"[::1]:5000", "IPv6"},
        {"0.0.0.0:5000", "invalid mirror"},
        {"ftp://127.0.0.1:5000", "HOST:PORT"},
        {"127.0.0.1:5000/path", "invalid mirror"},
        {"user@127.0.0.1:5000", "invalid mirror"},
        {"127.0.0.1:99999", "invalid mirror"},
        {"127.0.0.1:5000\"\n[[registry]]", "invalid mirror"},
    };
    for (const auto& c : bad) {
        CAPTURE(c.text);
        auto m = parse_registries_conf_mirror(c.text);
        REQUIRE_FALSE(m.has_value());
        CHECK(m.error().find(c.says) != std::string::npos);
    }
}

TEST_CASE("plan_registries_conf: one route per host, blocks for what the path form cannot reach") {
    const auto plan = plan_registries_conf(
        rules({"quay.io", "ghcr.io/acme", "ghcr.io/other", "*.corp.example", "127.0.0.1:5443", "[::1]:5000",
               "registry.example.com:443", "index.docker.io", "*.corp.example:8443"}),
        rules({"ghcr.io/acme/private", "https://index.docker.io/v1/", "10.0.0.5", "localhost"}));

    struct route_case {
        std::string host;
        std::vector<std::string> rules;
    };
    const std::vector<route_case> routes = {
        {"10.0.0.5", {"10.0.0.5"}},
        {"docker.io", {"index.docker.io", "https://index.docker.io/v1/"}},
        {"ghcr.io", {"ghcr.io/acme", "ghcr.io/other", "ghcr.io/acme/private"}},
        {"localhost", {"localhost"}},
        {"quay.io", {"quay.io"}},
        {"registry.example.com", {"registry.example.com:443"}},
    };
    REQUIRE(plan.routes.size() == routes.size());
    for (std::size_t i = 0; i < routes.size(); ++i) {
        CAPTURE(routes[i].host);
        CHECK(plan.routes[i].host == routes[i].host);
        CHECK(plan.routes[i].rules == routes[i].rules);
    }
    REQUIRE(plan.blocks.size() == 2);
    CHECK(plan.blocks[0].prefix == "*.corp.example");
    CHECK(plan.blocks[0].rules == std::vector<std::string>{"*.corp.example", "*.corp.example:8443"});
    CHECK(plan.blocks[0].why.find("*.domain") != std::string::npos);
    CHECK(plan.blocks[1].prefix == "127.0.0.1:5443");
    CHECK(plan.blocks[1].why.find("port") != std::string::npos);
    REQUIRE(plan.skipped.size() == 1);
    CHECK(plan.skipped[0].rule == "[::1]:5000");
}

TEST_CASE("plan_registries_conf: nothing allowed, nothing routed") {
    const auto plan = plan_registries_conf({}, {});
    CHECK(plan.routes.empty());
    CHECK(plan.blocks.empty());
    const auto text = render_registries_conf(plan, mirror("127.0.0.1:5000"));
    CHECK(parse_back(text).empty());
    CHECK(text.find("No catch-all") != std::string::npos);
}

TEST_CASE("render_registries_conf: valid TOML a client reads as rewrites and blocks") {
    const auto plan = plan_registries_conf(rules({"quay.io", "ghcr.io/acme", "*.corp.example", "127.0.0.1:5443"}),
                                           rules({"docker.io"}));
    const std::string text = render_registries_conf(plan, mirror("127.0.0.1:5000"));
    const auto entries = parse_back(text);
    REQUIRE(entries.size() == 5);

    for (const std::string host : {"quay.io", "ghcr.io", "docker.io"}) {
        CAPTURE(host);
        const entry* e = find(entries, host);
        REQUIRE(e != nullptr);
        REQUIRE(e->location.has_value());
        CHECK(*e->location == "127.0.0.1:5000/" + host);
        CHECK(e->insecure);  // pullgate's listener is plain HTTP
        CHECK_FALSE(e->blocked);
        CHECK_FALSE(e->has_mirror);  // a mirror would fall back to the registry
    }
    const entry* wildcard = find(entries, "*.corp.example");
    REQUIRE(wildcard != nullptr);
    CHECK(wildcard->blocked);
    CHECK_FALSE(wildcard->location.has_value());
    const entry* ported = find(entries, "127.0.0.1:5443");
    REQUIRE(ported != nullptr);
    CHECK(ported->blocked);
    // containers/image refuses a non-wildcard entry without location.
    REQUIRE(ported->location.has_value());
    CHECK(*ported->location == "127.0.0.1:5443");

    CHECK(text.find("\n[[registry.mirror]]") == std::string::npos);  // only named in a comment
    for (const char* stated : {"has no fallback", "No catch-all", "cannot carry a port", "--no-tags", "policy.json"}) {
        CAPTURE(stated);
        CHECK(text.find(stated) != std::string::npos);
    }
    CHECK(text.find("WARNING") == std::string::npos);
}

TEST_CASE("render_registries_conf: the mirror's transport decides insecure") {
    const auto plan = plan_registries_conf(rules({"quay.io"}), {});
    SUBCASE("TLS front: no insecure") {
        const auto text = render_registries_conf(plan, mirror("https://pullgate.internal:8443"));
        const auto entries = parse_back(text);
        REQUIRE(entries.size() == 1);
        CHECK(*entries[0].location == "pullgate.internal:8443/quay.io");
        CHECK_FALSE(entries[0].insecure);
        CHECK(text.find("WARNING") == std::string::npos);
    }
    SUBCASE("plain HTTP off loopback: insecure, with a warning") {
        const auto text = render_registries_conf(plan, mirror("10.0.0.7:5000"));
        const auto entries = parse_back(text);
        REQUIRE(entries.size() == 1);
        CHECK(entries[0].insecure);
        CHECK(text.find("WARNING: 10.0.0.7:5000 is not a loopback address") != std::string::npos);
    }
}

// Tests for include/pullgate/credential_provider.hpp: the kubelet's
// CredentialProviderConfig, the v1 request/response, Go durations, cache keys
// and matchImages patterns.
#include "pullgate/credential_provider.hpp"

#include "pullgate/config.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace pullgate;
using namespace std::chrono_literals;

namespace {

registry_name registry(const std::string& text) {
    auto r = parse_registry_name(text);
    REQUIRE_MESSAGE(r.has_value(), text);
    return *r;
}

std::string error_of(const std::string& text) {
    try {
        parse_provider_config(text, "/etc/kubelet/providers.yaml");
    } catch (const config_error& e) {
        return e.what();
    }
    return {};
}

const std::string eks_yaml = R"(apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages:
      - "*.dkr.ecr.*.amazonaws.com"
      - "*.dkr.ecr.*.amazonaws.com.cn"
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env:
      - name: AWS_PROFILE
        value: node
)";

}  // namespace

TEST_CASE("parse_provider_config: the EKS file, YAML and JSON") {
    const auto cfg = parse_provider_config(eks_yaml, "config.yaml");
    REQUIRE(cfg.providers.size() == 1);
    const auto& p = cfg.providers[0];
    CHECK(p.name == "ecr-credential-provider");
    REQUIRE(p.match_images.size() == 2);
    CHECK(p.match_images[0].text == "*.dkr.ecr.*.amazonaws.com");
    CHECK(p.default_cache_duration == 12h);
    CHECK(p.api_version == "credentialprovider.kubelet.k8s.io/v1");
    CHECK(p.args == std::vector<std::string>{"get-credentials"});
    REQUIRE(p.env.size() == 1);
    CHECK(p.env[0].first == "AWS_PROFILE");
    CHECK(p.env[0].second == "node");

    const auto json =
        parse_provider_config(R"({"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig",
        "providers":[{"name":"gcp","matchImages":["gcr.io","*.gcr.io","*.pkg.dev"],"defaultCacheDuration":"1m",
        "apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]})",
                              "config.json");
    REQUIRE(json.providers.size() == 1);
    CHECK(json.providers[0].default_cache_duration == 1min);
    CHECK(json.provider_for(registry("europe-docker.pkg.dev"), "p/r/i") == &json.providers[0]);
    CHECK(json.provider_for(registry("gcr.io"), "p/i") == &json.providers[0]);
    CHECK(json.provider_for(registry("docker.io"), "library/nginx") == nullptr);
    CHECK(cfg.provider_for(registry("111.dkr.ecr.eu-west-1.amazonaws.com"), "app") == &cfg.providers[0]);
    CHECK(cfg.provider_for(registry("111.dkr.ecr.eu-west-1.amazonaws.com:5000"), "app") == nullptr);
}

TEST_CASE("parse_provider_config: errors name the file, line:column and the key") {
    struct row {
        std::string text, expect;
    };
    const std::vector<row> rows = {
        {"apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [{name: x}]\n",
         "providers[0].matchImages"},
        {"apiVersion: kubelet.config.k8s.io/v2\nkind: CredentialProviderConfig\nproviders: []\n",
         "/etc/kubelet/providers.yaml:1:13: apiVersion"},
        {"apiVersion: kubelet.config.k8s.io/v1\nkind: Other\nproviders: []\n", ":2:7: kind"},
        {"apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: a\n    "
         "matchImages: [x.io]\n    defaultCacheDuration: 12x\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
         ":6:27: providers[0].defaultCacheDuration: duration '12x' has an unknown unit"},
        {"apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: a\n    "
         "matchImages: [x.io]\n    defaultCacheDuration: 1h\n    apiVersion: credentialprovider.kubelet.k8s.io/"
         "v1beta1\n",
         "providers[0].apiVersion: 'credentialprovider.kubelet.k8s.io/v1beta1' is not supported"},
        {"apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: ../a\n",
         "providers[0].name: must be a file name"},
        {"apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: a\n    "
         "matchImages: [\"https://x.io\"]\n",
         ":5:19: providers[0].matchImages[0]: 'https://x.io': a pattern has no scheme"},
        {"apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: a\n    "
         "matchImages: [x.io]\n    defaultCacheDuration: 1h\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n"
         "    tokenAttributes: {}\n",
         ":8:5: providers[0].tokenAttributes: unknown or unsupported key"},
        {"{\"apiVersion\": ", "invalid YAML/JSON"},
        {"", "is empty"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        const auto e = error_of(r.text);
        CHECK_MESSAGE(e.find(r.expect) != std::string::npos, e);
        CHECK(e.starts_with("/etc/kubelet/providers.yaml"));
    }
}

TEST_CASE("parse_go_duration: Go's time.ParseDuration") {
    struct row {
        std::string text;
        std::chrono::nanoseconds expect;
    };
    const std::vector<row> ok = {
        {"0", 0ns},       {"0s", 0ns},    {"12h", 12h}, {"1h30m", 90min},    {"1.5s", 1500ms},
        {"300ms", 300ms}, {"2m3s", 123s}, {"1us", 1us}, {"1\xc2\xb5s", 1us}, {"7ns", 7ns},
        {".5s", 500ms},   {"1.s", 1s},    {"+5s", 5s},  {"1h1h", 2h},        {"2562047h", 2562047h},
    };
    for (const auto& r : ok) {
        CAPTURE(r.text);
        auto d = parse_go_duration(r.text);
        REQUIRE(d.has_value());
        CHECK(*d == r.expect);
    }
    for (std::string bad :
         {"", "h", "12", "1x", "-1s", "1.2.3s", ".s", "s", "1h-", "3000000h", "99999999999999999999s", " 1s", "1 s"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_go_duration(bad).has_value());
    }
}

TEST_CASE("provider_cache_key: per cacheKeyType") {
    const auto r = registry("111.dkr.ecr.eu-west-1.amazonaws.com");
    CHECK(provider_cache_key(cache_key_type::image, r, "team/app") == "111.dkr.ecr.eu-west-1.amazonaws.com/team/app");
    CHECK(provider_cache_key(cache_key_type::registry, r, "team/app") == "111.dkr.ecr.eu-west-1.amazonaws.com");
    CHECK(provider_cache_key(cache_key_type::global, r, "team/app").empty());
    CHECK(provider_cache_key(cache_key_type::registry, registry("127.0.0.1:5000"), "a") == "127.0.0.1:5000");
}

TEST_CASE("provider_request: the v1 request") {
    const auto doc = nlohmann::json::parse(provider_request(registry("127.0.0.1:15443"), "team/app"));
    CHECK(doc["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1");
    CHECK(doc["kind"] == "CredentialProviderRequest");
    CHECK(doc["image"] == "127.0.0.1:15443/team/app");
    CHECK(doc.size() == 3);
}

TEST_CASE("parse_provider_response: v1 responses") {
    const auto r = parse_provider_response(R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1",
        "kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"6h",
        "auth":{"*.dkr.ecr.*.amazonaws.com":{"username":"AWS","password":"pw1"},
                "111.dkr.ecr.eu-west-1.amazonaws.com":{"username":"AWS","password":"pw2"},
                "111.dkr.ecr.eu-west-1.amazonaws.com/team":{"username":"AWS","password":"pw3"}}})");
    REQUIRE(r.has_value());
    CHECK(r->key_type == cache_key_type::registry);
    REQUIRE(r->cache_duration.has_value());
    CHECK(*r->cache_duration == 6h);
    REQUIRE(r->auth.size() == 3);
    // the most specific pattern wins: the longest path, then no wildcard
    const auto reg = registry("111.dkr.ecr.eu-west-1.amazonaws.com");
    REQUIRE(r->auth_for(reg, "team/app") != nullptr);
    CHECK(r->auth_for(reg, "team/app")->password == "pw3");
    CHECK(r->auth_for(reg, "other/app")->password == "pw2");
    CHECK(r->auth_for(registry("222.dkr.ecr.us-east-1.amazonaws.com"), "a")->password == "pw1");
    CHECK(r->auth_for(registry("ghcr.io"), "a") == nullptr);

    const auto no_duration = parse_provider_response(
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image"})");
    REQUIRE(no_duration.has_value());
    CHECK_FALSE(no_duration->cache_duration.has_value());
    CHECK(no_duration->auth.empty());
    const auto zero = parse_provider_response(
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Global","cacheDuration":"0s","auth":{}})");
    REQUIRE(zero.has_value());
    CHECK(zero->key_type == cache_key_type::global);
    CHECK(*zero->cache_duration == 0ns);
}

TEST_CASE("parse_provider_response: anything else fails without quoting the output") {
    const std::vector<std::string> bad = {
        "",
        "garbage s3cret",
        "[]",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderResponse","cacheKeyType":"Image"})",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Other","cacheKeyType":"Image"})",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse"})",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"image"})",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","cacheDuration":"soon"})",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":[]})",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{"x.io":{"username":"u","password":5}}})",
        R"({"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{"https://x.io":{"username":"u","password":"s3cret"}}})",
    };
    for (const auto& text : bad) {
        CAPTURE(text);
        auto r = parse_provider_response(text);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().find("s3cret") == std::string::npos);
    }
}

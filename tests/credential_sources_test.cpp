// Tests for include/pullgate/credential_sources.hpp: which source answers a
// pull, in the documented order (auths with a secret → credHelpers →
// secretless auths + credsStore → provider → anonymous).
#include "pullgate/credential_sources.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace pullgate;

namespace {

registry_name registry(const std::string& text) {
    auto r = parse_registry_name(text);
    REQUIRE_MESSAGE(r.has_value(), text);
    return *r;
}

const char* providers_yaml = R"(apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr
    matchImages: ["*.dkr.ecr.*.amazonaws.com", "ghcr.io"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
  - name: second
    matchImages: ["*.dkr.ecr.*.amazonaws.com", "quay.io"]
    defaultCacheDuration: 1h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
)";

}  // namespace

TEST_CASE("pick_credential_source: first match wins, in the documented order") {
    const auto store = parse_credentials(R"({
        "auths": {
            "ghcr.io/acme": {"auth": "dTpw"},
            "ghcr.io": {},
            "registry.example.com": {},
            "quay.io/team": {"username": "u", "password": "p"}
        },
        "credHelpers": {"ghcr.io": "pass", "111.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"},
        "credsStore": "desktop"
    })",
                                         "config.json");
    const auto providers = parse_provider_config(providers_yaml, "providers.yaml");
    struct row {
        std::string registry, repository, expect;
    };
    const std::vector<row> rows = {
        // an auths entry with a secret beats the helper for the same registry
        {"ghcr.io", "acme/app", "auths:ghcr.io/acme"},
        // credHelpers (exact registry) beats the secretless entry + credsStore and the provider
        {"ghcr.io", "other/app", "helper:pass"},
        {"111.dkr.ecr.eu-west-1.amazonaws.com", "app", "helper:ecr-login"},
        // secretless auths entry + credsStore
        {"registry.example.com", "x/y", "helper:desktop"},
        // a provider, in config order
        {"222.dkr.ecr.us-east-1.amazonaws.com", "app", "provider:ecr"},
        {"quay.io", "elsewhere/app", "provider:second"},
        {"quay.io", "team/app", "auths:quay.io/team"},
        // credsStore alone extends to nothing without an auths entry
        {"docker.io", "library/nginx", "anonymous"},
        // credHelpers is exact: another port is another registry
        {"ghcr.io:5000", "acme/app", "anonymous"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.registry);
        CAPTURE(r.repository);
        const auto s = pick_credential_source(store, &providers, registry(r.registry), r.repository);
        CHECK(s.name == r.expect);
    }
    const auto helper = pick_credential_source(store, &providers, registry("ghcr.io"), "other/app");
    CHECK(helper.type == credential_source::kind::helper);
    CHECK(helper.helper == "pass");
    const auto stored = pick_credential_source(store, &providers, registry("ghcr.io"), "acme/app");
    REQUIRE(stored.stored != nullptr);
    CHECK(stored.stored->username == "u");
    const auto prov = pick_credential_source(store, &providers, registry("1.dkr.ecr.x.amazonaws.com"), "a");
    REQUIRE(prov.provider != nullptr);
    CHECK(prov.provider->name == "ecr");
    CHECK(pick_credential_source(store, nullptr, registry("1.dkr.ecr.x.amazonaws.com"), "a").name == "anonymous");
}

TEST_CASE("seed rule: credHelpers keys allow, credsStore and secretless keys do not") {
    const auto store = parse_credentials(
        R"({"auths":{"registry.example.com":{}},"credHelpers":{"ghcr.io":"pass"},"credsStore":"desktop"})", "c.json");
    const auto keys = store.keys();
    REQUIRE(keys.size() == 1);
    CHECK(keys[0].text == "ghcr.io");
    CHECK(decide({}, keys, registry("ghcr.io"), "any/thing").allowed);
    CHECK_FALSE(decide({}, keys, registry("registry.example.com"), "x").allowed);
    CHECK_FALSE(decide({}, keys, registry("docker.io"), "library/nginx").allowed);
}

// Tests for include/pullgate/oci_path.hpp: request targets of the OCI read API
// (docs/ARCHITECTURE.md, "A request") parsed into values, and the name/tag/digest grammar checks.
#include "pullgate/oci_path.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

std::string repeat(char c, std::size_t n) {
    return std::string(n, c);
}

std::string describe(const boost::system::result<oci_request, failure>& r) {
    if (r.has_value()) return "accepted";
    return std::to_string(r.error().status) + " " + r.error().code + ": " + r.error().message;
}

const std::string hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string hex128 = hex64 + hex64;
const std::string sha256 = "sha256:" + hex64;
const std::string sha512 = "sha512:" + hex128;

// 255 characters: the longest repository name accepted.
const std::string name255 = repeat('a', 100) + "/" + repeat('b', 100) + "/" + repeat('c', 53);
const std::string name256 = name255 + "c";

struct accepted_case {
    std::string target;
    std::string kind;  // to_string(request_kind)
    std::string repository;
    std::string reference;
    std::optional<std::string> ns;
    std::string upstream_query;
};

struct rejected_case {
    std::string target;
    unsigned status;
    std::string code;
};

}  // namespace

TEST_CASE("request_kind names are the decision-log kind tokens") {
    struct kind_case {
        request_kind kind;
        std::string text;
    };
    const std::vector<kind_case> cases = {
        {request_kind::ping, "ping"}, {request_kind::manifest, "manifest"},   {request_kind::blob, "blob"},
        {request_kind::tags, "tags"}, {request_kind::referrers, "referrers"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(std::string(to_string(c.kind)) == c.text);
    }
}

TEST_CASE("parse_request_target accepts the read API") {
    const std::vector<accepted_case> cases = {
        // ping forms
        {"/v2/", "ping", "", "", std::nullopt, ""},
        {"/v2", "ping", "", "", std::nullopt, ""},
        {"/v2/?ns=docker.io", "ping", "", "", "docker.io", ""},
        // manifests by tag and by digest
        {"/v2/library/alpine/manifests/3.19?ns=docker.io", "manifest", "library/alpine", "3.19", "docker.io", ""},
        {"/v2/alpine/manifests/latest", "manifest", "alpine", "latest", std::nullopt, ""},
        {"/v2/library/alpine/manifests/" + sha256 + "?ns=ghcr.io", "manifest", "library/alpine", sha256, "ghcr.io", ""},
        {"/v2/library/alpine/manifests/" + sha512, "manifest", "library/alpine", sha512, std::nullopt, ""},
        {"/v2/a/manifests/_Tag-1.2_x", "manifest", "a", "_Tag-1.2_x", std::nullopt, ""},
        {"/v2/a/manifests/" + repeat('t', 128), "manifest", "a", repeat('t', 128), std::nullopt, ""},
        // name grammar: separators '.', '_', '__', '-+' and nested components
        {"/v2/a__b/c--d/e.f/g_h/manifests/v1", "manifest", "a__b/c--d/e.f/g_h", "v1", std::nullopt, ""},
        {"/v2/" + name255 + "/manifests/v1", "manifest", name255, "v1", std::nullopt, ""},
        // components that look like API words are still names
        {"/v2/library/manifests/manifests/latest", "manifest", "library/manifests", "latest", std::nullopt, ""},
        // blobs
        {"/v2/library/alpine/blobs/" + sha256 + "?ns=docker.io", "blob", "library/alpine", sha256, "docker.io", ""},
        {"/v2/x/blobs/" + sha512, "blob", "x", sha512, std::nullopt, ""},
        // tags/list: ns stripped, every other parameter forwarded as received
        {"/v2/library/alpine/tags/list", "tags", "library/alpine", "", std::nullopt, ""},
        {"/v2/library/alpine/tags/list?ns=docker.io&n=10&last=3.18", "tags", "library/alpine", "", "docker.io",
         "n=10&last=3.18"},
        {"/v2/library/alpine/tags/list?n=10&ns=docker.io&last=3.18", "tags", "library/alpine", "", "docker.io",
         "n=10&last=3.18"},
        {"/v2/library/alpine/tags/list?n=10&last=3.18&ns=docker.io", "tags", "library/alpine", "", "docker.io",
         "n=10&last=3.18"},
        {"/v2/library/alpine/tags/list?last=a%2Fb&ns=docker.io", "tags", "library/alpine", "", "docker.io",
         "last=a%2Fb"},
        // referrers
        {"/v2/acme/app/referrers/" + sha256 + "?ns=ghcr.io", "referrers", "acme/app", sha256, "ghcr.io", ""},
        {"/v2/acme/app/referrers/" + sha256 + "?ns=ghcr.io&artifactType=application%2Fvnd.example%2Bjson", "referrers",
         "acme/app", sha256, "ghcr.io", "artifactType=application%2Fvnd.example%2Bjson"},
        // ns is percent-decoded (containerd sends host:port encoded; README "Pointing containerd at pullgate")
        {"/v2/team/app/manifests/v1?ns=127.0.0.1%3A15443", "manifest", "team/app", "v1", "127.0.0.1:15443", ""},
        {"/v2/team/app/manifests/v1?ns=%5B%3A%3A1%5D%3A5000", "manifest", "team/app", "v1", "[::1]:5000", ""},
        // an ns key written percent-encoded is still ns, and still stripped
        {"/v2/team/app/tags/list?n%73=docker.io&n=1", "tags", "team/app", "", "docker.io", "n=1"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.target);
        auto r = parse_request_target(c.target);
        REQUIRE_MESSAGE(r.has_value(), describe(r));
        CHECK(std::string(to_string(r->kind)) == c.kind);
        CHECK(r->repository == c.repository);
        CHECK(r->reference == c.reference);
        CHECK(r->ns.has_value() == c.ns.has_value());
        if (r->ns && c.ns) CHECK(*r->ns == *c.ns);
        CHECK(r->upstream_query == c.upstream_query);
    }
}

TEST_CASE("parse_request_target rejects what is not the read API") {
    const std::vector<rejected_case> cases = {
        // ns given twice: which registry would be meant is ambiguous
        {"/v2/library/alpine/manifests/latest?ns=docker.io&ns=evil.example", 400, "NAME_INVALID"},
        {"/v2/?ns=docker.io&ns=docker.io", 400, "NAME_INVALID"},
        // invalid names
        {"/v2/Library/alpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/library/Alpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2//alpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/-alpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/.alpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/_alpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/alpine-/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/alpine./manifests/latest", 400, "NAME_INVALID"},
        {"/v2/alpine/../manifests/latest", 400, "NAME_INVALID"},
        {"/v2/a//b/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/a/b//manifests/latest", 400, "NAME_INVALID"},
        {"/v2/a___b/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/a..b/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/a b/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/" + name256 + "/manifests/v1", 400, "NAME_INVALID"},
        // traversal attempts
        {"/v2/../x", 404, "NAME_UNKNOWN"},
        {"/v2/../../manifests/latest", 400, "NAME_INVALID"},
        {"/v2/library/%2e%2e/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/%2e%2e/%2e%2e/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/library%2falpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/library/alpine/manifests/..%2f..%2fx", 400, "NAME_INVALID"},
        {"/v2/library/alpine/manifests/%2e%2e", 400, "NAME_INVALID"},
        {"/v2/library/alpine/blobs/sha256%3A" + hex64, 400, "NAME_INVALID"},
        // bad tags
        {"/v2/alpine/manifests/" + repeat('t', 129), 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/.hidden", 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/-rc1", 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/", 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/a+b", 404, "MANIFEST_UNKNOWN"},
        // bad digests
        {"/v2/alpine/manifests/sha256:" + hex64.substr(0, 63), 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/sha256:" + hex64 + "0", 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/sha256:" + repeat('A', 64), 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/md5:d41d8cd98f00b204e9800998ecf8427e", 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/manifests/:" + hex64, 404, "MANIFEST_UNKNOWN"},
        {"/v2/alpine/blobs/" + hex64, 400, "DIGEST_INVALID"},
        {"/v2/alpine/blobs/latest", 400, "DIGEST_INVALID"},
        {"/v2/alpine/blobs/sha256:" + repeat('g', 64), 400, "DIGEST_INVALID"},
        {"/v2/alpine/blobs/sha512:" + hex64, 400, "DIGEST_INVALID"},
        {"/v2/alpine/referrers/latest", 400, "DIGEST_INVALID"},
        {"/v2/alpine/referrers/sha256:" + hex64.substr(0, 63), 400, "DIGEST_INVALID"},
        // outside the read API
        {"/", 404, "NAME_UNKNOWN"},
        {"/v1/_ping", 404, "NAME_UNKNOWN"},
        {"/v2x/alpine/manifests/latest", 404, "NAME_UNKNOWN"},
        {"/healthz", 404, "NAME_UNKNOWN"},
        {"/v2/_catalog", 404, "NAME_UNKNOWN"},
        {"/v2/alpine", 404, "NAME_UNKNOWN"},
        {"/v2/alpine/manifests", 404, "NAME_UNKNOWN"},
        {"/v2/library/alpine/blobs/uploads/", 404, "NAME_UNKNOWN"},
        {"/v2/library/alpine/blobs/uploads/0b4f2a6e-upload", 404, "NAME_UNKNOWN"},
        {"/v2/library/alpine/tags/other", 404, "NAME_UNKNOWN"},
        {"/v2/library/alpine/layers/" + sha256, 404, "NAME_UNKNOWN"},
        // not an origin-form target
        {"http://evil.example/v2/", 400, "NAME_INVALID"},
        {"v2/alpine/manifests/latest", 400, "NAME_INVALID"},
        {"/v2/alpine/manifests/latest#frag", 400, "NAME_INVALID"},
        {"", 400, "NAME_INVALID"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.target);
        auto r = parse_request_target(c.target);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == c.status);
        CHECK(r.error().code == c.code);
        CHECK(r.error().reason == reason_code::bad_request);
        CHECK_FALSE(r.error().message.empty());
    }
}

TEST_CASE("is_valid_repository follows the OCI name grammar") {
    struct name_case {
        std::string name;
        bool valid;
    };
    const std::vector<name_case> cases = {
        {"alpine", true},
        {"library/alpine", true},
        {"a", true},
        {"0", true},
        {"a.b", true},
        {"a_b", true},
        {"a__b", true},
        {"a-b", true},
        {"a---b", true},
        {"a/b/c/d/e", true},
        {"x9/y8.z7", true},
        {name255, true},
        {"", false},
        {"Alpine", false},
        {"/alpine", false},
        {"alpine/", false},
        {"a//b", false},
        {"a___b", false},
        {"a..b", false},
        {"a.-b", false},
        {"a_-b", false},
        {".a", false},
        {"-a", false},
        {"_a", false},
        {"a.", false},
        {"a-", false},
        {"a_", false},
        {"..", false},
        {"a/../b", false},
        {"a/./b", false},
        {"a:b", false},
        {"a b", false},
        {"a%2fb", false},
        {name256, false},
        {repeat('a', 256), false},
        {"é", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        CHECK(is_valid_repository(c.name) == c.valid);
    }
}

TEST_CASE("is_valid_tag follows the OCI tag grammar") {
    struct tag_case {
        std::string tag;
        bool valid;
    };
    const std::vector<tag_case> cases = {
        {"latest", true},
        {"3.19", true},
        {"v1.2.3-rc.1_build", true},
        {"_x", true},
        {"X", true},
        {"0", true},
        {repeat('t', 128), true},
        {repeat('t', 129), false},
        {"", false},
        {".x", false},
        {"-x", false},
        {"a/b", false},
        {"a:b", false},
        {"a+b", false},
        {"a b", false},
        {"ä", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.tag);
        CHECK(is_valid_tag(c.tag) == c.valid);
    }
}

TEST_CASE("is_valid_digest accepts only verifiable digests; is_digest recognises the form") {
    struct digest_case {
        std::string text;
        bool valid;
        bool digest_form;
    };
    const std::vector<digest_case> cases = {
        {sha256, true, true},
        {sha512, true, true},
        {"sha256:" + hex64.substr(0, 63), false, true},
        {"sha256:" + hex64 + "a", false, true},
        {"sha256:" + repeat('A', 64), false, true},
        {"sha256:" + repeat('g', 64), false, true},
        {"sha512:" + hex64, false, true},
        {"SHA256:" + hex64, false, true},
        {"md5:d41d8cd98f00b204e9800998ecf8427e", false, true},
        {":" + hex64, false, true},
        {"sha256:", false, true},
        {"sha256", false, false},
        {hex64, false, false},
        {"latest", false, false},
        {"", false, false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(is_valid_digest(c.text) == c.valid);
        CHECK(is_digest(c.text) == c.digest_form);
    }
}

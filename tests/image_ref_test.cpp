// Tests for include/pullgate/image_ref.hpp: image references as users write
// them, normalised as containerd and docker do (used by `pullgate explain`, README "Command line").
#include "pullgate/image_ref.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

const std::string d64 = "sha256:" + std::string(64, 'a');
const std::string d64b = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string d128 = "sha512:" + std::string(128, 'f');

struct ref_case {
    std::string text;
    std::string host;
    std::uint16_t port;
    std::string repository;
    std::string tag;
    std::string digest;
    std::string canonical;
};

}  // namespace

TEST_CASE("parse_image_ref normalises references") {
    const std::vector<ref_case> cases = {
        // Docker Hub: default registry, "library/" for official images, default tag
        {"alpine", "docker.io", 0, "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
        {"alpine:3.19", "docker.io", 0, "library/alpine", "3.19", "", "docker.io/library/alpine:3.19"},
        {"user/app", "docker.io", 0, "user/app", "latest", "", "docker.io/user/app:latest"},
        {"user/app:v1", "docker.io", 0, "user/app", "v1", "", "docker.io/user/app:v1"},
        {"library/alpine", "docker.io", 0, "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
        {"a/b/c", "docker.io", 0, "a/b/c", "latest", "", "docker.io/a/b/c:latest"},
        {"docker.io/alpine", "docker.io", 0, "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
        {"docker.io/library/alpine", "docker.io", 0, "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
        {"index.docker.io/library/alpine", "docker.io", 0, "library/alpine", "latest", "",
         "docker.io/library/alpine:latest"},
        {"index.docker.io/alpine", "docker.io", 0, "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
        {"registry-1.docker.io/user/app:1", "docker.io", 0, "user/app", "1", "", "docker.io/user/app:1"},
        {"docker.io:443/alpine", "docker.io", 0, "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
        // Docker Hub on another port is some other registry: no "library/"
        {"docker.io:5000/alpine", "docker.io", 5000, "alpine", "latest", "", "docker.io:5000/alpine:latest"},
        // other registries
        {"ghcr.io/acme/app:1.2", "ghcr.io", 0, "acme/app", "1.2", "", "ghcr.io/acme/app:1.2"},
        {"ghcr.io/app", "ghcr.io", 0, "app", "latest", "", "ghcr.io/app:latest"},
        {"GHCR.io/acme/app", "ghcr.io", 0, "acme/app", "latest", "", "ghcr.io/acme/app:latest"},
        {"quay.io/a/b/c:t_1-x.y", "quay.io", 0, "a/b/c", "t_1-x.y", "", "quay.io/a/b/c:t_1-x.y"},
        {"localhost/x", "localhost", 0, "x", "latest", "", "localhost/x:latest"},
        {"localhost:5000/x:t", "localhost", 5000, "x", "t", "", "localhost:5000/x:t"},
        {"registry.example.com:5443/team/app:v2", "registry.example.com", 5443, "team/app", "v2", "",
         "registry.example.com:5443/team/app:v2"},
        {"127.0.0.1:5000/a/b@" + d64, "127.0.0.1", 5000, "a/b", "", d64, "127.0.0.1:5000/a/b@" + d64},
        {"[::1]:5000/x:t", "[::1]", 5000, "x", "t", "", "[::1]:5000/x:t"},
        // digests; with a tag, both are kept
        {"alpine@" + d64, "docker.io", 0, "library/alpine", "", d64, "docker.io/library/alpine@" + d64},
        {"a/b:tag@" + d64b, "docker.io", 0, "a/b", "tag", d64b, "docker.io/a/b:tag@" + d64b},
        {"ghcr.io/acme/app:1.2@" + d128, "ghcr.io", 0, "acme/app", "1.2", d128, "ghcr.io/acme/app:1.2@" + d128},
        {"localhost:5000/x:t@" + d64, "localhost", 5000, "x", "t", d64, "localhost:5000/x:t@" + d64},
        // a first component without '.' or ':' and not "localhost" is a repository component
        {"registry/app", "docker.io", 0, "registry/app", "latest", "", "docker.io/registry/app:latest"},
        {"localhostx/app", "docker.io", 0, "localhostx/app", "latest", "", "docker.io/localhostx/app:latest"},
        // a single component is always a Docker Hub name (docker does the same)
        {"localhost", "docker.io", 0, "library/localhost", "latest", "", "docker.io/library/localhost:latest"},
        {"ghcr.io", "docker.io", 0, "library/ghcr.io", "latest", "", "docker.io/library/ghcr.io:latest"},
        {"localhost:5000", "docker.io", 0, "library/localhost", "5000", "", "docker.io/library/localhost:5000"},
        // tags at the limits of the grammar
        {"x:_", "docker.io", 0, "library/x", "_", "", "docker.io/library/x:_"},
        {"x:" + std::string(128, 'T'), "docker.io", 0, "library/x", std::string(128, 'T'), "",
         "docker.io/library/x:" + std::string(128, 'T')},
        {"a__b/c-d.e:t", "docker.io", 0, "a__b/c-d.e", "t", "", "docker.io/a__b/c-d.e:t"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        auto r = parse_image_ref(c.text);
        REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error()));
        CHECK(r->registry.host == c.host);
        CHECK(r->registry.port == c.port);
        CHECK(r->repository == c.repository);
        CHECK(r->tag == c.tag);
        CHECK(r->digest == c.digest);
        CHECK(r->canonical() == c.canonical);

        // the canonical form reads back as the same reference
        auto again = parse_image_ref(r->canonical());
        REQUIRE_MESSAGE(again.has_value(), (again.has_value() ? std::string() : again.error()));
        CHECK(again->registry == r->registry);
        CHECK(again->repository == r->repository);
        CHECK(again->tag == r->tag);
        CHECK(again->digest == r->digest);
        CHECK(again->canonical() == r->canonical());
    }
}

TEST_CASE("parse_image_ref rejects what containerd would refuse") {
    struct case_t {
        std::string text;
        std::string mentions;  // the error names this
    };
    const std::vector<case_t> cases = {
        {"", "empty"},
        {"UPPER/x", "UPPER/x"},
        {"Alpine", "Alpine"},
        {"ghcr.io/Acme/app", "Acme"},
        {"x:bad tag", "bad tag"},
        {"x:", "tag"},
        {"x:-tag", "-tag"},
        {"x:.tag", ".tag"},
        {"x:" + std::string(129, 't'), "tag"},
        {"x:t@", "digest"},
        {"x@sha256:short", "sha256:short"},
        {"x@sha256:" + std::string(64, 'A'), "digest"},
        {"x@md5:" + std::string(32, 'a'), "md5"},
        {"x@" + std::string(64, 'a'), "digest"},
        {"x@sha256:" + std::string(64, 'a') + "@sha256:" + std::string(64, 'a'), "digest"},
        {"host:99999/x", "host:99999"},
        {"host:0/x", "host:0"},
        {"host:abc/x", "host:abc"},
        {"u@ghcr.io/x", "digest"},
        {"https://ghcr.io/x", "https:"},
        {"ghcr.io/", "repository"},
        {"ghcr.io//x", "repository"},
        {"ghcr.io/x/", "repository"},
        {"/x", "repository"},
        {":tag", "repository"},
        {"x/../y", "repository"},
        {"a-/b", "repository"},
        {"a..b", "repository"},
        {"a b", "repository"},
        {"ghcr.io/x y", "repository"},
        {"*.example.com/x", "registry"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        auto r = parse_image_ref(c.text);
        REQUIRE_FALSE(r.has_value());
        CAPTURE(r.error());
        CHECK(r.error().find(c.mentions) != std::string::npos);
    }
}

TEST_CASE("image_ref::canonical") {
    struct case_t {
        image_ref ref;
        std::string text;
    };
    const std::vector<case_t> cases = {
        {{{"docker.io", 0}, "library/alpine", "latest", ""}, "docker.io/library/alpine:latest"},
        {{{"ghcr.io", 0}, "acme/app", "", d64}, "ghcr.io/acme/app@" + d64},
        {{{"ghcr.io", 0}, "acme/app", "1", d64}, "ghcr.io/acme/app:1@" + d64},
        {{{"127.0.0.1", 5000}, "x", "t", ""}, "127.0.0.1:5000/x:t"},
        {{{"[::1]", 5000}, "x", "", ""}, "[::1]:5000/x"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(c.ref.canonical() == c.text);
    }
}

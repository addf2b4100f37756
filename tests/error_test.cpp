// Tests for include/pullgate/error.hpp: the failures pullgate answers itself
// and their OCI error bodies (docs/ARCHITECTURE.md, "A request").
#include "pullgate/error.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

using namespace pullgate;

namespace {

struct factory_case {
    std::string name;
    failure f;
    unsigned status;
    std::string code;
    std::string message;
    std::string reason;
};

// Checks that `body` is exactly {"errors":[{"code":code,"message":message,"detail":{}}]}.
void check_body_shape(const std::string& body, const std::string& code) {
    CAPTURE(body);
    const auto j = nlohmann::json::parse(body);
    REQUIRE(j.is_object());
    CHECK(j.size() == 1);
    REQUIRE(j.contains("errors"));
    REQUIRE(j["errors"].is_array());
    REQUIRE(j["errors"].size() == 1);
    const auto& e = j["errors"][0];
    REQUIRE(e.is_object());
    CHECK(e.size() == 3);
    CHECK(e["code"] == code);
    CHECK(e["message"].is_string());
    REQUIRE(e.contains("detail"));
    CHECK(e["detail"].is_object());
    CHECK(e["detail"].empty());
}

}  // namespace

TEST_CASE("failure factories set status, OCI code and reason") {
    const std::vector<factory_case> cases = {
        {"bad_request", bad_request("NAME_INVALID", "invalid repository name"), 400, "NAME_INVALID",
         "invalid repository name", "bad_request"},
        {"bad_request digest", bad_request("DIGEST_INVALID", "invalid digest"), 400, "DIGEST_INVALID", "invalid digest",
         "bad_request"},
        {"not_found", not_found("NAME_UNKNOWN", "not an OCI distribution API path", reason_code::bad_request), 404,
         "NAME_UNKNOWN", "not an OCI distribution API path", "bad_request"},
        {"denied", denied("registry ghcr.io is not allowed", reason_code::not_allowlisted), 403, "DENIED",
         "registry ghcr.io is not allowed", "not_allowlisted"},
        {"unsupported", unsupported("push is not proxied"), 405, "UNSUPPORTED", "push is not proxied", "unsupported"},
        {"upstream 502", upstream_failure(502, "ghcr.io is unreachable", reason_code::upstream_unreachable), 502,
         "UNAVAILABLE", "ghcr.io is unreachable", "upstream_unreachable"},
        {"upstream 504", upstream_failure(504, "timed out", reason_code::upstream_timeout), 504, "UNAVAILABLE",
         "timed out", "upstream_timeout"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        CHECK(c.f.status == c.status);
        CHECK(c.f.code == c.code);
        CHECK(c.f.message == c.message);
        CHECK(to_string(c.f.reason) == c.reason);

        const std::string body = oci_error_body(c.f);
        check_body_shape(body, c.code);
        CHECK(nlohmann::json::parse(body)["errors"][0]["message"] == c.message);
    }
}

TEST_CASE("oci_error_body depends only on code and message") {
    // The status and the decision-log reason are not part of the body: the same
    // error reads the same whatever status line or Content-Type carries it.
    const std::vector<failure> same = {
        {400, "DENIED", "registry ghcr.io is not allowed", reason_code::bad_request},
        {403, "DENIED", "registry ghcr.io is not allowed", reason_code::not_allowlisted},
        {500, "DENIED", "registry ghcr.io is not allowed", reason_code::internal_error},
        denied("registry ghcr.io is not allowed", reason_code::upstream_auth_failed),
    };
    const std::string first = oci_error_body(same.front());
    for (const auto& f : same) {
        CAPTURE(f.status);
        CAPTURE(to_string(f.reason));
        const std::string body = oci_error_body(f);
        CHECK(body == first);
        CHECK(body.find(to_string(f.reason)) == std::string::npos);
    }
    CHECK(oci_error_body({403, "DENIED", "other message", reason_code::bad_request}) != first);
    CHECK(oci_error_body({403, "UNAUTHORIZED", "registry ghcr.io is not allowed", reason_code::bad_request}) != first);
}

TEST_CASE("oci_error_body escapes any message text") {
    const std::vector<std::string> messages = {
        "",
        "plain",
        "quote \" and backslash \\",
        "new\nline and tab\t",
        "\x01\x02\x1f control",
        "</script><script>alert(1)</script>",
        "{\"errors\":[]}",
        "utf-8 \xe2\x82\xac \xf0\x9f\x90\xb3",
    };
    for (const auto& m : messages) {
        CAPTURE(m);
        const std::string body = oci_error_body(bad_request("NAME_INVALID", m));
        CHECK(body.find('\n') == std::string::npos);
        check_body_shape(body, "NAME_INVALID");
        CHECK(nlohmann::json::parse(body)["errors"][0]["message"] == m);
    }
}

TEST_CASE("oci_error_body: invalid UTF-8 in a message does not throw") {
    const std::vector<std::string> messages = {
        "invalid tag '\xff\xfe'", "truncated \xe2\x82", "overlong \xc0\xaf", "surrogate \xed\xa0\x80", "\x80",
    };
    for (const auto& m : messages) {
        CAPTURE(m);
        std::string body;
        CHECK_NOTHROW(body = oci_error_body(bad_request("NAME_INVALID", m)));
        nlohmann::json j;
        REQUIRE_NOTHROW(j = nlohmann::json::parse(body));  // the body itself is valid UTF-8 JSON
        check_body_shape(body, "NAME_INVALID");
        const std::string got = j["errors"][0]["message"];
        CHECK(got != m);                                       // the invalid bytes were replaced, not passed through
        CHECK(got.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
        // the valid text around them is kept
        std::size_t first_high = 0;
        while (first_high < m.size() && static_cast<unsigned char>(m[first_high]) < 0x80) ++first_high;
        const std::string prefix = m.substr(0, first_high);
        CHECK(got.starts_with(prefix));
    }
}

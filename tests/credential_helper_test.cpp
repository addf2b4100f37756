// Tests for include/pullgate/credential_helper.hpp: the docker credential
// helper `get` exchange, read as docker's client reads it.
#include "pullgate/credential_helper.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace pullgate;
using outcome = helper_answer::outcome;

namespace {

registry_name registry(const std::string& text) {
    auto r = parse_registry_name(text);
    REQUIRE_MESSAGE(r.has_value(), text);
    return *r;
}

}  // namespace

TEST_CASE("helper_server_url: Docker Hub by its legacy URL, everything else as host[:port]") {
    CHECK(helper_server_url(registry("docker.io")) == "https://index.docker.io/v1/");
    CHECK(helper_server_url(registry("index.docker.io")) == "https://index.docker.io/v1/");
    CHECK(helper_server_url(registry("registry-1.docker.io")) == "https://index.docker.io/v1/");
    CHECK(helper_server_url(registry("docker.io:5000")) == "docker.io:5000");
    CHECK(helper_server_url(registry("ghcr.io")) == "ghcr.io");
    CHECK(helper_server_url(registry("ghcr.io:443")) == "ghcr.io");
    CHECK(helper_server_url(registry("127.0.0.1:15443")) == "127.0.0.1:15443");
    CHECK(helper_server_url(registry("123456789012.dkr.ecr.eu-west-1.amazonaws.com")) ==
          "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    CHECK(helper_program("ecr-login") == "docker-credential-ecr-login");
}

TEST_CASE("parse_helper_answer: found, not found, failure") {
    struct row {
        std::string name;
        int exit_code;
        std::string out;
        outcome expect;
        std::string username, secret, identity_token;
    };
    const std::vector<row> rows = {
        {"user and secret", 0, R"({"ServerURL":"ghcr.io","Username":"bob","Secret":"s3cret"})", outcome::found, "bob",
         "s3cret", ""},
        {"trailing newline", 0, "{\"Username\":\"bob\",\"Secret\":\"x\"}\n", outcome::found, "bob", "x", ""},
        {"<token> is an identity token", 0, R"({"ServerURL":"r","Username":"<token>","Secret":"refresh"})",
         outcome::found, "", "", "refresh"},
        {"docker's not-found message", 1, "credentials not found in native keychain\n", outcome::not_found, "", "", ""},
        {"pass 0.6.4: exit 0 with empty fields", 0, R"({"ServerURL":"","Username":"","Secret":""})", outcome::not_found,
         "", "", ""},
        {"nulls are empty", 0, R"({"ServerURL":null,"Username":null,"Secret":null})", outcome::not_found, "", "", ""},
        {"other message on non-zero exit", 1, "error getting credentials - err: exit status 2", outcome::failure, "",
         "", ""},
        {"non-zero exit with JSON", 3, R"({"Username":"bob","Secret":"x"})", outcome::failure, "", "", ""},
        {"garbage", 0, "hello", outcome::failure, "", "", ""},
        {"empty output", 0, "", outcome::failure, "", "", ""},
        {"array", 0, "[]", outcome::failure, "", "", ""},
        {"number username", 0, R"({"Username":1,"Secret":"x"})", outcome::failure, "", "", ""},
        {"username without secret", 0, R"({"Username":"bob","Secret":""})", outcome::failure, "", "", ""},
    };
    for (const auto& r : rows) {
        CAPTURE(r.name);
        const auto a = parse_helper_answer(r.exit_code, r.out);
        CHECK(a.result == r.expect);
        CHECK(a.username == r.username);
        CHECK(a.secret == r.secret);
        CHECK(a.identity_token == r.identity_token);
        if (r.expect == outcome::failure) CHECK_FALSE(a.error.empty());
    }
}

TEST_CASE("parse_helper_answer: a failure message never quotes the output") {
    const auto a = parse_helper_answer(1, "leaked-password-123");
    CHECK(a.result == outcome::failure);
    CHECK(a.error.find("leaked") == std::string::npos);
    CHECK(a.error.find("status 1") != std::string::npos);
    const auto b = parse_helper_answer(0, "{\"Username\":\"u\",\"Secret\":\"leaked-password-123\"");
    CHECK(b.result == outcome::failure);
    CHECK(b.error.find("leaked") == std::string::npos);
}

// Tests for include/pullgate/www_authenticate.hpp: WWW-Authenticate challenges
// as registries send them (RFC 7235 §4.1; docs/ARCHITECTURE.md, "Upstream authentication").
#include "pullgate/www_authenticate.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

using params_t = std::map<std::string, std::string>;

struct expected_challenge {
    std::string scheme;
    params_t params;
};

struct parse_case {
    std::string name;
    std::string header;
    std::vector<expected_challenge> challenges;
};

void run_cases(const std::vector<parse_case>& cases) {
    for (const auto& c : cases) {
        CAPTURE(c.name);
        CAPTURE(c.header);
        std::vector<auth_challenge> got;
        REQUIRE_NOTHROW(got = parse_www_authenticate(c.header));
        std::string got_schemes;
        for (const auto& g : got) got_schemes += g.scheme + " ";
        CAPTURE(got_schemes);
        CHECK(got.size() == c.challenges.size());
        if (got.size() != c.challenges.size()) continue;
        for (std::size_t i = 0; i < got.size(); ++i) {
            CAPTURE(i);
            CHECK(got[i].scheme == c.challenges[i].scheme);
            CHECK(got[i].params == c.challenges[i].params);
        }
    }
}

const std::string hub_realm = "https://auth.docker.io/token";

}  // namespace

TEST_CASE("parse_www_authenticate: challenges registries send") {
    run_cases({
        {"Docker Hub",
         R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")",
         {{"bearer",
           {{"realm", hub_realm}, {"service", "registry.docker.io"}, {"scope", "repository:library/alpine:pull"}}}}},
        {"Docker Hub, scope listing two actions",
         R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:user/app:pull,push")",
         {{"bearer",
           {{"realm", hub_realm}, {"service", "registry.docker.io"}, {"scope", "repository:user/app:pull,push"}}}}},
        {"Docker Hub, insufficient scope with error",
         R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull",error="insufficient_scope")",
         {{"bearer",
           {{"realm", hub_realm},
            {"service", "registry.docker.io"},
            {"scope", "repository:a/b:pull"},
            {"error", "insufficient_scope"}}}}},
        {"ghcr",
         R"(Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/app:pull")",
         {{"bearer",
           {{"realm", "https://ghcr.io/token"}, {"service", "ghcr.io"}, {"scope", "repository:acme/app:pull"}}}}},
        {"distribution with htpasswd", R"(Basic realm="Registry Realm")", {{"basic", {{"realm", "Registry Realm"}}}}},
        {"spaces after commas and around '='",
         R"(Bearer realm = "https://r/t" ,  service= "s" ,scope ="x")",
         {{"bearer", {{"realm", "https://r/t"}, {"service", "s"}, {"scope", "x"}}}}},
        {"tab after the scheme", "Bearer\trealm=\"r\"", {{"bearer", {{"realm", "r"}}}}},
        {"scheme without parameters", "Bearer", {{"bearer", {}}}},
        {"empty quoted value", R"(Bearer realm="",service="s")", {{"bearer", {{"realm", ""}, {"service", "s"}}}}},
    });
}

TEST_CASE("parse_www_authenticate: several challenges in one header") {
    run_cases({
        {"Basic then Bearer",
         R"(Basic realm="x", Bearer realm="y",service="z")",
         {{"basic", {{"realm", "x"}}}, {"bearer", {{"realm", "y"}, {"service", "z"}}}}},
        {"Bearer then Basic",
         R"(Bearer realm="y",service="z", Basic realm="x")",
         {{"bearer", {{"realm", "y"}, {"service", "z"}}}, {"basic", {{"realm", "x"}}}}},
        {"no space after the separating comma",
         R"(Basic realm="x",Bearer realm="y")",
         {{"basic", {{"realm", "x"}}}, {"bearer", {{"realm", "y"}}}}},
        {"Bearer with a scope holding commas, then Basic",
         R"(Bearer scope="repository:a:pull,push", Basic realm="x")",
         {{"bearer", {{"scope", "repository:a:pull,push"}}}, {"basic", {{"realm", "x"}}}}},
        {"parameterless challenge first",
         R"(Negotiate, Basic realm="x")",
         {{"negotiate", {}}, {"basic", {{"realm", "x"}}}}},
        {"empty list elements",
         R"(, ,Basic realm="x" , , Bearer realm="y",)",
         {{"basic", {{"realm", "x"}}}, {"bearer", {{"realm", "y"}}}}},
        {"three challenges",
         R"(Digest realm="d", nonce="n", Basic realm="b", Bearer realm="r")",
         {{"digest", {{"realm", "d"}, {"nonce", "n"}}}, {"basic", {{"realm", "b"}}}, {"bearer", {{"realm", "r"}}}}},
    });
}

TEST_CASE("parse_www_authenticate: quoted strings") {
    run_cases({
        {"escaped quote", R"(Basic realm="say \"hi\"")", {{"basic", {{"realm", R"(say "hi")"}}}}},
        {"escaped backslash", R"(Basic realm="a\\b")", {{"basic", {{"realm", R"(a\b)"}}}}},
        {"escaped ordinary character", R"(Basic realm="\a\b\c")", {{"basic", {{"realm", "abc"}}}}},
        {"commas and '=' inside quotes",
         R"(Bearer realm="a,b=c, d",service="s")",
         {{"bearer", {{"realm", "a,b=c, d"}, {"service", "s"}}}}},
        {"something that looks like another challenge inside quotes",
         R"(Bearer realm="x, Basic realm=y")",
         {{"bearer", {{"realm", "x, Basic realm=y"}}}}},
        {"escaped quote followed by a comma",
         R"(Bearer realm="a\",b",service="s")",
         {{"bearer", {{"realm", R"(a",b)"}, {"service", "s"}}}}},
    });
}

TEST_CASE("parse_www_authenticate: schemes and parameter names are case-insensitive, values keep case") {
    run_cases({
        {"upper",
         R"(BEARER REALM="https://Auth.Example/Token",SERVICE="Reg")",
         {{"bearer", {{"realm", "https://Auth.Example/Token"}, {"service", "Reg"}}}}},
        {"mixed", R"(bAsIc ReAlm="MiXeD")", {{"basic", {{"realm", "MiXeD"}}}}},
        {"unquoted value keeps case", "Bearer Error=Invalid_Token", {{"bearer", {{"error", "Invalid_Token"}}}}},
    });
    // the same challenge in any case finds the same parameters
    auto a = parse_www_authenticate(R"(BEARER Realm="r")");
    REQUIRE(a.size() == 1);
    CHECK(a[0].param("realm") == "r");
}

TEST_CASE("parse_www_authenticate: unquoted token values") {
    run_cases({
        {"tokens",
         "Bearer realm=r1,service=registry.docker.io,error=invalid_token",
         {{"bearer", {{"realm", "r1"}, {"service", "registry.docker.io"}, {"error", "invalid_token"}}}}},
        {"tokens and quoted strings mixed",
         R"(Bearer service=ghcr.io, realm="https://ghcr.io/token")",
         {{"bearer", {{"service", "ghcr.io"}, {"realm", "https://ghcr.io/token"}}}}},
        {"token value followed by a second challenge",
         "Basic realm=x, Bearer realm=y",
         {{"basic", {{"realm", "x"}}}, {"bearer", {{"realm", "y"}}}}},
        // ':' and '/' are not tchars: an unquoted URL is malformed; the parse stops at the ':'
        {"unquoted URL",
         "Bearer service=s,realm=https://auth/token",
         {{"bearer", {{"service", "s"}, {"realm", "https"}}}}},
    });
}

TEST_CASE("parse_www_authenticate: token68") {
    run_cases({
        {"padded token68", "Negotiate abc==", {{"negotiate", {}}}},
        {"single '=' padding", "Negotiate abc=", {{"negotiate", {}}}},
        {"padded token68, then Basic",
         R"(Negotiate abc==, Basic realm="x")",
         {{"negotiate", {}}, {"basic", {{"realm", "x"}}}}},
        {"Basic then padded token68",
         R"(Basic realm="x", Negotiate YWJj==)",
         {{"basic", {{"realm", "x"}}}, {"negotiate", {}}}},
        // RFC 7235 §4.1: `challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]` and
        // challenges are separated by commas, so "Negotiate abc" is ONE challenge whose
        // token68 is "abc" (token68 padding is optional).
        {"token68 without padding", "Negotiate abc", {{"negotiate", {}}}},
        {"token68 without padding, then Basic",
         R"(Negotiate abc, Basic realm="x")",
         {{"negotiate", {}}, {"basic", {{"realm", "x"}}}}},
    });
}

TEST_CASE("parse_www_authenticate: empty, garbage and truncated input never throw") {
    run_cases({
        {"empty", "", {}},
        {"only spaces", "   ", {}},
        {"only commas", ",,, ,", {}},
        {"garbage", "@@@", {}},
        {"quote where a scheme belongs", R"("Bearer" realm="x")", {}},
        {"garbage after a challenge", R"(Bearer realm="x" @@@ service="s")", {{"bearer", {{"realm", "x"}}}}},
        {"garbage after a complete challenge and a comma", R"(Basic realm="x", {nope})", {{"basic", {{"realm", "x"}}}}},
        {"unterminated quote keeps earlier params",
         R"(Bearer realm="https://r/t",service="reg)",
         {{"bearer", {{"realm", "https://r/t"}}}}},
        {"unterminated quote as first param", R"(Bearer realm="https://r/t)", {{"bearer", {}}}},
        {"unterminated quote keeps earlier challenges",
         R"(Basic realm="b", Bearer realm="r",scope="x)",
         {{"basic", {{"realm", "b"}}}, {"bearer", {{"realm", "r"}}}}},
        {"backslash at the very end", R"(Bearer realm="abc\)", {{"bearer", {}}}},
        {"'=' with nothing after it", "Bearer realm=", {{"bearer", {}}}},
        {"'=' followed by a comma", "Bearer realm=,service=s", {{"bearer", {{"service", "s"}}}}},
        {"NUL byte", std::string("Bearer realm=\"a\"\0x", 18), {{"bearer", {{"realm", "a"}}}}},
    });
    // a long run of junk is still fine
    CHECK_NOTHROW(parse_www_authenticate(std::string(100000, '"')));
    CHECK_NOTHROW(parse_www_authenticate(std::string(100000, '\\')));
    CHECK_NOTHROW(parse_www_authenticate("Bearer " + std::string(100000, '=')));
}

TEST_CASE("parse_www_authenticate: a duplicate parameter keeps its first value") {
    run_cases({
        {"same case", R"(Bearer realm="first",realm="second")", {{"bearer", {{"realm", "first"}}}}},
        {"different case", R"(Bearer REALM="first", realm="second", Realm=third)", {{"bearer", {{"realm", "first"}}}}},
        {"parameters of the next challenge are its own",
         R"(Basic realm="b", Bearer realm="r")",
         {{"basic", {{"realm", "b"}}}, {"bearer", {{"realm", "r"}}}}},
    });
}

TEST_CASE("auth_challenge::param") {
    auto all = parse_www_authenticate(R"(Bearer realm="https://ghcr.io/token",service="ghcr.io")");
    REQUIRE(all.size() == 1);
    CHECK(all[0].param("realm") == "https://ghcr.io/token");
    CHECK(all[0].param("service") == "ghcr.io");
    CHECK(all[0].param("scope") == "");
    CHECK(all[0].param("") == "");
}

TEST_CASE("find_challenge") {
    const auto all =
        parse_www_authenticate(R"(Basic realm="b1", Bearer realm="r1", Basic realm="b2", Bearer realm="r2")");
    REQUIRE(all.size() == 4);

    struct case_t {
        std::string scheme;
        bool found;
        std::string realm;
    };
    const std::vector<case_t> cases = {
        {"basic", true, "b1"},  // the first one with that scheme
        {"bearer", true, "r1"}, {"negotiate", false, ""},
        {"", false, ""},        {"BEARER", false, ""},  // schemes are stored lowercase; the caller asks in lowercase
    };
    for (const auto& c : cases) {
        CAPTURE(c.scheme);
        auto ch = find_challenge(all, c.scheme);
        REQUIRE(ch.has_value() == c.found);
        if (ch) {
            CHECK(ch->scheme == c.scheme);
            CHECK(ch->param("realm") == c.realm);
        }
    }
    CHECK_FALSE(find_challenge({}, "bearer").has_value());
    // a header spelling the scheme in upper case is still found by its lowercase name
    auto upper = find_challenge(parse_www_authenticate(R"(BASIC realm="x")"), "basic");
    REQUIRE(upper.has_value());
    CHECK(upper->param("realm") == "x");
}

// Tests for include/pullgate/outcome.hpp: every decision and reason has its
// own stable token, as the decision log and /metrics write it.
#include "pullgate/outcome.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace pullgate;

TEST_CASE("verdict tokens") {
    CHECK(to_string(verdict::allow) == "allow");
    CHECK(to_string(verdict::deny) == "deny");
    CHECK(to_string(verdict::error) == "error");
}

TEST_CASE("every reason has a distinct snake_case token") {
    std::set<std::string> seen;
    for (int i = 0; i <= static_cast<int>(reason_code::internal_error); ++i) {
        const std::string token(to_string(static_cast<reason_code>(i)));
        CAPTURE(i);
        CAPTURE(token);
        CHECK_FALSE(token.empty());
        CHECK(token.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos);
        CHECK(seen.insert(token).second);
    }
    CHECK(seen.count("not_allowlisted") == 1);
    CHECK(seen.count("digest_mismatch") == 1);
    CHECK(to_string(reason_code::internal_error) == "internal_error");
}

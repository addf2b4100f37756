// parse_token_response on arbitrary bodies: no crash, no UB, no exception;
// a success carries a token and a lifetime in [1 s, 24 h]; an error text
// never echoes the body (it may hold a token).
#include "fuzz_check.hpp"

#include "pullgate/token_cache.hpp"

#include <cstdint>
#include <string_view>

using namespace pullgate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    try {
        auto r = parse_token_response(body);
        if (r) {
            FUZZ_CHECK(!r->token.empty());
            FUZZ_CHECK(r->expires_in.count() >= 1 && r->expires_in.count() <= 24 * 3600);
            // What the cache does with it must not misbehave either.
            std::int64_t fake_now = 0;
            token_cache cache([&] { return token_cache::clock::time_point(std::chrono::seconds(fake_now)); }, 2);
            cache.put("k", r->token, r->expires_in);
            // A 1 s token is never served (its margin is 1 s).
            FUZZ_CHECK(r->expires_in.count() < 2 || cache.get("k") == r->token);
            fake_now = r->expires_in.count();
            FUZZ_CHECK(!cache.get("k").has_value());
        } else {
            FUZZ_CHECK(!r.error().empty());
            FUZZ_CHECK(r.error().size() < 128, r.error());  // fixed texts only
        }
    } catch (...) {
        pullgate_fuzz::unexpected_exception(__FILE__, __LINE__);
    }
    return 0;
}

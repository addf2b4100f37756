// parse_www_authenticate on arbitrary header values: never crashes, never
// hangs, never throws; schemes and parameter names come out lowercase.
#include "fuzz_check.hpp"

#include "pullgate/www_authenticate.hpp"

#include <cstdint>
#include <string_view>

using namespace pullgate;

namespace {

bool is_lower_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (c >= 'A' && c <= 'Z') return false;
        if (c == ' ' || c == '\t' || c == ',' || c == '=' || c == '"') return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view header(reinterpret_cast<const char*>(data), size);
    auto all = parse_www_authenticate(header);
    FUZZ_CHECK(all.size() <= size);  // every challenge consumes at least one byte
    for (const auto& ch : all) {
        FUZZ_CHECK(is_lower_token(ch.scheme), ch.scheme);
        for (const auto& [name, value] : ch.params) {
            FUZZ_CHECK(is_lower_token(name), name);
            FUZZ_CHECK(value.size() <= size, name);
            FUZZ_CHECK(ch.param(name) == value, name);
        }
        auto found = find_challenge(all, ch.scheme);
        FUZZ_CHECK(found.has_value(), ch.scheme);
        FUZZ_CHECK(found->scheme == ch.scheme, ch.scheme);
    }
    (void)find_challenge(all, "bearer");
    (void)find_challenge(all, "basic");
    return 0;
}

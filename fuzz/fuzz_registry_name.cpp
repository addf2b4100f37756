// parse_registry_name / parse_registry_pattern on arbitrary bytes.
// Invariants on success: normalisation is idempotent (key() / to_string()
// re-parse to an equal value), the host is lowercase, and the key never holds
// characters that would change what is dialled ('@', '/', '?', '#').
#include "fuzz_check.hpp"

#include "pullgate/registry_name.hpp"

#include <cstdint>
#include <string>
#include <string_view>

using namespace pullgate;

namespace {

bool has_upper(std::string_view s) {
    for (char c : s)
        if (c >= 'A' && c <= 'Z') return true;
    return false;
}

void check_name(const registry_name& n) {
    const std::string key = n.key();
    FUZZ_CHECK(!n.host.empty(), key);
    FUZZ_CHECK(!has_upper(n.host), key);
    FUZZ_CHECK(key.find_first_of("@/?#") == std::string::npos, key);
    FUZZ_CHECK(n.port != 443, key);  // the default port is spelled 0
    FUZZ_CHECK(!n.endpoint_host().empty(), key);
    FUZZ_CHECK(n.endpoint_host().find_first_of("@/?#[]") == std::string::npos, key);
    auto again = parse_registry_name(key);
    FUZZ_CHECK(again.has_value(), key);
    FUZZ_CHECK(*again == n, key);
    FUZZ_CHECK(again->key() == key, key);
}

bool same(const registry_pattern& a, const registry_pattern& b) {
    return a.host == b.host && a.port == b.port && a.path_prefix == b.path_prefix;
}

void check_pattern(const registry_pattern& p, bool allow_wildcard) {
    const std::string text = to_string(p);
    FUZZ_CHECK(!p.host.empty(), text);
    FUZZ_CHECK(!has_upper(p.host), text);
    FUZZ_CHECK(p.host.find_first_of("@/?#") == std::string::npos, text);
    FUZZ_CHECK(p.port != 443, text);
    FUZZ_CHECK(allow_wildcard || p.host.find('*') == std::string::npos, text);
    FUZZ_CHECK(p.host.find('*') == std::string::npos || p.host.starts_with("*."), text);
    FUZZ_CHECK(p.path_prefix.empty() || (p.path_prefix.front() != '/' && p.path_prefix.back() != '/'), text);
    FUZZ_CHECK(p.path_prefix.find_first_of("@?#%") == std::string::npos, text);
    FUZZ_CHECK(p.path_prefix.find("..") == std::string::npos, text);
    auto again = parse_registry_pattern(text, allow_wildcard);
    FUZZ_CHECK(again.has_value(), text);
    FUZZ_CHECK(same(*again, p), text);
    FUZZ_CHECK(to_string(*again) == text, text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    auto name = parse_registry_name(text);
    if (name) {
        check_name(*name);
    } else {
        FUZZ_CHECK(!name.error().empty());
    }

    auto strict = parse_registry_pattern(text, /*allow_wildcard=*/false);
    auto loose = parse_registry_pattern(text, /*allow_wildcard=*/true);
    if (strict) {
        check_pattern(*strict, false);
        // Allowing wildcards never changes what a wildcard-free entry means.
        FUZZ_CHECK(loose.has_value(), to_string(*strict));
        FUZZ_CHECK(same(*strict, *loose), to_string(*strict));
    }
    if (loose) check_pattern(*loose, true);

    // A plain host[:port] is the same registry whether read as `ns` or as a
    // credential key / allowlist entry.
    if (name) {
        FUZZ_CHECK(strict.has_value(), name->key());
        FUZZ_CHECK(strict->host == name->host && strict->port == name->port && strict->path_prefix.empty(),
                   name->key());
    }
    return 0;
}

// parse_credentials on arbitrary JSON text (docker config.json). Only
// pullgate::config_error may escape (any other exception aborts). A store that
// parses holds re-parseable keys and a credential in every entry.
#include "fuzz_check.hpp"

#include "pullgate/credentials.hpp"

#include <cstdint>
#include <string_view>

using namespace pullgate;

namespace {

constexpr std::string_view source = "fuzz.json";

void check(const credential_store& store) {
    for (const auto& c : store.entries()) {
        auto p = parse_registry_pattern(c.key, /*allow_wildcard=*/false);
        FUZZ_CHECK(p.has_value(), c.key);
        FUZZ_CHECK(p->host == c.pattern.host && p->port == c.pattern.port && p->path_prefix == c.pattern.path_prefix,
                   c.key);
        FUZZ_CHECK(c.has_basic() || !c.identity_token.empty() || !c.registry_token.empty(), c.key);
        FUZZ_CHECK(c.fingerprint.size() == 12, c.key);
        // The credential for a key's own registry and prefix is found (perhaps a longer one).
        registry_name r{c.pattern.host, c.pattern.port};
        if (c.pattern.host.find('*') == std::string::npos) {
            const std::string repo = c.pattern.path_prefix.empty() ? "x" : c.pattern.path_prefix;
            const credential* found = store.lookup(r, repo);
            FUZZ_CHECK(found != nullptr, c.key);
        }
    }
    FUZZ_CHECK(store.keys().size() == store.entries().size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        check(parse_credentials(text, source));
    } catch (const config_error& e) {
        FUZZ_CHECK(std::string_view(e.what()).starts_with(source), e.what());
    } catch (...) {
        pullgate_fuzz::unexpected_exception(__FILE__, __LINE__);
    }
    return 0;
}

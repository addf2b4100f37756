// The credential helper and provider plugin output parsers on arbitrary
// bytes: no crash, no UB, no exception. The first byte picks the parser (and,
// for helpers, the exit status); the rest is the program's stdout. A helper
// answer is exactly one of found / not found / failure, with a secret only
// when found; a provider response's patterns are usable by the matcher; an
// error text never echoes the output (it may hold a secret).
#include "fuzz_check.hpp"

#include "pullgate/credential_helper.hpp"
#include "pullgate/credential_provider.hpp"

#include <cstdint>
#include <string_view>

using namespace pullgate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t selector = data[0];
    const std::string_view out(reinterpret_cast<const char*>(data + 1), size - 1);
    try {
        if (selector & 1) {
            const int exit_code = (selector >> 1) & 3;
            const helper_answer a = parse_helper_answer(exit_code, out);
            switch (a.result) {
                case helper_answer::outcome::found:
                    FUZZ_CHECK(exit_code == 0);
                    FUZZ_CHECK(!a.secret.empty() || !a.identity_token.empty());
                    FUZZ_CHECK(a.secret.empty() || a.identity_token.empty());
                    FUZZ_CHECK(a.error.empty());
                    break;
                case helper_answer::outcome::not_found:
                    FUZZ_CHECK(a.secret.empty() && a.identity_token.empty() && a.username.empty());
                    break;
                case helper_answer::outcome::failure:
                    FUZZ_CHECK(!a.error.empty());
                    FUZZ_CHECK(a.secret.empty() && a.identity_token.empty());
                    FUZZ_CHECK(a.error.size() < 128, a.error);  // fixed texts only
                    break;
            }
        } else {
            auto r = parse_provider_response(out);
            if (r) {
                if (r->cache_duration) FUZZ_CHECK(r->cache_duration->count() >= 0);
                const registry_name probe{"a.example.com", 0};
                const provider_auth* best = r->auth_for(probe, "team/app");
                if (best) FUZZ_CHECK(matches(best->pattern, probe, "team/app", match_rules::kubelet));
            } else {
                FUZZ_CHECK(!r.error().empty());
                FUZZ_CHECK(r.error().size() < 256, r.error());
            }
            // Durations on their own, from the same bytes.
            auto d = parse_go_duration(out);
            if (d) FUZZ_CHECK(d->count() >= 0);
        }
    } catch (...) {
        pullgate_fuzz::unexpected_exception(__FILE__, __LINE__);
    }
    return 0;
}

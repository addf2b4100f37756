// parse_config on arbitrary YAML text. Only pullgate::config_error may escape
// (any other exception aborts); its message names the source. A config that
// parses holds only normalised, re-parseable values.
#include "fuzz_check.hpp"

#include "pullgate/config.hpp"

#include <cstdint>
#include <string_view>

using namespace pullgate;

namespace {

constexpr std::string_view source = "fuzz.yaml";

bool same(const registry_pattern& a, const registry_pattern& b) {
    return a.host == b.host && a.port == b.port && a.path_prefix == b.path_prefix;
}

void check(const config& cfg) {
    FUZZ_CHECK(cfg.source == source);
    FUZZ_CHECK(!cfg.listen.host.empty(), cfg.listen.text);
    FUZZ_CHECK(parse_listen_address(cfg.listen.text).has_value(), cfg.listen.text);
    if (cfg.admin_listen) FUZZ_CHECK(parse_listen_address(cfg.admin_listen->text).has_value(), cfg.admin_listen->text);
    for (const auto& rule : cfg.allow_list) {
        auto p = parse_registry_pattern(rule.text, true);
        FUZZ_CHECK(p.has_value(), rule.text);
        FUZZ_CHECK(same(*p, rule.pattern), rule.text);
    }
    if (cfg.default_registry) {
        auto n = parse_registry_name(cfg.default_registry->key());
        FUZZ_CHECK(n.has_value() && *n == *cfg.default_registry, cfg.default_registry->key());
    }
    for (const auto& [key, transport] : cfg.registries) {
        auto n = parse_registry_name(key);
        FUZZ_CHECK(n.has_value() && n->key() == key, key);
        FUZZ_CHECK(cfg.transport_for(*n) == &transport, key);
        FUZZ_CHECK(transport.client_cert.empty() == transport.client_key.empty(), key);
        FUZZ_CHECK(transport.ca_file.empty() || transport.ca_file.front() == '/', key);
    }
    FUZZ_CHECK(!cfg.decision_log_path.empty() && cfg.decision_log_path.front() == '/', cfg.decision_log_path);
    FUZZ_CHECK(cfg.credentials_file.empty() || cfg.credentials_file.front() == '/', cfg.credentials_file);
    FUZZ_CHECK(cfg.limits.relay_buffer_bytes >= 4096);
    FUZZ_CHECK(cfg.limits.max_connections >= 1 && cfg.limits.max_header_bytes >= 1);
    FUZZ_CHECK(cfg.limits.max_redirects >= 1 && cfg.limits.max_redirects <= 20);
    FUZZ_CHECK(cfg.threads <= 256);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        check(parse_config(text, source));
    } catch (const config_error& e) {
        FUZZ_CHECK(std::string_view(e.what()).starts_with(source), e.what());
    } catch (...) {
        pullgate_fuzz::unexpected_exception(__FILE__, __LINE__);
    }
    return 0;
}

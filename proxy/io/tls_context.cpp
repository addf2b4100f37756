#include "pullgate/tls_context.hpp"

#include "pullgate/session_cache.hpp"

namespace pullgate {
namespace ssl = boost::asio::ssl;
using boost::system::error_code;

namespace {

void configure(ssl::context& ctx, const registry_transport* t) {
    tls_session_cache::install(ctx.native_handle());
    ctx.set_verify_mode(ssl::verify_peer);
    ctx.set_default_verify_paths();
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (!t) return;
    error_code ec;
    if (!t->ca_file.empty()) {
        ctx.load_verify_file(t->ca_file, ec);
        if (ec) throw config_error("caFile " + t->ca_file + ": " + ec.message());
    }
    if (!t->client_cert.empty()) {
        ctx.use_certificate_chain_file(t->client_cert, ec);
        if (ec) throw config_error("clientCert " + t->client_cert + ": " + ec.message());
        ctx.use_private_key_file(t->client_key, ssl::context::pem, ec);
        if (ec) throw config_error("clientKey " + t->client_key + ": " + ec.message());
    }
}

}  // namespace

tls_contexts::tls_contexts(const config& cfg) : default_(ssl::context::tls_client) {
    configure(default_, nullptr);
    for (const auto& [key, transport] : cfg.registries) {
        auto name = parse_registry_name(key);
        if (!name) continue;  // validated by parse_config already
        auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
        configure(*ctx, &transport);
        by_origin_.emplace(registry_origin(*name, &transport).key(), std::move(ctx));
    }
}

ssl::context& tls_contexts::for_origin(const origin& o) {
    auto it = by_origin_.find(o.key());
    return it == by_origin_.end() ? default_ : *it->second;
}

}  // namespace pullgate

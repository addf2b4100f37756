#include "pullgate/upstream_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/ipv4_address.hpp>
#include <boost/url/ipv6_address.hpp>

#include <vector>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using boost::system::error_code;

namespace {

constexpr std::size_t max_idle_per_origin = 32;

bool is_ip_literal(const std::string& host) {
    return boost::urls::parse_ipv4_address(host).has_value() || boost::urls::parse_ipv6_address(host).has_value();
}

// SSL ex_data slots: the session cache and the origin key of a connection.
int cache_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}
int key_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

int on_new_session(SSL* ssl, SSL_SESSION* session);

void configure_context(ssl::context& ctx, const registry_transport* t) {
    // Resume TLS sessions on new connections to an origin (new connections
    // open whenever the pool has none idle): sessions arrive through the
    // callback, also TLS 1.3 tickets sent after the handshake.
    SSL_CTX_set_session_cache_mode(ctx.native_handle(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx.native_handle(), on_new_session);
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

// A failure that says the peer closed an idle keep-alive connection before
// our request reached it: safe to retry a GET/HEAD on a fresh connection.
bool is_stale_connection_error(const error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated;
}

// Addresses a registry reached by DNS name must not resolve to: link-local
// (169.254/16 holds cloud metadata services), unspecified, multicast. A
// registry at such an address must be allowlisted by its IP literal.
bool is_forbidden_resolution(const asio::ip::address& a) {
    if (a.is_unspecified() || a.is_multicast()) return true;
    if (a.is_v4()) return (a.to_v4().to_uint() & 0xffff0000u) == 0xa9fe0000u;
    const auto v6 = a.to_v6();
    if (v6.is_link_local() || v6.is_multicast_link_local()) return true;
    if (v6.is_v4_mapped()) return is_forbidden_resolution(asio::ip::make_address_v4(asio::ip::v4_mapped, v6));
    return false;
}

// Connections are pooled per execution context (worker thread) so that a
// session only ever reuses connections of its own thread.
std::string pool_key(const origin& o, const asio::any_io_executor& ex) {
    const void* context = &asio::query(ex, asio::execution::context);
    char buf[32];
    std::snprintf(buf, sizeof buf, "#%p", context);
    return o.key() + buf;
}

}  // namespace

struct upstream_client::session_cache {
    std::mutex mutex;
    std::map<std::string, SSL_SESSION*> by_origin;

    ~session_cache() {
        for (auto& [key, s] : by_origin) SSL_SESSION_free(s);
    }
    // Takes ownership of `s`.
    void put(const std::string& key, SSL_SESSION* s) {
        std::lock_guard lock(mutex);
        auto& slot = by_origin[key];
        if (slot) SSL_SESSION_free(slot);
        slot = s;
    }
    // Sets a copy of the cached session, if any, on `ssl` for resumption.
    // Never the cached object itself: OpenSSL marks a connection's session
    // not resumable when the connection is freed without a close_notify
    // (pooled connections end that way), which spoiled the cached session
    // for every connection opened after it.
    void resume(const std::string& key, SSL* ssl) {
        std::lock_guard lock(mutex);
        auto it = by_origin.find(key);
        if (it == by_origin.end() || !SSL_SESSION_is_resumable(it->second)) return;
        if (SSL_SESSION* copy = SSL_SESSION_dup(it->second)) {
            SSL_set_session(ssl, copy);
            SSL_SESSION_free(copy);  // the SSL holds its own reference
        }
    }
};

namespace {
int on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* cache = static_cast<upstream_client::session_cache*>(SSL_get_ex_data(ssl, cache_index()));
    auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
    if (!cache || !key) return 0;
    // A copy, for the reason in session_cache::resume; OpenSSL keeps the original.
    if (SSL_SESSION* copy = SSL_SESSION_dup(session)) cache->put(*key, copy);
    return 0;
}
}  // namespace

std::string origin::key() const {
    return std::string(tls ? "https://" : "http://") + (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
           ":" + std::to_string(port);
}

origin registry_origin(const registry_name& r, const registry_transport* t) {
    origin o;
    o.tls = !(t && t->insecure_http);
    o.host = r.endpoint_host();
    o.port = r.port != 0 ? r.port : (o.tls ? 443 : 80);
    return o;
}

upstream_connection::upstream_connection(asio::any_io_executor ex, ssl::context& ctx, origin o, std::string pool_key,
                                         metrics& stats)
    : stream_(std::move(ex), ctx), origin_(std::move(o)), pool_key_(std::move(pool_key)), stats_(stats) {
    ++stats_.upstream_connections;
}

upstream_connection::~upstream_connection() {
    --stats_.upstream_connections;
}

upstream_client::upstream_client(const config& cfg, metrics& stats)
    : limits_(cfg.limits),
      stats_(stats),
      default_ctx_(ssl::context::tls_client),
      sessions_(std::make_unique<session_cache>()) {
    configure_context(default_ctx_, nullptr);
    for (const auto& [key, transport] : cfg.registries) {
        auto name = parse_registry_name(key);
        if (!name) continue;  // validated by parse_config already
        auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
        configure_context(*ctx, &transport);
        registry_ctx_.emplace(registry_origin(*name, &transport).key(), std::move(ctx));
    }
}

upstream_client::~upstream_client() = default;

ssl::context& upstream_client::context_for(const origin& o) {
    // A registry's own CA / client certificate applies to its own origin only;
    // redirect targets (CDNs) are verified against the system CAs.
    auto it = registry_ctx_.find(o.key());
    return it == registry_ctx_.end() ? default_ctx_ : *it->second;
}

std::unique_ptr<upstream_connection> upstream_client::take_idle(const std::string& pool_key) {
    std::lock_guard lock(mutex_);
    auto it = idle_.find(pool_key);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    const auto now = std::chrono::steady_clock::now();
    while (!list.empty()) {
        auto c = std::move(list.back());
        list.pop_back();
        if (now - c->idle_since < limits_.upstream_idle_timeout) {
            c->reused = true;
            return c;
        }
    }
    return nullptr;
}

void upstream_client::release(std::unique_ptr<upstream_connection> c) {
    if (!c) return;
    c->idle_since = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    auto& list = idle_[c->pool_key_];
    if (list.size() >= max_idle_per_origin) list.erase(list.begin());  // drop the oldest
    list.push_back(std::move(c));
}

asio::awaitable<std::unique_ptr<upstream_connection>> upstream_client::connect(const origin& o, error_code& ec) {
    auto ex = co_await asio::this_coro::executor;
    auto conn = std::make_unique<upstream_connection>(ex, context_for(o), o, pool_key(o, ex), stats_);
    auto& tcp = conn->tcp();

    asio::ip::tcp::resolver resolver(ex);
    tcp.expires_after(limits_.upstream_connect_timeout);
    auto resolved =
        co_await resolver.async_resolve(o.host, std::to_string(o.port), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return nullptr;
    std::vector<asio::ip::tcp::endpoint> endpoints;
    for (const auto& entry : resolved)
        if (is_ip_literal(o.host) || !is_forbidden_resolution(entry.endpoint().address()))
            endpoints.push_back(entry.endpoint());
    if (endpoints.empty()) {
        spdlog::warn("{} resolves only to link-local, unspecified or multicast addresses: not connecting", o.host);
        ec = asio::error::host_unreachable;
        co_return nullptr;
    }
    co_await tcp.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return nullptr;
    tcp.socket().set_option(asio::ip::tcp::no_delay(true), ec);
    ec = {};

    if (o.tls) {
        SSL* native = conn->stream_.native_handle();
        // SNI only for DNS names (RFC 6066); the certificate is checked against
        // the host either way (DNS SAN or IP SAN).
        if (!is_ip_literal(o.host) && !SSL_set_tlsext_host_name(native, o.host.c_str())) {
            ec = error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
            co_return nullptr;
        }
        // The certificate must name the host: a DNS SAN (or CN), or an IP SAN for an IP literal.
        X509_VERIFY_PARAM* param = SSL_get0_param(native);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const int named = is_ip_literal(o.host) ? X509_VERIFY_PARAM_set1_ip_asc(param, o.host.c_str())
                                                : X509_VERIFY_PARAM_set1_host(param, o.host.c_str(), 0);
        if (named != 1) {
            ec = asio::error::invalid_argument;
            co_return nullptr;
        }
        conn->tls_key_ = o.key();
        SSL_set_ex_data(native, cache_index(), sessions_.get());
        SSL_set_ex_data(native, key_index(), &conn->tls_key_);
        sessions_->resume(conn->tls_key_, native);
        tcp.expires_after(limits_.upstream_connect_timeout);
        co_await conn->stream_.async_handshake(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return nullptr;
        stats_.count_tls_handshake(SSL_session_reused(native) == 1);
    }
    co_return conn;
}

asio::awaitable<upstream_response> upstream_client::exchange(const origin& o, upstream_request& req, bool head,
                                                             error_code& ec) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        ec = {};
        upstream_response out;
        // (no ?: here: GCC 12 mishandles class temporaries of ?: in coroutines)
        if (attempt == 0) out.connection = take_idle(pool_key(o, co_await asio::this_coro::executor));
        if (!out.connection) {
            out.connection = co_await connect(o, ec);
            if (ec) co_return upstream_response{};
        }
        auto& conn = *out.connection;
        const auto started = std::chrono::steady_clock::now();
        conn.tcp().expires_after(limits_.upstream_stall_timeout);
        co_await conn.visit(
            [&](auto& s) { return http::async_write(s, req, asio::redirect_error(asio::use_awaitable, ec)); });
        out.parser = std::make_unique<upstream_parser>();
        out.parser->body_limit(boost::none);  // blobs have no size limit; the relay bounds memory
        if (head) out.parser->skip(true);     // a HEAD answer has Content-Length but no body
        if (!ec) {
            co_await conn.visit([&](auto& s) {
                return http::async_read_header(s, conn.buffer, *out.parser,
                                               asio::redirect_error(asio::use_awaitable, ec));
            });
        }
        if (!ec) {
            out.header_latency = std::chrono::steady_clock::now() - started;
            stats_.observe_upstream_latency(std::chrono::duration<double>(out.header_latency).count());
            co_return out;
        }
        // Retry only a reused connection that failed before any response byte.
        if (!(conn.reused && !out.parser->got_some() && is_stale_connection_error(ec))) co_return upstream_response{};
    }
    co_return upstream_response{};
}

asio::awaitable<void> upstream_client::read_body(upstream_response& res, std::string& out, std::size_t max,
                                                 error_code& ec) {
    auto& parser = *res.parser;
    auto& conn = *res.connection;
    char chunk[8192];
    while (!parser.is_done()) {
        parser.get().body().data = chunk;
        parser.get().body().size = sizeof chunk;
        conn.tcp().expires_after(limits_.upstream_stall_timeout);
        co_await conn.visit([&](auto& s) {
            return http::async_read(s, conn.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
        });
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return;
        out.append(chunk, sizeof chunk - parser.get().body().size);
        if (out.size() > max) {
            ec = http::error::body_limit;
            co_return;
        }
    }
}

}  // namespace pullgate

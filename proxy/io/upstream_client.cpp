#include "pullgate/upstream_client.hpp"

#include "pullgate/address_filter.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

// A failure that says the peer closed an idle keep-alive connection before
// our request reached it: safe to retry a GET/HEAD on a fresh connection.
bool is_stale_connection_error(const error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated;
}

// SNI for DNS names only (RFC 6066); the certificate must name the host
// either way: a DNS SAN (or CN), or an IP SAN for an IP literal.
bool set_peer_name(SSL* native, const std::string& host) {
    const bool literal = is_ip_literal(host);
    if (!literal && !SSL_set_tlsext_host_name(native, host.c_str())) return false;
    X509_VERIFY_PARAM* param = SSL_get0_param(native);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return (literal ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                    : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0)) == 1;
}

}  // namespace

upstream_client::upstream_client(const config& cfg, metrics& stats)
    : limits_(cfg.limits), stats_(stats), contexts_(cfg), pool_(std::make_unique<upstream_pool>(cfg.limits)) {}

upstream_client::~upstream_client() = default;

void upstream_client::release(std::unique_ptr<upstream_connection> c) {
    pool_->release(std::move(c));
}

asio::awaitable<std::unique_ptr<upstream_connection>> upstream_client::connect(const origin& o, error_code& ec) {
    auto ex = co_await asio::this_coro::executor;
    auto conn = std::make_unique<upstream_connection>(ex, contexts_.for_origin(o), o, *pool_, stats_);
    auto& tcp = conn->tcp();

    asio::ip::tcp::resolver resolver(ex);
    tcp.expires_after(limits_.upstream_connect_timeout);
    auto resolved =
        co_await resolver.async_resolve(o.host, std::to_string(o.port), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return nullptr;
    const auto endpoints = dialable_endpoints(o.host, resolved);
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
        SSL* native = conn->tls().native_handle();
        if (!set_peer_name(native, o.host)) {
            ec = error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
            if (!ec) ec = asio::error::invalid_argument;
            co_return nullptr;
        }
        sessions_.attach(native, &conn->origin_key());
        tcp.expires_after(limits_.upstream_connect_timeout);
        co_await conn->tls().async_handshake(asio::redirect_error(asio::use_awaitable, ec));
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
        // Waiting for a slot is waiting for the upstream to make progress for
        // us: bounded like a stalled upstream, not like a connect.
        auto slot = co_await pool_->acquire(o, /*fresh=*/attempt > 0,
                                            std::chrono::steady_clock::now() + limits_.upstream_stall_timeout);
        if (!slot.granted) {
            spdlog::warn(
                "no connection to {} within upstreamStallTimeoutSeconds: {} open, the cap is "
                "limits.maxUpstreamConnectionsPerOrigin ({})",
                o.key(), pool_->open(o.key()), limits_.max_upstream_connections_per_origin);
            ec = beast::error::timeout;
            co_return upstream_response{};
        }
        out.connection = std::move(slot.idle);
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

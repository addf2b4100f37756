// Connections to upstream registries: HTTPS verified against the system CAs
// plus a per-registry CA file (or plain HTTP where configured), pooled and
// kept alive, and one request/response-header exchange with the retry rule of
// DESIGN §9. Connections are created on the calling coroutine's executor and
// pooled per execution context (each worker thread reuses its own); the pool
// is locked inside.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/registry_name.hpp"
#include "pullgate/tls_stream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pullgate {

// Where an upstream request goes: scheme, host and port.
struct origin {
    bool tls = true;
    std::string host;  // DNS name or IP literal without brackets
    std::uint16_t port = 443;

    std::string key() const;  // "https://host:port"
    friend bool operator==(const origin&, const origin&) = default;
};

// The origin a registry is dialled at (Docker Hub: registry-1.docker.io).
origin registry_origin(const registry_name& r, const registry_transport* t);

// One connection, used by one request at a time.
class upstream_connection {
public:
    upstream_connection(boost::asio::any_io_executor ex, boost::asio::ssl::context& ctx, origin o, std::string pool_key,
                        metrics& stats);
    ~upstream_connection();
    upstream_connection(const upstream_connection&) = delete;
    upstream_connection& operator=(const upstream_connection&) = delete;

    const origin& where() const { return origin_; }
    boost::beast::tcp_stream& tcp() { return stream_.next_layer(); }
    // Calls f with the TLS stream or the plain TCP stream; f returns an awaitable
    // (or, for the relay's non-blocking reads, a size).
    template <class F>
    auto visit(F&& f) {
        return origin_.tls ? f(stream_) : f(stream_.next_layer());
    }

    // Read buffer; lives with the connection. Bounded: a TLS record is at most
    // 16 KiB of plaintext, and response headers must fit too.
    boost::beast::flat_buffer buffer{32 * 1024};
    std::chrono::steady_clock::time_point idle_since{};
    bool reused = false;

private:
    friend class upstream_client;
    tls_stream stream_;
    origin origin_;
    std::string pool_key_;  // origin + execution context
    std::string tls_key_;   // origin key, read by the TLS new-session callback
    metrics& stats_;
};

using upstream_request = boost::beast::http::request<boost::beast::http::string_body>;
using upstream_parser = boost::beast::http::response_parser<boost::beast::http::buffer_body>;

// An upstream response whose header has been read; the body is still on the wire.
struct upstream_response {
    std::unique_ptr<upstream_connection> connection;
    std::unique_ptr<upstream_parser> parser;
    std::chrono::steady_clock::duration header_latency{};
};

class upstream_client {
public:
    // Builds the TLS contexts. Throws config_error when a CA file, client
    // certificate or key cannot be loaded.
    explicit upstream_client(const config& cfg, metrics& stats);
    ~upstream_client();

    // Sends `req` to `o` and reads the response header. A request that fails
    // on a reused connection before any response byte arrived is retried once
    // on a fresh connection. Sets `ec` on failure (connect, TLS, timeout).
    boost::asio::awaitable<upstream_response> exchange(const origin& o, upstream_request& req, bool head,
                                                       boost::system::error_code& ec);

    // Reads the rest of a small response body (token answers, error bodies)
    // into `out`; fails with http::error::body_limit past `max` bytes.
    boost::asio::awaitable<void> read_body(upstream_response& res, std::string& out, std::size_t max,
                                           boost::system::error_code& ec);

    // Returns a connection whose response was read completely and that may be
    // kept alive. Anything else is just destroyed (closed).
    void release(std::unique_ptr<upstream_connection> c);

    const struct limits& limits() const { return limits_; }

    // TLS sessions per origin, for resumption on new connections (defined in
    // the .cpp; public only for OpenSSL's new-session callback).
    struct session_cache;

private:
    boost::asio::awaitable<std::unique_ptr<upstream_connection>> connect(const origin& o,
                                                                         boost::system::error_code& ec);
    std::unique_ptr<upstream_connection> take_idle(const std::string& pool_key);
    boost::asio::ssl::context& context_for(const origin& o);

    struct limits limits_;
    metrics& stats_;
    boost::asio::ssl::context default_ctx_;
    std::map<std::string, std::unique_ptr<boost::asio::ssl::context>> registry_ctx_;  // by origin key
    std::mutex mutex_;
    std::map<std::string, std::vector<std::unique_ptr<upstream_connection>>> idle_;
    std::unique_ptr<session_cache> sessions_;
};

}  // namespace pullgate

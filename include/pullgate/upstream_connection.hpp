// One connection to an upstream origin (TLS, or plain TCP where configured),
// used by one request at a time and pooled between requests. The types of an
// upstream exchange live here too.
#pragma once

#include "pullgate/metrics.hpp"
#include "pullgate/origin.hpp"
#include "pullgate/tls_stream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace pullgate {

class upstream_pool;

class upstream_connection {
public:
    // Takes one of `pool`'s slots for `o` (granted before); gives it back when destroyed.
    upstream_connection(boost::asio::any_io_executor ex, boost::asio::ssl::context& ctx, origin o,
                        upstream_pool& pool, metrics& stats);
    ~upstream_connection();
    upstream_connection(const upstream_connection&) = delete;
    upstream_connection& operator=(const upstream_connection&) = delete;

    const origin& where() const { return origin_; }
    const std::string& origin_key() const { return origin_key_; }
    // The idle pool's key: the origin and the execution context (worker thread)
    // the connection belongs to; a session only reuses its own thread's.
    const std::string& pool_key() const { return pool_key_; }
    boost::asio::any_io_executor executor() { return stream_.next_layer().get_executor(); }

    boost::beast::tcp_stream& tcp() { return stream_.next_layer(); }
    tls_stream& tls() { return stream_; }
    // Calls f with the TLS stream or the plain TCP stream; f returns an
    // awaitable (or, for the relay's non-blocking reads, a size).
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
    tls_stream stream_;
    origin origin_;
    std::string origin_key_;
    std::string pool_key_;
    upstream_pool& pool_;
    metrics& stats_;
};

// "https://host:port#<execution context>"
std::string pool_key_for(const origin& o, const boost::asio::any_io_executor& ex);

using upstream_request = boost::beast::http::request<boost::beast::http::string_body>;
using upstream_parser = boost::beast::http::response_parser<boost::beast::http::buffer_body>;

// An upstream response whose header has been read; the body is still on the wire.
struct upstream_response {
    std::unique_ptr<upstream_connection> connection;
    std::unique_ptr<upstream_parser> parser;
    std::chrono::steady_clock::duration header_latency{};
};

}  // namespace pullgate

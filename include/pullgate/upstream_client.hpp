// Requests to upstream registries (and their token services and redirect
// targets): one request/response-header exchange on a pooled or new
// connection, with the retry rule for stale keep-alive connections
// (docs/ARCHITECTURE.md, "Upstream connections"). Connections are created on
// the calling coroutine's executor and reused by that thread only.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/origin.hpp"
#include "pullgate/session_cache.hpp"
#include "pullgate/tls_context.hpp"
#include "pullgate/upstream_connection.hpp"
#include "pullgate/upstream_pool.hpp"

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

namespace pullgate {

class upstream_client {
public:
    // Builds the TLS contexts. Throws config_error when a CA file, client
    // certificate or key cannot be loaded.
    upstream_client(const config& cfg, metrics& stats);
    ~upstream_client();

    // Sends `req` to `o` and reads the response header. A request that fails
    // on a reused connection before any response byte arrived is retried once
    // on a fresh connection. Waits for a connection slot while `o` is at
    // limits.maxUpstreamConnectionsPerOrigin, at most the stall timeout.
    // Sets `ec` on failure (connect, TLS, timeout).
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
    const upstream_pool& pool() const { return *pool_; }

private:
    boost::asio::awaitable<std::unique_ptr<upstream_connection>> connect(const origin& o,
                                                                         boost::system::error_code& ec);

    struct limits limits_;
    metrics& stats_;
    tls_contexts contexts_;
    tls_session_cache sessions_;
    std::unique_ptr<upstream_pool> pool_;  // last member: its idle connections use the members above
};

}  // namespace pullgate

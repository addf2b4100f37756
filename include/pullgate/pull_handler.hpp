// One client request, start to end: parse, policy, upstream exchange
// (redirects followed), relay, decision record. Runs on the session's
// coroutine; never throws for bad input or upstream failures.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/credentials.hpp"
#include "pullgate/decision_log.hpp"
#include "pullgate/policy.hpp"
#include "pullgate/relay_buffers.hpp"
#include "pullgate/upstream_auth.hpp"
#include "pullgate/upstream_client.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>

#include <memory>
#include <string>
#include <vector>

namespace pullgate {

// Everything a request needs that a reload replaces as a whole. Immutable
// once built; requests in flight keep their snapshot alive.
struct runtime {
    std::shared_ptr<const config> cfg;
    std::shared_ptr<const credential_store> credentials;
    std::vector<policy_rule> credential_keys;  // seed rule: registries with stored credentials
    std::unique_ptr<upstream_client> upstream;
    std::unique_ptr<upstream_auth> auth;  // shares the token cache across reloads
    std::shared_ptr<decision_log> log;
    std::shared_ptr<relay_buffers> buffers;  // shared across reloads
    metrics* stats = nullptr;                // process-wide, outlives every runtime
};

using client_request = boost::beast::http::request<boost::beast::http::empty_body>;

struct request_context {
    const runtime& rt;
    const client_request& req;
    boost::beast::tcp_stream& down;
    std::string client;  // peer address
    std::string id;      // request id, also in the decision log
};

// Answers `ctx.req` on `ctx.down` and fills `record`. Returns whether the
// downstream connection may be kept alive (false after any cut relay).
boost::asio::awaitable<bool> handle_pull(request_context& ctx, decision_record& record);

// Writes a small JSON response pullgate makes itself (no body for HEAD) and
// adds the body bytes written to `body_bytes`. Returns false when the write
// failed.
boost::asio::awaitable<bool> write_json(boost::beast::tcp_stream& down, unsigned status, std::string body,
                                        const client_request& req, bool keep_alive, const limits& lim,
                                        std::uint64_t& body_bytes);

// write_json of the OCI error body for `f`, with its status.
boost::asio::awaitable<bool> write_error(boost::beast::tcp_stream& down, const failure& f, const client_request& req,
                                         bool keep_alive, const limits& lim, std::uint64_t& body_bytes);

}  // namespace pullgate

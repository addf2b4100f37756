// One client request, start to end: plan (parse, registry, policy), upstream
// exchange (auth, redirects), relay, decision record. Runs on the session's
// coroutine; never throws for bad input or upstream failures.
#pragma once

#include "pullgate/decision_log.hpp"
#include "pullgate/local_response.hpp"
#include "pullgate/runtime.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <string>

namespace pullgate {

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

}  // namespace pullgate

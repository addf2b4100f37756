// Asking the upstream for a planned request: the exchange, one retry after a
// 401 answered through upstream_auth, and blob redirects followed within
// limits.maxRedirects (credentials only to the registry's own origin). Runs on
// the session's coroutine.
#pragma once

#include "pullgate/error.hpp"
#include "pullgate/request_plan.hpp"
#include "pullgate/runtime.hpp"
#include "pullgate/upstream_auth.hpp"
#include "pullgate/upstream_connection.hpp"

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string_view>

namespace pullgate {

struct round_trip_result {
    upstream_response response;      // the answer to relay, header read; valid unless `refusal`
    std::optional<failure> refusal;  // what to answer the client instead
    unsigned upstream_status = 0;    // the last upstream status seen; 0 when none answered
};

// Sends `req` (target, Host and Authorization already set for the registry)
// and follows the protocol until an answer worth relaying arrives. Fails
// with 502 UNAVAILABLE (unreachable, bad redirect, token service down) or
// 403 DENIED when the upstream refuses pullgate's own credentials (its
// WWW-Authenticate is never passed on: containerd would go around pullgate).
boost::asio::awaitable<round_trip_result> round_trip(const runtime& rt, std::string_view request_id,
                                                     const request_plan& plan, const auth_target& auth,
                                                     upstream_request& req);

}  // namespace pullgate

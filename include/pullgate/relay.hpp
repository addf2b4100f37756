// Streaming an upstream response to the client: the header first, then the
// body through one fixed buffer (Beast's relay() shape), optionally hashed on
// the way; a body that arrived whole with the header (a manifest) leaves in
// the header's write. Runs on the calling session's coroutine.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/digest.hpp"
#include "pullgate/outcome.hpp"
#include "pullgate/relay_buffers.hpp"
#include "pullgate/upstream_client.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>

#include <cstdint>
#include <span>
#include <string>

namespace pullgate {

using downstream_header = boost::beast::http::response<boost::beast::http::buffer_body>;

// The client's response header for an upstream response: same status, the
// headers a registry client needs copied unchanged (Content-Length kept as sent, also
// for HEAD), chunked when the upstream gave no length. Never copies
// WWW-Authenticate, Set-Cookie or hop-by-hop headers.
downstream_header make_downstream_header(const upstream_parser::value_type& up, unsigned version, bool keep_alive);

// How a relay ended.
enum class relay_outcome {
    complete,          // header and whole body delivered (and verified, if asked)
    digest_mismatch,   // the body did not hash to the expected digest; its last bytes were withheld
    upstream_reset,    // the upstream closed or failed mid-body
    upstream_timeout,  // no upstream progress for limits.upstreamStallTimeoutSeconds
    client_closed,
    client_timeout,  // the client took no bytes for limits.clientIdleTimeoutSeconds
};

// The decision log's reason for a relay that did not complete.
reason_code reason_for(relay_outcome o);

struct relay_result {
    std::uint64_t bytes = 0;  // body bytes written to the client
    relay_outcome outcome = relay_outcome::upstream_reset;
    bool upstream_reusable = false;  // the upstream connection may go back to the pool
    std::string body_digest;         // what the body hashed to, when it was hashed

    bool complete() const { return outcome == relay_outcome::complete; }
};

// Hashing the body on its way: `hash` sees every body byte; with `verify`,
// the final bytes are withheld unless the digest matches what `hash` expects.
struct body_hash {
    digester* hash = nullptr;
    bool verify = false;
};

// Writes `header` to `down`, then, unless `header_only`, the body of `up`
// through a buffer from `buffers`, held only while the body streams (idle
// keep-alive connections, and containerd keeps many, hold no relay memory).
// After a verification failure, as after any failure, the caller must close
// `down`, so the client sees a cut connection and never a complete-looking
// wrong body.
boost::asio::awaitable<relay_result> relay(upstream_response& up, boost::beast::tcp_stream& down,
                                           downstream_header& header, bool header_only, body_hash hashing,
                                           relay_buffers& buffers, const limits& lim);

}  // namespace pullgate

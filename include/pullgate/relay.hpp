// Streaming an upstream response to the client: the header first, then the
// body through one fixed buffer (Beast's relay() shape), optionally hashed on
// the way. Runs on the calling session's coroutine.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/digest.hpp"
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
// headers of DESIGN §4 copied unchanged (Content-Length kept as sent, also
// for HEAD), chunked when the upstream gave no length. Never copies
// WWW-Authenticate, Set-Cookie or hop-by-hop headers.
downstream_header make_downstream_header(const upstream_parser::value_type& up, unsigned version, bool keep_alive);

struct relay_result {
    std::uint64_t bytes = 0;         // body bytes written to the client
    bool complete = false;           // header and whole body delivered (and verified, if asked)
    bool upstream_reusable = false;  // the upstream connection may go back to the pool
    std::string failure;             // "", "digest_mismatch", "upstream_reset", "upstream_timeout", "client_closed"
    std::string actual_digest;       // when verification failed
};

// Writes `header` to `down`, then, unless `header_only`, the body of `up`
// through a buffer from `buffers`, held only while the body streams (idle
// keep-alive connections, and containerd keeps many, hold no relay memory). With `verify`, every byte is hashed and the
// final bytes are withheld when the digest does not match: the caller must then close `down`, as after any failure, so
// the client sees a cut connection and never a complete-looking wrong body.
boost::asio::awaitable<relay_result> relay(upstream_response& up, boost::beast::tcp_stream& down,
                                           downstream_header& header, bool header_only, digester* verify,
                                           relay_buffers& buffers, const limits& lim);

}  // namespace pullgate

// Responses pullgate makes itself: GET /v2/'s {} and the OCI error bodies of
// refusals, with the headers a registry client expects (no body for HEAD).
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/error.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>

#include <cstdint>
#include <string>

namespace pullgate {

using client_request = boost::beast::http::request<boost::beast::http::empty_body>;

// Writes a small JSON response (no body for HEAD) and adds the body bytes
// written to `body_bytes`. Returns false when the write failed.
boost::asio::awaitable<bool> write_json(boost::beast::tcp_stream& down, unsigned status, std::string body,
                                        const client_request& req, bool keep_alive, const limits& lim,
                                        std::uint64_t& body_bytes);

// write_json of the OCI error body for `f`, with its status.
boost::asio::awaitable<bool> write_error(boost::beast::tcp_stream& down, const failure& f, const client_request& req,
                                         bool keep_alive, const limits& lim, std::uint64_t& body_bytes);

}  // namespace pullgate

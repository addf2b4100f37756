#include "pullgate/local_response.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

asio::awaitable<bool> write_json(beast::tcp_stream& down, unsigned status, std::string body, const client_request& req,
                                 bool keep_alive, const limits& lim, std::uint64_t& body_bytes) {
    http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
    res.set(http::field::content_type, "application/json");
    res.set("Docker-Distribution-API-Version", "registry/2.0");
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    error_code ec;
    down.expires_after(lim.client_idle_timeout);
    if (req.method() == http::verb::head) {
        http::response_serializer<http::string_body> sr{res};
        co_await http::async_write_header(down, sr, asio::redirect_error(asio::use_awaitable, ec));
    } else {
        co_await http::async_write(down, res, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) body_bytes += res.body().size();
    }
    co_return !ec;
}

asio::awaitable<bool> write_error(beast::tcp_stream& down, const failure& f, const client_request& req,
                                  bool keep_alive, const limits& lim, std::uint64_t& body_bytes) {
    co_return co_await write_json(down, f.status, oci_error_body(f), req, keep_alive, lim, body_bytes);
}

}  // namespace pullgate

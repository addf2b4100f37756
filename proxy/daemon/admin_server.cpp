#include "pullgate/admin_server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {
constexpr auto admin_timeout = std::chrono::seconds(10);
}

admin_server::admin_server(asio::io_context& ioc, const listen_address& where, hooks h)
    : ioc_(ioc), acceptor_(asio::make_strand(ioc)), hooks_(std::move(h)) {
    tcp::endpoint ep(asio::ip::make_address(where.host), where.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
}

void admin_server::start() {
    asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

void admin_server::stop() {
    asio::post(acceptor_.get_executor(), [this] {
        error_code ec;
        acceptor_.close(ec);
    });
}

asio::awaitable<void> admin_server::accept_loop() {
    while (acceptor_.is_open()) {
        error_code ec;
        tcp::socket socket(asio::make_strand(ioc_));
        co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == asio::error::operation_aborted) break;
        if (ec) continue;
        auto ex = socket.get_executor();
        asio::co_spawn(ex, run_session(std::move(socket)), asio::detached);
    }
}

asio::awaitable<void> admin_server::run_session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(8192);
    error_code ec;
    while (true) {
        http::request_parser<http::empty_body> parser;
        parser.header_limit(8192);
        parser.body_limit(0);
        stream.expires_after(admin_timeout);
        co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
        const auto& req = parser.get();

        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        const std::string_view path = req.target().substr(0, req.target().find('?'));
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            res.result(http::status::method_not_allowed);
            res.body() = "GET only\n";
        } else if (path == "/healthz") {
            res.body() = "ok\n";
        } else if (path == "/readyz") {
            const bool ready = hooks_.ready();
            res.result(ready ? http::status::ok : http::status::service_unavailable);
            res.body() = ready ? "ready\n" : "not ready\n";
            if (hooks_.readiness_detail) res.body() += hooks_.readiness_detail();
        } else if (path == "/metrics") {
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = hooks_.render_metrics();
        } else {
            res.result(http::status::not_found);
            res.body() = "not found: /healthz /readyz /metrics\n";
        }
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        stream.expires_after(admin_timeout);
        if (req.method() == http::verb::head) {
            http::response_serializer<http::string_body> sr{res};
            co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
        } else {
            co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
        }
        if (ec || !res.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace pullgate

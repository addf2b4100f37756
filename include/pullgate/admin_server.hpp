// The admin listener (adminListen): /healthz, /readyz and /metrics for
// systemd, Kubernetes-style probes and Prometheus. Plain HTTP, GET/HEAD only,
// one small response per request. Runs its own accept loop on the io_context.
#pragma once

#include "pullgate/config.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <string>

namespace pullgate {

class admin_server {
public:
    struct hooks {
        std::function<bool()> ready;                  // /readyz: 200 when true, else 503
        std::function<std::string()> render_metrics;  // /metrics body
        // Status lines shown in /readyz's body (one per line); they never change its status.
        std::function<std::string()> readiness_detail;
    };

    // Binds `where`. Throws boost::system::system_error.
    admin_server(boost::asio::io_context& ioc, const listen_address& where, hooks h);

    void start();
    void stop();  // closes the acceptor; sessions end after their response

private:
    boost::asio::awaitable<void> accept_loop();
    boost::asio::awaitable<void> run_session(boost::asio::ip::tcp::socket socket);

    boost::asio::io_context& ioc_;
    boost::asio::ip::tcp::acceptor acceptor_;
    hooks hooks_;
};

}  // namespace pullgate

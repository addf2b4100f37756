// The downstream listener: accepts containerd's connections and runs one
// session coroutine per connection (read a request, hand it to handle_pull,
// log the decision, repeat while keep-alive). Connections are spread over
// the worker io_contexts, one thread each, so a session and its upstream
// connections never change threads. Holds the current runtime snapshot; a
// reload swaps it atomically, requests in flight keep theirs.
#pragma once

#include "pullgate/pull_handler.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace pullgate {

class server {
public:
    // Binds the listen address of `rt`'s config; accepts on workers[0] and
    // hands connections round-robin to all `workers`. Throws
    // boost::system::system_error.
    server(std::vector<boost::asio::io_context*> workers, std::shared_ptr<const runtime> rt);

    // Starts accepting (spawns the accept loop on the io_context).
    void start();

    // Replaces the runtime for requests that start from now on.
    void swap_runtime(std::shared_ptr<const runtime> rt);
    std::shared_ptr<const runtime> current() const { return rt_.load(); }

    // Stops accepting; closes idle keep-alive connections; returns once every
    // session ended or `grace` passed (then the remaining ones are cut).
    boost::asio::awaitable<void> shutdown(std::chrono::steady_clock::duration grace);

private:
    using session_executor = boost::asio::io_context::executor_type;
    struct session_entry;

    boost::asio::awaitable<void> accept_loop();
    boost::asio::awaitable<void> run_session(boost::asio::ip::tcp::socket socket, session_executor ex);
    // Waits for the first byte of a request; false when the client left or idled out.
    boost::asio::awaitable<bool> wait_for_request(boost::beast::tcp_stream& stream, boost::beast::flat_buffer& buffer,
                                                  bool first, const limits& lim);
    // Reads one request header, answers it, logs the decision. Returns keep-alive.
    boost::asio::awaitable<bool> serve_request(boost::beast::tcp_stream& stream, boost::beast::flat_buffer& buffer,
                                               const std::string& client, const runtime& rt);
    // The 503 for a connection beyond limits.maxConnections.
    boost::asio::awaitable<void> refuse_overloaded(boost::beast::tcp_stream& stream, const std::string& client,
                                                   const runtime& rt, std::size_t open);

    std::vector<boost::asio::io_context*> workers_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::atomic<std::shared_ptr<const runtime>> rt_;
    std::atomic<std::size_t> sessions_{0};
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> next_id_{0};       // request ids
    std::atomic<std::uint64_t> next_session_{0};  // keys of live_
    std::mutex live_mutex_;
    std::map<std::uint64_t, session_entry*> live_;
    std::uint32_t id_prefix_;
};

}  // namespace pullgate

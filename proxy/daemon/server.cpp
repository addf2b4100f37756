#include "pullgate/server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <openssl/rand.h>

#include <cstdio>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

std::string peer_of(const tcp::socket& s) {
    error_code ec;
    auto ep = s.remote_endpoint(ec);
    if (ec) return "unknown";
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

// A session that shutdown must reach. Each session runs on one worker
// io_context (one thread); the stream and `idle` are only touched there.
struct server::session_entry {
    session_executor ex;
    beast::tcp_stream* stream;
    bool idle;
};

server::server(std::vector<asio::io_context*> workers, std::shared_ptr<const runtime> rt)
    : workers_(std::move(workers)), acceptor_(*workers_.at(0)), rt_(std::move(rt)) {
    const auto& l = rt_.load()->cfg->listen;
    tcp::endpoint ep(asio::ip::make_address(l.host), l.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    RAND_bytes(reinterpret_cast<unsigned char*>(&id_prefix_), sizeof id_prefix_);
}

void server::start() {
    asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

void server::swap_runtime(std::shared_ptr<const runtime> rt) {
    rt_.store(std::move(rt));
}

asio::awaitable<void> server::accept_loop() {
    std::size_t next_worker = 0;
    while (!stopping_) {
        error_code ec;
        const session_executor ex = workers_[next_worker++ % workers_.size()]->get_executor();
        tcp::socket socket(ex);
        co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == asio::error::operation_aborted || stopping_) break;
        if (ec) {
            // EMFILE and friends: back off instead of spinning.
            spdlog::warn("accept failed: {}", ec.message());
            asio::steady_timer t(acceptor_.get_executor(), std::chrono::milliseconds(100));
            co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            continue;
        }
        asio::co_spawn(ex, run_session(std::move(socket), ex), [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                spdlog::error("session ended by an unexpected error: {}", ex.what());
            }
        });
    }
}

asio::awaitable<void> server::run_session(tcp::socket socket, session_executor ex) {
    const std::string client = peer_of(socket);
    socket.set_option(tcp::no_delay(true));
    beast::tcp_stream stream(std::move(socket));
    const std::size_t active = ++sessions_;
    auto rt = rt_.load();
    metrics& stats = *rt->stats;
    ++stats.downstream_connections;
    struct counter_guard {
        std::atomic<std::size_t>& n;
        std::atomic<std::int64_t>& gauge;
        ~counter_guard() {
            --n;
            --gauge;
        }
    } guard{sessions_, stats.downstream_connections};

    session_entry entry{ex, &stream, true};
    const std::uint64_t key = next_session_++;
    {
        std::lock_guard lock(live_mutex_);
        live_.emplace(key, &entry);
    }
    struct registry_guard {
        server& self;
        std::uint64_t key;
        ~registry_guard() {
            std::lock_guard lock(self.live_mutex_);
            self.live_.erase(key);
        }
    } unregister{*this, key};

    if (active > rt->cfg->limits.max_connections) {
        co_await refuse_overloaded(stream, client, *rt, active - 1);
        co_return;
    }

    beast::flat_buffer buffer;
    bool first_request = true;
    while (!stopping_) {
        // Idle wait for the first byte of the next request (a new connection
        // that sends nothing gets only the header timeout)...
        entry.idle = true;
        const bool arrived = co_await wait_for_request(stream, buffer, first_request, rt->cfg->limits);
        entry.idle = false;
        first_request = false;
        if (!arrived || stopping_) break;
        // Every request runs on the snapshot current when it arrives: a reload
        // applies to the next request even on a connection that sat idle.
        rt = rt_.load();
        if (!co_await serve_request(stream, buffer, client, *rt)) break;
    }
    error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.close();
}

asio::awaitable<bool> server::wait_for_request(beast::tcp_stream& stream, beast::flat_buffer& buffer, bool first,
                                               const limits& lim) {
    if (buffer.size() > 0) co_return true;  // pipelined: the next request is already here
    error_code ec;
    stream.expires_after(first ? lim.client_header_timeout : lim.client_idle_timeout);
    const std::size_t n =
        co_await stream.async_read_some(buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
    buffer.commit(n);
    co_return !ec;
}

asio::awaitable<void> server::refuse_overloaded(beast::tcp_stream& stream, const std::string& client, const runtime& rt,
                                                std::size_t open) {
    // Answered without reading the request: a clear 503 instead of a silent reset.
    const failure f =
        upstream_failure(503, "too many connections: limits.maxConnections reached", reason_code::overloaded);
    client_request dummy{http::verb::get, "/", 11};
    decision_record rec;
    co_await write_error(stream, f, dummy, false, rt.cfg->limits, rec.bytes);
    rec.ts = std::chrono::system_clock::now();
    rec.client = client;
    rec.decision = verdict::error;
    rec.reason = f.reason;
    rec.status = f.status;
    rt.log->write(rec);
    rt.stats->count_request(rec.decision, rec.reason);
    spdlog::warn("refused a connection from {}: {} open, limits.maxConnections is {}", client, open,
                 rt.cfg->limits.max_connections);
}

asio::awaitable<bool> server::serve_request(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                            const std::string& client, const runtime& rt) {
    const limits& lim = rt.cfg->limits;
    buffer.max_size(lim.max_header_bytes + 4096);
    // The whole header within the header timeout (slow clients cannot hold a
    // slot). Only the header: a body is never read (nothing is pushed).
    http::request_parser<http::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(lim.max_header_bytes));
    stream.expires_after(lim.client_header_timeout);
    error_code ec;
    co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));

    const auto started = std::chrono::steady_clock::now();
    decision_record rec;
    rec.ts = std::chrono::system_clock::now();
    char id[32];
    std::snprintf(id, sizeof id, "%08x%08llx", id_prefix_, static_cast<unsigned long long>(next_id_++));
    rec.id = id;
    rec.client = client;

    bool keep_alive = false;
    if (ec) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::connection_reset ||
            ec == asio::error::operation_aborted)
            co_return false;  // the client went away or stalled; nothing to answer
        rec.method = std::string(parser.get().method_string());
        failure f = bad_request("UNSUPPORTED", "malformed HTTP request: " + ec.message());
        // A TLS record (0x16: handshake) on the plain listener: a client such
        // as ctr < 1.7.16 or containers/image with insecure = true trying
        // HTTPS first; it falls back to HTTP on this answer.
        if (buffer.size() > 0 && static_cast<const unsigned char*>(buffer.data().data())[0] == 0x16) {
            rec.method = "TLS";
            f.message = "a TLS ClientHello reached pullgate's plain-HTTP listener; use http://" + rt.cfg->listen.text;
        }
        rec.decision = verdict::error;
        rec.reason = f.reason;
        rec.status = f.status;
        co_await write_error(stream, f, parser.get(), false, lim, rec.bytes);
    } else {
        client_request& req = parser.get();
        rec.method = std::string(req.method_string());
        // A request with a body (PUT, PATCH, POST of a push; a GET with a
        // body) is answered from its header; its body is never read, so the
        // connection closes after the answer.
        if (!parser.is_done()) req.keep_alive(false);
        request_context ctx{rt, req, stream, client, rec.id};
        try {
            keep_alive = co_await handle_pull(ctx, rec);
        } catch (const std::exception& e) {
            // A bug, not input: log it, cut this connection, keep the daemon.
            spdlog::error("[{}] request failed: {}", rec.id, e.what());
            rec.decision = verdict::error;
            rec.reason = reason_code::internal_error;
            keep_alive = false;
        }
    }
    rec.duration_ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
    rt.log->write(rec);
    rt.stats->count_request(rec.decision, rec.reason);
    rt.stats->add_bytes(rec.bytes);
    co_return keep_alive;
}

asio::awaitable<void> server::shutdown(std::chrono::steady_clock::duration grace) {
    stopping_ = true;
    co_await asio::post(acceptor_.get_executor(), asio::use_awaitable);
    error_code ec;
    acceptor_.close(ec);

    // Runs the cancellation on each session's thread, looking the session up
    // again there: it may have ended since (its entry is erased on that thread).
    auto close_sessions = [this](bool idle_only) {
        std::lock_guard lock(live_mutex_);
        for (auto& [key, entry] : live_) {
            asio::post(entry->ex, [this, key, idle_only] {
                std::lock_guard lock(live_mutex_);
                auto it = live_.find(key);
                if (it != live_.end() && (!idle_only || it->second->idle)) it->second->stream->socket().cancel();
            });
        }
    };
    close_sessions(true);

    const auto deadline = std::chrono::steady_clock::now() + grace;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (sessions_ > 0 && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(std::chrono::milliseconds(50));
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        close_sessions(true);  // sessions that finished a relay and went idle meanwhile
    }
    if (sessions_ > 0) {
        spdlog::warn("shutdown grace period over: cutting {} connection(s)", sessions_.load());
        close_sessions(false);
        timer.expires_after(std::chrono::milliseconds(200));
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
}

}  // namespace pullgate

#include "pullgate/relay.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <string_view>
#include <variant>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

namespace {

// Headers a registry client needs, passed through unchanged (docs/ARCHITECTURE.md, "Relay").
constexpr std::array<http::field, 9> passed_fields = {
    http::field::content_type,  http::field::etag,          http::field::content_range,
    http::field::accept_ranges, http::field::last_modified, http::field::content_encoding,
    http::field::link,          http::field::cache_control, http::field::retry_after,
};

constexpr std::array<std::string_view, 3> passed_names = {"Docker-Content-Digest", "Docker-Distribution-API-Version",
                                                          "OCI-Filters-Applied"};

bool is_rate_limit_header(std::string_view name) {
    auto starts = [&](std::string_view prefix) {
        return name.size() >= prefix.size() && beast::iequals(name.substr(0, prefix.size()), prefix);
    };
    return starts("RateLimit-") || starts("X-RateLimit-") || starts("Docker-RateLimit-");
}

// What an upstream connection's read buffer may keep between requests: a
// header and a small body; a larger body's growth is given back after it.
constexpr std::size_t idle_buffer_capacity = 16 * 1024;

// Makes the socket's own reads and writes non-blocking, once (an ioctl):
// it stays so afterwards, and Asio's asynchronous operations work either way.
void make_non_blocking(asio::ip::tcp::socket& socket, error_code& ec) {
    if (!socket.non_blocking()) socket.non_blocking(true, ec);
}

// Which side a raw relay is blocked on, and since when (for the watchdog).
struct relay_clock {
    enum class side { none, upstream, client } waiting = side::none;
    std::chrono::steady_clock::time_point since{};
    bool timed_out = false;
};

// Cuts the relay when one side makes no progress for its limit: checks once
// a second; cancelling the sockets ends the relay's pending wait.
asio::awaitable<void> watch_relay(relay_clock& clock, asio::ip::tcp::socket& up, asio::ip::tcp::socket& down,
                                  const limits& lim) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (true) {
        timer.expires_after(std::chrono::seconds(1));
        co_await timer.async_wait(asio::use_awaitable);  // throws when the relay ends first
        const auto limit =
            clock.waiting == relay_clock::side::upstream ? lim.upstream_stall_timeout : lim.client_idle_timeout;
        if (clock.waiting != relay_clock::side::none && std::chrono::steady_clock::now() - clock.since > limit) {
            clock.timed_out = true;
            error_code ignored;
            up.cancel(ignored);
            down.cancel(ignored);
        }
    }
}

// Finishes the body hash: records the digest; false (digest_mismatch) when
// it must be verified and does not match.
bool finish_hash(body_hash& hashing, relay_result& result) {
    const bool matches = hashing.hash->matches();
    result.body_digest = hashing.hash->actual();
    if (!hashing.verify || matches) return true;
    result.outcome = relay_outcome::digest_mismatch;
    return false;
}

// The body of a Content-Length response, moved with non-blocking reads and
// writes: decrypt as many TLS records as are there (up to the buffer), hash,
// write, and only wait on the event loop when a socket is not ready. This
// keeps a relay to a few event-loop turns per buffer instead of a chain of
// composed-operation completions per TLS record.
asio::awaitable<relay_result> relay_sized_body(upstream_connection& conn, beast::tcp_stream& down,
                                               std::uint64_t remaining, body_hash hashing, std::span<char> buffer,
                                               relay_clock& clock) {
    relay_result result;
    auto& up_socket = conn.tcp().socket();
    auto& down_socket = down.socket();
    error_code ec;
    make_non_blocking(up_socket, ec);
    if (!ec) make_non_blocking(down_socket, ec);
    if (ec) {
        result.outcome = relay_outcome::client_closed;
        co_return result;
    }
    auto wait = [&](asio::ip::tcp::socket& s, asio::socket_base::wait_type what, relay_clock::side side) {
        clock.waiting = side;
        clock.since = std::chrono::steady_clock::now();
        return s.async_wait(what, asio::redirect_error(asio::use_awaitable, ec));
    };

    while (remaining > 0) {
        std::size_t fill = 0;
        // Body bytes that arrived with the header are already decrypted in the connection's buffer.
        if (conn.buffer.size() > 0) {
            fill = asio::buffer_copy(asio::buffer(buffer.data(), std::min<std::uint64_t>(buffer.size(), remaining)),
                                     conn.buffer.data());
            conn.buffer.consume(fill);
            if (hashing.hash) hashing.hash->update(buffer.first(fill));
        }
        while (fill < buffer.size() && fill < remaining) {
            const std::size_t want =
                static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size() - fill, remaining - fill));
            const std::size_t n =
                conn.visit([&](auto& s) { return s.read_some(asio::buffer(buffer.data() + fill, want), ec); });
            // Hash each decrypted record (at most 16 KiB) while it is still in
            // the L1 cache, not the whole buffer after it has left it.
            if (hashing.hash && n > 0) hashing.hash->update(buffer.subspan(fill, n));
            fill += n;
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                ec = {};
                if (fill > 0) break;  // relay what we have, read more afterwards
                co_await wait(up_socket, asio::socket_base::wait_read, relay_clock::side::upstream);
                if (ec) break;
                continue;
            }
            if (ec || n == 0) break;
        }
        if (ec || fill == 0) {
            result.outcome = clock.timed_out ? relay_outcome::upstream_timeout : relay_outcome::upstream_reset;
            co_return result;
        }
        remaining -= fill;
        if (hashing.hash) {
            // Withhold the final bytes: the client must never complete a wrong blob.
            if (remaining == 0 && !finish_hash(hashing, result)) co_return result;
        }
        std::size_t sent = 0;
        while (sent < fill) {
            sent += down_socket.write_some(asio::buffer(buffer.data() + sent, fill - sent), ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                ec = {};
                co_await wait(down_socket, asio::socket_base::wait_write, relay_clock::side::client);
            }
            if (ec) {
                result.outcome = clock.timed_out ? relay_outcome::client_timeout : relay_outcome::client_closed;
                co_return result;
            }
        }
        clock.waiting = relay_clock::side::none;
        result.bytes += fill;
    }
    result.outcome = relay_outcome::complete;
    co_return result;
}

// Whether the whole body of `length` bytes is in the connection's buffer,
// after taking what can be had without waiting. A small body (a manifest)
// usually shares the header's TLS record, but reading the header took only
// its first bytes: the rest is already decrypted in OpenSSL's record buffer.
bool take_buffered_body(upstream_connection& conn, std::uint64_t length) {
    if (length > conn.buffer.max_size()) return false;
    const auto want = static_cast<std::size_t>(length);
    if (conn.buffer.size() >= want) return conn.buffer.size() == want;
    error_code ec;
    make_non_blocking(conn.tcp().socket(), ec);  // a plain-HTTP read must not block either
    while (!ec && conn.buffer.size() < want) {
        const auto space = conn.buffer.prepare(want - conn.buffer.size());
        const std::size_t n = conn.visit([&](auto& s) { return s.read_some(space, ec); });
        conn.buffer.commit(n);
        if (n == 0) break;
    }
    return conn.buffer.size() == want;
}

// The whole body came in with the header (a manifest, an error body): header
// and body leave in one write, with no relay buffer and no socket watch. On
// a digest mismatch only the header leaves, as on the streaming path.
asio::awaitable<relay_result> relay_buffered_body(upstream_response& up, beast::tcp_stream& down,
                                                  downstream_header& header,
                                                  http::response_serializer<http::buffer_body>& sr, body_hash hashing,
                                                  const limits& lim) {
    relay_result result;
    auto& conn = *up.connection;
    const asio::const_buffer body = conn.buffer.data();
    bool send_body = true;
    if (hashing.hash) {
        hashing.hash->update({static_cast<const char*>(body.data()), body.size()});
        send_body = finish_hash(hashing, result);  // false: digest_mismatch recorded
    }
    error_code ec;
    down.expires_after(lim.client_idle_timeout);
    if (!send_body) {
        // The header alone, as on the streaming path; the caller cuts the connection.
        co_await http::async_write_header(down, sr, asio::redirect_error(asio::use_awaitable, ec));
        co_return result;
    }
    // buffer_body takes a mutable pointer; the serializer only reads through it.
    header.body().data = const_cast<void*>(body.data());
    header.body().size = body.size();
    header.body().more = false;
    co_await http::async_write(down, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        result.outcome = relay_outcome::client_closed;
        co_return result;
    }
    result.bytes = body.size();
    conn.buffer.consume(body.size());
    // A large body (an image index) grew the buffer; a pooled connection
    // does not keep that memory while idle.
    if (conn.buffer.capacity() > idle_buffer_capacity) conn.buffer.shrink_to_fit();
    result.outcome = relay_outcome::complete;
    result.upstream_reusable = up.parser->keep_alive();
    co_return result;
}

// Chunked (or otherwise unsized) bodies, through Beast's parser: the end
// shows only after the last data, so each read is held back until the next
// one arrives. On a digest mismatch the final read's bytes are never sent.
asio::awaitable<relay_result> relay_parsed_body(upstream_response& up, beast::tcp_stream& down,
                                                downstream_header& header,
                                                http::response_serializer<http::buffer_body>& sr, body_hash hashing,
                                                std::span<char> buffer, const limits& lim) {
    relay_result result;
    error_code ec;
    auto& parser = *up.parser;
    auto& conn = *up.connection;
    const std::size_t half = buffer.size() / 2;
    const std::array<std::span<char>, 2> halves = {buffer.first(half), buffer.subspan(half, half)};
    std::size_t current = 0;
    std::size_t pending = 0;  // unsent bytes in halves[1 - current]
    auto write_out = [&](std::span<char> data, bool more) -> asio::awaitable<bool> {
        header.body().data = data.empty() ? nullptr : data.data();
        header.body().size = data.size();
        header.body().more = more;
        down.expires_after(lim.client_idle_timeout);
        co_await http::async_write(down, sr, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return false;
        result.bytes += data.size();
        co_return true;
    };
    while (true) {
        std::size_t n = 0;
        const std::span<char> into = halves[current];
        if (!parser.is_done()) {
            parser.get().body().data = into.data();
            parser.get().body().size = into.size();
            // read_some, not read: the stall timeout must measure time without
            // progress, not the time a slow upstream takes to fill the buffer.
            conn.tcp().expires_after(lim.upstream_stall_timeout);
            co_await conn.visit([&](auto& s) {
                return http::async_read_some(s, conn.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            });
            if (ec == http::error::need_buffer) ec = {};
            if (ec) {
                result.outcome =
                    ec == beast::error::timeout ? relay_outcome::upstream_timeout : relay_outcome::upstream_reset;
                co_return result;
            }
            n = into.size() - parser.get().body().size;
        }
        const bool last = parser.is_done();
        if (hashing.hash) {
            hashing.hash->update(into.first(n));
            if (last && !finish_hash(hashing, result)) co_return result;
        }
        if (n == 0 && !last) continue;  // framing only (a chunk header): nothing to pass on yet
        if (pending > 0 && !co_await write_out(halves[1 - current].first(pending), true)) {
            result.outcome = relay_outcome::client_closed;
            co_return result;
        }
        pending = 0;
        if (last) {
            if (!co_await write_out(into.first(n), false)) {
                result.outcome = relay_outcome::client_closed;
                co_return result;
            }
            break;
        }
        pending = n;
        current = 1 - current;
    }
    result.outcome = relay_outcome::complete;
    result.upstream_reusable = parser.keep_alive();
    co_return result;
}

}  // namespace

downstream_header make_downstream_header(const upstream_parser::value_type& up, unsigned version, bool keep_alive) {
    downstream_header h;
    h.version(version);
    h.result(up.result_int());
    for (const auto& field : up) {
        const auto name = field.name_string();
        bool pass = std::find(passed_fields.begin(), passed_fields.end(), field.name()) != passed_fields.end() ||
                    is_rate_limit_header(name);
        for (auto n : passed_names) pass = pass || beast::iequals(name, n);
        if (pass) h.insert(field.name(), name, field.value());
    }
    if (auto len = up.find(http::field::content_length); len != up.end())
        h.set(http::field::content_length, len->value());
    else if (up.result() != http::status::no_content && up.result() != http::status::not_modified)
        h.chunked(true);
    h.keep_alive(keep_alive);
    return h;
}

reason_code reason_for(relay_outcome o) {
    switch (o) {
        case relay_outcome::digest_mismatch:
            return reason_code::digest_mismatch;
        case relay_outcome::upstream_reset:
            return reason_code::upstream_reset;
        case relay_outcome::upstream_timeout:
            return reason_code::upstream_timeout;
        case relay_outcome::client_closed:
            return reason_code::client_closed;
        case relay_outcome::client_timeout:
            return reason_code::client_timeout;
        case relay_outcome::complete:
            break;
    }
    return reason_code::internal_error;
}

asio::awaitable<relay_result> relay(upstream_response& up, beast::tcp_stream& down, downstream_header& header,
                                    bool header_only, body_hash hashing, relay_buffers& buffers, const limits& lim) {
    relay_result result;
    error_code ec;
    auto& parser = *up.parser;
    auto& conn = *up.connection;
    const unsigned status = header.result_int();
    header_only = header_only || status == 204 || status == 304 || (status >= 100 && status < 200);

    header.body().data = nullptr;
    header.body().size = 0;
    header.body().more = !header_only;
    http::response_serializer<http::buffer_body> sr{header};

    std::optional<std::uint64_t> body_size;  // nullopt: chunked or unsized
    if (!parser.chunked() && parser.content_length()) body_size = *parser.content_length();
    // A body of known length still to be read: the buffered or the streaming path.
    const bool sized_body = body_size && !parser.is_done();

    if (!header_only && sized_body && take_buffered_body(conn, *body_size))
        co_return co_await relay_buffered_body(up, down, header, sr, hashing, lim);

    down.expires_after(lim.client_idle_timeout);
    co_await http::async_write_header(down, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        result.outcome = relay_outcome::client_closed;
        co_return result;
    }
    if (header_only) {
        result.outcome = relay_outcome::complete;
        result.upstream_reusable = parser.is_done() && parser.keep_alive();
        co_return result;
    }

    const auto lease = buffers.acquire(body_size, lim);
    const std::span<char> buffer = lease.bytes();

    // The common case (blobs with a Content-Length): the streaming path.
    if (sized_body) {
        relay_clock clock;
        auto outcome = co_await (relay_sized_body(conn, down, *body_size, hashing, buffer, clock) ||
                                 watch_relay(clock, conn.tcp().socket(), down.socket(), lim));
        result = std::get<0>(std::move(outcome));
        // The raw path read exactly Content-Length bytes: the connection sits at
        // a message boundary and may be reused if the upstream keeps it alive.
        result.upstream_reusable = result.complete() && parser.keep_alive() && conn.buffer.size() == 0;
        co_return result;
    }
    co_return co_await relay_parsed_body(up, down, header, sr, hashing, buffer, lim);
}

}  // namespace pullgate

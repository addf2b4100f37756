#include "pullgate/relay.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <string_view>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

// Headers a registry client needs, passed through unchanged (DESIGN §4).
constexpr std::array<http::field, 9> passed_fields = {
    http::field::content_type,  http::field::etag,          http::field::content_range,
    http::field::accept_ranges, http::field::last_modified, http::field::content_encoding,
    http::field::link,          http::field::cache_control, http::field::retry_after,
};

constexpr std::array<std::string_view, 3> passed_names = {
    "Docker-Content-Digest", "Docker-Distribution-API-Version", "OCI-Filters-Applied"};

bool is_rate_limit_header(std::string_view name) {
    auto starts = [&](std::string_view prefix) {
        return name.size() >= prefix.size() && beast::iequals(name.substr(0, prefix.size()), prefix);
    };
    return starts("RateLimit-") || starts("X-RateLimit-") || starts("Docker-RateLimit-");
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

asio::awaitable<relay_result> relay(upstream_response& up, beast::tcp_stream& down, downstream_header& header,
                                    bool header_only, digester* verify, std::span<char> buffer, const limits& lim) {
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

    down.expires_after(lim.client_idle_timeout);
    co_await http::async_write_header(down, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        result.failure = "client_closed";
        co_return result;
    }
    if (header_only) {
        result.complete = true;
        result.upstream_reusable = parser.is_done() && parser.keep_alive();
        co_return result;
    }

    while (true) {
        std::size_t n = 0;
        if (!parser.is_done()) {
            parser.get().body().data = buffer.data();
            parser.get().body().size = buffer.size();
            conn.tcp().expires_after(lim.upstream_stall_timeout);
            co_await conn.visit([&](auto& s) {
                return http::async_read(s, conn.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            });
            if (ec == http::error::need_buffer) ec = {};
            if (ec) {
                result.failure = ec == beast::error::timeout ? "upstream_timeout" : "upstream_reset";
                co_return result;
            }
            n = buffer.size() - parser.get().body().size;
        }
        const bool last = parser.is_done();
        if (verify) {
            verify->update(buffer.first(n));
            // Withhold the final bytes: the client must never complete a wrong blob.
            if (last && !verify->matches()) {
                result.failure = "digest_mismatch";
                result.actual_digest = verify->actual();
                co_return result;
            }
        }
        header.body().data = n ? buffer.data() : nullptr;
        header.body().size = n;
        header.body().more = !last;
        down.expires_after(lim.client_idle_timeout);
        co_await http::async_write(down, sr, asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {
            result.failure = "client_closed";
            co_return result;
        }
        result.bytes += n;
        if (last) break;
    }
    result.complete = true;
    result.upstream_reusable = parser.keep_alive();
    co_return result;
}

}  // namespace pullgate

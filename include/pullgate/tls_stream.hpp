// A TLS client stream over a beast::tcp_stream in which OpenSSL reads from
// and writes to the socket itself. Asio's ssl::stream passes every byte
// through two 17 KiB staging buffers and a 2 x 17 KiB BIO pair: about 75 KiB
// per upstream connection and two extra copies of every relayed byte. Here
// OpenSSL's own record buffer is the only one (read-ahead: one recv fetches
// several records). Waits go through the tcp_stream, so its timeouts and
// cancellation apply as before. One user at a time, like any Asio stream.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/coroutine.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>

struct ssl_st;
struct bio_st;

namespace pullgate {

class tls_stream {
public:
    using executor_type = boost::beast::tcp_stream::executor_type;
    using error_code = boost::system::error_code;

    tls_stream(boost::asio::any_io_executor ex, boost::asio::ssl::context& ctx);
    ~tls_stream();
    tls_stream(const tls_stream&) = delete;
    tls_stream& operator=(const tls_stream&) = delete;

    executor_type get_executor() noexcept { return tcp_.get_executor(); }
    boost::beast::tcp_stream& next_layer() noexcept { return tcp_; }
    ssl_st* native_handle() noexcept { return ssl_; }

    // Client handshake; the TCP connection must be open. SNI, session and
    // verification are set on native_handle() before.
    template <class Token>
    auto async_handshake(Token&& token) {
        return start(handshake_step{}, std::forward<Token>(token));
    }

    template <class MutableBufferSequence, class Token>
    auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
        return start(read_step{first_nonempty(buffers)}, std::forward<Token>(token));
    }

    // Writes the whole sequence, gathered into one TLS record when it is
    // small (a request header comes as a dozen small buffers; one record
    // each would mean a dozen sends).
    template <class ConstBufferSequence, class Token>
    auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
        const boost::asio::const_buffer first = first_nonempty(buffers);
        const std::size_t total = boost::asio::buffer_size(buffers);
        if (total == first.size() || total > gather_limit) return start(write_step{first}, std::forward<Token>(token));
        gathered_.resize(total);
        boost::asio::buffer_copy(boost::asio::buffer(gathered_), buffers);
        return start(write_step{boost::asio::buffer(gathered_)}, std::forward<Token>(token));
    }

    // Non-blocking: the plaintext that can be had now (at most one TLS
    // record), or `ec` = would_block when the socket has nothing yet.
    std::size_t read_some(boost::asio::mutable_buffer b, error_code& ec);

private:
    friend struct socket_bio;
    enum class status { done, want_read };

    struct handshake_step {
        int operator()(ssl_st* ssl, std::size_t& n) const;
    };
    struct read_step {
        boost::asio::mutable_buffer b;
        int operator()(ssl_st* ssl, std::size_t& n) const;
    };
    struct write_step {
        boost::asio::const_buffer b;
        int operator()(ssl_st* ssl, std::size_t& n) const;
    };

    // TLS records carry one buffer's worth per call; Asio's ssl::stream does the same.
    template <class Buffers>
    static auto first_nonempty(const Buffers& buffers) {
        using buffer = std::decay_t<decltype(*boost::asio::buffer_sequence_begin(buffers))>;
        for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
             ++it)
            if (buffer b(*it); b.size() > 0) return b;
        return buffer{};
    }

    // Runs `step` once; on want_read the caller waits for the socket.
    template <class Step>
    status perform(const Step& step, std::size_t& n, error_code& ec) {
        prepare();
        const int r = step(ssl_, n);
        return finish(r, n, ec);
    }
    void prepare();
    status finish(int r, std::size_t& n, error_code& ec);

    // One operation: run the step, send what OpenSSL wrote, wait for input
    // (reading the first bytes into `peek_`, through the tcp_stream so its
    // timeout applies), repeat.
    template <class Step>
    struct op : boost::asio::coroutine {
        tls_stream& s;
        Step step;
        std::size_t n = 0;
        error_code result{};
        status st = status::done;
        bool suspended = false;

        template <class Self>
        void operator()(Self& self, error_code ec = {}, std::size_t bytes = 0) {
            BOOST_ASIO_CORO_REENTER(*this) {
                for (;;) {
                    st = s.perform(step, n, result);
                    if (!s.out_.empty()) {
                        suspended = true;
                        BOOST_ASIO_CORO_YIELD boost::asio::async_write(s.tcp_, boost::asio::buffer(s.out_),
                                                                       std::move(self));
                        s.out_.clear();
                        if (ec) {
                            if (!result) result = ec;  // an alert after a TLS error: the TLS error says more
                            break;
                        }
                    }
                    if (st == status::done) break;
                    suspended = true;
                    BOOST_ASIO_CORO_YIELD s.tcp_.async_read_some(boost::asio::buffer(s.peek_), std::move(self));
                    if (ec) {
                        // EOF before close_notify: the stream was cut (Asio's ssl::stream says the same).
                        result = ec == boost::asio::error::eof ? s.truncated() : ec;
                        break;
                    }
                    s.peek_begin_ = 0;
                    s.peek_end_ = bytes;
                }
                if (!suspended) {
                    // Completing inside the initiating call is not allowed.
                    BOOST_ASIO_CORO_YIELD boost::asio::post(s.tcp_.get_executor(), std::move(self));
                }
                self.complete(result, n);
            }
        }
    };

    template <class Step, class Token>
    auto start(Step step, Token&& token) {
        return boost::asio::async_compose<Token, void(error_code, std::size_t)>(op<Step>{{}, *this, step}, token, tcp_);
    }

    static error_code truncated();

    boost::beast::tcp_stream tcp_;
    ssl_st* ssl_ = nullptr;
    bio_st* bio_ = nullptr;
    static constexpr std::size_t gather_limit = 16 * 1024;  // one TLS record of plaintext
    std::string gathered_;                                  // a small buffer sequence made contiguous for one record
    std::string out_;                                       // ciphertext OpenSSL wrote, sent by the running operation
    std::array<char, 2048> peek_{};  // bytes the readiness wait read (a whole small answer), handed to OpenSSL first
    std::size_t peek_begin_ = 0;
    std::size_t peek_end_ = 0;
    int recv_errno_ = 0;  // the last socket error the BIO saw
};

}  // namespace pullgate

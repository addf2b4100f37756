#include "pullgate/tls_stream.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace pullgate {
namespace asio = boost::asio;

// OpenSSL's read side of the socket: bytes the readiness wait already read
// come first, then non-blocking recv() straight into OpenSSL's record
// buffer. The write side only collects: the running operation sends it
// through the tcp_stream (timeouts apply), so OpenSSL never sees a blocked
// write.
struct socket_bio {
    static tls_stream& owner(BIO* b) { return *static_cast<tls_stream*>(BIO_get_data(b)); }

    static int read(BIO* b, char* out, size_t len, size_t* done) {
        tls_stream& s = owner(b);
        BIO_clear_retry_flags(b);
        if (s.peek_begin_ < s.peek_end_) {
            // Only what the wait read: a small answer fits, and asking the
            // socket for more would mostly cost a recv() that finds nothing.
            const std::size_t n = std::min(len, s.peek_end_ - s.peek_begin_);
            std::memcpy(out, s.peek_.data() + s.peek_begin_, n);
            s.peek_begin_ += n;
            *done = n;
            return 1;
        }
        const ssize_t r = ::recv(s.tcp_.socket().native_handle(), out, len, MSG_DONTWAIT);
        if (r > 0) {
            *done = static_cast<std::size_t>(r);
            return 1;
        }
        if (r == 0) return 0;  // EOF
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            BIO_set_retry_read(b);
        } else {
            s.recv_errno_ = errno;
        }
        return -1;
    }

    static int write(BIO* b, const char* in, size_t len, size_t* done) {
        tls_stream& s = owner(b);
        BIO_clear_retry_flags(b);
        try {
            s.out_.append(in, len);
        } catch (const std::bad_alloc&) {
            return -1;
        }
        *done = len;
        return 1;
    }

    static long ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

    static int create(BIO* b) {
        BIO_set_init(b, 1);
        return 1;
    }

    static const BIO_METHOD* method() {
        static BIO_METHOD* m = [] {
            BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pullgate socket");
            if (!meth) throw std::bad_alloc();
            BIO_meth_set_read_ex(meth, read);
            BIO_meth_set_write_ex(meth, write);
            BIO_meth_set_ctrl(meth, ctrl);
            BIO_meth_set_create(meth, create);
            return meth;
        }();
        return m;
    }
};

tls_stream::tls_stream(asio::any_io_executor ex, asio::ssl::context& ctx) : tcp_(std::move(ex)) {
    ssl_ = SSL_new(ctx.native_handle());
    bio_ = ssl_ ? BIO_new(socket_bio::method()) : nullptr;
    if (!ssl_ || !bio_) {
        if (ssl_) SSL_free(ssl_);
        throw std::bad_alloc();
    }
    BIO_set_data(bio_, this);
    SSL_set_bio(ssl_, bio_, bio_);  // the SSL owns the BIO now
    SSL_set_connect_state(ssl_);
    SSL_set_read_ahead(ssl_, 1);
    SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
}

tls_stream::~tls_stream() {
    SSL_free(ssl_);
}

int tls_stream::handshake_step::operator()(SSL* ssl, std::size_t& n) const {
    n = 0;
    return SSL_do_handshake(ssl);
}

int tls_stream::read_step::operator()(SSL* ssl, std::size_t& n) const {
    n = 0;
    if (b.size() == 0) return 1;
    return SSL_read_ex(ssl, b.data(), b.size(), &n);
}

int tls_stream::write_step::operator()(SSL* ssl, std::size_t& n) const {
    n = 0;
    if (b.size() == 0) return 1;
    return SSL_write_ex(ssl, b.data(), b.size(), &n);
}

void tls_stream::prepare() {
    ERR_clear_error();  // SSL_get_error reads this thread's error queue
    recv_errno_ = 0;
}

tls_stream::error_code tls_stream::truncated() {
    return asio::ssl::error::stream_truncated;
}

tls_stream::status tls_stream::finish(int r, std::size_t& n, error_code& ec) {
    ec = {};
    if (r > 0) return status::done;
    n = 0;
    switch (SSL_get_error(ssl_, r)) {
        case SSL_ERROR_WANT_READ:
            return status::want_read;
        case SSL_ERROR_ZERO_RETURN:  // close_notify
            ec = asio::error::eof;
            return status::done;
        case SSL_ERROR_SYSCALL:
            ec = recv_errno_ ? error_code(recv_errno_, boost::system::system_category()) : truncated();
            return status::done;
        default: {
            const unsigned long e = ERR_get_error();
            if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                ec = truncated();
            else if (e != 0)
                ec = error_code(static_cast<int>(e), asio::error::get_ssl_category());
            else
                ec = truncated();
            return status::done;
        }
    }
}

std::size_t tls_stream::read_some(asio::mutable_buffer b, error_code& ec) {
    std::size_t n = 0;
    const status st = perform(read_step{b}, n, ec);
    if (!out_.empty()) {
        // OpenSSL answered something while reading (a TLS 1.3 KeyUpdate):
        // send what the socket takes now; the next operation sends the rest.
        const ssize_t sent =
            ::send(tcp_.socket().native_handle(), out_.data(), out_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent > 0) out_.erase(0, static_cast<std::size_t>(sent));
    }
    if (st == status::want_read) ec = asio::error::would_block;
    return n;
}

}  // namespace pullgate

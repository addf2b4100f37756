#include "pullgate/session_cache.hpp"

#include <openssl/ssl.h>

namespace pullgate {
namespace {

// SSL ex_data slots: the cache and the origin key of a connection.
int cache_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}
int key_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

int on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* cache = static_cast<tls_session_cache*>(SSL_get_ex_data(ssl, cache_index()));
    auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
    if (!cache || !key) return 0;
    // A copy, for the reason in attach(); OpenSSL keeps the original.
    if (SSL_SESSION* copy = SSL_SESSION_dup(session)) cache->put(*key, copy);
    return 0;
}

}  // namespace

tls_session_cache::~tls_session_cache() {
    for (auto& [key, s] : by_origin_) SSL_SESSION_free(s);
}

void tls_session_cache::install(SSL_CTX* ctx) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
}

void tls_session_cache::put(const std::string& origin_key, SSL_SESSION* s) {
    std::lock_guard lock(mutex_);
    auto& slot = by_origin_[origin_key];
    if (slot) SSL_SESSION_free(slot);
    slot = s;
}

void tls_session_cache::attach(SSL* ssl, const std::string* origin_key) {
    SSL_set_ex_data(ssl, cache_index(), this);
    SSL_set_ex_data(ssl, key_index(), const_cast<std::string*>(origin_key));
    // A copy of the cached session, never the cached object itself: OpenSSL
    // marks a connection's session not resumable when the connection is freed
    // without a close_notify (pooled connections end that way), which spoiled
    // the cached session for every connection opened after it.
    std::lock_guard lock(mutex_);
    auto it = by_origin_.find(*origin_key);
    if (it == by_origin_.end() || !SSL_SESSION_is_resumable(it->second)) return;
    if (SSL_SESSION* copy = SSL_SESSION_dup(it->second)) {
        SSL_set_session(ssl, copy);
        SSL_SESSION_free(copy);  // the SSL holds its own reference
    }
}

}  // namespace pullgate

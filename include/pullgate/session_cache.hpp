// TLS sessions of upstream origins, kept for resumption on new connections
// (new connections open whenever the pool has none idle). Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <string>

struct ssl_st;
struct ssl_ctx_st;
struct ssl_session_st;

namespace pullgate {

class tls_session_cache {
public:
    tls_session_cache() = default;
    ~tls_session_cache();
    tls_session_cache(const tls_session_cache&) = delete;
    tls_session_cache& operator=(const tls_session_cache&) = delete;

    // Makes `ctx` pass every new client session (TLS 1.3 tickets arrive after
    // the handshake) to the cache its connection was attached to.
    static void install(ssl_ctx_st* ctx);

    // Attaches `ssl` to this cache under `origin_key` (both must outlive the
    // handshake and the connection) and sets a copy of the cached session,
    // if any, for resumption.
    void attach(ssl_st* ssl, const std::string* origin_key);

    // Takes ownership of `s` as the session of `origin_key`.
    void put(const std::string& origin_key, ssl_session_st* s);

private:
    std::mutex mutex_;
    std::map<std::string, ssl_session_st*> by_origin_;
};

}  // namespace pullgate

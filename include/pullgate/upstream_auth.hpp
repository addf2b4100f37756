// Authenticating to upstream registries with the stored credentials: Basic
// challenges answered with Basic, Bearer challenges with a token fetched
// from the challenge's realm (Basic to the realm, OAuth2 refresh-token POST
// for identity tokens, or anonymously), tokens cached and shared by
// concurrent requests. Coroutines run on the calling session's executor.
#pragma once

#include "pullgate/credentials.hpp"
#include "pullgate/error.hpp"
#include "pullgate/token_cache.hpp"
#include "pullgate/upstream_client.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace pullgate {

// Who is asking for what.
struct auth_target {
    registry_name registry;
    std::string repository;
    const credential* cred = nullptr;  // nullptr: anonymous
    bool insecure_http = false;        // the registry is plain HTTP: so may its realm be
};

class upstream_auth {
public:
    upstream_auth(upstream_client& client, std::shared_ptr<token_cache> cache, metrics& stats);

    // The Authorization value to send up front (a cached token, or Basic for
    // a registry that challenged Basic before), or "".
    std::string preset(const auth_target& t);

    // Answers a 401's WWW-Authenticate: returns the Authorization value to
    // retry with, or the failure to answer the client with (403 DENIED
    // upstream_auth_failed for refused credentials, 502 UNAVAILABLE
    // token_unavailable for a failing token service). Concurrent calls for
    // one (registry, scope, credential) share one token fetch; the others are
    // woken when it ends.
    boost::asio::awaitable<boost::system::result<std::string, failure>> answer(
        const auth_target& t, const upstream_parser::value_type& challenge_response);

    std::shared_ptr<token_cache> shared_cache() const { return cache_; }

private:
    boost::asio::awaitable<boost::system::result<token_response, failure>> fetch_token(const auth_target& t,
                                                                                       const std::string& realm,
                                                                                       const std::string& service,
                                                                                       const std::string& scope);

    upstream_client& client_;
    metrics& stats_;
    std::shared_ptr<token_cache> cache_;
    std::mutex flights_mutex_;
    std::map<std::string, std::shared_ptr<struct token_flight>> flights_;
};

// "repository:<name>:pull"
std::string pull_scope(std::string_view repository);

}  // namespace pullgate

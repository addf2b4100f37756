// Bearer tokens from registry token services, cached per (registry, scope,
// credential) until shortly before they expire. Pure: the clock is injected;
// thread-safe.
#pragma once

#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace pullgate {

// A token service's answer (docker token spec / OAuth2).
struct token_response {
    std::string token;                    // "token", or "access_token" when "token" is absent
    std::chrono::seconds expires_in{60};  // 60 s when absent
};

// Parses the JSON body of a token response. The error text never contains
// the body (it may hold a token).
boost::system::result<token_response, std::string> parse_token_response(std::string_view body);

// The cache key of a token: registry key, scope, and which credential
// (its key and fingerprint, or "anonymous").
std::string token_cache_key(std::string_view registry, std::string_view scope, std::string_view credential_id);

class token_cache {
public:
    using clock = std::chrono::steady_clock;
    explicit token_cache(
        std::function<clock::time_point()> now = [] { return clock::now(); }, std::size_t max_entries = 10000);

    // The cached token, if present and not within its safety margin of expiry.
    std::optional<std::string> get(const std::string& key);

    // Stores a token valid for `expires_in` from now, less a margin (10 %,
    // between 1 s and 30 s) so it is never sent just as it expires.
    void put(const std::string& key, std::string token, std::chrono::seconds expires_in);

    std::uint64_t hits() const;
    std::uint64_t misses() const;
    std::size_t size() const;

private:
    struct entry {
        std::string token;
        clock::time_point good_until;
    };
    void evict_expired(clock::time_point now);

    std::function<clock::time_point()> now_;
    std::size_t max_entries_;
    mutable std::mutex mutex_;
    std::map<std::string, entry> entries_;
    std::uint64_t hits_ = 0;
    std::uint64_t misses_ = 0;
};

}  // namespace pullgate

#include "pullgate/token_cache.hpp"

#include "pullgate/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace pullgate {
namespace {

constexpr std::int64_t max_token_lifetime = 24 * 3600;

}  // namespace

boost::system::result<token_response, std::string> parse_token_response(std::string_view body) {
    nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) return error_text{"token response is not a JSON object"};
    token_response out;
    for (const char* field : {"token", "access_token"}) {
        auto it = doc.find(field);
        if (it != doc.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
            out.token = it->get<std::string>();
            break;
        }
    }
    if (out.token.empty()) return error_text{"token response has neither token nor access_token"};
    if (auto it = doc.find("expires_in"); it != doc.end() && it->is_number()) {
        // Clamp before converting: a double beyond int64's range is undefined
        // behaviour to cast (found by fuzzing); so is reading a huge unsigned as signed.
        double secs = it->get<double>();
        if (secs >= 1)
            out.expires_in = std::chrono::seconds(
                static_cast<std::int64_t>(std::min(secs, static_cast<double>(max_token_lifetime))));
    }
    return out;
}

std::string token_cache_key(std::string_view registry, std::string_view scope, std::string_view credential_id) {
    std::string k;
    k.reserve(registry.size() + scope.size() + credential_id.size() + 2);
    k.append(registry).append(1, '\n').append(scope).append(1, '\n').append(credential_id);
    return k;
}

token_cache::token_cache(std::function<clock::time_point()> now, std::size_t max_entries)
    : now_(std::move(now)), max_entries_(std::max<std::size_t>(max_entries, 1)) {}

std::optional<std::string> token_cache::get(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end() || now_() >= it->second.good_until) {
        ++misses_;
        return std::nullopt;
    }
    ++hits_;
    return it->second.token;
}

void token_cache::put(const std::string& key, std::string token, std::chrono::seconds expires_in) {
    using namespace std::chrono;
    const seconds margin = std::clamp(expires_in / 10, seconds(1), seconds(30));
    std::lock_guard lock(mutex_);
    const auto now = now_();
    // Refreshing a key never needs room; only a new key may evict another.
    const bool fresh_key = !entries_.contains(key);
    if (fresh_key && entries_.size() >= max_entries_) evict_expired(now);
    if (fresh_key && entries_.size() >= max_entries_) {
        // Still full: drop the entry closest to expiry.
        auto victim = std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
            return a.second.good_until < b.second.good_until;
        });
        entries_.erase(victim);
    }
    entries_[key] = entry{std::move(token), now + (expires_in > margin ? expires_in - margin : seconds(0))};
}

void token_cache::evict_expired(clock::time_point now) {
    std::erase_if(entries_, [now](const auto& kv) { return now >= kv.second.good_until; });
}

std::uint64_t token_cache::hits() const {
    std::lock_guard lock(mutex_);
    return hits_;
}

std::uint64_t token_cache::misses() const {
    std::lock_guard lock(mutex_);
    return misses_;
}

std::size_t token_cache::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace pullgate

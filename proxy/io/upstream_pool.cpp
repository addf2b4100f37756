#include "pullgate/upstream_pool.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

namespace pullgate {
namespace asio = boost::asio;

namespace {
constexpr std::size_t max_idle_per_key = 32;
}

upstream_pool::upstream_pool(const limits& lim)
    : max_per_origin_(lim.max_upstream_connections_per_origin), idle_timeout_(lim.upstream_idle_timeout) {}

upstream_pool::~upstream_pool() {
    // Destroying a connection calls closed(), which takes the lock.
    decltype(idle_) idle;
    {
        std::lock_guard lock(mutex_);
        idle.swap(idle_);
    }
}

std::size_t upstream_pool::open(const std::string& origin_key) const {
    std::lock_guard lock(mutex_);
    auto it = open_.find(origin_key);
    return it == open_.end() ? 0 : it->second;
}

std::unique_ptr<upstream_connection> upstream_pool::take_idle(const std::string& pool_key) {
    std::vector<std::unique_ptr<upstream_connection>> stale;  // closed outside the lock
    std::unique_ptr<upstream_connection> found;
    {
        std::lock_guard lock(mutex_);
        auto it = idle_.find(pool_key);
        if (it == idle_.end()) return nullptr;
        auto& list = it->second;
        const auto now = std::chrono::steady_clock::now();
        while (!list.empty() && !found) {
            auto c = std::move(list.back());
            list.pop_back();
            if (now - c->idle_since < idle_timeout_)
                found = std::move(c);
            else
                stale.push_back(std::move(c));
        }
    }
    if (found) found->reused = true;
    return found;
}

void upstream_pool::evict_idle_elsewhere(const std::string& origin_key, const std::string& own_pool_key) {
    std::unique_ptr<upstream_connection> victim;
    {
        std::lock_guard lock(mutex_);
        const std::string prefix = origin_key + "#";
        for (auto it = idle_.lower_bound(prefix); it != idle_.end() && it->first.starts_with(prefix); ++it) {
            if (it->first == own_pool_key || it->second.empty()) continue;
            victim = std::move(it->second.front());  // the oldest
            it->second.erase(it->second.begin());
            break;
        }
    }
    // Closed on its own thread; closing frees the slot for the waiters.
    if (victim) {
        auto ex = victim->executor();
        asio::post(ex, [c = std::move(victim)]() mutable { c.reset(); });
    }
}

asio::awaitable<upstream_pool::slot> upstream_pool::acquire(const origin& o, bool fresh,
                                                           std::chrono::steady_clock::time_point deadline) {
    const auto ex = co_await asio::this_coro::executor;
    const std::string origin_key = o.key();
    const std::string pool_key = pool_key_for(o, ex);
    while (true) {
        const std::uint64_t seen = freed_.generation();
        slot s;
        if (!fresh) s.idle = take_idle(pool_key);
        if (s.idle) {
            s.granted = true;
            co_return s;
        }
        {
            std::lock_guard lock(mutex_);
            auto& n = open_[origin_key];
            if (n < max_per_origin_) {
                ++n;  // the new connection's; ~upstream_connection gives it back
                s.granted = true;
            }
        }
        if (s.granted) co_return s;
        // At the cap: an idle connection of another thread is closed to make
        // room; otherwise a request in flight must finish first.
        evict_idle_elsewhere(origin_key, pool_key);
        if (!co_await freed_.wait(seen, deadline)) co_return slot{};
    }
}

void upstream_pool::release(std::unique_ptr<upstream_connection> c) {
    if (!c) return;
    c->idle_since = std::chrono::steady_clock::now();
    std::unique_ptr<upstream_connection> dropped;
    {
        std::lock_guard lock(mutex_);
        auto& list = idle_[c->pool_key()];
        if (list.size() >= max_idle_per_key) {
            dropped = std::move(list.front());  // the oldest
            list.erase(list.begin());
        }
        list.push_back(std::move(c));
    }
    dropped.reset();
    freed_.notify_all();
}

void upstream_pool::closed(const std::string& origin_key) {
    {
        std::lock_guard lock(mutex_);
        auto it = open_.find(origin_key);
        if (it != open_.end() && it->second > 0) --it->second;
    }
    freed_.notify_all();
}

}  // namespace pullgate

#include "pullgate/notifier.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace pullgate {
namespace asio = boost::asio;

std::uint64_t notifier::generation() const {
    std::lock_guard lock(mutex_);
    return generation_;
}

asio::awaitable<bool> notifier::wait(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) {
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
    timer->expires_at(deadline);
    {
        std::lock_guard lock(mutex_);
        if (generation_ != seen) co_return true;
        waiters_.push_back(timer);
    }
    // notify_all's cancel is posted to this executor, so it cannot run before
    // the wait below has started.
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    std::lock_guard lock(mutex_);
    std::erase(waiters_, timer);
    co_return generation_ != seen;
}

void notifier::notify_all() {
    std::vector<std::shared_ptr<asio::steady_timer>> wake;
    {
        std::lock_guard lock(mutex_);
        ++generation_;
        wake.swap(waiters_);
    }
    for (auto& t : wake) asio::post(t->get_executor(), [t] { t->cancel(); });
}

}  // namespace pullgate

// Wakes coroutines that wait for "something changed", on any io_context:
// each waiter sleeps on a timer of its own executor, and notify_all() cancels
// those timers on their executors. Replaces polling loops (token fetches in
// flight, upstream connection slots). Thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace pullgate {

class notifier {
public:
    // Notifications so far. Read it before checking the condition and pass it
    // to wait(), so that a notification in between is never missed.
    std::uint64_t generation() const;

    // Returns true as soon as generation() differs from `seen` (at once if it
    // already does), false at `deadline`. Runs on the caller's executor.
    boost::asio::awaitable<bool> wait(std::uint64_t seen, std::chrono::steady_clock::time_point deadline);

    // Wakes every waiter.
    void notify_all();

private:
    mutable std::mutex mutex_;
    std::uint64_t generation_ = 0;
    std::vector<std::shared_ptr<boost::asio::steady_timer>> waiters_;
};

}  // namespace pullgate

// Upstream connections between requests: idle keep-alive connections per
// origin and worker thread, and a cap on the connections open to one origin
// (limits.maxUpstreamConnectionsPerOrigin): at the cap a request waits, within
// its deadline, for a connection to come back or to close. Thread-safe.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/notifier.hpp"
#include "pullgate/upstream_connection.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pullgate {

class upstream_pool {
public:
    explicit upstream_pool(const limits& lim);
    ~upstream_pool();
    upstream_pool(const upstream_pool&) = delete;
    upstream_pool& operator=(const upstream_pool&) = delete;

    // A pooled connection of the calling thread for `o` (unless `fresh`), or
    // leave to open a new one. `granted` false: the origin stayed at its cap
    // until `deadline`.
    struct slot {
        std::unique_ptr<upstream_connection> idle;
        bool granted = false;
    };
    boost::asio::awaitable<slot> acquire(const origin& o, bool fresh, std::chrono::steady_clock::time_point deadline);

    // Keeps a connection whose response was read completely for reuse.
    void release(std::unique_ptr<upstream_connection> c);

    // Open connections to `origin_key` (in use or idle).
    std::size_t open(const std::string& origin_key) const;

private:
    friend class upstream_connection;
    void closed(const std::string& origin_key);  // from ~upstream_connection
    std::unique_ptr<upstream_connection> take_idle(const std::string& pool_key);
    void evict_idle_elsewhere(const std::string& origin_key, const std::string& own_pool_key);

    const std::size_t max_per_origin_;
    const std::chrono::seconds idle_timeout_;
    mutable std::mutex mutex_;
    std::map<std::string, std::size_t> open_;  // by origin key
    std::map<std::string, std::vector<std::unique_ptr<upstream_connection>>> idle_;  // by pool key
    notifier freed_;  // a connection came back or closed
};

}  // namespace pullgate

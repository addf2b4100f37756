// What the daemon keeps live on its first io_context: the configuration
// (reloaded on SIGHUP and on file changes, through the file watcher) and the
// node's gated verdict (the node check, again on every change under the
// certs dir and to containerd's config). Runs on that one io_context.
#pragma once

#include "pullgate/file_watcher.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/server.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

class live_state {
public:
    live_state(boost::asio::io_context& ioc, server& srv, metrics& stats, std::string config_path);

    // Sets up the watchers and runs the first node check. A watcher that
    // cannot be set up is logged; the daemon runs on without it.
    void start();

    void stop();

    // Loads the config and credentials again and swaps them in atomically; a
    // broken file keeps what is in force. `why` is logged.
    void reload(std::string_view why);

    // Lines for /readyz: the node verdict.
    std::vector<std::string> status_lines() const;

private:
    static constexpr std::chrono::milliseconds debounce{1000};

    void on_file_change();

    void apply_watches();

    // Runs the node check with the settings in force; logs a line when the
    // verdict or its findings changed.
    void check_node_now();

    boost::asio::io_context& ioc_;
    server& srv_;
    metrics& stats_;
    std::string config_path_;
    std::string mirror_url_;  // http://<listen> the listener really has (listen changes need a restart)
    std::unique_ptr<file_watcher> config_watcher_;
    std::unique_ptr<file_watcher> node_watcher_;
    std::size_t last_files_ = 0;
    std::string last_summary_;
    mutable std::mutex mutex_;
    std::vector<std::string> status_;
};

}  // namespace pullgate

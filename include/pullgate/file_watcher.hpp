// Watches files and directory trees with inotify and calls back, debounced,
// when something under them changed. Directories are watched, not files, so
// an editor's rename-over and a Kubernetes ConfigMap/Secret `..data` symlink
// swap count as changes as well as a write in place. Runs on one executor
// (the inotify fd is an Asio stream_descriptor; no thread ever blocks on it).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace pullgate {

class file_watcher {
public:
    struct target {
        std::filesystem::path path;
        // false: a file (its directory is watched for events on its name, or
        // on the first component of its symlink target, e.g. `..data`);
        // true: a directory and its direct subdirectories (any event there).
        bool tree = false;
    };

    // Creates the inotify instance. Throws std::system_error on failure.
    // `on_change` runs on `ex` once the watched things have been quiet for
    // `debounce` after a change; the watches are renewed just before it runs
    // (directories that appeared are watched from then on).
    file_watcher(boost::asio::any_io_executor ex, std::chrono::milliseconds debounce, std::function<void()> on_change);
    ~file_watcher();
    file_watcher(const file_watcher&) = delete;
    file_watcher& operator=(const file_watcher&) = delete;

    // Replaces what is watched. A path that does not exist yet is watched for
    // through its nearest existing ancestor. Call on the executor.
    void set_targets(std::vector<target> targets);

    // Starts reading events; stop() cancels the read and a pending callback.
    void start();
    void stop();

    // Directories watched now (for diagnostics and tests).
    std::vector<std::filesystem::path> watched_directories() const;

private:
    struct watch {
        std::filesystem::path dir;
        bool any_name = false;
        std::set<std::string> names;
    };

    void renew_watches();
    void read_some();
    // Reads what is pending without waiting; true if an event concerned a target.
    bool drain();
    void arm_timer();

    boost::asio::posix::stream_descriptor fd_;
    boost::asio::steady_timer timer_;
    std::chrono::milliseconds debounce_;
    std::function<void()> on_change_;
    std::vector<target> targets_;
    std::map<int, watch> watches_;                     // by inotify watch descriptor
    alignas(8) std::array<char, 16 * 1024> buffer_{};  // inotify_event records
    bool stopped_ = false;
};

}  // namespace pullgate

#include "pullgate/file_watcher.hpp"

#include <spdlog/spdlog.h>

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace pullgate {
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// No IN_MODIFY: a file being written is read once its writer closes it
// (IN_CLOSE_WRITE) or renames it into place, never half-written; and a busy
// file that shares the directory (a decision log next to the config) wakes
// nobody on every append.
constexpr std::uint32_t watch_mask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB |
                                     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

int make_inotify() {
    int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
    return fd;
}

bool is_dir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}

// The nearest existing ancestor of `p` (a directory) and the name of its
// child on the way to `p`.
std::pair<fs::path, std::string> existing_ancestor(fs::path p) {
    std::string child;
    while (!p.empty() && p != p.root_path() && !is_dir(p)) {
        child = p.filename().string();
        p = p.parent_path();
    }
    if (p.empty()) p = ".";
    return {p, child};
}

}  // namespace

file_watcher::file_watcher(asio::any_io_executor ex, std::chrono::milliseconds debounce,
                           std::function<void()> on_change)
    : fd_(ex, make_inotify()), timer_(ex), debounce_(debounce), on_change_(std::move(on_change)) {}

file_watcher::~file_watcher() = default;

void file_watcher::set_targets(std::vector<target> targets) {
    targets_ = std::move(targets);
    renew_watches();
}

void file_watcher::start() {
    stopped_ = false;
    read_some();
}

void file_watcher::stop() {
    stopped_ = true;
    boost::system::error_code ec;
    timer_.cancel();
    fd_.cancel(ec);
}

std::vector<fs::path> file_watcher::watched_directories() const {
    std::vector<fs::path> out;
    for (const auto& [wd, w] : watches_) out.push_back(w.dir);
    return out;
}

void file_watcher::renew_watches() {
    std::map<fs::path, watch> want;
    auto add = [&](const fs::path& dir, const std::string& name) {
        auto& w = want[dir];
        w.dir = dir;
        if (name.empty())
            w.any_name = true;
        else
            w.names.insert(name);
    };
    for (const auto& t : targets_) {
        const fs::path p = t.path.lexically_normal();
        if (t.tree && is_dir(p)) {
            add(p, "");
            std::error_code ec;
            for (const auto& e : fs::directory_iterator(p, ec))
                if (std::error_code ec2; e.is_directory(ec2)) add(e.path(), "");
            if (p.has_parent_path() && p != p.root_path()) add(p.parent_path(), p.filename().string());
            continue;
        }
        if (!t.tree && is_dir(p.parent_path())) {
            add(p.parent_path(), p.filename().string());
            // Kubernetes: config.json -> ..data/config.json; ..data is what is renamed over.
            std::error_code ec;
            if (fs::is_symlink(p, ec)) {
                const fs::path link = fs::read_symlink(p, ec);
                if (!ec && link.is_relative() && !link.empty()) add(p.parent_path(), link.begin()->string());
            }
            continue;
        }
        auto [ancestor, child] = existing_ancestor(t.tree ? p : p.parent_path());
        add(ancestor, child);
    }

    const int fd = fd_.native_handle();
    std::map<int, watch> next;
    for (auto& [dir, w] : want) {
        const int wd = ::inotify_add_watch(fd, dir.c_str(), watch_mask);
        if (wd < 0) {
            spdlog::warn("file watch: cannot watch {}: {}", dir.string(), std::strerror(errno));
            continue;
        }
        auto& slot = next[wd];
        if (slot.dir.empty()) {
            slot = std::move(w);
        } else {  // two paths for one directory (a symlink): merge
            slot.any_name = slot.any_name || w.any_name;
            slot.names.insert(w.names.begin(), w.names.end());
        }
    }
    for (const auto& [wd, w] : watches_)
        if (!next.contains(wd)) ::inotify_rm_watch(fd, wd);
    watches_ = std::move(next);
}

bool file_watcher::drain() {
    bool relevant = false;
    while (true) {
        const ssize_t n = ::read(fd_.native_handle(), buffer_.data(), buffer_.size());
        if (n <= 0) break;  // EAGAIN: nothing more pending
        for (ssize_t off = 0; off < n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(buffer_.data() + off);
            off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
            if (ev->mask & IN_Q_OVERFLOW) {
                relevant = true;
                continue;
            }
            auto it = watches_.find(ev->wd);
            if (it == watches_.end()) continue;  // removed watch (IN_IGNORED after rm)
            if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
                relevant = true;
                continue;
            }
            const std::string name = ev->len ? std::string(ev->name) : std::string();
            if (it->second.any_name || it->second.names.contains(name)) relevant = true;
        }
    }
    return relevant;
}

void file_watcher::read_some() {
    fd_.async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
        if (ec || stopped_) return;
        if (drain()) arm_timer();
        read_some();
    });
}

void file_watcher::arm_timer() {
    timer_.expires_after(debounce_);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (ec || stopped_) return;
        // An event may be pending that the read handler has not seen yet: it
        // restarts the quiet period instead of acting on a half-made change.
        if (drain()) {
            arm_timer();
            return;
        }
        renew_watches();
        on_change_();
    });
}

}  // namespace pullgate

#include "pullgate/live_state.hpp"

#include "pullgate/node_check.hpp"
#include "pullgate/runtime.hpp"
#include "pullgate/watched_files.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

namespace pullgate {
namespace asio = boost::asio;

namespace {

void notify_reloading() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL + ts.tv_nsec / 1000;
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

// A fingerprint of the watched files' contents: a file event that leaves
// them as they were at the last reload (an editor's touch, the SIGHUP that
// already read them) reloads nothing.
std::size_t fingerprint(const std::vector<std::filesystem::path>& files) {
    std::size_t h = files.size();
    for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        std::ostringstream buf;
        if (in) buf << in.rdbuf();
        const std::string text = in ? "+" + buf.str() : std::string("-");
        h = h * 1000003u ^ std::hash<std::string>{}(f.string()) ^ (std::hash<std::string>{}(text) << 1);
    }
    return h;
}

}  // namespace

live_state::live_state(asio::io_context& ioc, server& srv, metrics& stats, std::string config_path)
    : ioc_(ioc),
      srv_(srv),
      stats_(stats),
      config_path_(std::move(config_path)),
      mirror_url_("http://" + srv.current()->cfg->listen.text) {}

void live_state::start() {
    try {
        config_watcher_ = std::make_unique<file_watcher>(ioc_.get_executor(), debounce, [this] { on_file_change(); });
        node_watcher_ = std::make_unique<file_watcher>(ioc_.get_executor(), debounce, [this] { check_node_now(); });
        config_watcher_->start();
        node_watcher_->start();
    } catch (const std::exception& e) {
        spdlog::warn("file watch unavailable ({}): changes need SIGHUP, the node verdict is checked only then",
                     e.what());
        config_watcher_.reset();
        node_watcher_.reset();
    }
    last_files_ = fingerprint(watched_files(*srv_.current()->cfg));
    apply_watches();
    check_node_now();
}

void live_state::stop() {
    if (config_watcher_) config_watcher_->stop();
    if (node_watcher_) node_watcher_->stop();
}

void live_state::reload(std::string_view why) {
    notify_reloading();
    auto previous = srv_.current();
    last_files_ = fingerprint(watched_files(*previous->cfg));  // before reading: a later change is seen
    try {
        config next = load_config(config_path_);
        if (next.listen.text != previous->cfg->listen.text ||
            (next.admin_listen ? next.admin_listen->text : "") !=
                (previous->cfg->admin_listen ? previous->cfg->admin_listen->text : ""))
            spdlog::warn("listen/adminListen changed: the listeners stay where they are until a restart");
        srv_.swap_runtime(make_runtime(std::move(next), previous.get(), stats_));
        stats_.count_reload(true);
        spdlog::info("reloaded {}{}", config_path_, why);
    } catch (const std::exception& e) {
        stats_.count_reload(false);
        spdlog::error("reload failed, the previous configuration stays in force{}: {}", why, e.what());
        // logrotate's SIGHUP must still move the log to the new file.
        std::string error;
        if (!previous->log->reopen(&error))
            spdlog::warn("decision log {}: reopen failed: {}", previous->log->path(), error);
    }
    sd_notify(0, "READY=1");
    const auto current = srv_.current();
    const auto& now = *current->cfg;
    if (now.source != previous->cfg->source || watched_files(now) != watched_files(*previous->cfg))
        last_files_ = fingerprint(watched_files(now));
    apply_watches();
    check_node_now();
}

std::vector<std::string> live_state::status_lines() const {
    std::lock_guard lock(mutex_);
    return status_;
}

void live_state::on_file_change() {
    const auto files = watched_files(*srv_.current()->cfg);  // a copy: the runtime may change below
    if (fingerprint(files) == last_files_) return;
    reload(" after a file change");
}

void live_state::apply_watches() {
    const auto rt = srv_.current();
    const auto& c = *rt->cfg;
    if (config_watcher_) {
        std::vector<file_watcher::target> targets;
        if (c.reload.watch_files)
            for (const auto& f : watched_files(c)) targets.push_back({f, false});
        config_watcher_->set_targets(std::move(targets));
    }
    if (node_watcher_) {
        std::vector<file_watcher::target> targets;
        if (c.node.check) targets = {{c.node.containerd_config, false}, {c.node.certs_dir, true}};
        node_watcher_->set_targets(std::move(targets));
    }
}

void live_state::check_node_now() {
    const auto rt = srv_.current();
    const auto& c = *rt->cfg;
    std::vector<std::string> lines;
    std::string summary;
    if (!c.node.check) {
        stats_.node_gated = -1;
        summary = "not checked (node.check: false)";
        lines = {"node: " + summary};
    } else {
        const node_verdict v = check_node_files(c.node.containerd_config, c.node.certs_dir, mirror_url_);
        stats_.node_gated = v.gated ? 1 : 0;
        summary = summarize(v);
        lines.push_back(v.gated ? "node: gated (containerd sends every pull to pullgate)" : "node: NOT gated");
        for (const auto& f : v.findings)
            lines.push_back("  " + std::string(f.severity == finding_severity::error ? "error" : "warning") + ": " +
                            f.file + ": " + f.problem + " (fix: " + f.fix + ")");
        if (summary != last_summary_) {
            if (v.gated)
                spdlog::info("node: {} ({}, {})", summary, c.node.containerd_config, c.node.certs_dir);
            else
                spdlog::warn("node: {}", summary);
        }
    }
    last_summary_ = summary;
    std::lock_guard lock(mutex_);
    status_ = std::move(lines);
}

}  // namespace pullgate

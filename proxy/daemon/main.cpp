// pullgate: command line and daemon wiring only.
#include "pullgate/admin_server.hpp"
#include "pullgate/commands.hpp"
#include "pullgate/config.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/runtime.hpp"
#include "pullgate/server.hpp"
#include "pullgate/version.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace pullgate;

namespace {

constexpr const char* usage_text =
    "usage:\n"
    "  pullgate serve [--config FILE]                     run the mirror (foreground; systemd runs this)\n"
    "  pullgate check-config [--config FILE]              validate config and credentials, print a summary\n"
    "  pullgate explain [--config FILE] IMAGE-REF         would this pull be allowed? by which rule?\n"
    "                                                     (exit 0 allow, 1 deny)\n"
    "  pullgate containerd-hosts --dir DIR [--mirror URL] write DIR/_default/hosts.toml routing every registry\n"
    "                                                     through pullgate, with no way around it\n"
    "  pullgate --version | --help\n"
    "\n"
    "FILE defaults to /etc/pullgate/config.yaml; URL defaults to http://<listen> from the config.\n";

struct args {
    std::string command;
    std::string config = "/etc/pullgate/config.yaml";
    std::string dir;
    std::string mirror;
    std::vector<std::string> positional;
};

[[noreturn]] void usage_error(const std::string& msg) {
    std::cerr << "pullgate: " << msg << "\n\n" << usage_text;
    std::exit(2);
}

args parse_args(int argc, char** argv) {
    args a;
    std::vector<std::string> v(argv + 1, argv + argc);
    if (v.empty()) usage_error("no command given");
    for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string& s = v[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= v.size()) usage_error(s + " needs a value");
            return v[++i];
        };
        if (s == "--help" || s == "-h") {
            std::cout << usage_text;
            std::exit(0);
        } else if (s == "--version") {
            std::cout << "pullgate " << pullgate::version << "\n";
            std::exit(0);
        } else if (s == "--config") {
            a.config = value();
        } else if (s == "--dir") {
            a.dir = value();
        } else if (s == "--mirror") {
            a.mirror = value();
        } else if (s.starts_with("-")) {
            usage_error("unknown option '" + s + "'");
        } else if (a.command.empty()) {
            a.command = s;
        } else {
            a.positional.push_back(s);
        }
    }
    const std::size_t want = a.command == "explain" ? 1 : 0;
    if (a.positional.size() != want)
        usage_error(want ? "explain needs exactly one IMAGE-REF" : "unexpected argument '" + a.positional[0] + "'");
    return a;
}

void setup_diagnostics() {
    auto logger = spdlog::stderr_color_mt("pullgate");
    // Under journald the timestamp comes from the journal; <N> is the syslog priority.
    if (std::getenv("JOURNAL_STREAM"))
        logger->set_pattern("<%l> %v");
    else
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::info);
}

void notify_reloading() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL + ts.tv_nsec / 1000;
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

// SIGHUP: reload; SIGTERM/SIGINT: graceful stop. Runs until stopped.
asio::awaitable<void> handle_signals(asio::io_context& ioc, server& srv, admin_server* admin, metrics& stats,
                                     std::atomic<bool>& ready, std::string config_path) {
    asio::signal_set signals(ioc, SIGHUP, SIGTERM, SIGINT);
    while (true) {
        int sig = co_await signals.async_wait(asio::use_awaitable);
        if (sig == SIGHUP) {
            notify_reloading();
            auto previous = srv.current();
            try {
                config next = load_config(config_path);
                if (next.listen.text != previous->cfg->listen.text ||
                    (next.admin_listen ? next.admin_listen->text : "") !=
                        (previous->cfg->admin_listen ? previous->cfg->admin_listen->text : ""))
                    spdlog::warn("listen/adminListen changed: the listeners stay where they are until a restart");
                srv.swap_runtime(make_runtime(std::move(next), previous.get(), stats));
                stats.count_reload(true);
                spdlog::info("reloaded {}", config_path);
            } catch (const std::exception& e) {
                stats.count_reload(false);
                spdlog::error("reload failed, the previous configuration stays in force: {}", e.what());
                // logrotate's SIGHUP must still move the log to the new file.
                std::string error;
                if (!previous->log->reopen(&error))
                    spdlog::warn("decision log {}: reopen failed: {}", previous->log->path(), error);
            }
            sd_notify(0, "READY=1");
            continue;
        }
        ready = false;
        sd_notify(0, "STOPPING=1");
        const auto grace = srv.current()->cfg->limits.shutdown_grace;
        spdlog::info("stopping: requests in flight get at most {}s", grace.count());
        co_await srv.shutdown(grace);
        if (admin) admin->stop();
        ioc.stop();
        co_return;
    }
}

// Pings systemd's watchdog from the io_context: a wedged event loop stops the pings.
asio::awaitable<void> feed_watchdog(std::chrono::microseconds interval) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (true) {
        sd_notify(0, "WATCHDOG=1");
        timer.expires_after(interval / 2);
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
}

int serve(const args& a) {
    config cfg;
    try {
        cfg = load_config(a.config);
    } catch (const config_error& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
    const unsigned threads = cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
    // One io_context per thread: a connection and its upstream never change
    // threads, and a context run by one thread needs no locking.
    std::vector<std::unique_ptr<asio::io_context>> workers;
    std::vector<asio::io_context*> worker_ptrs;
    for (unsigned i = 0; i < threads; ++i) {
        workers.push_back(std::make_unique<asio::io_context>(1));
        worker_ptrs.push_back(workers.back().get());
    }
    asio::io_context& ioc = *workers[0];  // also runs signals, the acceptors and the admin listener
    metrics stats;
    std::atomic<bool> ready{false};
    std::unique_ptr<server> srv;
    std::unique_ptr<admin_server> admin;
    try {
        srv = std::make_unique<server>(worker_ptrs, make_runtime(std::move(cfg), nullptr, stats));
        const auto& c = *srv->current()->cfg;
        if (c.admin_listen) {
            admin_server::hooks hooks{
                [&] { return ready.load(); },
                [&] { return stats.render(srv->current()->auth->shared_cache()->hits(), pullgate::version); },
                [&] { return srv->current()->log->status_line() + "\n"; }};
            admin = std::make_unique<admin_server>(ioc, *c.admin_listen, std::move(hooks));
        }
    } catch (const std::exception& e) {
        spdlog::critical("cannot start: {}", e.what());
        return 1;
    }
    srv->start();
    if (admin) admin->start();
    asio::co_spawn(ioc, handle_signals(ioc, *srv, admin.get(), stats, ready, a.config), asio::detached);
    if (std::uint64_t usec = 0; sd_watchdog_enabled(0, &usec) > 0)
        asio::co_spawn(ioc, feed_watchdog(std::chrono::microseconds(usec)), asio::detached);

    const auto& c = *srv->current()->cfg;
    spdlog::info("pullgate {} listening on {}{} with {} threads; {} allowlist entries, {} credential keys",
                 pullgate::version, c.listen.text, c.admin_listen ? ", admin on " + c.admin_listen->text : "", threads,
                 c.allow_list.size(), srv->current()->credential_keys.size());
    ready = true;
    sd_notify(0, "READY=1");

    // Workers other than the first idle until handed a connection; the guard
    // keeps them running until the first one stops them after shutdown.
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i) {
        guards.push_back(asio::make_work_guard(*workers[i]));
        pool.emplace_back([&w = *workers[i]] { w.run(); });
    }
    ioc.run();
    for (auto& w : workers) w->stop();
    for (auto& t : pool) t.join();
    spdlog::info("stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const args a = parse_args(argc, argv);
    std::signal(SIGPIPE, SIG_IGN);
    if (a.command == "serve") {
        setup_diagnostics();
        return serve(a);
    }
    if (a.command == "check-config") return check_config(a.config, std::cout, std::cerr);
    if (a.command == "explain") return explain(a.config, a.positional[0], std::cout, std::cerr);
    if (a.command == "containerd-hosts") return containerd_hosts(a.config, a.dir, a.mirror, std::cout, std::cerr);
    usage_error("unknown command '" + a.command + "'");
}

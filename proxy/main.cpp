// pullgate: command line and daemon wiring only.
#include "pullgate/config.hpp"
#include "pullgate/containerd_hosts.hpp"
#include "pullgate/runtime.hpp"
#include "pullgate/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#ifndef PULLGATE_VERSION
#define PULLGATE_VERSION "dev"
#endif

namespace asio = boost::asio;
using namespace pullgate;

namespace {

constexpr const char* default_config_path = "/etc/pullgate/config.yaml";

constexpr const char* usage_text =
    "usage:\n"
    "  pullgate serve [--config FILE]                     run the mirror (foreground; systemd runs this)\n"
    "  pullgate check-config [--config FILE]              validate the config, print a summary, exit 0/1\n"
    "  pullgate containerd-hosts --dir DIR [--mirror URL] write DIR/_default/hosts.toml routing every registry\n"
    "                                                     through pullgate\n"
    "  pullgate --version | --help\n"
    "\n"
    "FILE defaults to /etc/pullgate/config.yaml; URL defaults to http://<listen> from the config.\n";

struct args {
    std::string command;
    std::string config = default_config_path;
    std::string dir;
    std::string mirror;
};

// Parses argv; prints usage and exits 2 on anything unknown.
args parse_args(int argc, char** argv) {
    args a;
    std::vector<std::string> v(argv + 1, argv + argc);
    auto fail = [](const std::string& msg) {
        std::cerr << "pullgate: " << msg << "\n\n" << usage_text;
        std::exit(2);
    };
    if (v.empty()) fail("no command given");
    for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string& s = v[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= v.size()) fail(s + " needs a value");
            return v[++i];
        };
        if (s == "--help" || s == "-h") {
            std::cout << usage_text;
            std::exit(0);
        } else if (s == "--version") {
            std::cout << "pullgate " << PULLGATE_VERSION << "\n";
            std::exit(0);
        } else if (s == "--config") {
            a.config = value();
        } else if (s == "--dir") {
            a.dir = value();
        } else if (s == "--mirror") {
            a.mirror = value();
        } else if (a.command.empty() && !s.starts_with("-")) {
            a.command = s;
        } else {
            fail("unexpected argument '" + s + "'");
        }
    }
    return a;
}

void setup_diagnostics() {
    auto logger = spdlog::stderr_color_mt("pullgate");
    // Under journald the timestamp and priority come from the journal.
    if (std::getenv("JOURNAL_STREAM")) logger->set_pattern("<%l> %v");
    else logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::info);
}

// Handles SIGHUP (reload) and SIGTERM/SIGINT (graceful stop) until stopped.
asio::awaitable<void> handle_signals(asio::io_context& ioc, server& srv, std::string config_path) {
    asio::signal_set signals(ioc, SIGHUP, SIGTERM, SIGINT);
    while (true) {
        int sig = co_await signals.async_wait(asio::use_awaitable);
        if (sig == SIGHUP) {
            sd_notify(0, "RELOADING=1");
            try {
                auto previous = srv.current();
                srv.swap_runtime(make_runtime(load_config(config_path), ioc.get_executor(), previous.get()));
                spdlog::info("reloaded {}", config_path);
            } catch (const std::exception& e) {
                spdlog::error("reload failed, keeping the previous configuration: {}", e.what());
            }
            sd_notify(0, "READY=1");
            continue;
        }
        sd_notify(0, "STOPPING=1");
        const auto grace = srv.current()->cfg->limits.shutdown_grace;
        spdlog::info("stopping: finishing requests in flight (at most {}s)", grace.count());
        co_await srv.shutdown(grace);
        ioc.stop();
        co_return;
    }
}

int run_serve(const args& a) {
    config cfg;
    try {
        cfg = load_config(a.config);
    } catch (const config_error& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
    const unsigned threads = cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
    asio::io_context ioc(static_cast<int>(threads));
    std::unique_ptr<server> srv;
    try {
        srv = std::make_unique<server>(ioc, make_runtime(std::move(cfg), ioc.get_executor(), nullptr));
    } catch (const std::exception& e) {
        spdlog::critical("cannot start: {}", e.what());
        return 1;
    }
    srv->start();
    asio::co_spawn(ioc, handle_signals(ioc, *srv, a.config), asio::detached);
    spdlog::info("pullgate {} listening on {} with {} threads", PULLGATE_VERSION, srv->current()->cfg->listen.text,
                 threads);
    sd_notify(0, "READY=1");

    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
    ioc.run();
    for (auto& t : pool) t.join();
    spdlog::info("stopped");
    return 0;
}

int run_check_config(const args& a) {
    try {
        config cfg = load_config(a.config);
        std::cout << "config " << a.config << ": ok\n";
        std::cout << "listen: " << cfg.listen.text << "\n";
        std::cout << "allowlist (containerRegistry.privateBaseImageAllowList):";
        if (cfg.allow_list.empty()) std::cout << " (empty: only registries with credentials are allowed)";
        std::cout << "\n";
        for (const auto& r : cfg.allow_list) std::cout << "  " << r.text << "\n";
        std::cout << "decision log: " << cfg.decision_log_path << "\n";
        return 0;
    } catch (const config_error& e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
}

int run_containerd_hosts(const args& a) {
    if (a.dir.empty()) {
        std::cerr << "pullgate: containerd-hosts needs --dir DIR\n";
        return 2;
    }
    std::string mirror = a.mirror;
    if (mirror.empty()) {
        try {
            mirror = "http://" + load_config(a.config).listen.text;
        } catch (const config_error& e) {
            std::cerr << e.what() << "\n(give --mirror URL to write hosts.toml without a config)\n";
            return 1;
        }
    }
    try {
        auto shadowing = write_no_bypass_hosts(a.dir, mirror);
        std::cout << "wrote " << a.dir << "/_default/hosts.toml (mirror " << mirror << ")\n";
        for (const auto& d : shadowing)
            std::cerr << "warning: " << d
                      << " exists: containerd uses it instead of _default for that registry, bypassing pullgate\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "pullgate: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace

int main(int argc, char** argv) {
    const args a = parse_args(argc, argv);
    setup_diagnostics();
    std::signal(SIGPIPE, SIG_IGN);
    if (a.command == "serve") return run_serve(a);
    if (a.command == "check-config") return run_check_config(a);
    if (a.command == "containerd-hosts") return run_containerd_hosts(a);
    std::cerr << "pullgate: unknown command '" << a.command << "'\n\n" << usage_text;
    return 2;
}

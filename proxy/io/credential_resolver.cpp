#include "pullgate/credential_resolver.hpp"

#include "pullgate/child_process.hpp"
#include "pullgate/credential_helper.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <unistd.h>

#include <filesystem>
#include <vector>

namespace pullgate {
namespace asio = boost::asio;
using boost::system::error_code;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::chrono::seconds provider_timeout{60};  // the kubelet's
constexpr std::size_t stdout_limit = 64 * 1024;
constexpr std::size_t stderr_limit = 4 * 1024;
constexpr std::size_t max_cache_entries = 4096;

bool is_executable_file(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

std::shared_ptr<const credential> make_credential(std::string key, std::string username, std::string password,
                                                  std::string identity_token) {
    auto c = std::make_shared<credential>();
    c->key = std::move(key);
    c->username = std::move(username);
    c->password = std::move(password);
    c->identity_token = std::move(identity_token);
    c->fingerprint = credential_fingerprint(*c);
    return c;
}

credential_source_error fail(const std::string& source, std::string message) {
    return credential_source_error{source, std::move(message)};
}

// How a child run ended, for a message: never its output.
std::string describe(const child_result& r, std::chrono::seconds timeout) {
    if (!r.started) return "could not be started: " + r.start_error;
    if (r.timed_out) return "was killed after " + std::to_string(timeout.count()) + " s (timeout)";
    if (r.stdout_overflow) return "was killed: it printed more than " + std::to_string(stdout_limit / 1024) + " KiB";
    return "exited with status " + std::to_string(r.exit_code);
}

}  // namespace

struct credential_resolver::entry {
    clock_type::time_point expires;
    std::shared_ptr<const credential> cred;               // helpers; nullptr: not found (anonymous)
    std::shared_ptr<const provider_response> response;    // providers
    std::vector<std::shared_ptr<const credential>> auth;  // providers: one per response->auth
};

struct credential_resolver::flight {
    std::mutex m;
    bool done = false;
    std::optional<outcome> value;
    std::vector<std::shared_ptr<asio::steady_timer>> waiters;
};

credential_resolver::credential_resolver(std::shared_ptr<const config> cfg,
                                         std::shared_ptr<const credential_store> store,
                                         std::shared_ptr<const provider_config> providers, metrics& stats)
    : cfg_(std::move(cfg)), store_(std::move(store)), providers_(std::move(providers)), stats_(stats) {}

credential_resolver::~credential_resolver() = default;

std::string credential_resolver::find_helper(const std::string& search_path, const std::string& name) {
    const std::string program = helper_program(name);
    std::size_t start = 0;
    while (start <= search_path.size()) {
        const auto colon = search_path.find(':', start);
        const std::string dir =
            search_path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        if (!dir.empty()) {
            const std::string candidate = dir + "/" + program;
            if (is_executable_file(candidate)) return candidate;
        }
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    return {};
}

asio::awaitable<credential_resolver::outcome> credential_resolver::resolve(const registry_name& registry,
                                                                           std::string repository) {
    const credential_source src = pick_credential_source(*store_, providers_.get(), registry, repository);
    switch (src.type) {
        case credential_source::kind::anonymous:
            co_return resolved_credential{src.name, nullptr, {}, true};
        case credential_source::kind::auths:
            // An alias into the store: the snapshot keeps it alive.
            co_return resolved_credential{src.name, std::shared_ptr<const credential>(store_, src.stored), {}, true};
        case credential_source::kind::helper: {
            const std::string key = src.name + "|" + helper_server_url(registry);
            if (auto hit = cached(key, src.name, registry, repository)) co_return *hit;
            const std::string helper = src.helper;
            const std::string name = src.name;
            // A named function object: GCC 12 destroys temporaries inside a
            // co_await expression twice.
            const std::function<asio::awaitable<outcome>()> run = [this, helper, name, registry]() {
                return run_helper(helper, name, registry);
            };
            co_return co_await shared_run(key, run);
        }
        case credential_source::kind::provider: {
            const std::string base = src.name + "|";
            for (auto type : {cache_key_type::global, cache_key_type::registry, cache_key_type::image})
                if (auto hit = cached(base + std::to_string(static_cast<int>(type)) + "|" +
                                          provider_cache_key(type, registry, repository),
                                      src.name, registry, repository))
                    co_return *hit;
            const credential_provider* p = src.provider;
            const std::string name = src.name;
            const std::string flight = base + "run|" + registry.key() + "/" + repository;
            const std::function<asio::awaitable<outcome>()> run = [this, p, name, registry, repository]() {
                return run_provider(*p, name, registry, repository);
            };
            co_return co_await shared_run(flight, run);
        }
    }
    co_return resolved_credential{"anonymous", nullptr, {}, true};
}

std::optional<resolved_credential> credential_resolver::cached(const std::string& key, const std::string& source,
                                                               const registry_name& registry,
                                                               const std::string& repository) {
    std::lock_guard lock(mutex_);
    auto it = cache_.find(key);
    if (it == cache_.end()) return std::nullopt;
    if (clock_type::now() >= it->second.expires) {
        cache_.erase(it);
        return std::nullopt;
    }
    stats_.count_credential_cache_hit();
    const entry& e = it->second;
    if (!e.response) return resolved_credential{source, e.cred, key, true};
    std::shared_ptr<const credential> cred;
    if (const provider_auth* a = e.response->auth_for(registry, repository))
        cred = e.auth[static_cast<std::size_t>(a - e.response->auth.data())];
    return resolved_credential{source, std::move(cred), key, true};
}

void credential_resolver::forget(const resolved_credential& r) {
    if (r.cache_key.empty()) return;
    std::lock_guard lock(mutex_);
    cache_.erase(r.cache_key);
}

asio::awaitable<credential_resolver::outcome> credential_resolver::shared_run(
    std::string flight_key, std::function<asio::awaitable<outcome>()> run) {
    std::shared_ptr<flight> f;
    bool leader = false;
    {
        std::lock_guard lock(mutex_);
        auto& slot = flights_[flight_key];
        if (!slot) {
            slot = std::make_shared<flight>();
            leader = true;
        }
        f = slot;
    }
    if (!leader) {
        // Woken by the leader (no polling); the deadline only guards against a lost wake-up.
        auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
        timer->expires_after(std::max<std::chrono::seconds>(cfg_->credential_helpers.timeout, provider_timeout) +
                             std::chrono::seconds(5));
        {
            std::lock_guard lock(f->m);
            if (f->done) co_return *f->value;
            f->waiters.push_back(timer);
        }
        error_code ec;
        co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        std::lock_guard lock(f->m);
        if (f->done) {
            outcome shared = *f->value;
            if (shared) shared->from_cache = false;
            co_return shared;
        }
        co_return outcome(boost::system::in_place_error,
                          fail(flight_key.substr(0, flight_key.find('|')), "timed out waiting for a shared run"));
    }

    std::optional<outcome> result;
    try {
        result = co_await run();
    } catch (const std::exception& e) {
        result = outcome(boost::system::in_place_error,
                         fail(flight_key.substr(0, flight_key.find('|')), std::string("failed: ") + e.what()));
    }
    std::vector<std::shared_ptr<asio::steady_timer>> waiters;
    {
        std::lock_guard lock(f->m);
        f->value = *result;
        f->done = true;
        waiters.swap(f->waiters);
    }
    {
        std::lock_guard lock(mutex_);
        flights_.erase(flight_key);
    }
    for (auto& t : waiters) asio::post(t->get_executor(), [t] { t->cancel(); });
    co_return *result;
}

asio::awaitable<credential_resolver::outcome> credential_resolver::run_helper(const std::string& helper,
                                                                              const std::string& source,
                                                                              const registry_name& registry) {
    const auto& settings = cfg_->credential_helpers;
    const std::string program_name = helper_program(helper);
    const std::string program = find_helper(settings.path, helper);
    if (program.empty()) {
        stats_.count_credential_run(source, "failed");
        co_return outcome(
            boost::system::in_place_error,
            fail(source, "credential helper " + program_name +
                             " was not found (executable) in credentialHelpers.path (" + settings.path + ")"));
    }
    const std::string server = helper_server_url(registry);
    child_request req;
    req.program = program;
    req.args = {"get"};
    req.env = minimal_environment(settings.path);
    req.input = server + "\n";
    req.timeout = settings.timeout;
    req.stdout_limit = stdout_limit;
    req.stderr_limit = stderr_limit;
    const auto exec = co_await asio::this_coro::executor;
    const child_result r = co_await run_child(exec, std::move(req));
    const std::string key = source + "|" + server;

    helper_answer answer;
    if (r.started && !r.timed_out && !r.stdout_overflow) answer = parse_helper_answer(r.exit_code, r.out);
    if (answer.result == helper_answer::outcome::failure) {
        stats_.count_credential_run(source, "failed");
        std::string message = "credential helper " + program_name + " failed for " + server + ": ";
        message += (r.started && !r.timed_out && !r.stdout_overflow && r.exit_code == 0)
                       ? answer.error
                       : describe(r, settings.timeout);
        if (!r.err.empty()) spdlog::warn("{}; its stderr: {}", message, scrub(r.err));
        co_return outcome(boost::system::in_place_error, fail(source, std::move(message)));
    }
    std::shared_ptr<const credential> cred;
    if (answer.result == helper_answer::outcome::found)
        cred = make_credential(source, answer.username, answer.secret, answer.identity_token);
    stats_.count_credential_run(source, cred ? "found" : "not_found");
    if (settings.cache.count() > 0) {
        std::lock_guard lock(mutex_);
        if (cache_.size() >= max_cache_entries)
            std::erase_if(cache_, [](const auto& kv) { return clock_type::now() >= kv.second.expires; });
        cache_[key] = entry{clock_type::now() + settings.cache, cred, nullptr, {}};
    }
    co_return resolved_credential{source, std::move(cred), key, false};
}

asio::awaitable<credential_resolver::outcome> credential_resolver::run_provider(const credential_provider& p,
                                                                                const std::string& source,
                                                                                const registry_name& registry,
                                                                                const std::string& repository) {
    const std::string image = registry.key() + "/" + repository;
    const std::string program = cfg_->credential_providers.bin_dir + "/" + p.name;
    if (!is_executable_file(program)) {
        stats_.count_credential_run(source, "failed");
        co_return outcome(boost::system::in_place_error,
                          fail(source, "credential provider plugin " + p.name +
                                           " was not found (executable) in credentialProviders.binDir (" +
                                           cfg_->credential_providers.bin_dir + ")"));
    }
    child_request req;
    req.program = program;
    req.args = p.args;
    req.env = minimal_environment(cfg_->credential_helpers.path, p.env);
    req.input = provider_request(registry, repository);
    req.timeout = provider_timeout;
    req.stdout_limit = stdout_limit;
    req.stderr_limit = stderr_limit;
    const auto exec = co_await asio::this_coro::executor;
    const child_result r = co_await run_child(exec, std::move(req));
    const std::string prefix = "credential provider plugin " + p.name + " failed for " + image + ": ";
    auto failed = [&](std::string why) {
        stats_.count_credential_run(source, "failed");
        if (!r.err.empty()) spdlog::warn("{}{}; its stderr: {}", prefix, why, scrub(r.err));
        return outcome(boost::system::in_place_error, fail(source, prefix + why));
    };
    if (!r.started || r.timed_out || r.stdout_overflow || r.exit_code != 0)
        co_return failed(describe(r, provider_timeout));
    auto response = parse_provider_response(r.out);
    if (!response) co_return failed(response.error());

    entry e;
    e.response = std::make_shared<const provider_response>(std::move(*response));
    for (const auto& a : e.response->auth) e.auth.push_back(make_credential(source, a.username, a.password, {}));
    std::shared_ptr<const credential> cred;
    if (const provider_auth* a = e.response->auth_for(registry, repository))
        cred = e.auth[static_cast<std::size_t>(a - e.response->auth.data())];
    stats_.count_credential_run(source, cred ? "found" : "not_found");
    const auto type = e.response->key_type;
    const std::string key =
        source + "|" + std::to_string(static_cast<int>(type)) + "|" + provider_cache_key(type, registry, repository);
    const auto duration = e.response->cache_duration.value_or(p.default_cache_duration);
    if (duration.count() > 0) {
        e.expires = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                            std::min<std::chrono::nanoseconds>(duration, std::chrono::hours(24 * 365)));
        std::lock_guard lock(mutex_);
        if (cache_.size() >= max_cache_entries)
            std::erase_if(cache_, [](const auto& kv) { return clock_type::now() >= kv.second.expires; });
        cache_[key] = std::move(e);
    }
    co_return resolved_credential{source, std::move(cred), key, false};
}

std::string credential_resolver::scrub(std::string text) const {
    // Any secret pullgate knows is blanked out, then anything unprintable.
    std::vector<std::string> secrets;
    for (const auto& c : store_->entries())
        for (const auto* s : {&c.password, &c.identity_token, &c.registry_token})
            if (s->size() >= 4) secrets.push_back(*s);
    {
        std::lock_guard lock(mutex_);
        for (const auto& [key, e] : cache_) {
            if (e.cred)
                for (const auto* s : {&e.cred->password, &e.cred->identity_token})
                    if (s->size() >= 4) secrets.push_back(*s);
            for (const auto& a : e.auth)
                if (a->password.size() >= 4) secrets.push_back(a->password);
        }
    }
    for (const auto& s : secrets)
        for (auto pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos))
            text.replace(pos, s.size(), "***");
    for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    if (text.size() > 512) text = text.substr(0, 512) + "...";
    return text;
}

}  // namespace pullgate

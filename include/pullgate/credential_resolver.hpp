// The credential for one pull, from the source credential_sources picks:
// stored `auths` as they are; docker credential helpers and kubelet provider
// plugins run as child processes, their answers cached (helpers:
// credentialHelpers.cacheSeconds; plugins: cacheKeyType/cacheDuration),
// concurrent requests for one key sharing one run. Coroutines run on the
// calling session's executor; the children never block it.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/credential_provider.hpp"
#include "pullgate/credential_sources.hpp"
#include "pullgate/credentials.hpp"
#include "pullgate/metrics.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace pullgate {

struct resolved_credential {
    std::string source;                      // "auths:KEY", "helper:NAME", "provider:NAME", "anonymous"
    std::shared_ptr<const credential> cred;  // nullptr: pull anonymously
    std::string cache_key;                   // the cache entry that answered; "" when none
    bool from_cache = false;                 // answered without running anything
};

// A source that failed: the pull fails closed (502 UNAVAILABLE,
// credential_source_failed). `message` names the helper/plugin and how it
// failed, never a secret.
struct credential_source_error {
    std::string source;
    std::string message;
};

class credential_resolver {
public:
    // `providers` may be null (no credentialProviders configured).
    credential_resolver(std::shared_ptr<const config> cfg, std::shared_ptr<const credential_store> store,
                        std::shared_ptr<const provider_config> providers, metrics& stats);
    ~credential_resolver();

    boost::asio::awaitable<boost::system::result<resolved_credential, credential_source_error>> resolve(
        const registry_name& registry, std::string repository);

    // Drops the cached answer that produced `r` (the upstream rejected it:
    // 401/403), so that the next resolve asks the source again.
    void forget(const resolved_credential& r);

    // Where helper `name`'s program is, in credentialHelpers.path order; ""
    // when no directory has it executable.
    static std::string find_helper(const std::string& search_path, const std::string& name);

private:
    struct entry;
    struct flight;
    using outcome = boost::system::result<resolved_credential, credential_source_error>;

    boost::asio::awaitable<outcome> shared_run(std::string flight_key,
                                               std::function<boost::asio::awaitable<outcome>()> run);
    boost::asio::awaitable<outcome> run_helper(const std::string& helper, const std::string& source,
                                               const registry_name& registry);
    boost::asio::awaitable<outcome> run_provider(const credential_provider& p, const std::string& source,
                                                 const registry_name& registry, const std::string& repository);
    std::optional<resolved_credential> cached(const std::string& key, const std::string& source,
                                              const registry_name& registry, const std::string& repository);
    std::string scrub(std::string text) const;

    std::shared_ptr<const config> cfg_;
    std::shared_ptr<const credential_store> store_;
    std::shared_ptr<const provider_config> providers_;
    metrics& stats_;
    mutable std::mutex mutex_;
    std::map<std::string, entry> cache_;
    std::map<std::string, std::shared_ptr<flight>> flights_;
};

}  // namespace pullgate

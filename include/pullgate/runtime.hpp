// The runtime snapshot a request runs on: config, credentials, upstream
// client (TLS contexts, connection pool), auth and token cache, decision log,
// relay buffers. A reload builds a whole new one and swaps it in atomically;
// requests in flight keep theirs alive.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/credential_provider.hpp"
#include "pullgate/credential_resolver.hpp"
#include "pullgate/credentials.hpp"
#include "pullgate/decision_log.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/policy.hpp"
#include "pullgate/relay_buffers.hpp"
#include "pullgate/upstream_auth.hpp"
#include "pullgate/upstream_client.hpp"

#include <memory>
#include <vector>

namespace pullgate {

// Immutable once built.
struct runtime {
    std::shared_ptr<const config> cfg;
    std::shared_ptr<const credential_store> credentials;
    std::vector<policy_rule> credential_keys;          // seed rule: registries with stored credentials
    std::shared_ptr<const provider_config> providers;  // credentialProviders.config; null when not set
    std::unique_ptr<credential_resolver> resolver;     // helpers and plugins, their answers cached
    std::unique_ptr<upstream_client> upstream;
    std::unique_ptr<upstream_auth> auth;     // shares the token cache across reloads
    std::shared_ptr<decision_log> log;       // shared across reloads while the path stays
    std::shared_ptr<relay_buffers> buffers;  // shared across reloads
    metrics* stats = nullptr;                // process-wide, outlives every runtime
};

// Builds a runtime for `cfg`. Reuses `previous`'s decision log when the path
// is unchanged, reopening it (logrotate). Throws config_error or
// std::runtime_error with a message naming what failed; `previous` is then
// untouched and stays in force.
std::shared_ptr<const runtime> make_runtime(config cfg, const runtime* previous, metrics& stats);

}  // namespace pullgate

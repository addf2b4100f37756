#include "pullgate/runtime.hpp"

#include <spdlog/spdlog.h>

namespace pullgate {

std::shared_ptr<const runtime> make_runtime(config cfg, const runtime* previous, metrics& stats) {
    auto rt = std::make_shared<runtime>();
    rt->stats = &stats;
    rt->credentials = std::make_shared<const credential_store>(load_credentials(cfg));
    rt->credential_keys = rt->credentials->keys();
    if (!cfg.credential_providers.config.empty())
        rt->providers = std::make_shared<const provider_config>(load_provider_config(cfg.credential_providers.config));
    rt->upstream = std::make_unique<upstream_client>(cfg, stats);
    // Tokens are keyed by credential fingerprint, so changed secrets never reuse old tokens.
    auto tokens = previous ? previous->auth->shared_cache() : std::make_shared<token_cache>();
    rt->auth = std::make_unique<upstream_auth>(*rt->upstream, std::move(tokens), stats);
    // The relay-buffer budget counts the buffers of requests still running on older snapshots.
    rt->buffers = previous ? previous->buffers : std::make_shared<relay_buffers>();
    if (previous && previous->log && previous->log->path() == cfg.decision_log_path) {
        std::string error;
        if (!previous->log->reopen(&error))
            spdlog::warn("decision log {}: reopen failed, still writing to the open file: {}", cfg.decision_log_path,
                         error);
        rt->log = previous->log;
        rt->log->set_policy(cfg.decision_log_on_write_error);  // last: nothing below can fail
    } else {
        rt->log = std::make_shared<decision_log>(cfg.decision_log_path, cfg.decision_log_on_write_error, &stats);
    }
    rt->cfg = std::make_shared<const config>(std::move(cfg));
    rt->resolver = std::make_unique<credential_resolver>(rt->cfg, rt->credentials, rt->providers, stats);
    return rt;
}

}  // namespace pullgate

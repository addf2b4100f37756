#include "pullgate/runtime.hpp"

#include <spdlog/spdlog.h>

namespace pullgate {

std::shared_ptr<const runtime> make_runtime(config cfg, boost::asio::any_io_executor ex, const runtime* previous) {
    auto rt = std::make_shared<runtime>();
    rt->upstream = std::make_unique<upstream_client>(ex, cfg);
    if (previous && previous->log && previous->log->path() == cfg.decision_log_path) {
        std::string error;
        if (!previous->log->reopen(&error))
            spdlog::warn("decision log {}: reopen failed, still writing to the open file: {}", cfg.decision_log_path,
                         error);
        rt->log = previous->log;
    } else {
        rt->log = std::make_shared<decision_log>(cfg.decision_log_path);
    }
    rt->cfg = std::make_shared<const config>(std::move(cfg));
    return rt;
}

}  // namespace pullgate

// Building the runtime snapshot a request runs on: config, upstream client
// (TLS contexts, connection pool), credential keys and the decision log.
#pragma once

#include "pullgate/pull_handler.hpp"

#include <memory>

namespace pullgate {

// Builds a runtime for `cfg`. Reuses `previous`'s decision log when the path
// is unchanged, reopening it (logrotate). Throws config_error or
// std::runtime_error with a message naming what failed; `previous` is then
// untouched and stays in force.
std::shared_ptr<const runtime> make_runtime(config cfg, const runtime* previous, metrics& stats);

}  // namespace pullgate

// The files whose change reloads the configuration when `reload.watchFiles`
// is on: one place, so a new file the config names is one line here.
#pragma once

#include "pullgate/config.hpp"

#include <filesystem>
#include <vector>

namespace pullgate {

// The config file itself and every file it makes pullgate read at load time
// (the credentials file as load_credentials finds it).
std::vector<std::filesystem::path> watched_files(const config& cfg);

}  // namespace pullgate

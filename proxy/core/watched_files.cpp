#include "pullgate/watched_files.hpp"

#include "pullgate/credentials.hpp"

namespace pullgate {

std::vector<std::filesystem::path> watched_files(const config& cfg) {
    std::vector<std::filesystem::path> files;
    if (!cfg.source.empty()) files.emplace_back(cfg.source);
    if (auto creds = credentials_path(cfg)) files.emplace_back(*creds);
    if (!cfg.credential_providers.config.empty()) files.emplace_back(cfg.credential_providers.config);
    return files;
}

}  // namespace pullgate

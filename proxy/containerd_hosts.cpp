#include "pullgate/containerd_hosts.hpp"

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace pullgate {
namespace fs = std::filesystem;

std::string no_bypass_hosts_toml(const std::string& mirror_url) {
    return "# Written by pullgate: every registry is pulled through the mirror below.\n"
           "# No [host.\"...\"] entries: containerd must not fall back to the registry itself.\n"
           "server = \"" + mirror_url + "\"\n"
           "capabilities = [\"pull\", \"resolve\"]\n"
           "\n"
           "[host]\n";
}

std::vector<std::string> write_no_bypass_hosts(const std::string& dir, const std::string& mirror_url) {
    const fs::path target_dir = fs::path(dir) / "_default";
    std::error_code ec;
    fs::create_directories(target_dir, ec);
    if (ec) throw std::runtime_error(target_dir.string() + ": " + ec.message());
    const fs::path target = target_dir / "hosts.toml";
    const fs::path tmp = target_dir / ".hosts.toml.tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << no_bypass_hosts_toml(mirror_url);
        out.close();
        if (!out) throw std::runtime_error(tmp.string() + ": cannot write");
    }
    fs::rename(tmp, target, ec);
    if (ec) throw std::runtime_error(target.string() + ": " + ec.message());

    std::vector<std::string> shadowing;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.is_directory() && entry.path().filename() != "_default")
            shadowing.push_back(entry.path().string());
    }
    return shadowing;
}

}  // namespace pullgate

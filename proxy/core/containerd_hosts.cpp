#include "pullgate/containerd_hosts.hpp"

#include <boost/url/parse.hpp>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace pullgate {
namespace fs = std::filesystem;

namespace {

// The URL goes into a TOML string: anything that could end the string or the
// line would let it write other tables (a [host."..."] entry means bypass).
void check_mirror_url(const std::string& url) {
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed ||
        (parsed->scheme_id() != boost::urls::scheme::http && parsed->scheme_id() != boost::urls::scheme::https))
        throw std::invalid_argument("mirror URL must be an absolute http:// or https:// URL: " + url);
    if (parsed->host().empty() || parsed->has_userinfo())
        throw std::invalid_argument("mirror URL needs a host and no userinfo: " + url);
    for (char c : url)
        if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            throw std::invalid_argument("mirror URL contains a character not allowed in hosts.toml");
}

}  // namespace

std::string no_bypass_hosts_toml(const std::string& mirror_url) {
    check_mirror_url(mirror_url);
    return "# Written by pullgate: every registry is pulled through the mirror below.\n"
           "# No [host.\"...\"] entries: containerd must not fall back to the registry itself.\n"
           "server = \"" +
           mirror_url +
           "\"\n"
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
        if (entry.is_directory() && entry.path().filename() != "_default") shadowing.push_back(entry.path().string());
    }
    return shadowing;
}

}  // namespace pullgate

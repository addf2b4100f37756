#include "pullgate/containerd_hosts.hpp"

#include <boost/url/parse.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
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
    const std::string text = no_bypass_hosts_toml(mirror_url);
    const fs::path target_dir = fs::path(dir) / "_default";
    std::error_code ec;
    fs::create_directories(target_dir, ec);
    if (ec) throw std::runtime_error(target_dir.string() + ": " + ec.message());
    const fs::path target = target_dir / "hosts.toml";
    // containerd reads hosts.toml on every pull: it must see the old file or
    // the new one, never a half-written one (which it would ignore, pulling
    // directly). A unique temporary file in the same directory, synced, then
    // renamed over; the directory synced so the rename survives a crash.
    std::string tmp = (target_dir / ".hosts.toml.XXXXXX").string();
    const int fd = ::mkstemp(tmp.data());
    if (fd < 0)
        throw std::runtime_error(target_dir.string() + ": cannot create a temporary file: " + std::strerror(errno));
    auto fail = [&](const std::string& what) {
        const std::string reason = std::strerror(errno);
        ::close(fd);
        ::unlink(tmp.c_str());
        throw std::runtime_error(target.string() + ": " + what + ": " + reason);
    };
    for (std::size_t done = 0; done < text.size();) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail("cannot write");
        done += static_cast<std::size_t>(n);
    }
    if (::fchmod(fd, 0644) != 0) fail("cannot set the mode");
    if (::fsync(fd) != 0) fail("cannot sync");
    if (::close(fd) != 0) {
        ::unlink(tmp.c_str());
        throw std::runtime_error(target.string() + ": cannot write: " + std::strerror(errno));
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
        const std::string reason = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw std::runtime_error(target.string() + ": " + reason);
    }
    if (const int dfd = ::open(target_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }

    std::vector<std::string> shadowing;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.is_directory() && entry.path().filename() != "_default") shadowing.push_back(entry.path().string());
    }
    return shadowing;
}

}  // namespace pullgate

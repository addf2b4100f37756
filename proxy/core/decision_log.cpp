#include "pullgate/decision_log.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <stdexcept>

namespace pullgate {
namespace {

constexpr auto report_interval = std::chrono::seconds(10);

// Opens `path` for appending (creating it and its directory). Returns the fd,
// or -1 with errno set.
int open_append(const std::string& path) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

// Writes all of `line` with as few write(2) calls as the kernel allows.
// Returns 0, or the errno of the failure.
// A line that fits only partly (a full filesystem) is cut off again, so the
// next line that can be written does not follow a fragment; the caller holds
// the lock and this process is the file's only writer.
int write_all(int fd, std::string_view line) {
    std::size_t written = 0;
    while (written < line.size()) {
        const ssize_t n = ::write(fd, line.data() + written, line.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int error = n < 0 ? errno : EIO;
            if (written > 0) {
                const off_t end = ::lseek(fd, 0, SEEK_END);
                if (end >= static_cast<off_t>(written) && ::ftruncate(fd, end - static_cast<off_t>(written)) != 0)
                    spdlog::warn("decision log: cannot remove a partly written line: {}", std::strerror(errno));
            }
            return error;
        }
        written += static_cast<std::size_t>(n);
    }
    return 0;
}

std::string error_text_of(int error) {
    return std::strerror(error);
}

// Appends `value` as a JSON string. Text with nothing to escape (registry
// names, digests, reasons: nearly all of it) goes in as it is; anything else
// through nlohmann's serializer (control characters escaped, invalid UTF-8
// replaced).
void append_json_string(std::string& out, std::string_view value) {
    const bool plain = std::all_of(value.begin(), value.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
    });
    if (plain) {
        out += '"';
        out += value;
        out += '"';
        return;
    }
    out += nlohmann::json(std::string(value)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string rfc3339_ms(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    // floor, not truncation: correct before 1970 too
    const auto secs_tp = floor<seconds>(t);
    const auto ms = duration_cast<milliseconds>(t - secs_tp).count();
    std::time_t secs = static_cast<std::time_t>(secs_tp.time_since_epoch().count());
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
    return buf;
}

std::string to_json_line(const decision_record& r) {
    // Written field by field, not built as an ordered_json object (one node
    // and one key lookup per field): this runs once per request. The bytes
    // are the same as that object's dump(); nlohmann's serializer escapes
    // every string that needs it.
    std::string out;
    out.reserve(384 + r.repository.size() + r.reference.size() + r.rule.size() + r.credential.size());
    bool first = true;
    auto key = [&](std::string_view name) {
        out += first ? "{\"" : ",\"";
        first = false;
        out += name;
        out += "\":";
    };
    auto text = [&](std::string_view name, std::string_view value) {
        key(name);
        append_json_string(out, value);
    };
    auto null = [&](std::string_view name) {
        key(name);
        out += "null";
    };
    auto number = [&](std::string_view name, std::uint64_t value) {
        key(name);
        char buf[24];
        out.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr);
    };
    text("ts", rfc3339_ms(r.ts));
    text("id", r.id);
    text("client", r.client);
    text("method", r.method);
    text("registry", r.registry);
    text("repository", r.repository);
    text("kind", r.kind);
    text("reference", r.reference);
    if (r.digest.empty())
        null("digest");
    else
        text("digest", r.digest);
    text("decision", to_string(r.decision));
    text("reason", to_string(r.reason));
    text("rule", r.rule);
    text("credential", r.credential);
    number("status", r.status);
    if (r.upstream_status)
        number("upstream_status", r.upstream_status);
    else
        null("upstream_status");
    number("bytes", r.bytes);
    number("duration_ms", r.duration_ms);
    out += '}';
    return out;
}

decision_log::decision_log(std::string path, log_write_error_policy policy, metrics* stats)
    : path_(std::move(path)), policy_(policy), stats_(stats) {
    fd_ = open_append(path_);
    if (fd_ < 0) throw std::runtime_error("decision log " + path_ + ": cannot open: " + error_text_of(errno));
}

decision_log::~decision_log() {
    if (fd_ >= 0) ::close(fd_);
}

bool decision_log::write(const decision_record& r) {
    std::string line = to_json_line(r);
    line += '\n';
    std::lock_guard lock(mutex_);
    if (const int error = write_all(fd_, line)) {
        note_failure(error);
        return false;
    }
    if (failing_) note_success();
    return true;
}

void decision_log::note_failure(int error) {
    ++lost_in_period_;
    ++lost_total_;
    last_errno_ = error;
    if (stats_) stats_->count_decision_log_error();
    const auto now = std::chrono::steady_clock::now();
    const char* consequence =
        policy_ == log_write_error_policy::deny
            ? "pulls are refused with 503 until it can be written (decisionLog.onWriteError: deny)"
            : "pulls are still served (decisionLog.onWriteError: serve)";
    if (!failing_) {
        failing_ = true;
        failing_since_ = std::chrono::system_clock::now();
        last_report_ = now;
        lost_reported_ = lost_in_period_;
        spdlog::error("decision log {}: cannot write a line ({}): decision lines are being lost; {}", path_,
                      error_text_of(error), consequence);
    } else if (now - last_report_ >= report_interval) {
        spdlog::error("decision log {}: still failing ({}): {} lines lost since {} ({} since the last report); {}",
                      path_, error_text_of(error), lost_in_period_, rfc3339_ms(failing_since_),
                      lost_in_period_ - lost_reported_, consequence);
        last_report_ = now;
        lost_reported_ = lost_in_period_;
    }
}

void decision_log::note_success() {
    spdlog::warn("decision log {}: writable again; {} lines were lost since {}", path_, lost_in_period_,
                 rfc3339_ms(failing_since_));
    failing_ = false;
    lost_in_period_ = 0;
    lost_reported_ = 0;
}

bool decision_log::refuses_requests() const {
    if (policy_ != log_write_error_policy::deny) return false;
    std::lock_guard lock(mutex_);
    return failing_;
}

std::string decision_log::status_line() const {
    std::lock_guard lock(mutex_);
    if (!failing_) {
        if (lost_total_ == 0) return "decision log: ok";
        return "decision log: ok (" + std::to_string(lost_total_) + " lines lost earlier)";
    }
    return "decision log: FAILING since " + rfc3339_ms(failing_since_) + " (" + error_text_of(last_errno_) + "), " +
           std::to_string(lost_in_period_) + " lines lost; " +
           (policy_ == log_write_error_policy::deny ? "pulls refused" : "pulls served");
}

bool decision_log::reopen(std::string* error) {
    const int fresh = open_append(path_);
    if (fresh < 0) {
        if (error) *error = "cannot open " + path_ + ": " + error_text_of(errno);
        return false;
    }
    std::lock_guard lock(mutex_);
    ::close(fd_);
    fd_ = fresh;
    return true;
}

}  // namespace pullgate

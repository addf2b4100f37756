// The decision log: one JSON object per line, per request, written when the
// request ends. Admins `tail -f` it; logrotate has it reopened on SIGHUP.
// A line that cannot be written is counted and reported, never dropped
// silently (decisionLog.onWriteError).
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/outcome.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace pullgate {

struct decision_record {
    std::chrono::system_clock::time_point ts;
    std::string id;
    std::string client;
    std::string method;
    std::string registry;
    std::string repository;
    std::string kind;
    std::string reference;
    std::string digest;  // manifests: what the reference resolved to; "" = unknown
    verdict decision = verdict::error;
    reason_code reason = reason_code::internal_error;
    std::string rule;
    std::string credential;  // the credential key, never the secret
    unsigned status = 0;
    unsigned upstream_status = 0;  // 0 = no upstream response
    std::uint64_t bytes = 0;       // body bytes sent to the client
    std::uint64_t duration_ms = 0;
};

// The record as one line of JSON, without the newline. Fields are always
// present; upstream_status and digest are null when there is none.
std::string to_json_line(const decision_record& r);

// RFC 3339 UTC with milliseconds: 2026-11-27T10:57:55.123Z
std::string rfc3339_ms(std::chrono::system_clock::time_point t);

// Appends records to a file with one write(2) per line (O_APPEND), so lines
// never interleave and every failure is seen. Thread-safe.
class decision_log {
public:
    // Throws std::runtime_error naming the path when it cannot be opened.
    // `stats` (optional) counts write failures.
    explicit decision_log(std::string path, log_write_error_policy policy = log_write_error_policy::serve,
                          metrics* stats = nullptr);
    ~decision_log();
    decision_log(const decision_log&) = delete;
    decision_log& operator=(const decision_log&) = delete;

    // Appends `r`. Returns false when the line could not be written: counted
    // in pullgate_decision_log_errors_total, logged to diagnostics once per
    // failure period and then at most every 10 s with the lines lost.
    bool write(const decision_record& r);

    // Reopens the file (after logrotate moved it). On failure keeps the old
    // file open and returns false.
    bool reopen(std::string* error = nullptr);

    const std::string& path() const { return path_; }
    void set_policy(log_write_error_policy p) { policy_ = p; }

    // True while the last write failed and decisionLog.onWriteError is deny:
    // pulls are then refused (each refusal's own line probes the file again).
    bool refuses_requests() const;

    // One line for /readyz: "decision log: ok" or why lines are being lost.
    std::string status_line() const;

private:
    void note_failure(int error);
    void note_success();

    std::string path_;
    std::atomic<log_write_error_policy> policy_;
    metrics* stats_;
    mutable std::mutex mutex_;
    int fd_ = -1;
    // failure period, under mutex_
    bool failing_ = false;
    int last_errno_ = 0;
    std::uint64_t lost_in_period_ = 0;
    std::uint64_t lost_total_ = 0;
    std::uint64_t lost_reported_ = 0;
    std::chrono::system_clock::time_point failing_since_{};
    std::chrono::steady_clock::time_point last_report_{};
};

}  // namespace pullgate

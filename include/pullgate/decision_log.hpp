// The decision log: one JSON object per line, per request, written when the
// request ends. Admins `tail -f` it; logrotate has it reopened on SIGHUP.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace spdlog {
class logger;
}

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
    std::string decision;  // allow | deny | error
    std::string reason;
    std::string rule;
    std::string credential;  // the credential key, never the secret
    unsigned status = 0;
    unsigned upstream_status = 0;  // 0 = no upstream response
    std::uint64_t bytes = 0;       // body bytes sent to the client
    std::uint64_t duration_ms = 0;
};

// The record as one line of JSON, without the newline. Fields are always
// present; upstream_status is null when no upstream answered.
std::string to_json_line(const decision_record& r);

// RFC 3339 UTC with milliseconds: 2026-11-27T10:57:55.123Z
std::string rfc3339_ms(std::chrono::system_clock::time_point t);

// Appends records to a file. Thread-safe. Throws std::runtime_error from the
// constructor when the file cannot be opened.
class decision_log {
public:
    explicit decision_log(std::string path);
    ~decision_log();

    void write(const decision_record& r);
    // Reopens the file (after logrotate moved it). On failure keeps the old
    // file open and returns false.
    bool reopen(std::string* error = nullptr);
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::mutex mutex_;
    std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace pullgate

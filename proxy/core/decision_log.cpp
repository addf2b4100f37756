#include "pullgate/decision_log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <ctime>
#include <filesystem>
#include <stdexcept>

namespace pullgate {
namespace {

std::shared_ptr<spdlog::logger> open_logger(const std::string& path) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
    auto logger = std::make_shared<spdlog::logger>("decisions", std::move(sink));
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::info);  // `tail -f` sees each line as the request ends
    return logger;
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
    nlohmann::ordered_json j;
    j["ts"] = rfc3339_ms(r.ts);
    j["id"] = r.id;
    j["client"] = r.client;
    j["method"] = r.method;
    j["registry"] = r.registry;
    j["repository"] = r.repository;
    j["kind"] = r.kind;
    j["reference"] = r.reference;
    j["decision"] = r.decision;
    j["reason"] = r.reason;
    j["rule"] = r.rule;
    j["credential"] = r.credential;
    j["status"] = r.status;
    if (r.upstream_status)
        j["upstream_status"] = r.upstream_status;
    else
        j["upstream_status"] = nullptr;
    j["bytes"] = r.bytes;
    j["duration_ms"] = r.duration_ms;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

decision_log::decision_log(std::string path) : path_(std::move(path)) {
    try {
        logger_ = open_logger(path_);
    } catch (const spdlog::spdlog_ex& e) {
        throw std::runtime_error("decision log " + path_ + ": " + e.what());
    }
}

decision_log::~decision_log() = default;

void decision_log::write(const decision_record& r) {
    std::shared_ptr<spdlog::logger> logger;
    {
        std::lock_guard lock(mutex_);
        logger = logger_;
    }
    logger->info(to_json_line(r));
}

bool decision_log::reopen(std::string* error) {
    try {
        auto fresh = open_logger(path_);
        std::lock_guard lock(mutex_);
        logger_ = std::move(fresh);
        return true;
    } catch (const spdlog::spdlog_ex& e) {
        if (error) *error = e.what();
        return false;
    }
}

}  // namespace pullgate

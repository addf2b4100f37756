// Tests for include/pullgate/decision_log.hpp: one JSON object per request,
// fields in the README's order, appended to a file that logrotate can move.
#include "pullgate/decision_log.hpp"
#include "pullgate/metrics.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

using namespace pullgate;
namespace fs = std::filesystem;

namespace {

using namespace std::chrono;

system_clock::time_point at(int y, unsigned mo, unsigned d, int h, int mi, int s, int ms) {
    return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s} + milliseconds{ms};
}

// The README's "Decision log" fields, in order.
const std::vector<std::string> design_fields = {
    "ts",       "id",     "client", "method",     "registry", "repository",      "kind",  "reference",   "digest",
    "decision", "reason", "rule",   "credential", "status",   "upstream_status", "bytes", "duration_ms",
};

decision_record sample(std::string id) {
    decision_record r;
    r.ts = at(2026, 11, 27, 10, 57, 55, 123);
    r.id = std::move(id);
    r.client = "127.0.0.1:43512";
    r.method = "GET";
    r.registry = "docker.io";
    r.repository = "library/alpine";
    r.kind = "manifest";
    r.reference = "3.19";
    r.digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    r.decision = verdict::allow;
    r.reason = reason_code::has_credentials;
    r.rule = "https://index.docker.io/v1/";
    r.credential = "https://index.docker.io/v1/";
    r.status = 200;
    r.upstream_status = 200;
    r.bytes = 1638;
    r.duration_ms = 412;
    return r;
}

std::vector<std::string> lines_of(const fs::path& p) {
    return test::split_lines(test::read_file(p));
}

}  // namespace

TEST_CASE("rfc3339_ms formats UTC with milliseconds") {
    struct ts_case {
        system_clock::time_point t;
        std::string text;
    };
    const std::vector<ts_case> cases = {
        {at(2026, 11, 27, 10, 57, 55, 123), "2026-11-27T10:57:55.123Z"},
        {system_clock::time_point{}, "1970-01-01T00:00:00.000Z"},
        {at(2000, 2, 29, 23, 59, 59, 999), "2000-02-29T23:59:59.999Z"},
        {at(2024, 1, 5, 3, 4, 5, 7), "2024-01-05T03:04:05.007Z"},
        {at(2024, 1, 5, 3, 4, 5, 70), "2024-01-05T03:04:05.070Z"},
        {at(2038, 1, 19, 3, 14, 8, 0), "2038-01-19T03:14:08.000Z"},
        // sub-millisecond parts are truncated, never rounded up into the next second
        {at(2024, 12, 31, 23, 59, 59, 999) + microseconds{999}, "2024-12-31T23:59:59.999Z"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(rfc3339_ms(c.t) == c.text);
    }
}

TEST_CASE("rfc3339_ms before the epoch") {
    // A system clock set before 1970 is unusual, but the format must still hold.
    struct ts_case {
        system_clock::time_point t;
        std::string text;
    };
    const std::vector<ts_case> cases = {
        {at(1969, 12, 31, 23, 59, 59, 999), "1969-12-31T23:59:59.999Z"},
        {at(1969, 12, 31, 23, 59, 59, 0), "1969-12-31T23:59:59.000Z"},
        {at(1960, 6, 15, 12, 0, 0, 500), "1960-06-15T12:00:00.500Z"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(rfc3339_ms(c.t) == c.text);
    }
}

TEST_CASE("to_json_line: every documented field, in order") {
    decision_record allowed = sample("req-1");
    decision_record denied = sample("req-2");
    denied.ts = at(2025, 1, 2, 3, 4, 5, 6);
    denied.client = "[::1]:40000";
    denied.method = "HEAD";
    denied.registry = "127.0.0.1:15443";
    denied.repository = "team/app";
    denied.kind = "blob";
    denied.reference = "sha256:" + std::string(64, 'e');
    denied.decision = verdict::deny;
    denied.reason = reason_code::not_allowlisted;
    denied.rule = "";
    denied.credential = "";
    denied.status = 403;
    denied.upstream_status = 0;
    denied.bytes = 0;
    denied.duration_ms = 0;
    decision_record big = sample("req-3");
    big.kind = "blob";
    big.upstream_status = 206;
    big.bytes = 5'000'000'000ULL;  // more than 32 bits
    big.duration_ms = 123'456;

    for (const auto& r : {allowed, denied, big}) {
        CAPTURE(r.id);
        const std::string line = to_json_line(r);
        CAPTURE(line);
        CHECK(line.find('\n') == std::string::npos);
        const auto j = nlohmann::ordered_json::parse(line);
        REQUIRE(j.is_object());

        std::vector<std::string> keys;
        for (const auto& item : j.items()) keys.push_back(item.key());
        CHECK(keys == design_fields);

        CHECK(j["ts"] == rfc3339_ms(r.ts));
        CHECK(j["id"] == r.id);
        CHECK(j["client"] == r.client);
        CHECK(j["method"] == r.method);
        CHECK(j["registry"] == r.registry);
        CHECK(j["repository"] == r.repository);
        CHECK(j["kind"] == r.kind);
        CHECK(j["reference"] == r.reference);
        CHECK(j["decision"] == to_string(r.decision));
        CHECK(j["reason"] == to_string(r.reason));
        CHECK(j["rule"] == r.rule);
        CHECK(j["credential"] == r.credential);
        CHECK(j["status"] == r.status);
        if (r.upstream_status == 0) {
            CHECK(j["upstream_status"].is_null());
        } else {
            CHECK(j["upstream_status"].is_number_unsigned());
            CHECK(j["upstream_status"] == r.upstream_status);
        }
        CHECK(j["status"].is_number_unsigned());
        CHECK(j["bytes"].is_number_unsigned());
        CHECK(j["bytes"].get<std::uint64_t>() == r.bytes);
        CHECK(j["duration_ms"].get<std::uint64_t>() == r.duration_ms);
    }
}

TEST_CASE("to_json_line: client-controlled text stays on one line and never throws") {
    const std::vector<std::string> hostile = {
        "line\nbreak",        "carriage\rreturn",         "quote\"and\\backslash",
        "\x01\x1f control",   "{\"decision\":\"allow\"}", "\xff\xfe not utf-8",
        "truncated \xe2\x82", "valid \xe2\x82\xac utf-8",
    };
    for (const auto& text : hostile) {
        CAPTURE(text);
        decision_record r = sample("x");
        r.repository = text;
        r.reference = text;
        r.client = text;
        std::string line;
        CHECK_NOTHROW(line = to_json_line(r));
        CHECK(line.find('\n') == std::string::npos);
        CHECK(line.find('\r') == std::string::npos);
        nlohmann::json j;
        CHECK_NOTHROW(j = nlohmann::json::parse(line));
        CHECK(j.size() == design_fields.size());
        CHECK(j["decision"] == "allow");  // injected text cannot change another field
        CHECK(j["id"] == "x");
    }
}

// The line as an ordered_json object dumps it: to_json_line must give the
// same bytes, whatever the text in the fields.
std::string reference_line(const decision_record& r) {
    nlohmann::ordered_json j;
    j["ts"] = rfc3339_ms(r.ts);
    j["id"] = r.id;
    j["client"] = r.client;
    j["method"] = r.method;
    j["registry"] = r.registry;
    j["repository"] = r.repository;
    j["kind"] = r.kind;
    j["reference"] = r.reference;
    j["digest"] = r.digest.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.digest);
    j["decision"] = to_string(r.decision);
    j["reason"] = to_string(r.reason);
    j["rule"] = r.rule;
    j["credential"] = r.credential;
    j["status"] = r.status;
    j["upstream_status"] =
        r.upstream_status ? nlohmann::ordered_json(r.upstream_status) : nlohmann::ordered_json(nullptr);
    j["bytes"] = r.bytes;
    j["duration_ms"] = r.duration_ms;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

TEST_CASE("to_json_line: byte for byte what nlohmann's serializer writes") {
    const std::vector<std::string> texts = {
        "",
        "plain",
        "registry.example.com:5000",
        "sha256:" + std::string(64, 'a'),
        "quote\"and\\backslash",
        "only \"quotes\"",
        "only \\backslashes\\",
        "slash/and~tilde",
        std::string("nul\0inside", 10),
        "\x01\x1f\x7f controls and DEL",
        "line\nbreak\rreturn\ttab",
        "\xff\xfe not utf-8",
        "truncated \xe2\x82",
        "valid \xe2\x82\xac utf-8",
    };
    std::uint64_t n = 0;
    for (const auto& text : texts) {
        decision_record r = sample(text);
        r.client = text;
        r.method = text;
        r.registry = text;
        r.repository = text;
        r.kind = text;
        r.reference = text;
        r.digest = text;
        r.rule = text;
        r.credential = text;
        r.status = static_cast<unsigned>(n * 101);
        r.upstream_status = static_cast<unsigned>(n % 2 ? 0 : 200 + n);
        r.bytes = n * 0x1'0000'0001ULL;
        r.duration_ms = n == 3 ? UINT64_MAX : n;
        r.decision = n % 3 == 0 ? verdict::allow : n % 3 == 1 ? verdict::deny : verdict::error;
        ++n;
        CAPTURE(text);
        CHECK(to_json_line(r) == reference_line(r));
    }
}

TEST_CASE("decision_log writes one line per record, appending") {
    test::temp_dir dir;
    const fs::path path = dir.path() / "decisions.log";
    test::write_file(path, "{\"from\":\"before a restart\"}\n");

    const std::vector<std::string> ids = {"a", "b", "c", "d"};
    {
        decision_log log(path.string());
        CHECK(log.path() == path.string());
        for (const auto& id : ids) log.write(sample(id));
        // flushed as each request ends: `tail -f` sees the line without waiting for shutdown
        const auto lines = lines_of(path);
        REQUIRE(lines.size() == ids.size() + 1);
    }
    const std::string text = test::read_file(path);
    CHECK(text.ends_with("\n"));
    const auto lines = test::split_lines(text);
    REQUIRE(lines.size() == ids.size() + 1);
    CHECK(lines[0] == "{\"from\":\"before a restart\"}");
    for (std::size_t i = 0; i < ids.size(); ++i) {
        CAPTURE(i);
        CHECK(lines[i + 1] == to_json_line(sample(ids[i])));
    }
}

TEST_CASE("decision_log::reopen after logrotate moved the file") {
    test::temp_dir dir;
    const fs::path path = dir.path() / "decisions.log";
    const fs::path rotated = dir.path() / "decisions.log.1";

    decision_log log(path.string());
    log.write(sample("before-1"));
    log.write(sample("before-2"));
    fs::rename(path, rotated);
    log.write(sample("between"));  // still goes to the open file, now named .1
    CHECK_FALSE(fs::exists(path));

    std::string error;
    REQUIRE(log.reopen(&error));
    REQUIRE(fs::exists(path));
    log.write(sample("after"));

    const auto old_lines = lines_of(rotated);
    REQUIRE(old_lines.size() == 3);
    CHECK(nlohmann::json::parse(old_lines[0])["id"] == "before-1");
    CHECK(nlohmann::json::parse(old_lines[1])["id"] == "before-2");
    CHECK(nlohmann::json::parse(old_lines[2])["id"] == "between");
    const auto new_lines = lines_of(path);
    REQUIRE(new_lines.size() == 1);
    CHECK(nlohmann::json::parse(new_lines[0])["id"] == "after");
}

TEST_CASE("decision_log::reopen that fails keeps the old file") {
    test::temp_dir dir;
    const fs::path logdir = dir.path() / "log";
    fs::create_directory(logdir);
    const fs::path path = logdir / "decisions.log";
    decision_log log(path.string());
    log.write(sample("one"));

    // the directory is moved away and a plain file takes its name: the path cannot be opened
    const fs::path moved = dir.path() / "log.moved";
    fs::rename(logdir, moved);
    test::write_file(logdir, "not a directory");

    std::string error;
    CHECK_FALSE(log.reopen(&error));
    CHECK_FALSE(error.empty());
    CHECK_FALSE(log.reopen());  // a null error pointer is allowed
    log.write(sample("two"));

    const auto lines = lines_of(moved / "decisions.log");
    REQUIRE(lines.size() == 2);
    CHECK(nlohmann::json::parse(lines[1])["id"] == "two");
}

TEST_CASE("decision_log: an unopenable path throws std::runtime_error naming it") {
    test::temp_dir dir;
    const fs::path file = dir.path() / "plain-file";
    test::write_file(file, "x");
    const std::vector<fs::path> paths = {file / "decisions.log", dir.path()};
    for (const auto& p : paths) {
        CAPTURE(p.string());
        std::string what;
        try {
            decision_log log(p.string());
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CAPTURE(what);
        CHECK(what.find(p.string()) != std::string::npos);
    }
}

TEST_CASE("decision_log: concurrent writers never interleave lines") {
    test::temp_dir dir;
    const fs::path path = dir.path() / "decisions.log";
    constexpr int threads = 4;
    constexpr int per_thread = 250;
    {
        decision_log log(path.string());
        std::vector<std::thread> workers;
        for (int t = 0; t < threads; ++t)
            workers.emplace_back([&log, t] {
                for (int i = 0; i < per_thread; ++i)
                    log.write(sample("t" + std::to_string(t) + "-" + std::to_string(i)));
            });
        for (auto& w : workers) w.join();
    }
    const auto lines = lines_of(path);
    REQUIRE(lines.size() == static_cast<std::size_t>(threads * per_thread));
    std::size_t parsed = 0;
    for (const auto& line : lines) {
        auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.size() == design_fields.size()) ++parsed;
    }
    CHECK(parsed == lines.size());
}

TEST_CASE("to_json_line: digest is null when unknown") {
    decision_record r = sample("d");
    r.digest.clear();
    r.kind = "blob";
    const auto j = nlohmann::json::parse(to_json_line(r));
    CHECK(j["digest"].is_null());
    r.digest = "sha256:abc";
    CHECK(nlohmann::json::parse(to_json_line(r))["digest"] == "sha256:abc");
}

TEST_CASE("decision_log: a line that cannot be written is counted and reported, never silent") {
    // /dev/full fails every write with ENOSPC, like a full log filesystem.
    test::temp_dir dir;
    const fs::path link = dir.path() / "decisions.log";
    fs::create_symlink("/dev/full", link);
    metrics stats;
    decision_log log(link.string(), log_write_error_policy::serve, &stats);
    CHECK(log.status_line() == "decision log: ok");
    CHECK_FALSE(log.write(sample("lost-1")));
    CHECK_FALSE(log.write(sample("lost-2")));
    CHECK(stats.render(0, "t").find("pullgate_decision_log_errors_total 2\n") != std::string::npos);
    const std::string failing = log.status_line();
    CAPTURE(failing);
    CHECK(failing.starts_with("decision log: FAILING since "));
    CHECK(failing.find("2 lines lost") != std::string::npos);
    CHECK(failing.find("pulls served") != std::string::npos);
    CHECK_FALSE(log.refuses_requests());  // serve: pulls go on

    // deny: pulls are refused while the log fails
    log.set_policy(log_write_error_policy::deny);
    CHECK(log.refuses_requests());

    // the file is writable again: the next line goes through and the period ends
    const fs::path real = dir.path() / "real.log";
    fs::remove(link);
    fs::create_symlink(real, link);
    REQUIRE(log.reopen());
    CHECK(log.write(sample("back")));
    CHECK_FALSE(log.refuses_requests());
    CHECK(log.status_line() == "decision log: ok (2 lines lost earlier)");
    const auto lines = lines_of(real);
    REQUIRE(lines.size() == 1);
    CHECK(nlohmann::json::parse(lines[0])["id"] == "back");
}

// Tests for include/pullgate/metrics.hpp: the admin listener's /metrics in the
// Prometheus text exposition format (README "Monitoring").
#include "pullgate/metrics.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace pullgate;

namespace {

// Sample lines of `text`, "name{labels}" -> "value"; comments skipped.
std::map<std::string, std::string> samples(const std::string& text) {
    std::map<std::string, std::string> out;
    for (const auto& line : test::split_lines(text)) {
        if (line.empty() || line.starts_with("#")) continue;
        auto sp = line.rfind(' ');
        REQUIRE_MESSAGE(sp != std::string::npos, line);
        const std::string name = line.substr(0, sp);
        INFO(line);
        CHECK_MESSAGE(out.count(name) == 0, "sample given twice");
        out[name] = line.substr(sp + 1);
    }
    return out;
}

bool has_line(const std::string& text, const std::string& line) {
    for (const auto& l : test::split_lines(text))
        if (l == line) return true;
    return false;
}

std::string value_of(const std::string& text, const std::string& name) {
    auto all = samples(text);
    auto it = all.find(name);
    REQUIRE_MESSAGE(it != all.end(), name);
    return it->second;
}

const std::string bucket = "pullgate_upstream_latency_seconds_bucket";

}  // namespace

TEST_CASE("metrics::render: every family has HELP and TYPE lines before its samples") {
    metrics m;
    m.count_request(verdict::allow, reason_code::allowlisted);
    m.observe_upstream_latency(0.1);
    const std::string text = m.render(0, "1.2.3");
    const std::vector<std::pair<std::string, std::string>> families = {
        {"pullgate_info", "gauge"},
        {"pullgate_requests_total", "counter"},
        {"pullgate_upstream_latency_seconds", "histogram"},
        {"pullgate_relayed_bytes_total", "counter"},
        {"pullgate_token_fetches_total", "counter"},
        {"pullgate_token_cache_hits_total", "counter"},
        {"pullgate_downstream_connections", "gauge"},
        {"pullgate_upstream_connections", "gauge"},
        {"pullgate_config_reloads_total", "counter"},
        {"pullgate_upstream_tls_handshakes_total", "counter"},
    };
    const auto lines = test::split_lines(text);
    for (const auto& [family, type] : families) {
        CAPTURE(family);
        std::size_t help = lines.size(), type_line = lines.size(), first_sample = lines.size();
        for (std::size_t i = 0; i < lines.size(); ++i) {
            if (lines[i].starts_with("# HELP " + family + " ") && help == lines.size()) help = i;
            if (lines[i] == "# TYPE " + family + " " + type && type_line == lines.size()) type_line = i;
            if ((lines[i].starts_with(family + " ") || lines[i].starts_with(family + "{") ||
                 lines[i].starts_with(family + "_")) &&
                first_sample == lines.size())
                first_sample = i;
        }
        REQUIRE(help < lines.size());
        REQUIRE(type_line < lines.size());
        REQUIRE(first_sample < lines.size());
        CHECK(help < type_line);
        CHECK(type_line < first_sample);
    }
    // the format: lines end in '\n', no blank lines, no CR
    REQUIRE_FALSE(text.empty());
    CHECK(text.back() == '\n');
    CHECK(text.find("\n\n") == std::string::npos);
    CHECK(text.find('\r') == std::string::npos);
    CHECK(has_line(text, R"(pullgate_info{version="1.2.3"} 1)"));
}

TEST_CASE("metrics: requests_total per (decision, reason)") {
    metrics m;
    CHECK(m.requests(verdict::allow, reason_code::allowlisted) == 0);
    for (int i = 0; i < 3; ++i) m.count_request(verdict::allow, reason_code::allowlisted);
    m.count_request(verdict::allow, reason_code::has_credentials);
    for (int i = 0; i < 2; ++i) m.count_request(verdict::deny, reason_code::not_allowlisted);
    m.count_request(verdict::error, reason_code::upstream_unreachable);

    CHECK(m.requests(verdict::allow, reason_code::allowlisted) == 3);
    CHECK(m.requests(verdict::allow, reason_code::has_credentials) == 1);
    CHECK(m.requests(verdict::deny, reason_code::not_allowlisted) == 2);
    CHECK(m.requests(verdict::error, reason_code::upstream_unreachable) == 1);
    CHECK(m.requests(verdict::deny, reason_code::allowlisted) == 0);  // the pair, not either half
    CHECK(m.requests(verdict::allow, reason_code::not_allowlisted) == 0);

    const std::string text = m.render(0, "v");
    CHECK(has_line(text, R"(pullgate_requests_total{decision="allow",reason="allowlisted"} 3)"));
    CHECK(has_line(text, R"(pullgate_requests_total{decision="allow",reason="has_credentials"} 1)"));
    CHECK(has_line(text, R"(pullgate_requests_total{decision="deny",reason="not_allowlisted"} 2)"));
    CHECK(has_line(text, R"(pullgate_requests_total{decision="error",reason="upstream_unreachable"} 1)"));
    int request_lines = 0;
    for (const auto& l : test::split_lines(text))
        if (l.starts_with("pullgate_requests_total{")) ++request_lines;
    CHECK(request_lines == 4);
}

TEST_CASE("metrics: no requests yet renders no request samples") {
    metrics m;
    const std::string text = m.render(0, "v");
    CHECK(has_line(text, "# TYPE pullgate_requests_total counter"));
    CHECK(text.find("pullgate_requests_total{") == std::string::npos);
}

TEST_CASE("metrics: count_request from several threads loses nothing") {
    metrics m;
    constexpr int threads = 4;
    constexpr int per_thread = 1000;
    const std::vector<std::pair<verdict, reason_code>> pairs = {{verdict::allow, reason_code::allowlisted},
                                                                {verdict::deny, reason_code::not_allowlisted},
                                                                {verdict::error, reason_code::bad_request}};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&m, &pairs, t] {
            for (int i = 0; i < per_thread; ++i) {
                m.count_request(verdict::allow, reason_code::allowlisted);
                const auto& [d, r] = pairs[static_cast<std::size_t>(t + i) % pairs.size()];
                m.count_request(d, r);
                m.observe_upstream_latency(0.001);
                m.add_bytes(3);
                m.count_token_fetch();
            }
        });
    }
    for (auto& th : pool) th.join();
    // per thread t, pair k is hit by i with (t + i) % 3 == k
    std::map<std::pair<verdict, reason_code>, std::uint64_t> want;
    for (int t = 0; t < threads; ++t)
        for (int i = 0; i < per_thread; ++i) ++want[pairs[static_cast<std::size_t>(t + i) % pairs.size()]];
    want[{verdict::allow, reason_code::allowlisted}] += threads * per_thread;

    for (const auto& [key, n] : want) {
        CAPTURE(to_string(key.first));
        CAPTURE(to_string(key.second));
        CHECK(m.requests(key.first, key.second) == n);
    }
    const std::string text = m.render(0, "v");
    CHECK(has_line(text, "pullgate_requests_total{decision=\"allow\",reason=\"allowlisted\"} " +
                             std::to_string(want[{verdict::allow, reason_code::allowlisted}])));
    CHECK(has_line(text, "pullgate_requests_total{decision=\"deny\",reason=\"not_allowlisted\"} " +
                             std::to_string(want[{verdict::deny, reason_code::not_allowlisted}])));
    CHECK(has_line(text, "pullgate_upstream_latency_seconds_count 4000"));
    CHECK(has_line(text, bucket + "{le=\"0.005\"} 4000"));
    CHECK(has_line(text, "pullgate_relayed_bytes_total 12000"));
    CHECK(has_line(text, "pullgate_token_fetches_total 4000"));
}

TEST_CASE("metrics: the latency histogram's buckets are cumulative") {
    metrics m;
    for (double s : {0.001, 0.02, 0.3, 7.0, 100.0}) m.observe_upstream_latency(s);
    const std::string text = m.render(0, "v");
    const std::vector<std::pair<std::string, int>> want = {
        {"0.005", 1}, {"0.01", 1}, {"0.025", 2}, {"0.05", 2}, {"0.1", 2}, {"0.25", 2}, {"0.5", 3},
        {"1", 3},     {"2.5", 3},  {"5", 3},     {"10", 4},   {"30", 4},  {"+Inf", 5},
    };
    const auto all = samples(text);
    int bucket_lines = 0;
    for (const auto& [name, value] : all)
        if (name.starts_with(bucket + "{")) ++bucket_lines;
    CHECK(bucket_lines == static_cast<int>(want.size()));
    for (const auto& [le, n] : want) {
        CAPTURE(le);
        CHECK(value_of(text, bucket + "{le=\"" + le + "\"}") == std::to_string(n));
    }
    CHECK(value_of(text, "pullgate_upstream_latency_seconds_count") == "5");
    CHECK(std::stod(value_of(text, "pullgate_upstream_latency_seconds_sum")) == doctest::Approx(107.321));

    // buckets appear in increasing order of le, +Inf last
    std::vector<std::string> order;
    for (const auto& l : test::split_lines(text))
        if (l.starts_with(bucket + "{le=\"")) {
            const std::size_t start = bucket.size() + 5;  // after {le="
            order.push_back(l.substr(start, l.find('"', start) - start));
        }
    REQUIRE(order.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(order[i] == want[i].first);
}

TEST_CASE("metrics: an observation on a bucket's bound counts in that bucket") {
    metrics m;
    m.observe_upstream_latency(0.005);
    m.observe_upstream_latency(1.0);
    m.observe_upstream_latency(30.0);
    m.observe_upstream_latency(30.5);
    m.observe_upstream_latency(0.0);
    const std::string text = m.render(0, "v");
    CHECK(value_of(text, bucket + "{le=\"0.005\"}") == "2");
    CHECK(value_of(text, bucket + "{le=\"0.5\"}") == "2");
    CHECK(value_of(text, bucket + "{le=\"1\"}") == "3");
    CHECK(value_of(text, bucket + "{le=\"10\"}") == "3");
    CHECK(value_of(text, bucket + "{le=\"30\"}") == "4");
    CHECK(value_of(text, bucket + "{le=\"+Inf\"}") == "5");
    CHECK(value_of(text, "pullgate_upstream_latency_seconds_count") == "5");
}

TEST_CASE("metrics: an empty histogram") {
    metrics m;
    const std::string text = m.render(0, "v");
    int n = 0;
    for (const auto& [name, value] : samples(text))
        if (name.starts_with(bucket + "{")) {
            ++n;
            CAPTURE(name);
            CHECK(value == "0");
        }
    CHECK(n == static_cast<int>(metrics::latency_buckets.size()) + 1);
    CHECK(std::stod(value_of(text, "pullgate_upstream_latency_seconds_sum")) == 0.0);
    CHECK(value_of(text, "pullgate_upstream_latency_seconds_count") == "0");
}

TEST_CASE("metrics: the histogram sum keeps its precision as it grows") {
    // A daemon runs for months: _sum grows past a million seconds and
    // rate(_sum) must still see each observation. Rendered with too few
    // significant digits, it would move in steps (or not at all).
    struct case_t {
        std::vector<double> observations;
    };
    const std::vector<case_t> cases = {
        {{1234.5678}},
        {{0.123456789}},
        {{1e6, 0.25}},
        {{123456.789, 0.001}},
    };
    for (const auto& c : cases) {
        metrics m;
        double sum = 0;
        for (double s : c.observations) {
            m.observe_upstream_latency(s);
            sum += s;
        }
        CAPTURE(sum);
        const std::string rendered = value_of(m.render(0, "v"), "pullgate_upstream_latency_seconds_sum");
        CAPTURE(rendered);
        const double back = std::stod(rendered);
        CHECK(std::abs(back - sum) <= 1e-9 * std::abs(sum));
    }
}

TEST_CASE("metrics: gauges and counters") {
    metrics m;
    m.downstream_connections += 7;
    m.downstream_connections -= 2;
    m.upstream_connections = 3;
    m.add_bytes(1000);
    m.add_bytes(24);
    m.add_bytes(std::uint64_t{1} << 40);
    m.count_token_fetch();
    m.count_token_fetch();
    const std::string text = m.render(42, "v");
    CHECK(value_of(text, "pullgate_downstream_connections") == "5");
    CHECK(value_of(text, "pullgate_upstream_connections") == "3");
    CHECK(value_of(text, "pullgate_relayed_bytes_total") == std::to_string((std::uint64_t{1} << 40) + 1024));
    CHECK(value_of(text, "pullgate_token_fetches_total") == "2");
    CHECK(value_of(text, "pullgate_token_cache_hits_total") == "42");  // as given by the caller

    m.downstream_connections = 0;
    m.upstream_connections -= 3;
    const std::string later = m.render(18446744073709551615ull, "v");
    CHECK(value_of(later, "pullgate_downstream_connections") == "0");
    CHECK(value_of(later, "pullgate_upstream_connections") == "0");
    CHECK(value_of(later, "pullgate_token_cache_hits_total") == "18446744073709551615");
}

TEST_CASE("metrics: reload and TLS handshake counters") {
    metrics m;
    const std::string zero = m.render(0, "v");
    CHECK(value_of(zero, R"(pullgate_config_reloads_total{result="success"})") == "0");
    CHECK(value_of(zero, R"(pullgate_config_reloads_total{result="failure"})") == "0");
    CHECK(value_of(zero, R"(pullgate_upstream_tls_handshakes_total{resumed="false"})") == "0");
    CHECK(value_of(zero, R"(pullgate_upstream_tls_handshakes_total{resumed="true"})") == "0");

    for (int i = 0; i < 3; ++i) m.count_reload(true);
    m.count_reload(false);
    for (int i = 0; i < 5; ++i) m.count_tls_handshake(false);
    for (int i = 0; i < 2; ++i) m.count_tls_handshake(true);
    const std::string text = m.render(0, "v");
    CHECK(value_of(text, R"(pullgate_config_reloads_total{result="success"})") == "3");
    CHECK(value_of(text, R"(pullgate_config_reloads_total{result="failure"})") == "1");
    CHECK(value_of(text, R"(pullgate_upstream_tls_handshakes_total{resumed="false"})") == "5");
    CHECK(value_of(text, R"(pullgate_upstream_tls_handshakes_total{resumed="true"})") == "2");
}

TEST_CASE("metrics: label values are escaped") {
    struct case_t {
        std::string reason;
        std::string escaped;
    };
    const std::vector<case_t> cases = {
        {R"(say "hi")", R"(say \"hi\")"},
        {R"(back\slash)", R"(back\\slash)"},
        {"new\nline", R"(new\nline)"},
        {"all\\\"\n", R"(all\\\"\n)"},
        {R"(\n)", R"(\\n)"},  // a backslash and an 'n' are not a newline
        {"", ""},
        {"plain_token", "plain_token"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.reason);
        metrics m;
        const std::string text = m.render(0, c.reason);
        CAPTURE(text);
        CHECK(has_line(text, "pullgate_info{version=\"" + c.escaped + "\"} 1"));
    }
}

// Counters for the admin listener's /metrics, rendered in the Prometheus text
// exposition format. Pure; thread-safe; lives for the whole process (across
// reloads). Label values are decision-log tokens, never secrets.
#pragma once

#include "pullgate/outcome.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace pullgate {

class metrics {
public:
    // Upper bounds (seconds) of the upstream latency histogram.
    static constexpr std::array<double, 12> latency_buckets = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                                               0.5,   1.0,  2.5,   5.0,  10.0, 30.0};

    void count_request(verdict decision, reason_code reason);
    void add_bytes(std::uint64_t n) { bytes_relayed_ += n; }
    // Time from sending an upstream request to its response header.
    void observe_upstream_latency(double seconds);
    void count_token_fetch() { token_fetches_++; }
    void count_reload(bool ok) { (ok ? reloads_ok_ : reloads_failed_)++; }
    void count_decision_log_error() { decision_log_errors_++; }
    void count_tls_handshake(bool resumed) { (resumed ? tls_resumed_ : tls_full_)++; }
    // A credential helper or provider plugin run, by source ("helper:NAME",
    // "provider:NAME") and result ("found", "not_found", "failed").
    void count_credential_run(std::string_view source, std::string_view result);
    // A credential answered from the helper/provider cache.
    void count_credential_cache_hit() { credential_cache_hits_++; }
    std::uint64_t credential_runs(std::string_view source, std::string_view result) const;

    std::atomic<std::int64_t> downstream_connections{0};
    std::atomic<std::int64_t> upstream_connections{0};
    // pullgate_node_gated: 1 gated, 0 not, -1 not checked (node.check off; not exported).
    std::atomic<int> node_gated{-1};

    // `token_cache_hits` comes from the token cache, which counts its own.
    std::string render(std::uint64_t token_cache_hits, std::string_view version) const;

    std::uint64_t requests(verdict decision, reason_code reason) const;

private:
    mutable std::mutex mutex_;
    std::map<std::pair<std::string, std::string>, std::uint64_t> requests_;
    std::array<std::uint64_t, latency_buckets.size()> latency_counts_{};
    std::uint64_t latency_count_ = 0;
    double latency_sum_ = 0;
    std::atomic<std::uint64_t> bytes_relayed_{0};
    std::atomic<std::uint64_t> token_fetches_{0};
    std::atomic<std::uint64_t> reloads_ok_{0};
    std::atomic<std::uint64_t> reloads_failed_{0};
    std::atomic<std::uint64_t> decision_log_errors_{0};
    std::atomic<std::uint64_t> tls_full_{0};
    std::atomic<std::uint64_t> tls_resumed_{0};
    std::map<std::pair<std::string, std::string>, std::uint64_t> credential_runs_;  // under mutex_
    std::atomic<std::uint64_t> credential_cache_hits_{0};
};

}  // namespace pullgate

#include "pullgate/metrics.hpp"

#include <fmt/format.h>

#include <sstream>

namespace pullgate {
namespace {

// Label values are our own tokens; escape anyway, as the format requires.
std::string label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

void metrics::count_request(verdict decision, reason_code reason) {
    std::lock_guard lock(mutex_);
    ++requests_[{std::string(to_string(decision)), std::string(to_string(reason))}];
}

void metrics::observe_upstream_latency(double seconds) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < latency_buckets.size(); ++i)
        if (seconds <= latency_buckets[i]) ++latency_counts_[i];
    ++latency_count_;
    latency_sum_ += seconds;
}

std::uint64_t metrics::requests(verdict decision, reason_code reason) const {
    std::lock_guard lock(mutex_);
    auto it = requests_.find({std::string(to_string(decision)), std::string(to_string(reason))});
    return it == requests_.end() ? 0 : it->second;
}

void metrics::count_credential_run(std::string_view source, std::string_view result) {
    std::lock_guard lock(mutex_);
    credential_runs_[{std::string(source), std::string(result)}]++;
}

std::uint64_t metrics::credential_runs(std::string_view source, std::string_view result) const {
    std::lock_guard lock(mutex_);
    auto it = credential_runs_.find({std::string(source), std::string(result)});
    return it == credential_runs_.end() ? 0 : it->second;
}

std::string metrics::render(std::uint64_t token_cache_hits, std::string_view version) const {
    std::ostringstream os;
    os << "# HELP pullgate_info pullgate build information.\n# TYPE pullgate_info gauge\n"
       << "pullgate_info{version=\"" << label(version) << "\"} 1\n";
    {
        std::lock_guard lock(mutex_);
        os << "# HELP pullgate_requests_total Requests answered, by decision and reason.\n"
           << "# TYPE pullgate_requests_total counter\n";
        for (const auto& [key, n] : requests_)
            os << "pullgate_requests_total{decision=\"" << label(key.first) << "\",reason=\"" << label(key.second)
               << "\"} " << n << "\n";
        os << "# HELP pullgate_upstream_latency_seconds Time from upstream request to response header.\n"
           << "# TYPE pullgate_upstream_latency_seconds histogram\n";
        for (std::size_t i = 0; i < latency_buckets.size(); ++i)
            os << "pullgate_upstream_latency_seconds_bucket{le=\"" << fmt::format("{}", latency_buckets[i]) << "\"} "
               << latency_counts_[i] << "\n";
        os << "pullgate_upstream_latency_seconds_bucket{le=\"+Inf\"} " << latency_count_ << "\n"
           << "pullgate_upstream_latency_seconds_sum " << fmt::format("{}", latency_sum_) << "\n"  // shortest exact
           << "pullgate_upstream_latency_seconds_count " << latency_count_ << "\n";
        os << "# HELP pullgate_credential_source_runs_total Credential helper and provider plugin runs, by source "
              "and result.\n"
           << "# TYPE pullgate_credential_source_runs_total counter\n";
        for (const auto& [key, n] : credential_runs_)
            os << "pullgate_credential_source_runs_total{source=\"" << label(key.first) << "\",result=\""
               << label(key.second) << "\"} " << n << "\n";
    }
    os << "# HELP pullgate_credential_cache_hits_total Credentials answered from the helper/provider cache.\n"
       << "# TYPE pullgate_credential_cache_hits_total counter\n"
       << "pullgate_credential_cache_hits_total " << credential_cache_hits_.load() << "\n";
    os << "# HELP pullgate_relayed_bytes_total Body bytes sent to clients.\n# TYPE pullgate_relayed_bytes_total "
          "counter\n"
       << "pullgate_relayed_bytes_total " << bytes_relayed_.load() << "\n"
       << "# HELP pullgate_token_fetches_total Token requests sent to token services.\n"
       << "# TYPE pullgate_token_fetches_total counter\n"
       << "pullgate_token_fetches_total " << token_fetches_.load() << "\n"
       << "# HELP pullgate_token_cache_hits_total Upstream requests that reused a cached token.\n"
       << "# TYPE pullgate_token_cache_hits_total counter\n"
       << "pullgate_token_cache_hits_total " << token_cache_hits << "\n"
       << "# HELP pullgate_downstream_connections Open client connections.\n"
       << "# TYPE pullgate_downstream_connections gauge\n"
       << "pullgate_downstream_connections " << downstream_connections.load() << "\n"
       << "# HELP pullgate_upstream_connections Open upstream connections (in use or pooled).\n"
       << "# TYPE pullgate_upstream_connections gauge\n"
       << "pullgate_upstream_connections " << upstream_connections.load() << "\n"
       << "# HELP pullgate_config_reloads_total Configuration reloads, by result.\n"
       << "# TYPE pullgate_config_reloads_total counter\n"
       << "pullgate_config_reloads_total{result=\"success\"} " << reloads_ok_.load() << "\n"
       << "pullgate_config_reloads_total{result=\"failure\"} " << reloads_failed_.load() << "\n"
       << "# HELP pullgate_decision_log_errors_total Decision log lines that could not be written.\n"
       << "# TYPE pullgate_decision_log_errors_total counter\n"
       << "pullgate_decision_log_errors_total " << decision_log_errors_.load() << "\n"
       << "# HELP pullgate_upstream_tls_handshakes_total TLS handshakes with upstreams, by session resumption.\n"
       << "# TYPE pullgate_upstream_tls_handshakes_total counter\n"
       << "pullgate_upstream_tls_handshakes_total{resumed=\"false\"} " << tls_full_.load() << "\n"
       << "pullgate_upstream_tls_handshakes_total{resumed=\"true\"} " << tls_resumed_.load() << "\n";
    if (const int gated = node_gated.load(); gated >= 0)
        os << "# HELP pullgate_node_gated 1 when containerd on this node sends every pull through pullgate with no "
              "way around it (as pullgate check-node), else 0.\n"
           << "# TYPE pullgate_node_gated gauge\n"
           << "pullgate_node_gated " << gated << "\n";
    return os.str();
}

}  // namespace pullgate

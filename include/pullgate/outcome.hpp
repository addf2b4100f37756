// What became of a request: the decision and the reason the decision log and
// /metrics report. Enums everywhere in the code; turned into the stable text
// tokens only where the decision log and the metrics write them.
#pragma once

#include <string_view>

namespace pullgate {

enum class verdict {
    allow,  // served (or pullgate answered the ping)
    deny,   // refused by policy or by method
    error,  // bad input, or the upstream or the client failed
};

enum class reason_code {
    // allow
    allowlisted,         // an allowlist entry matched
    has_credentials,     // credentials are stored for the registry (seed rule)
    anonymous_unlisted,  // unlistedRegistries: anonymous; pulled with no credentials
    ping,                // GET /v2/
    // deny
    not_allowlisted,
    no_registry,               // no ns and no defaultRegistry
    unsupported,               // a method other than GET/HEAD, HEAD of tags/referrers
    decision_log_unavailable,  // decisionLog.onWriteError: deny while the log cannot be written
    // error
    bad_request,  // path, name, tag, digest or ns invalid; malformed HTTP
    upstream_unreachable,
    upstream_auth_failed,
    credential_source_failed,  // a credential helper or provider plugin failed: fail closed
    token_unavailable,
    upstream_bad_redirect,
    upstream_too_large,
    digest_mismatch,
    upstream_reset,
    upstream_timeout,
    client_closed,
    client_timeout,
    overloaded,
    internal_error,
};

// The decision log's tokens: "allow", "deny", "error".
std::string_view to_string(verdict v);
// The decision log's reason tokens, e.g. "not_allowlisted".
std::string_view to_string(reason_code r);

}  // namespace pullgate

#include "pullgate/outcome.hpp"

namespace pullgate {

std::string_view to_string(verdict v) {
    switch (v) {
        case verdict::allow:
            return "allow";
        case verdict::deny:
            return "deny";
        case verdict::error:
            return "error";
    }
    return "error";
}

std::string_view to_string(reason_code r) {
    switch (r) {
        case reason_code::allowlisted:
            return "allowlisted";
        case reason_code::has_credentials:
            return "has_credentials";
        case reason_code::anonymous_unlisted:
            return "anonymous_unlisted";
        case reason_code::ping:
            return "ping";
        case reason_code::not_allowlisted:
            return "not_allowlisted";
        case reason_code::no_registry:
            return "no_registry";
        case reason_code::unsupported:
            return "unsupported";
        case reason_code::decision_log_unavailable:
            return "decision_log_unavailable";
        case reason_code::bad_request:
            return "bad_request";
        case reason_code::upstream_unreachable:
            return "upstream_unreachable";
        case reason_code::upstream_auth_failed:
            return "upstream_auth_failed";
        case reason_code::credential_source_failed:
            return "credential_source_failed";
        case reason_code::token_unavailable:
            return "token_unavailable";
        case reason_code::upstream_bad_redirect:
            return "upstream_bad_redirect";
        case reason_code::upstream_too_large:
            return "upstream_too_large";
        case reason_code::digest_mismatch:
            return "digest_mismatch";
        case reason_code::upstream_reset:
            return "upstream_reset";
        case reason_code::upstream_timeout:
            return "upstream_timeout";
        case reason_code::client_closed:
            return "client_closed";
        case reason_code::client_timeout:
            return "client_timeout";
        case reason_code::overloaded:
            return "overloaded";
        case reason_code::internal_error:
            return "internal_error";
    }
    return "internal_error";
}

}  // namespace pullgate

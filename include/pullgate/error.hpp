// OCI distribution error responses: the one place their bodies are made.
#pragma once

#include "pullgate/outcome.hpp"

#include <boost/system/result.hpp>

#include <string>
#include <string_view>

namespace pullgate {

// A request that pullgate answers itself with an OCI error body.
// `reason` is what the decision log and /metrics report for it.
struct failure {
    unsigned status = 500;
    std::string code;     // OCI error code, e.g. "NAME_INVALID"
    std::string message;  // human-readable, never contains a secret
    reason_code reason = reason_code::internal_error;
};

failure bad_request(std::string code, std::string message);
failure not_found(std::string code, std::string message, reason_code reason);
failure denied(std::string message, reason_code reason);
failure unsupported(std::string message);
failure upstream_failure(unsigned status, std::string message, reason_code reason);

// The error of a boost::system::result<T, std::string>, for `return
// error_text{"..."};`. A bare std::string would be ambiguous there: C++20
// aggregates are constructible from their first member.
struct error_text {
    std::string text;
    template <class T>
    operator boost::system::result<T, std::string>() && {
        return boost::system::result<T, std::string>(boost::system::in_place_error, std::move(text));
    }
};

// {"errors":[{"code":..,"message":..,"detail":{}}]} for `f`.
std::string oci_error_body(const failure& f);

}  // namespace pullgate

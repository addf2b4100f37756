// The OCI distribution read API as pullgate serves it: request targets parsed
// into values. Pure; no I/O.
#pragma once

#include "pullgate/error.hpp"

#include <boost/system/result.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace pullgate {

enum class request_kind { ping, manifest, blob, tags, referrers };

std::string_view to_string(request_kind k);

// A parsed request target, e.g. /v2/library/alpine/manifests/3.19?ns=docker.io
// or, in the registry-in-path form of containers/image mirrors,
// /v2/quay.io/org/app/manifests/1.
struct oci_request {
    request_kind kind = request_kind::ping;
    std::string repository;         // "library/alpine"; empty for ping
    std::string reference;          // tag or digest; empty for ping and tags
    std::optional<std::string> ns;  // raw, percent-decoded value of the ns query parameter
    // Without ns: the first path component when it names a registry by
    // docker's rule (contains '.' or is "localhost") and more components
    // follow; `repository` is then the rest. Never set when ns is given.
    std::optional<std::string> path_registry;
    std::string upstream_query;  // the query to forward: every parameter but ns, encoded
};

// Parses an origin-form request target. Fails with 400 NAME_INVALID (name or tag) /
// DIGEST_INVALID for grammar violations, 404 NAME_UNKNOWN for
// paths outside the read API. The method is checked by the caller.
// A name is split into path_registry and repository only when there is no
// ns: `ns`, when present, always names the registry, and a repository such as
// "my.org/app" on it stays whole. A registry with a port cannot be named in
// the path (':' is not in the name grammar): 400 NAME_INVALID saying so.
boost::system::result<oci_request, failure> parse_request_target(std::string_view target);

// Grammar checks of the OCI distribution spec, exposed for tests and the CLI.
bool is_valid_repository(std::string_view name);
bool is_valid_tag(std::string_view tag);
bool is_valid_digest(std::string_view digest);
bool is_digest(std::string_view reference);  // "algo:..." form (valid or not)

}  // namespace pullgate

#include "pullgate/oci_path.hpp"

#include <boost/url/decode_view.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <vector>

namespace pullgate {
namespace {

constexpr std::size_t max_repository_length = 255;

bool is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_alnum(char c) {
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}
bool is_lower_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool is_valid_component(std::string_view c) {
    std::size_t i = 0;
    const std::size_t n = c.size();
    auto alnum_run = [&] {
        std::size_t start = i;
        while (i < n && is_lower_alnum(c[i])) ++i;
        return i > start;
    };
    if (!alnum_run()) return false;
    while (i < n) {
        if (c[i] == '.') {
            ++i;
        } else if (c[i] == '_') {
            ++i;
            if (i < n && c[i] == '_') ++i;
        } else if (c[i] == '-') {
            while (i < n && c[i] == '-') ++i;
        } else {
            return false;
        }
        if (!alnum_run()) return false;
    }
    return true;
}

}  // namespace

std::string_view to_string(request_kind k) {
    switch (k) {
        case request_kind::ping:
            return "ping";
        case request_kind::manifest:
            return "manifest";
        case request_kind::blob:
            return "blob";
        case request_kind::tags:
            return "tags";
        case request_kind::referrers:
            return "referrers";
    }
    return "unknown";
}

bool is_valid_repository(std::string_view name) {
    if (name.empty() || name.size() > max_repository_length) return false;
    std::size_t start = 0;
    while (true) {
        std::size_t slash = name.find('/', start);
        std::string_view comp =
            name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (!is_valid_component(comp)) return false;
        if (slash == std::string_view::npos) return true;
        start = slash + 1;
    }
}

// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
bool is_valid_tag(std::string_view tag) {
    if (tag.empty() || tag.size() > 128) return false;
    if (!(is_alnum(tag[0]) || tag[0] == '_')) return false;
    for (char c : tag.substr(1))
        if (!(is_alnum(c) || c == '_' || c == '.' || c == '-')) return false;
    return true;
}

bool is_digest(std::string_view reference) {
    return reference.find(':') != std::string_view::npos;
}

// algorithm:encoded, restricted to the algorithms pullgate can verify
// (sha256: 64 lowercase hex, sha512: 128 lowercase hex).
bool is_valid_digest(std::string_view digest) {
    auto colon = digest.find(':');
    if (colon == std::string_view::npos) return false;
    std::string_view algo = digest.substr(0, colon);
    std::string_view hex = digest.substr(colon + 1);
    std::size_t want = algo == "sha256" ? 64 : algo == "sha512" ? 128 : 0;
    if (want == 0 || hex.size() != want) return false;
    for (char c : hex)
        if (!is_lower_hex(c)) return false;
    return true;
}

boost::system::result<oci_request, failure> parse_request_target(std::string_view target) {
    auto parsed = boost::urls::parse_origin_form(target);
    if (!parsed) return bad_request("NAME_INVALID", "malformed request target");
    boost::urls::url_view url = *parsed;

    std::string_view path = url.encoded_path();
    // Percent-encoding has no place in a repository name, tag or digest; refusing
    // it here means "..%2f" or "%2e%2e" can never turn into a different upstream path.
    if (path.find('%') != std::string_view::npos)
        return bad_request("NAME_INVALID", "percent-encoded characters are not allowed in the path");

    oci_request req;
    for (auto param : url.params()) {
        if (param.key == "ns") {
            if (req.ns) return bad_request("NAME_INVALID", "ns given more than once");
            req.ns = std::string(param.value);
        }
    }
    // Forward the other parameters (e.g. tags/list ?n=&last=) exactly as received.
    for (auto param : url.encoded_params()) {
        if (*param.key == "ns") continue;  // compared decoded: "n%73" is ns too
        if (!req.upstream_query.empty()) req.upstream_query += '&';
        req.upstream_query += std::string_view(param.key);
        if (param.has_value) {
            req.upstream_query += '=';
            req.upstream_query += std::string_view(param.value);
        }
    }

    if (path == "/v2/" || path == "/v2") {
        req.kind = request_kind::ping;
        return req;
    }
    constexpr std::string_view prefix = "/v2/";
    if (!path.starts_with(prefix))
        return not_found("NAME_UNKNOWN", "not an OCI distribution API path", reason_code::bad_request);
    std::string_view rest = path.substr(prefix.size());

    // Split off the last two segments: <name>/<action>/<arg>
    auto last = rest.rfind('/');
    if (last == std::string_view::npos || last == 0)
        return not_found("NAME_UNKNOWN", "not an OCI distribution API path", reason_code::bad_request);
    auto second = rest.rfind('/', last - 1);
    if (second == std::string_view::npos)
        return not_found("NAME_UNKNOWN", "not an OCI distribution API path", reason_code::bad_request);
    std::string_view name = rest.substr(0, second);
    std::string_view action = rest.substr(second + 1, last - second - 1);
    std::string_view arg = rest.substr(last + 1);

    if (action == "manifests")
        req.kind = request_kind::manifest;
    else if (action == "blobs")
        req.kind = request_kind::blob;
    else if (action == "tags" && arg == "list")
        req.kind = request_kind::tags;
    else if (action == "referrers")
        req.kind = request_kind::referrers;
    else
        return not_found("NAME_UNKNOWN", "not an OCI distribution API path", reason_code::bad_request);

    if (!is_valid_repository(name)) return bad_request("NAME_INVALID", "invalid repository name");
    req.repository = std::string(name);

    switch (req.kind) {
        case request_kind::manifest:
            // A reference that is neither a tag nor a digest names no manifest:
            // registries answer 404 MANIFEST_UNKNOWN (their routes do not match
            // it), and the distribution-spec conformance suite expects that.
            if (is_digest(arg) ? !is_valid_digest(arg) : !is_valid_tag(arg))
                return not_found("MANIFEST_UNKNOWN",
                                 "manifest unknown: the reference is not a valid tag or digest (tags: "
                                 "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}; digests: sha256:<64 hex> or sha512:<128 hex>)",
                                 reason_code::bad_request);
            req.reference = std::string(arg);
            break;
        // A malformed digest is 400 DIGEST_INVALID, as distribution answers a
        // blob route with an unparsable digest; for referrers the spec
        // requires 400 for an invalid digest.
        case request_kind::blob:
        case request_kind::referrers:
            if (!is_valid_digest(arg)) return bad_request("DIGEST_INVALID", "invalid digest");
            req.reference = std::string(arg);
            break;
        default:
            break;
    }
    return req;
}

}  // namespace pullgate

// parse_request_target on arbitrary bytes as an HTTP request target.
// Invariants on success: kind, repository and reference obey the OCI
// distribution grammar; the repository can never name another path upstream
// (no "..", "//", '%'); ns is stripped from the forwarded query.
#include "fuzz_check.hpp"

#include "pullgate/oci_path.hpp"

#include <boost/url/parse.hpp>

#include <cstdint>
#include <string>
#include <string_view>

using namespace pullgate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view target(reinterpret_cast<const char*>(data), size);
    auto r = parse_request_target(target);
    if (!r) {
        const failure& f = r.error();
        FUZZ_CHECK(f.status == 400 || f.status == 404, f.code);
        FUZZ_CHECK(f.code == "NAME_INVALID" || f.code == "DIGEST_INVALID" || f.code == "NAME_UNKNOWN" ||
                       f.code == "MANIFEST_UNKNOWN",
                   f.code);
        FUZZ_CHECK(!f.message.empty());
        FUZZ_CHECK(f.reason == reason_code::bad_request, f.code);
        return 0;
    }
    const oci_request& req = *r;
    const std::string& repo = req.repository;
    const std::string& ref = req.reference;
    switch (req.kind) {
        case request_kind::ping:
            FUZZ_CHECK(repo.empty(), repo);
            FUZZ_CHECK(ref.empty(), ref);
            break;
        case request_kind::manifest:
            FUZZ_CHECK(is_valid_repository(repo), repo);
            FUZZ_CHECK(is_digest(ref) ? is_valid_digest(ref) : is_valid_tag(ref), ref);
            break;
        case request_kind::blob:
        case request_kind::referrers:
            FUZZ_CHECK(is_valid_repository(repo), repo);
            FUZZ_CHECK(is_valid_digest(ref), ref);
            break;
        case request_kind::tags:
            FUZZ_CHECK(is_valid_repository(repo), repo);
            FUZZ_CHECK(ref.empty(), ref);
            break;
        default:
            FUZZ_CHECK(false && "unknown request_kind");
    }
    FUZZ_CHECK(repo.find("..") == std::string::npos, repo);
    FUZZ_CHECK(repo.find("//") == std::string::npos, repo);
    FUZZ_CHECK(repo.find('%') == std::string::npos, repo);
    FUZZ_CHECK(repo.empty() || (repo.front() != '/' && repo.back() != '/'), repo);
    FUZZ_CHECK(ref.find_first_of("/%?#") == std::string::npos, ref);
    FUZZ_CHECK(to_string(req.kind) != "unknown");

    // docs/ARCHITECTURE.md, "A request": "ns is stripped before forwarding" -- also when its name is
    // percent-encoded, since the upstream decodes it to "ns" all the same.
    if (!req.upstream_query.empty()) {
        const std::string forwarded = "/?" + req.upstream_query;  // the url_view points into it
        auto q = boost::urls::parse_origin_form(forwarded);
        FUZZ_CHECK(q.has_value(), req.upstream_query);
        for (auto p : q->params()) FUZZ_CHECK(p.key != "ns", req.upstream_query);
    }
    return 0;
}

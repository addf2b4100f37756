// Where an upstream request goes (scheme, host, port), the Host header for
// it, and where a redirect leads. Pure; no I/O.
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/registry_name.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pullgate {

struct origin {
    bool tls = true;
    std::string host;  // DNS name or IP literal without brackets
    std::uint16_t port = 443;

    std::string key() const;  // "https://host:port", IPv6 in brackets
    friend bool operator==(const origin&, const origin&) = default;
};

// The origin a registry is dialled at (Docker Hub: registry-1.docker.io):
// https unless the registry's transport says insecureHttp; the registry's
// port, or the scheme's default.
origin registry_origin(const registry_name& r, const registry_transport* t);

// The Host header for `o`: IPv6 literals in brackets, the port only when it
// is not the scheme's default.
std::string host_header(const origin& o);

// Where a 3xx `location` leads, resolved against the URL that answered it
// (`from` + `from_target`, an origin-form target). nullopt for an unusable
// location: not http(s), no host, port 0, or a downgrade from https to http.
struct redirect {
    origin to;
    std::string target;  // origin-form: path and query
};
std::optional<redirect> redirect_target(const origin& from, std::string_view from_target, std::string_view location);

}  // namespace pullgate

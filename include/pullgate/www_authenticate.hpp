// WWW-Authenticate challenges (RFC 7235 §4.1), as registries send them:
//   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"
//   Basic realm="Registry Realm"
// Pure; no I/O.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

struct auth_challenge {
    std::string scheme;                         // lowercase: "bearer", "basic", ...
    std::map<std::string, std::string> params;  // parameter names lowercase, values unquoted

    // The value of parameter `name` (lowercase), or "".
    std::string param(std::string_view name) const;
};

// Parses one header value that may hold several challenges. Quoted strings
// may contain commas and escaped characters; schemes and parameter names are
// case-insensitive. Malformed trailing input ends the parse: what was parsed
// before it is returned, and nothing throws.
std::vector<auth_challenge> parse_www_authenticate(std::string_view header);

// The first challenge with `scheme` (lowercase), if any.
std::optional<auth_challenge> find_challenge(const std::vector<auth_challenge>& all, std::string_view scheme);

}  // namespace pullgate

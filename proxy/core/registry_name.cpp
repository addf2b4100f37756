#include "pullgate/registry_name.hpp"

#include "pullgate/oci_path.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>

namespace pullgate {
namespace {

constexpr std::array<std::string_view, 3> docker_hub_aliases = {"docker.io", "index.docker.io", "registry-1.docker.io"};
constexpr std::string_view docker_hub = "docker.io";
constexpr std::string_view docker_hub_endpoint = "registry-1.docker.io";

std::string lowercase(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); });
    return out;
}

// A DNS name: labels of [a-z0-9-], 1..63 chars, no hyphen at either end,
// at most 253 chars, and a last label that is not all digits (so "127.1",
// "2130706433" or "0x7f.1" can never pass for a name while meaning an address).
bool is_dns_name(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    std::size_t start = 0;
    std::string_view last_label;
    while (start <= host.size()) {
        std::size_t dot = host.find('.', start);
        std::string_view label =
            host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
        for (char c : label)
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
        last_label = label;
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return !std::all_of(last_label.begin(), last_label.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::string registry_name::key() const {
    return port == 0 ? host : host + ":" + std::to_string(port);
}

std::string registry_name::endpoint_host() const {
    if (host == docker_hub && port == 0) return std::string(docker_hub_endpoint);
    if (!host.empty() && host.front() == '[') return host.substr(1, host.size() - 2);
    return host;
}

bool registry_name::is_ip_literal() const {
    if (!host.empty() && host.front() == '[') return true;
    return !host.empty() &&
           std::all_of(host.begin(), host.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

boost::system::result<registry_name, std::string> parse_registry_name(std::string_view text) {
    if (text.empty()) return error_text{"registry is empty"};
    if (text.size() > 260) return error_text{"registry name is too long"};
    auto authority = boost::urls::parse_authority(text);
    if (!authority) return error_text{"registry must be host or host:port"};
    if (authority->has_userinfo()) return error_text{"registry must not contain userinfo"};

    registry_name out;
    switch (authority->host_type()) {
        case boost::urls::host_type::ipv4: {
            const auto ip = authority->host_ipv4_address();
            const auto bits = ip.to_uint();
            // 0.0.0.0/8 ("this host"), multicast and broadcast never name a registry.
            if ((bits >> 24) == 0 || ip.is_multicast() || bits == 0xffffffffu)
                return error_text{"registry address is unspecified, multicast or broadcast"};
            out.host = ip.to_string();
            break;
        }
        case boost::urls::host_type::ipv6: {
            const auto ip = authority->host_ipv6_address();
            const auto bytes = ip.to_bytes();
            if (ip.is_unspecified() || bytes[0] == 0xff)
                return error_text{"registry address is unspecified or multicast"};
            if (ip.is_v4_mapped())
                return error_text{"registry address is an IPv4-mapped IPv6 address: write the IPv4 address"};
            out.host = "[" + ip.to_string() + "]";
            break;
        }
        case boost::urls::host_type::name: {
            std::string_view encoded = authority->encoded_host();
            if (encoded.find('%') != std::string_view::npos)
                return error_text{"registry host must not be percent-encoded"};
            out.host = lowercase(encoded);
            if (!is_dns_name(out.host)) return error_text{"registry host is not a valid DNS name or IP address"};
            break;
        }
        default:
            return error_text{"registry host is not a valid DNS name or IP address"};
    }
    if (authority->has_port()) {
        std::string_view port = authority->port();
        if (port.empty() || port.size() > 5) return error_text{"registry port is invalid"};
        unsigned long value = std::stoul(std::string(port));
        if (value == 0 || value > 65535) return error_text{"registry port is out of range"};
        out.port = value == 443 ? 0 : static_cast<std::uint16_t>(value);
    }
    if (out.port == 0 &&
        std::find(docker_hub_aliases.begin(), docker_hub_aliases.end(), out.host) != docker_hub_aliases.end())
        out.host = std::string(docker_hub);
    return out;
}

boost::system::result<registry_pattern, std::string> parse_registry_pattern(std::string_view text,
                                                                            bool allow_wildcard) {
    std::string_view rest = text;
    bool url_form = false;
    for (std::string_view scheme : {"https://", "http://"}) {
        if (rest.size() >= scheme.size() && lowercase(rest.substr(0, scheme.size())) == scheme) {
            rest.remove_prefix(scheme.size());
            url_form = true;
            break;
        }
    }
    auto slash = rest.find('/');
    std::string_view host_part = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);

    bool wildcard = host_part.starts_with("*.");
    if (wildcard && !allow_wildcard) return error_text{"a wildcard is not allowed here"};
    std::string probe(host_part);
    if (wildcard) probe.replace(0, 1, "x");  // validate the rest as if the label were concrete
    auto name = parse_registry_name(probe);
    if (!name) return error_text{name.error()};
    if (wildcard && name->is_ip_literal()) return error_text{"a wildcard needs a DNS name"};

    registry_pattern out;
    out.host = wildcard ? "*" + name->host.substr(1) : name->host;
    out.port = name->port;
    // Docker's legacy keys https://<host>/v1/ (and /v2/) name the registry, not a repository "v1".
    if ((url_form || out.host == docker_hub) && (path == "v1" || path == "v2")) path = {};
    if (!path.empty() && !is_valid_repository(path))
        return error_text{"repository prefix '" + std::string(path) + "' is not a valid repository name"};
    out.path_prefix = std::string(path);
    return out;
}

boost::system::result<registry_pattern, std::string> parse_match_image(std::string_view text) {
    if (text.empty()) return error_text{"the pattern is empty"};
    if (text.size() > 512) return error_text{"the pattern is too long"};
    if (text.find("://") != std::string_view::npos) return error_text{"a pattern has no scheme"};
    const auto slash = text.find('/');
    const std::string_view host_port = text.substr(0, slash);
    if (host_port.find_first_of("*?[") == std::string_view::npos) {
        auto plain = parse_registry_pattern(text, /*allow_wildcard=*/false);
        if (!plain) return plain;
        // The kubelet compares the path as a plain string: keep it as written.
        if (slash != std::string_view::npos) {
            std::string_view path = text.substr(slash + 1);
            while (!path.empty() && path.back() == '/') path.remove_suffix(1);
            plain->path_prefix = std::string(path);
        }
        return plain;
    }
    registry_pattern out;
    std::string_view host = host_port;
    if (const auto colon = host_port.rfind(':'); colon != std::string_view::npos) {
        host = host_port.substr(0, colon);
        const std::string_view port = host_port.substr(colon + 1);
        if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
            return error_text{"the port is invalid"};
        const unsigned long value = std::stoul(std::string(port));
        if (value == 0 || value > 65535) return error_text{"the port is out of range"};
        out.port = value == 443 ? 0 : static_cast<std::uint16_t>(value);
    }
    out.host = lowercase(host);
    std::size_t start = 0;
    while (start <= out.host.size()) {
        const auto dot = out.host.find('.', start);
        const std::string_view label =
            std::string_view(out.host).substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (label.empty() || label.size() > 63) return error_text{"a host label is empty or too long"};
        for (char c : label)
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '*' || c == '?' || c == '[' ||
                  c == ']' || c == '!' || c == '^'))
                return error_text{"the host has a character a registry name cannot have"};
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    if (slash != std::string_view::npos) {
        std::string_view path = text.substr(slash + 1);
        while (!path.empty() && path.back() == '/') path.remove_suffix(1);
        out.path_prefix = std::string(path);
    }
    return out;
}

std::string to_string(const registry_pattern& p) {
    std::string s = p.host;
    if (p.port != 0) s += ":" + std::to_string(p.port);
    if (!p.path_prefix.empty()) s += "/" + p.path_prefix;
    return s;
}

}  // namespace pullgate

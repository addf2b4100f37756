#include "pullgate/registries_conf.hpp"

#include "pullgate/error.hpp"
#include "pullgate/registry_name.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace pullgate {
namespace {

// A TOML basic string. The values are validated host names, but a quote or a
// newline must never be able to end the string and start another table.
std::string toml_string(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
}

bool is_loopback(const registry_name& r) {
    return r.host == "localhost" || (r.is_ip_literal() && r.host.starts_with("127."));
}

}  // namespace

boost::system::result<registries_conf_mirror, std::string> parse_registries_conf_mirror(std::string_view text) {
    registries_conf_mirror out;
    std::string_view rest = text;
    if (rest.starts_with("https://")) {
        out.tls = true;
        rest.remove_prefix(8);
    } else if (rest.starts_with("http://")) {
        rest.remove_prefix(7);
    } else if (rest.find("://") != std::string_view::npos) {
        return error_text{"the mirror must be HOST:PORT, http://HOST:PORT or https://HOST:PORT"};
    }
    if (rest.ends_with("/")) rest.remove_suffix(1);
    auto name = parse_registry_name(rest);
    if (!name) return error_text{"invalid mirror '" + std::string(text) + "': " + name.error()};
    if (name->host.starts_with("["))
        return error_text{"invalid mirror '" + std::string(text) +
                          "': containers/image references cannot name an IPv6 address; use an IPv4 address or a "
                          "DNS name"};
    if (name->port == 0 && !out.tls)
        return error_text{"invalid mirror '" + std::string(text) + "': give the port pullgate listens on"};
    out.host_port = name->key();
    out.loopback = is_loopback(*name);
    return out;
}

registries_conf_plan plan_registries_conf(const std::vector<policy_rule>& allow_list,
                                          const std::vector<policy_rule>& credential_keys) {
    std::map<std::string, std::vector<std::string>> routes;
    std::map<std::string, std::pair<std::string, std::vector<std::string>>> blocks;
    registries_conf_plan plan;
    auto add = [&](const policy_rule& rule) {
        const registry_pattern& p = rule.pattern;
        if (p.host.starts_with("[")) {
            plan.skipped.push_back({rule.text,
                                    "containers/image references cannot name an IPv6 address: no client of this "
                                    "file can pull from it at all"});
            return;
        }
        if (p.host.starts_with("*.")) {
            // registries.conf can match *.domain, but a rewrite replaces the
            // whole matched host with `location`: the host would be lost.
            // (A port cannot be written after a wildcard; the block covers every port.)
            auto& b = blocks[p.host];
            b.first = "a *.domain prefix cannot be rewritten keeping the host name; list each host to route it";
            b.second.push_back(rule.text);
            return;
        }
        if (p.port != 0) {
            auto& b = blocks[p.host + ":" + std::to_string(p.port)];
            b.first = "the registry-in-path form cannot carry a port; only registries on 443 can be routed";
            b.second.push_back(rule.text);
            return;
        }
        routes[p.host].push_back(rule.text);
    };
    for (const auto& r : allow_list) add(r);
    for (const auto& r : credential_keys) add(r);
    for (auto& [host, rules] : routes) plan.routes.push_back({host, std::move(rules)});
    for (auto& [prefix, b] : blocks) {
        // A *.domain block does not close the hosts under it that are routed
        // here: containers/image picks the exact host (measured, either order).
        plan.blocks.push_back({prefix, std::move(b.first), std::move(b.second)});
    }
    return plan;
}

std::string render_registries_conf(const registries_conf_plan& plan, const registries_conf_mirror& mirror) {
    const std::string example = plan.routes.empty() ? "quay.io" : plan.routes.front().host;
    std::string out;
    out +=
        "# containers-registries.conf.d(5) drop-in written by `pullgate registries-conf`, for\n"
        "# podman, skopeo, buildah and CRI-O (containers/image). Install it as\n"
        "# /etc/containers/registries.conf.d/50-pullgate.conf; files that sort later, and\n"
        "# ~/.config/containers/registries.conf.d/ for rootless users, can override it.\n"
        "#\n"
        "# Each rewriting [[registry]] below sends the pulls of one registry to\n"
        "# pullgate at " +
        mirror.host_port + " in the registry-in-path form: " + example +
        "/org/app:1\n"
        "# is fetched as GET /v2/" +
        example +
        "/org/app/manifests/1 from pullgate, which\n"
        "# applies its allowlist, adds the stored credentials and logs the decision.\n"
        "# A rewritten `location` has no fallback: when pullgate refuses or is down,\n"
        "# the pull fails. Never turn these into [[registry.mirror]] entries: a mirror\n"
        "# falls back to the registry itself on any error, around pullgate.\n"
        "#\n"
        "# Limits (measured with podman 4.3.1, skopeo 1.9.3, containers/image 5.23):\n"
        "# - No catch-all: containers/image has no prefix that matches every registry,\n"
        "#   so a registry not listed here is pulled directly, around pullgate. Close the\n"
        "#   ones you know with `blocked = true` entries (`prefix = \"*.example.com\"`\n"
        "#   works; an exact host routed here still wins over it). In\n"
        "#   /etc/containers/policy.json, \"default\": [{\"type\": \"reject\"}] with these\n"
        "#   registries accepted by name (policy.json matches the name as written, not\n"
        "#   the rewritten location) stops a pull of any other registry before a layer is\n"
        "#   fetched, but that registry still sees GET /v2/ and the manifest GET, and\n"
        "#   `skopeo inspect` does not consult policy.json at all.\n"
        "# - The path form cannot carry a port: a registry on another port than 443\n"
        "#   cannot be routed; such entries are blocked below, as are *.domain entries.\n"
        "# - `skopeo inspect` lists the tags under the original name, from the registry\n"
        "#   itself: use `skopeo inspect --no-tags`.\n";
    if (!mirror.tls) {
        out +=
            "# - pullgate's listener is plain HTTP: `insecure = true` lets the clients use it\n"
            "#   (they try HTTPS first, then plain HTTP).\n";
        if (!mirror.loopback)
            out += "# - WARNING: " + mirror.host_port +
                   " is not a loopback address: manifests and layers cross the network\n"
                   "#   unencrypted. Run pullgate on each node and point at 127.0.0.1.\n";
    }
    for (const auto& s : plan.skipped) out += "# - not written: " + s.rule + ": " + s.why + ".\n";

    for (const auto& r : plan.routes) {
        out += "\n# " + join(r.rules) + "\n";
        out += "[[registry]]\n";
        out += "prefix = " + toml_string(r.host) + "\n";
        out += "location = " + toml_string(mirror.host_port + "/" + r.host) + "\n";
        if (!mirror.tls) out += "insecure = true\n";
    }
    for (const auto& b : plan.blocks) {
        out += "\n# " + join(b.rules) + ": " + b.why + ".\n";
        out += "[[registry]]\n";
        out += "prefix = " + toml_string(b.prefix) + "\n";
        // A blocked entry without `location` is a configuration error (which
        // fails every pull) unless the prefix is a *.domain wildcard.
        if (!b.prefix.starts_with("*.")) out += "location = " + toml_string(b.prefix) + "\n";
        out += "blocked = true\n";
    }
    return out;
}

}  // namespace pullgate

#include "pullgate/config.hpp"
#include "pullgate/yaml_context.hpp"

#include <yaml-cpp/yaml.h>
#include <boost/url/grammar/parse.hpp>
#include <boost/url/ipv4_address.hpp>
#include <boost/url/ipv6_address.hpp>

#include <fstream>
#include <set>
#include <sstream>

namespace pullgate {
namespace {

// Errors name the file, the line and column, and the key.
class context : public yaml_context {
public:
    explicit context(std::string_view source) : yaml_context(source, "<config>") {}
};

std::string join(std::string_view parent, std::string_view key) {
    return parent.empty() ? std::string(key) : std::string(parent) + "." + std::string(key);
}

void expect_map(const context& ctx, const YAML::Node& node, std::string_view key) {
    if (!node.IsMap()) ctx.fail(node, key, "expected a mapping");
}

// Unknown keys are typos; a key given twice would silently lose one value
// (yaml-cpp keeps both and lookups see the first).
void reject_unknown_keys(const context& ctx, const YAML::Node& map, std::string_view parent,
                         const std::set<std::string>& known) {
    std::set<std::string> seen;
    for (const auto& kv : map) {
        if (!kv.first.IsScalar()) ctx.fail(kv.first, parent.empty() ? "<root>" : parent, "keys must be strings");
        const std::string k = kv.first.Scalar();
        if (!known.contains(k)) ctx.fail(kv.first, join(parent, k), "unknown key");
        if (!seen.insert(k).second) ctx.fail(kv.first, join(parent, k), "key given twice");
    }
}

std::string get_string(const context& ctx, const YAML::Node& node, std::string_view key) {
    if (!node.IsScalar()) ctx.fail(node, key, "expected a string");
    return node.Scalar();
}

bool get_bool(const context& ctx, const YAML::Node& node, std::string_view key) {
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) ctx.fail(node, key, "expected true or false");
    return value;
}

std::uint64_t get_positive(const context& ctx, const YAML::Node& node, std::string_view key, std::uint64_t max) {
    if (!node.IsScalar()) ctx.fail(node, key, "expected a positive whole number");
    const std::string& s = node.Scalar();
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
        ctx.fail(node, key, "expected a positive whole number");
    std::uint64_t v = std::stoull(s);
    if (v == 0 || v > max) ctx.fail(node, key, "must be between 1 and " + std::to_string(max));
    return v;
}

listen_address get_listen(const context& ctx, const YAML::Node& node, std::string_view key) {
    auto text = get_string(ctx, node, key);
    auto addr = parse_listen_address(text);
    if (!addr) ctx.fail(node, key, "expected IP:PORT (e.g. 127.0.0.1:5000 or [::1]:5000), got '" + text + "'");
    return *addr;
}

std::string get_path(const context& ctx, const YAML::Node& node, std::string_view key) {
    auto text = get_string(ctx, node, key);
    if (text.empty() || text.front() != '/') ctx.fail(node, key, "expected an absolute path");
    return text;
}

void parse_container_registry(const context& ctx, const YAML::Node& node, config& cfg) {
    constexpr std::string_view key = "containerRegistry";
    expect_map(ctx, node, key);
    reject_unknown_keys(ctx, node, key, {"privateBaseImageAllowList"});
    const YAML::Node list = node["privateBaseImageAllowList"];
    if (!list || list.IsNull()) return;
    const std::string list_key = join(key, "privateBaseImageAllowList");
    if (!list.IsSequence()) ctx.fail(list, list_key, "expected a list of registries");
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string item_key = list_key + "[" + std::to_string(i) + "]";
        auto text = get_string(ctx, list[i], item_key);
        auto pattern = parse_registry_pattern(text, /*allow_wildcard=*/true);
        if (!pattern) ctx.fail(list[i], item_key, "'" + text + "': " + pattern.error());
        cfg.allow_list.push_back({text, *pattern});
    }
}

void parse_registries(const context& ctx, const YAML::Node& node, config& cfg) {
    constexpr std::string_view key = "registries";
    if (node.IsNull()) return;
    expect_map(ctx, node, key);
    for (const auto& kv : node) {
        const std::string name_text = kv.first.as<std::string>();
        const std::string entry_key = join(key, name_text);
        auto name = parse_registry_name(name_text);
        if (!name) ctx.fail(kv.first, entry_key, name.error());
        if (cfg.registries.contains(name->key())) ctx.fail(kv.first, entry_key, "registry listed twice");
        registry_transport t;
        if (!kv.second.IsNull()) {
            expect_map(ctx, kv.second, entry_key);
            reject_unknown_keys(ctx, kv.second, entry_key, {"caFile", "clientCert", "clientKey", "insecureHttp"});
            if (auto v = kv.second["caFile"]) t.ca_file = get_path(ctx, v, join(entry_key, "caFile"));
            if (auto v = kv.second["clientCert"]) t.client_cert = get_path(ctx, v, join(entry_key, "clientCert"));
            if (auto v = kv.second["clientKey"]) t.client_key = get_path(ctx, v, join(entry_key, "clientKey"));
            if (auto v = kv.second["insecureHttp"]) t.insecure_http = get_bool(ctx, v, join(entry_key, "insecureHttp"));
            if (t.client_cert.empty() != t.client_key.empty())
                ctx.fail(kv.second, entry_key, "clientCert and clientKey must be given together");
        }
        cfg.registries.emplace(name->key(), std::move(t));
    }
}

void parse_limits(const context& ctx, const YAML::Node& node, struct limits& l) {
    constexpr std::string_view key = "limits";
    expect_map(ctx, node, key);
    reject_unknown_keys(ctx, node, key,
                        {"maxConnections", "maxHeaderBytes", "maxManifestBytes", "relayBufferBytes",
                         "relayBufferTotalBytes", "clientHeaderTimeoutSeconds", "clientIdleTimeoutSeconds",
                         "upstreamConnectTimeoutSeconds", "upstreamStallTimeoutSeconds", "upstreamIdleTimeoutSeconds",
                         "shutdownGraceSeconds", "maxRedirects", "maxUpstreamConnectionsPerOrigin"});
    auto size = [&](const char* name, std::size_t& out, std::uint64_t max) {
        if (auto v = node[name]) out = get_positive(ctx, v, join(key, name), max);
    };
    auto seconds = [&](const char* name, std::chrono::seconds& out) {
        if (auto v = node[name]) out = std::chrono::seconds(get_positive(ctx, v, join(key, name), 86400));
    };
    size("maxConnections", l.max_connections, 1'000'000);
    size("maxHeaderBytes", l.max_header_bytes, 1024 * 1024);
    size("maxManifestBytes", l.max_manifest_bytes, 64 * 1024 * 1024);
    size("relayBufferBytes", l.relay_buffer_bytes, 16 * 1024 * 1024);
    size("relayBufferTotalBytes", l.relay_buffer_total_bytes, 1024 * 1024 * 1024);
    size("maxUpstreamConnectionsPerOrigin", l.max_upstream_connections_per_origin, 100000);
    seconds("clientHeaderTimeoutSeconds", l.client_header_timeout);
    seconds("clientIdleTimeoutSeconds", l.client_idle_timeout);
    seconds("upstreamConnectTimeoutSeconds", l.upstream_connect_timeout);
    seconds("upstreamStallTimeoutSeconds", l.upstream_stall_timeout);
    seconds("upstreamIdleTimeoutSeconds", l.upstream_idle_timeout);
    seconds("shutdownGraceSeconds", l.shutdown_grace);
    if (auto v = node["maxRedirects"])
        l.max_redirects = static_cast<unsigned>(get_positive(ctx, v, join(key, "maxRedirects"), 20));
    if (l.relay_buffer_bytes < 4096)
        ctx.fail(node["relayBufferBytes"], join(key, "relayBufferBytes"), "must be at least 4096");
}

std::uint64_t get_count(const context& ctx, const YAML::Node& node, std::string_view key, std::uint64_t max) {
    if (!node.IsScalar()) ctx.fail(node, key, "expected a whole number");
    const std::string& s = node.Scalar();
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
        ctx.fail(node, key, "expected a whole number");
    std::uint64_t v = std::stoull(s);
    if (v > max) ctx.fail(node, key, "must be between 0 and " + std::to_string(max));
    return v;
}

void parse_credential_helpers(const context& ctx, const YAML::Node& node, credential_helper_settings& out) {
    constexpr std::string_view key = "credentialHelpers";
    expect_map(ctx, node, key);
    reject_unknown_keys(ctx, node, key, {"path", "timeoutSeconds", "cacheSeconds"});
    if (auto v = node["path"]) {
        out.path = get_string(ctx, v, join(key, "path"));
        if (out.path.empty()) ctx.fail(v, join(key, "path"), "expected directories separated by ':'");
        std::size_t start = 0;
        while (start <= out.path.size()) {
            auto colon = out.path.find(':', start);
            auto dir = out.path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
            if (dir.empty() || dir.front() != '/')
                ctx.fail(v, join(key, "path"), "every directory must be an absolute path, got '" + dir + "'");
            if (colon == std::string::npos) break;
            start = colon + 1;
        }
    }
    if (auto v = node["timeoutSeconds"])
        out.timeout = std::chrono::seconds(get_positive(ctx, v, join(key, "timeoutSeconds"), 600));
    if (auto v = node["cacheSeconds"])
        out.cache = std::chrono::seconds(get_count(ctx, v, join(key, "cacheSeconds"), 7 * 86400));
}

void parse_credential_providers(const context& ctx, const YAML::Node& node, credential_provider_settings& out) {
    constexpr std::string_view key = "credentialProviders";
    expect_map(ctx, node, key);
    reject_unknown_keys(ctx, node, key, {"config", "binDir"});
    if (auto v = node["config"]) out.config = get_path(ctx, v, join(key, "config"));
    if (auto v = node["binDir"]) out.bin_dir = get_path(ctx, v, join(key, "binDir"));
    if (out.config.empty() != out.bin_dir.empty()) ctx.fail(node, key, "config and binDir must be given together");
}

}  // namespace

const registry_transport* config::transport_for(const registry_name& r) const {
    auto it = registries.find(r.key());
    return it == registries.end() ? nullptr : &it->second;
}

std::optional<listen_address> parse_listen_address(std::string_view text) {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == text.size()) return std::nullopt;
    std::string_view host = text.substr(0, colon);
    std::string_view port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    else if (host.find(':') != std::string_view::npos)
        return std::nullopt;  // IPv6 needs brackets
    if (!boost::urls::parse_ipv4_address(host) && !boost::urls::parse_ipv6_address(host)) return std::nullopt;
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    unsigned long p = std::stoul(std::string(port));
    if (p > 65535) return std::nullopt;
    return listen_address{std::string(host), static_cast<std::uint16_t>(p), std::string(text)};
}

config parse_config(std::string_view yaml_text, std::string_view source) {
    const context ctx(source);
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml_text));
    } catch (const YAML::ParserException& e) {
        std::ostringstream os;
        os << (source.empty() ? "<config>" : source) << ":" << e.mark.line + 1 << ":" << e.mark.column + 1
           << ": invalid YAML: " << e.msg;
        throw config_error(os.str());
    }
    config cfg;
    cfg.source = std::string(source);
    // An empty file is far more often a failed write than a wish to deny
    // everything; a reload must not turn it into a deny-all.
    if (root.IsNull())
        throw config_error(std::string(source.empty() ? "<config>" : source) +
                           ": the config is empty (write at least `listen:`; an empty allowlist denies everything)");
    expect_map(ctx, root, "<root>");
    reject_unknown_keys(ctx, root, "",
                        {"listen", "adminListen", "containerRegistry", "credentialsFile", "defaultRegistry",
                         "registries", "decisionLog", "limits", "threads", "node", "reload", "credentialHelpers",
                         "credentialProviders", "unlistedRegistries"});
    try {
        if (auto v = root["listen"]) cfg.listen = get_listen(ctx, v, "listen");
        if (auto v = root["adminListen"]; v && !v.IsNull() && !(v.IsScalar() && v.Scalar().empty()))
            cfg.admin_listen = get_listen(ctx, v, "adminListen");
        if (auto v = root["containerRegistry"]; v && !v.IsNull()) parse_container_registry(ctx, v, cfg);
        if (auto v = root["credentialsFile"]; v && !v.IsNull() && !(v.IsScalar() && v.Scalar().empty()))
            cfg.credentials_file = get_path(ctx, v, "credentialsFile");
        if (auto v = root["defaultRegistry"]; v && !v.IsNull()) {
            auto text = get_string(ctx, v, "defaultRegistry");
            if (!text.empty()) {
                auto name = parse_registry_name(text);
                if (!name) ctx.fail(v, "defaultRegistry", "'" + text + "': " + name.error());
                cfg.default_registry = *name;
            }
        }
        if (auto v = root["registries"]) parse_registries(ctx, v, cfg);
        if (auto v = root["decisionLog"]; v && !v.IsNull()) {
            expect_map(ctx, v, "decisionLog");
            reject_unknown_keys(ctx, v, "decisionLog", {"path", "onWriteError"});
            if (auto p = v["path"]) cfg.decision_log_path = get_path(ctx, p, "decisionLog.path");
            if (auto p = v["onWriteError"]) {
                const std::string mode = get_string(ctx, p, "decisionLog.onWriteError");
                if (mode == "serve")
                    cfg.decision_log_on_write_error = log_write_error_policy::serve;
                else if (mode == "deny")
                    cfg.decision_log_on_write_error = log_write_error_policy::deny;
                else
                    ctx.fail(p, "decisionLog.onWriteError", "expected serve or deny, got '" + mode + "'");
            }
        }
        if (auto v = root["limits"]; v && !v.IsNull()) parse_limits(ctx, v, cfg.limits);
        if (auto v = root["threads"]) cfg.threads = static_cast<unsigned>(get_positive(ctx, v, "threads", 256));
        if (auto v = root["node"]; v && !v.IsNull()) {
            expect_map(ctx, v, "node");
            reject_unknown_keys(ctx, v, "node", {"check", "containerdConfig", "certsDir"});
            if (auto c = v["check"]) cfg.node.check = get_bool(ctx, c, "node.check");
            if (auto c = v["containerdConfig"]) cfg.node.containerd_config = get_path(ctx, c, "node.containerdConfig");
            if (auto c = v["certsDir"]) cfg.node.certs_dir = get_path(ctx, c, "node.certsDir");
        }
        if (auto v = root["reload"]; v && !v.IsNull()) {
            expect_map(ctx, v, "reload");
            reject_unknown_keys(ctx, v, "reload", {"watchFiles"});
            if (auto c = v["watchFiles"]) cfg.reload.watch_files = get_bool(ctx, c, "reload.watchFiles");
        }
        if (auto v = root["credentialHelpers"]; v && !v.IsNull())
            parse_credential_helpers(ctx, v, cfg.credential_helpers);
        if (auto v = root["credentialProviders"]; v && !v.IsNull())
            parse_credential_providers(ctx, v, cfg.credential_providers);
        if (auto v = root["unlistedRegistries"]) {
            const std::string text = get_string(ctx, v, "unlistedRegistries");
            if (text == "deny")
                cfg.unlisted_registries = unlisted_policy::deny;
            else if (text == "anonymous")
                cfg.unlisted_registries = unlisted_policy::anonymous;
            else
                ctx.fail(v, "unlistedRegistries", "expected deny or anonymous, got '" + text + "'");
        }
    } catch (const YAML::Exception& e) {
        // yaml-cpp conversions that slipped past the checks above; still say where.
        std::ostringstream os;
        os << (source.empty() ? "<config>" : source) << ":" << e.mark.line + 1 << ":" << e.mark.column + 1 << ": "
           << e.msg;
        throw config_error(os.str());
    }
    return cfg;
}

config load_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw config_error(path + ": cannot read the config file");
    std::ostringstream buf;
    buf << in.rdbuf();
    return parse_config(buf.str(), path);
}

}  // namespace pullgate

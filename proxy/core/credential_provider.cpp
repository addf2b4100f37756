#include "pullgate/credential_provider.hpp"

#include "pullgate/config.hpp"
#include "pullgate/yaml_context.hpp"

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace pullgate {

const std::string_view provider_api_v1 = "credentialprovider.kubelet.k8s.io/v1";

namespace {

constexpr std::array<std::string_view, 3> config_api_versions = {
    "kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"};

// Errors name the file, the line and column, and the key.
class context : public yaml_context {
public:
    explicit context(std::string_view source) : yaml_context(source, "<credential provider config>") {}
};

void check_keys(const context& ctx, const YAML::Node& map, const std::string& parent,
                const std::set<std::string>& known) {
    if (!map.IsMap()) ctx.fail(map, parent.empty() ? "<root>" : parent, "expected a mapping");
    std::set<std::string> seen;
    for (const auto& kv : map) {
        const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
        const std::string where = parent.empty() ? k : parent + "." + k;
        if (!known.contains(k)) ctx.fail(kv.first, where, "unknown or unsupported key");
        if (!seen.insert(k).second) ctx.fail(kv.first, where, "key given twice");
    }
}

std::string scalar(const context& ctx, const YAML::Node& node, const std::string& key) {
    if (!node || !node.IsScalar()) ctx.fail(node ? node : YAML::Node(), key, "expected a string");
    return node.Scalar();
}

std::vector<std::string> string_list(const context& ctx, const YAML::Node& node, const std::string& key) {
    std::vector<std::string> out;
    if (!node || node.IsNull()) return out;
    if (!node.IsSequence()) ctx.fail(node, key, "expected a list of strings");
    for (std::size_t i = 0; i < node.size(); ++i)
        out.push_back(scalar(ctx, node[i], key + "[" + std::to_string(i) + "]"));
    return out;
}

// A plugin name is a file name in binDir, as the kubelet requires.
bool valid_plugin_name(std::string_view name) {
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
           name.find('\0') == std::string_view::npos && name.size() <= 255;
}

credential_provider parse_provider(const context& ctx, const YAML::Node& node, const std::string& key) {
    check_keys(ctx, node, key, {"name", "matchImages", "defaultCacheDuration", "apiVersion", "args", "env"});
    credential_provider p;
    p.name = scalar(ctx, node["name"], key + ".name");
    if (!valid_plugin_name(p.name)) ctx.fail(node["name"], key + ".name", "must be a file name (no '/')");
    const YAML::Node images = node["matchImages"];
    const auto texts = string_list(ctx, images, key + ".matchImages");
    if (texts.empty()) ctx.fail(images ? images : node, key + ".matchImages", "at least one pattern is required");
    for (std::size_t i = 0; i < texts.size(); ++i) {
        auto pattern = parse_match_image(texts[i]);
        if (!pattern)
            ctx.fail(images[i], key + ".matchImages[" + std::to_string(i) + "]",
                     "'" + texts[i] + "': " + pattern.error());
        p.match_images.push_back({texts[i], *pattern});
    }
    const std::string dcd = scalar(ctx, node["defaultCacheDuration"], key + ".defaultCacheDuration");
    auto duration = parse_go_duration(dcd);
    if (!duration) ctx.fail(node["defaultCacheDuration"], key + ".defaultCacheDuration", duration.error());
    p.default_cache_duration = *duration;
    p.api_version = scalar(ctx, node["apiVersion"], key + ".apiVersion");
    if (p.api_version != provider_api_v1)
        ctx.fail(node["apiVersion"], key + ".apiVersion",
                 "'" + p.api_version + "' is not supported (only " + std::string(provider_api_v1) + ")");
    p.args = string_list(ctx, node["args"], key + ".args");
    if (const YAML::Node env = node["env"]; env && !env.IsNull()) {
        if (!env.IsSequence()) ctx.fail(env, key + ".env", "expected a list of {name, value}");
        for (std::size_t i = 0; i < env.size(); ++i) {
            const std::string ek = key + ".env[" + std::to_string(i) + "]";
            check_keys(ctx, env[i], ek, {"name", "value"});
            std::string name = scalar(ctx, env[i]["name"], ek + ".name");
            if (name.empty() || name.find_first_of("=\0", 0, 2) != std::string::npos)
                ctx.fail(env[i]["name"], ek + ".name", "not a usable variable name");
            std::string value = env[i]["value"] ? scalar(ctx, env[i]["value"], ek + ".value") : std::string();
            p.env.emplace_back(std::move(name), std::move(value));
        }
    }
    return p;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

}  // namespace

const credential_provider* provider_config::provider_for(const registry_name& registry,
                                                         std::string_view repository) const {
    for (const auto& p : providers)
        for (const auto& m : p.match_images)
            if (matches(m.pattern, registry, repository, match_rules::kubelet)) return &p;
    return nullptr;
}

provider_config parse_provider_config(std::string_view text, std::string_view source) {
    const context ctx(source);
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text));
    } catch (const YAML::ParserException& e) {
        std::ostringstream os;
        os << ctx.source() << ":" << e.mark.line + 1 << ":" << e.mark.column + 1 << ": invalid YAML/JSON: " << e.msg;
        throw config_error(os.str());
    }
    if (root.IsNull()) throw config_error(ctx.source() + ": the credential provider config is empty");
    provider_config out;
    out.source = std::string(source);
    try {
        check_keys(ctx, root, "", {"apiVersion", "kind", "providers"});
        const std::string api = scalar(ctx, root["apiVersion"], "apiVersion");
        bool known = false;
        for (auto v : config_api_versions) known = known || api == v;
        if (!known) ctx.fail(root["apiVersion"], "apiVersion", "'" + api + "' is not a kubelet.config.k8s.io version");
        if (scalar(ctx, root["kind"], "kind") != "CredentialProviderConfig")
            ctx.fail(root["kind"], "kind", "expected CredentialProviderConfig");
        const YAML::Node providers = root["providers"];
        if (!providers || !providers.IsSequence())
            ctx.fail(providers ? providers : root, "providers", "expected a list");
        std::set<std::string> names;
        for (std::size_t i = 0; i < providers.size(); ++i) {
            const std::string key = "providers[" + std::to_string(i) + "]";
            auto p = parse_provider(ctx, providers[i], key);
            if (!names.insert(p.name).second) ctx.fail(providers[i]["name"], key + ".name", "listed twice");
            out.providers.push_back(std::move(p));
        }
    } catch (const YAML::Exception& e) {
        std::ostringstream os;
        os << ctx.source() << ":" << e.mark.line + 1 << ":" << e.mark.column + 1 << ": " << e.msg;
        throw config_error(os.str());
    }
    return out;
}

provider_config load_provider_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw config_error(path + ": cannot read the credential provider config (credentialProviders.config)");
    std::ostringstream buf;
    buf << in.rdbuf();
    return parse_provider_config(buf.str(), path);
}

boost::system::result<std::chrono::nanoseconds, std::string> parse_go_duration(std::string_view text) {
    const std::string quoted = "'" + std::string(text.substr(0, 64)) + "'";
    std::string_view s = text;
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
        if (s.front() == '-' && s != "-0") return error_text{"duration " + quoted + " is negative"};
        s.remove_prefix(1);
    }
    if (s == "0") return std::chrono::nanoseconds(0);
    if (s.empty()) return error_text{"invalid duration " + quoted};
    struct unit {
        std::string_view name;
        std::uint64_t ns;
    };
    static constexpr std::array<unit, 8> units = {{{"ns", 1},
                                                   {"us", 1000},
                                                   {"\xc2\xb5s", 1000},
                                                   {"\xce\xbcs", 1000},
                                                   {"ms", 1000000},
                                                   {"s", 1000000000},
                                                   {"m", 60ull * 1000000000},
                                                   {"h", 3600ull * 1000000000}}};
    constexpr std::uint64_t max_ns = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t total = 0;
    while (!s.empty()) {
        std::uint64_t whole = 0;
        std::size_t i = 0;
        bool overflow = false;
        while (i < s.size() && is_digit(s[i])) {
            if (whole > (max_ns - 9) / 10) overflow = true;
            whole = whole * 10 + static_cast<std::uint64_t>(s[i] - '0');
            ++i;
        }
        const bool had_whole = i > 0;
        std::uint64_t frac = 0, scale = 1;
        bool had_frac = false;
        if (i < s.size() && s[i] == '.') {
            ++i;
            while (i < s.size() && is_digit(s[i])) {
                had_frac = true;
                if (scale < 1000000000000000000ull) {
                    frac = frac * 10 + static_cast<std::uint64_t>(s[i] - '0');
                    scale *= 10;
                }
                ++i;
            }
        }
        if (!had_whole && !had_frac) return error_text{"invalid duration " + quoted};
        if (overflow) return error_text{"duration " + quoted + " is too large"};
        s.remove_prefix(i);
        std::size_t u = 0;
        while (u < s.size() && !is_digit(s[u]) && s[u] != '.') ++u;
        const std::string_view name = s.substr(0, u);
        if (name.empty()) return error_text{"duration " + quoted + " is missing a unit"};
        const unit* found = nullptr;
        for (const auto& candidate : units)
            if (candidate.name == name) found = &candidate;
        if (!found) return error_text{"duration " + quoted + " has an unknown unit"};
        s.remove_prefix(u);
        if (whole > max_ns / found->ns) return error_text{"duration " + quoted + " is too large"};
        std::uint64_t v = whole * found->ns;
        // The fraction, in long double: at most one nanosecond of rounding, as Go.
        v += static_cast<std::uint64_t>(static_cast<long double>(frac) * found->ns / scale);
        if (v > max_ns || total > max_ns - v) return error_text{"duration " + quoted + " is too large"};
        total += v;
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>(total));
}

std::string provider_cache_key(cache_key_type type, const registry_name& registry, std::string_view repository) {
    switch (type) {
        case cache_key_type::image:
            return registry.key() + "/" + std::string(repository);
        case cache_key_type::registry:
            return registry.key();
        case cache_key_type::global:
            break;
    }
    return {};
}

std::string provider_request(const registry_name& registry, std::string_view repository) {
    const nlohmann::json doc = {{"apiVersion", std::string(provider_api_v1)},
                                {"kind", "CredentialProviderRequest"},
                                {"image", registry.key() + "/" + std::string(repository)}};
    return doc.dump();
}

const provider_auth* provider_response::auth_for(const registry_name& registry, std::string_view repository) const {
    const provider_auth* best = nullptr;
    auto wildcards = [](const provider_auth& a) {
        return std::count_if(a.pattern.host.begin(), a.pattern.host.end(),
                             [](char c) { return c == '*' || c == '?' || c == '['; });
    };
    for (const auto& a : auth) {
        if (!matches(a.pattern, registry, repository, match_rules::kubelet)) continue;
        if (!best || a.pattern.path_prefix.size() > best->pattern.path_prefix.size() ||
            (a.pattern.path_prefix.size() == best->pattern.path_prefix.size() && wildcards(a) < wildcards(*best)))
            best = &a;
    }
    return best;
}

boost::system::result<provider_response, std::string> parse_provider_response(std::string_view stdout_text) {
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(stdout_text);
    } catch (const nlohmann::json::exception&) {
        return error_text{"printed no JSON response"};
    }
    if (!doc.is_object()) return error_text{"printed no JSON object"};
    auto str = [&](const nlohmann::json& obj, const char* name) -> std::optional<std::string> {
        auto it = obj.find(name);
        if (it == obj.end() || it->is_null()) return std::string();
        if (!it->is_string()) return std::nullopt;
        return it->get<std::string>();
    };
    const auto api = str(doc, "apiVersion");
    if (!api || *api != provider_api_v1)
        return error_text{"answered an apiVersion other than " + std::string(provider_api_v1)};
    const auto kind = str(doc, "kind");
    if (!kind || *kind != "CredentialProviderResponse")
        return error_text{"answered a kind other than CredentialProviderResponse"};
    provider_response out;
    const auto key_type = str(doc, "cacheKeyType");
    if (!key_type) return error_text{"answered a cacheKeyType that is not a string"};
    if (*key_type == "Image")
        out.key_type = cache_key_type::image;
    else if (*key_type == "Registry")
        out.key_type = cache_key_type::registry;
    else if (*key_type == "Global")
        out.key_type = cache_key_type::global;
    else
        return error_text{"answered no valid cacheKeyType (Image, Registry or Global)"};
    const auto duration = str(doc, "cacheDuration");
    if (!duration) return error_text{"answered a cacheDuration that is not a string"};
    if (!duration->empty()) {
        auto d = parse_go_duration(*duration);
        if (!d) return error_text{"answered an invalid cacheDuration (not a non-negative Go duration)"};
        out.cache_duration = *d;
    }
    auto auth = doc.find("auth");
    if (auth != doc.end() && !auth->is_null()) {
        if (!auth->is_object()) return error_text{"answered an auth that is not an object"};
        for (const auto& [pattern_text, entry] : auth->items()) {
            auto pattern = parse_match_image(pattern_text);
            if (!pattern) return error_text{"answered an auth key that is not a valid image pattern"};
            if (!entry.is_object()) return error_text{"answered an auth entry that is not an object"};
            const auto user = str(entry, "username");
            const auto pass = str(entry, "password");
            if (!user || !pass) return error_text{"answered an auth entry whose username/password is not a string"};
            out.auth.push_back({pattern_text, *pattern, *user, *pass});
        }
    }
    return out;
}

}  // namespace pullgate

#include "pullgate/credentials.hpp"

#include "pullgate/digest.hpp"

#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace pullgate {
namespace {

// Standard base64 (with or without padding, as docker writes it), via OpenSSL EVP.
// Strict standard base64, as docker decodes `auth`: the alphabet, at most two
// '=' and only at the end, a length a whole encoding can have. OpenSSL's
// decoder alone is lenient and would turn "dTpw=" into a wrong password.
bool is_strict_base64(std::string_view in) {
    std::size_t pad = 0;
    while (pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
    if (pad > 2) return false;
    const std::string_view data = in.substr(0, in.size() - pad);
    for (char c : data)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return false;
    if (pad > 0) return in.size() % 4 == 0;
    return data.size() % 4 != 1;  // unpadded: 4n, 4n+2 or 4n+3 characters
}

std::optional<std::string> decode_base64(std::string_view in) {
    if (!is_strict_base64(in)) return std::nullopt;
    std::string padded(in);
    while (padded.size() % 4 != 0) padded += '=';
    std::string out(padded.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(padded.data()), static_cast<int>(padded.size()));
    if (n < 0) return std::nullopt;
    // EVP_DecodeBlock counts padding as zero bytes; drop them.
    std::size_t pad = 0;
    for (auto it = padded.rbegin(); it != padded.rend() && *it == '='; ++it) ++pad;
    out.resize(static_cast<std::size_t>(n) - std::min<std::size_t>(pad, 2));
    return out;
}

// A key written as https://user:password@host must not put the password
// into an error message.
std::string redact_userinfo(const std::string& key) {
    const auto at = key.find('@');
    if (at == std::string::npos) return key;
    const auto scheme = key.find("://");
    const std::size_t start = scheme == std::string::npos || scheme > at ? 0 : scheme + 3;
    return key.substr(0, start) + "***" + key.substr(at);
}

std::string string_field(const nlohmann::json& entry, const char* name, const std::string& where) {
    auto it = entry.find(name);
    if (it == entry.end() || it->is_null()) return {};
    if (!it->is_string()) throw config_error(where + "." + name + ": expected a string");
    return it->get<std::string>();
}

}  // namespace

credential_store::credential_store(std::vector<credential> entries, std::vector<helper_entry> helpers,
                                   std::vector<secretless_entry> secretless, std::string creds_store)
    : entries_(std::move(entries)),
      helpers_(std::move(helpers)),
      secretless_(std::move(secretless)),
      creds_store_(std::move(creds_store)) {}

const helper_entry* credential_store::helper_for(const registry_name& registry) const {
    for (const auto& h : helpers_)
        if (h.registry == registry) return &h;
    return nullptr;
}

const secretless_entry* credential_store::secretless_for(const registry_name& registry,
                                                         std::string_view repository) const {
    const secretless_entry* best = nullptr;
    for (const auto& e : secretless_) {
        if (!matches(e.pattern, registry, repository)) continue;
        if (!best || e.pattern.path_prefix.size() > best->pattern.path_prefix.size()) best = &e;
    }
    return best;
}

bool is_valid_helper_name(std::string_view name) {
    if (name.empty() || name.size() > 64 || name.front() == '.') return false;
    for (char c : name)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    return true;
}

std::string credential_fingerprint(const credential& c) {
    return sha256_digest(c.username + '\0' + c.password + '\0' + c.identity_token + '\0' + c.registry_token)
        .substr(7, 12);
}

const credential* credential_store::lookup(const registry_name& registry, std::string_view repository) const {
    const credential* best = nullptr;
    for (const auto& c : entries_) {
        if (!matches(c.pattern, registry, repository)) continue;
        if (!best || c.pattern.path_prefix.size() > best->pattern.path_prefix.size()) best = &c;
    }
    return best;
}

std::vector<policy_rule> credential_store::keys() const {
    std::vector<policy_rule> out;
    out.reserve(entries_.size());
    for (const auto& c : entries_) out.push_back({c.key, c.pattern});
    for (const auto& h : helpers_) out.push_back({h.key, registry_pattern{h.registry.host, h.registry.port, {}}});
    return out;
}

credential_store parse_credentials(std::string_view json_text, std::string_view source) {
    const std::string src = source.empty() ? "<credentials>" : std::string(source);
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::parse_error& e) {
        // e.byte says where; the text around it may be a secret, so it is not quoted.
        throw config_error(src + ": invalid JSON at byte " + std::to_string(e.byte));
    } catch (const nlohmann::json::exception&) {
        // e.g. out_of_range for a number overflowing a double (found by fuzzing)
        throw config_error(src + ": invalid JSON (a number out of range)");
    }
    if (!doc.is_object()) throw config_error(src + ": expected a JSON object with \"auths\"");
    std::string creds_store;
    if (auto it = doc.find("credsStore"); it != doc.end() && !it->is_null()) {
        if (!it->is_string()) throw config_error(src + ": credsStore: expected a string");
        creds_store = it->get<std::string>();
        if (!creds_store.empty() && !is_valid_helper_name(creds_store))
            throw config_error(src + ": credsStore: not a usable helper name (letters, digits, '.', '_', '-')");
    }
    std::vector<helper_entry> helpers;
    if (auto it = doc.find("credHelpers"); it != doc.end() && !it->is_null()) {
        if (!it->is_object()) throw config_error(src + ": credHelpers: expected an object");
        for (const auto& [key, value] : it->items()) {
            const std::string where = src + ": credHelpers.\"" + redact_userinfo(key) + "\"";
            auto pattern = parse_registry_pattern(key, /*allow_wildcard=*/false);
            if (!pattern) throw config_error(where + ": " + pattern.error());
            if (!pattern->path_prefix.empty())
                throw config_error(where + ": a credential helper answers for a whole registry: no path");
            const registry_name name{pattern->host, pattern->port};
            if (!value.is_string() || !is_valid_helper_name(value.get<std::string>()))
                throw config_error(where + ": expected a helper name (letters, digits, '.', '_', '-')");
            for (const auto& h : helpers)
                if (h.registry == name) throw config_error(where + ": the registry is listed twice");
            helpers.push_back({key, name, value.get<std::string>()});
        }
    }
    std::vector<credential> entries;
    std::vector<secretless_entry> secretless;
    auto auths = doc.find("auths");
    if (auths == doc.end() || auths->is_null()) {
        credential_store store({}, std::move(helpers), {}, std::move(creds_store));
        store.source = std::string(source);
        return store;
    }
    if (!auths->is_object()) throw config_error(src + ": auths: expected an object");
    for (const auto& [key, entry] : auths->items()) {
        const std::string where = src + ": auths.\"" + redact_userinfo(key) + "\"";
        auto pattern = parse_registry_pattern(key, /*allow_wildcard=*/false);
        if (!pattern) throw config_error(where + ": " + pattern.error());
        if (!entry.is_object()) throw config_error(where + ": expected an object");
        credential c;
        c.key = key;
        c.pattern = *pattern;
        c.username = string_field(entry, "username", where);
        c.password = string_field(entry, "password", where);
        c.identity_token = string_field(entry, "identitytoken", where);
        c.registry_token = string_field(entry, "registrytoken", where);
        if (auto auth = string_field(entry, "auth", where); !auth.empty()) {
            auto decoded = decode_base64(auth);
            if (!decoded) throw config_error(where + ".auth: not valid base64");
            auto colon = decoded->find(':');
            if (colon == std::string::npos) throw config_error(where + ".auth: expected base64 of user:password");
            c.username = decoded->substr(0, colon);
            c.password = decoded->substr(colon + 1);
        }
        if (!c.has_basic() && c.identity_token.empty() && c.registry_token.empty()) {
            if (creds_store.empty())
                throw config_error(where + ": no auth, username/password, identitytoken or registrytoken" +
                                   " (and no credsStore to ask)");
            secretless.push_back({key, *pattern});
            continue;
        }
        c.fingerprint = credential_fingerprint(c);
        entries.push_back(std::move(c));
    }
    credential_store store(std::move(entries), std::move(helpers), std::move(secretless), std::move(creds_store));
    store.source = std::string(source);
    return store;
}

std::optional<std::string> credentials_path(const config& cfg) {
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY")) {
        std::filesystem::path p = std::filesystem::path(dir) / "docker-config.json";
        std::error_code ec;
        if (std::filesystem::exists(p, ec)) return p.string();
    }
    if (!cfg.credentials_file.empty()) return cfg.credentials_file;
    return std::nullopt;
}

credential_store load_credentials(const config& cfg) {
    auto path = credentials_path(cfg);
    if (!path) return {};
    std::ifstream in(*path, std::ios::binary);
    if (!in) throw config_error(*path + ": cannot read the credentials file (credentialsFile)");
    std::ostringstream buf;
    buf << in.rdbuf();
    return parse_credentials(buf.str(), *path);
}

}  // namespace pullgate

#include "pullgate/credential_helper.hpp"

#include <nlohmann/json.hpp>

namespace pullgate {
namespace {

// docker-credential-helpers' credentials.NewErrCredentialsNotFound().Error().
constexpr std::string_view not_found_message = "credentials not found in native keychain";

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

helper_answer failed(std::string why) {
    helper_answer a;
    a.result = helper_answer::outcome::failure;
    a.error = std::move(why);
    return a;
}

}  // namespace

std::string helper_program(std::string_view name) {
    return "docker-credential-" + std::string(name);
}

std::string helper_server_url(const registry_name& registry) {
    if (registry.host == "docker.io" && registry.port == 0) return "https://index.docker.io/v1/";
    return registry.key();
}

helper_answer parse_helper_answer(int exit_code, std::string_view stdout_text) {
    const std::string_view text = trim(stdout_text);
    if (exit_code != 0) {
        if (text == not_found_message) return {helper_answer::outcome::not_found, {}, {}, {}, {}};
        // The output may echo a secret: say only that it failed and how.
        return failed("exited with status " + std::to_string(exit_code));
    }
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception&) {
        return failed("exited with status 0 but printed no JSON object");
    }
    if (!doc.is_object()) return failed("exited with status 0 but printed no JSON object");
    auto field = [&](const char* name, std::string& out) {
        auto it = doc.find(name);
        if (it == doc.end() || it->is_null()) return true;
        if (!it->is_string()) return false;
        out = it->get<std::string>();
        return true;
    };
    helper_answer a;
    std::string server;
    if (!field("Username", a.username) || !field("Secret", a.secret) || !field("ServerURL", server))
        return failed("answered with a field that is not a string");
    if (a.username.empty() && a.secret.empty()) return {helper_answer::outcome::not_found, {}, {}, {}, {}};
    if (a.secret.empty()) return failed("answered a username without a secret");
    a.result = helper_answer::outcome::found;
    if (a.username == "<token>") {
        a.identity_token = std::move(a.secret);
        a.secret.clear();
        a.username.clear();
    }
    return a;
}

}  // namespace pullgate

#include "pullgate/image_ref.hpp"

#include "pullgate/error.hpp"
#include "pullgate/oci_path.hpp"

namespace pullgate {

std::string image_ref::canonical() const {
    std::string s = registry.key() + "/" + repository;
    if (!tag.empty()) s += ":" + tag;
    if (!digest.empty()) s += "@" + digest;
    return s;
}

boost::system::result<image_ref, std::string> parse_image_ref(std::string_view text) {
    if (text.empty()) return error_text{"empty image reference"};
    image_ref out;
    std::string_view rest = text;
    if (auto at = rest.find('@'); at != std::string_view::npos) {
        out.digest = std::string(rest.substr(at + 1));
        if (!is_valid_digest(out.digest)) return error_text{"invalid digest '" + out.digest + "'"};
        rest = rest.substr(0, at);
    }
    // A tag is a ':' after the last '/' (a ':' before it is a registry port).
    const auto last_slash = rest.rfind('/');
    if (auto colon = rest.rfind(':');
        colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
        out.tag = std::string(rest.substr(colon + 1));
        if (!is_valid_tag(out.tag)) return error_text{"invalid tag '" + out.tag + "'"};
        rest = rest.substr(0, colon);
    }
    std::string_view registry_part = "docker.io";
    if (auto slash = rest.find('/'); slash != std::string_view::npos) {
        std::string_view first = rest.substr(0, slash);
        if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
            first == "localhost") {
            registry_part = first;
            rest = rest.substr(slash + 1);
        }
    }
    auto registry = parse_registry_name(registry_part);
    if (!registry) return error_text{"invalid registry '" + std::string(registry_part) + "': " + registry.error()};
    out.registry = *registry;
    out.repository = std::string(rest);
    if (out.registry.host == "docker.io" && out.registry.port == 0 && out.repository.find('/') == std::string::npos)
        out.repository = "library/" + out.repository;
    if (!is_valid_repository(out.repository))
        return error_text{"invalid repository name '" + out.repository + "' (lowercase letters, digits, separators)"};
    if (out.tag.empty() && out.digest.empty()) out.tag = "latest";
    return out;
}

}  // namespace pullgate

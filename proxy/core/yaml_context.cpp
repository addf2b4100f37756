#include "pullgate/yaml_context.hpp"

#include "pullgate/config.hpp"

#include <yaml-cpp/yaml.h>

#include <sstream>

namespace pullgate {

void yaml_context::fail(const YAML::Node& at, std::string_view key, std::string_view what) const {
    std::ostringstream os;
    os << source_;
    const YAML::Mark mark = at.Mark();
    if (mark.line >= 0) os << ":" << mark.line + 1 << ":" << mark.column + 1;
    os << ": " << key << ": " << what;
    throw config_error(os.str());
}

}  // namespace pullgate

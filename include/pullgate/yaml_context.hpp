// Where a YAML parse step is: errors that name the file, the line and column,
// and the key ("<source>:<line>:<col>: <key>: <what>"), thrown as
// config_error. Shared by the config and the kubelet's provider config.
#pragma once

#include <string>
#include <string_view>

namespace YAML {
class Node;
}

namespace pullgate {

class yaml_context {
public:
    // `unnamed` stands for the source when the text came from no file.
    yaml_context(std::string_view source, std::string_view unnamed) : source_(source.empty() ? unnamed : source) {}

    // Throws config_error at `at`'s position.
    [[noreturn]] void fail(const YAML::Node& at, std::string_view key, std::string_view what) const;
    const std::string& source() const { return source_; }

private:
    std::string source_;
};

}  // namespace pullgate

// Tests for include/pullgate/watched_files.hpp: what reload.watchFiles watches.
#include "pullgate/watched_files.hpp"

#include <doctest/doctest.h>

#include <cstdlib>

using namespace pullgate;

TEST_CASE("watched_files: the config file and the credentials file it names") {
    ::unsetenv("CREDENTIALS_DIRECTORY");
    config c = parse_config("listen: 127.0.0.1:5000\n", "/etc/pullgate/config.yaml");
    CHECK(watched_files(c) == std::vector<std::filesystem::path>{"/etc/pullgate/config.yaml"});

    c = parse_config("credentialsFile: /etc/pullgate/config.json\n", "/etc/pullgate/config.yaml");
    CHECK(watched_files(c) ==
          std::vector<std::filesystem::path>{"/etc/pullgate/config.yaml", "/etc/pullgate/config.json"});

    c = parse_config("credentialsFile: /etc/pullgate/config.json\n", "");  // parsed from text: no file
    CHECK(watched_files(c) == std::vector<std::filesystem::path>{"/etc/pullgate/config.json"});
}

TEST_CASE("watched_files: the kubelet credential provider config too") {
    ::unsetenv("CREDENTIALS_DIRECTORY");
    const config c = parse_config(
        "credentialsFile: /etc/pullgate/config.json\ncredentialProviders:\n"
        "  config: /etc/eks/image-credential-provider/config.json\n  binDir: /etc/eks/image-credential-provider\n",
        "/etc/pullgate/config.yaml");
    CHECK(watched_files(c) == std::vector<std::filesystem::path>{"/etc/pullgate/config.yaml",
                                                                 "/etc/pullgate/config.json",
                                                                 "/etc/eks/image-credential-provider/config.json"});
}

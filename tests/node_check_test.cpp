// Tests for include/pullgate/node_check.hpp: every way a node lets containerd
// pull around pullgate (README "Is this node gated?"), from config.toml / hosts.toml texts.
#include "pullgate/node_check.hpp"

#include "pullgate/containerd_hosts.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

using namespace pullgate;
namespace fs = std::filesystem;

namespace {

const std::string mirror = "http://127.0.0.1:5000";
const std::string certs = "/etc/containerd/certs.d";
const std::string safe_hosts = "server = \"http://127.0.0.1:5000\"\ncapabilities = [\"pull\", \"resolve\"]\n\n[host]\n";
const std::string v2_config =
    "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";

std::string errors_of(const std::vector<node_finding>& fs) {
    std::string out;
    for (const auto& f : fs)
        if (f.severity == finding_severity::error) out += f.file + ": " + f.problem + "\n";
    return out;
}

std::size_t count_errors(const std::vector<node_finding>& fs) {
    std::size_t n = 0;
    for (const auto& f : fs) n += f.severity == finding_severity::error;
    return n;
}

node_state gated_state() {
    node_state s;
    s.containerd_config_file = "/etc/containerd/config.toml";
    s.containerd_config = v2_config;
    s.certs_dir = certs;
    s.certs_dir_exists = true;
    s.certs_entries = {{"_default", true, safe_hosts, ""}};
    return s;
}

}  // namespace

TEST_CASE("check_hosts_toml: the no-bypass form passes, and so does what containerd-hosts writes") {
    CHECK(check_hosts_toml(safe_hosts, "h", mirror).empty());
    CHECK(check_hosts_toml(no_bypass_hosts_toml(mirror), "h", mirror).empty());
    // Variants containerd reads the same way.
    const std::vector<std::string> same = {
        "server = \"http://127.0.0.1:5000/\"\ncapabilities = [\"pull\", \"resolve\"]\n[host]\n",
        "server = \"http://127.0.0.1:5000/v2\"\ncapabilities = [\"resolve\", \"pull\"]\n[host]\n",
        "server = \"http://127.0.0.1:5000\"\ncapabilities = [\"PULL\", \"Resolve\", \"push\"]\n[host]\n",
        "server = \"http://127.0.0.1:5000\"\n[host]\n",  // no capabilities: containerd allows all
        "server = 'http://127.0.0.1:5000'\ncapabilities = ['pull', 'resolve']\nhost = {}\n",
    };
    for (const auto& text : same) {
        CAPTURE(text);
        CHECK(errors_of(check_hosts_toml(text, "h", mirror)) == "");
    }
    // pullgate on 0.0.0.0 is reached under any address with its port.
    CHECK(check_hosts_toml(safe_hosts, "h", "http://0.0.0.0:5000").empty());
    CHECK(count_errors(check_hosts_toml(safe_hosts, "h", "http://0.0.0.0:5001")) == 1);
    CHECK(check_hosts_toml(no_bypass_hosts_toml("http://[::1]:5000"), "h", "http://[::1]:5000").empty());
}

TEST_CASE("check_hosts_toml: every hole is one finding naming the file, the problem and the fix") {
    struct hole {
        std::string name;
        std::string text;
        std::string problem_has;  // part of the problem text
        std::string fix_has;
    };
    const std::vector<hole> holes = {
        {"empty file", "", "is empty", "no-bypass form"},
        {"broken TOML", "server = \"http://127.0.0.1:5000\n[host]\n", "does not parse as TOML (line 1",
         "no-bypass form"},
        {"no [host]", "server = \"http://127.0.0.1:5000\"\ncapabilities = [\"pull\", \"resolve\"]\n",
         "has no [host] table", "empty [host]"},
        {"host is an array of tables", "server = \"http://127.0.0.1:5000\"\n[[host]]\n", "host is not a table",
         "empty [host]"},
        {"a mirror entry",
         "server = \"http://127.0.0.1:5000\"\ncapabilities = [\"pull\", \"resolve\"]\n[host]\n"
         "[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
         "[host.\"http://127.0.0.1:5000\"] entry", "remove [host.\"http://127.0.0.1:5000\"]"},
        {"the usual mirror form without server",
         "[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n", "has no server", "add server"},
        {"no server", "capabilities = [\"pull\", \"resolve\"]\n[host]\n", "has no server",
         "add server = \"http://127.0.0.1:5000\""},
        {"server elsewhere", "server = \"https://registry-1.docker.io\"\n[host]\n",
         "server is \"https://registry-1.docker.io\"", "set server"},
        {"server without scheme is https", "server = \"127.0.0.1:5000\"\n[host]\n", "not pullgate", "set server"},
        {"an upper-case scheme is no scheme to containerd", "server = \"HTTP://127.0.0.1:5000\"\n[host]\n",
         "not pullgate", "set server"},
        {"server on another port", "server = \"http://127.0.0.1:5001\"\n[host]\n", "not pullgate", "set server"},
        {"only pull", "server = \"http://127.0.0.1:5000\"\ncapabilities = [\"pull\"]\n[host]\n",
         "capabilities lack resolve", "capabilities = [\"pull\", \"resolve\"]"},
        {"only resolve", "server = \"http://127.0.0.1:5000\"\ncapabilities = [\"resolve\"]\n[host]\n",
         "capabilities lack pull", "capabilities"},
        {"no capability", "server = \"http://127.0.0.1:5000\"\ncapabilities = []\n[host]\n", "lack pull and resolve",
         "capabilities"},
        {"unknown capability", "server = \"http://127.0.0.1:5000\"\ncapabilities = [\"pull\", \"fetch\"]\n[host]\n",
         "unknown capability \"fetch\"", "no-bypass form"},
        {"capabilities as a string", "server = \"http://127.0.0.1:5000\"\ncapabilities = \"pull\"\n[host]\n",
         "capabilities is not a list of strings", "no-bypass form"},
        {"server not a string", "server = 5000\ncapabilities = [\"pull\", \"resolve\"]\n[host]\n",
         "server is not a string", "no-bypass form"},
        {"skip_verify not a bool",
         safe_hosts.substr(0, safe_hosts.find("\n[host]")) + "\nskip_verify = \"yes\"\n[host]\n",
         "skip_verify is not true or false", "no-bypass form"},
        {"a key inside [host]", safe_hosts + "capabilities = [\"pull\"]\n", "[host] has the key \"capabilities\"",
         "keep [host] empty"},
    };
    for (const auto& c : holes) {
        CAPTURE(c.name);
        CAPTURE(c.text);
        const auto fs = check_hosts_toml(c.text, "/certs.d/_default/hosts.toml", mirror);
        REQUIRE(count_errors(fs) >= 1);
        bool found = false;
        for (const auto& f : fs) {
            CHECK(f.file == "/certs.d/_default/hosts.toml");
            CHECK_FALSE(f.problem.empty());
            CHECK_FALSE(f.fix.empty());
            if (f.problem.find(c.problem_has) != std::string::npos && f.fix.find(c.fix_has) != std::string::npos)
                found = true;
        }
        CAPTURE(errors_of(fs));
        CHECK(found);
    }
}

TEST_CASE("check_containerd_config: v1, v2 and v3 layouts") {
    struct config_case {
        std::string name;
        std::optional<std::string> text;
        std::size_t errors;
        std::string problem_has;  // of the first finding ("" = no finding)
    };
    const std::vector<config_case> cases = {
        {"v2 with config_path", v2_config, 0, ""},
        {"v2 inline table",
         "version = 2\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    "
         "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
         "      config_path = \"/etc/containerd/certs.d/\"\n",
         0, ""},
        {"v2 list of roots, certs dir first",
         "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
         "config_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n",
         0, ""},
        {"v2 list of roots, certs dir second",
         "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
         "config_path = \"/etc/docker/certs.d:/etc/containerd/certs.d\"\n",
         1, "CRI pulls use \"/etc/docker/certs.d\""},
        {"v3 (containerd 2.x)",
         "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = "
         "\"/etc/containerd/certs.d\"\n",
         0, ""},
        {"v3 with the v2 key only",
         "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n",
         1, "plugins.\"io.containerd.cri.v1.images\".registry.config_path is not set"},
        {"v2 with the v3 key only",
         "version = 2\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = "
         "\"/etc/containerd/certs.d\"\n",
         1, "plugins.\"io.containerd.grpc.v1.cri\".registry.config_path is not set"},
        {"v1 (no version)", "[plugins.cri.registry]\n  config_path = \"/etc/containerd/certs.d\"\n", 0,
         "has no version"},
        {"v1 without config_path", "[plugins.cri]\n  sandbox_image = \"x\"\n", 1, "has no version"},
        {"Debian 12: no config.toml", std::nullopt, 1, "does not exist, so config_path is not set"},
        {"the config.toml Debian's containerd is often given",
         "version = 2\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    "
         "[plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
         "      bin_dir = \"/usr/lib/cni\"\n",
         1, "config_path is not set"},
        {"config_path empty", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n",
         1, "config_path is not set"},
        {"config_path elsewhere",
         "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/docker/certs.d\"\n", 1,
         "config_path is \"/etc/docker/certs.d\""},
        {"config_path not a string",
         "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = 1\n", 1,
         "config_path is not a string"},
        {"deprecated mirrors",
         v2_config + "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n"
                     "  endpoint = [\"http://127.0.0.1:5000\"]\n",
         1, "deprecated plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors"},
        {"deprecated configs",
         v2_config + "[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.example\".tls]\n"
                     "  insecure_skip_verify = true\n",
         1, "registry.configs"},
        {"deprecated mirrors in v3",
         "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = "
         "\"/etc/containerd/certs.d\"\n"
         "[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://m\"]\n",
         1, "registry.mirrors"},
        {"mirrors only, no config_path",
         "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n"
         "  endpoint = [\"http://127.0.0.1:5000\"]\n",
         2, "registry.mirrors"},
        {"broken TOML", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry\n", 1, "does not parse as TOML"},
        {"unknown version", "version = 4\n", 1, "version = 4"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        node_state s = gated_state();
        s.containerd_config = c.text;
        const auto fs = check_containerd_config(s);
        CAPTURE(errors_of(fs));
        CHECK(count_errors(fs) == c.errors);
        if (c.problem_has.empty()) {
            CHECK(fs.empty());
        } else {
            REQUIRE_FALSE(fs.empty());
            CHECK(fs.front().problem.find(c.problem_has) != std::string::npos);
            for (const auto& f : fs) {
                CHECK(f.file == "/etc/containerd/config.toml");
                CHECK_FALSE(f.fix.empty());
            }
        }
    }
    node_state unreadable = gated_state();
    unreadable.containerd_config = std::nullopt;
    unreadable.containerd_config_error = "Permission denied";
    CHECK(count_errors(check_containerd_config(unreadable)) == 1);
}

TEST_CASE("check_certs_dir: _default and the directories that shadow it") {
    struct dir_case {
        std::string name;
        bool exists;
        std::vector<certs_dir_entry> entries;
        std::size_t errors;
        std::size_t warnings;
        std::string file_has;  // file of the first finding
        std::string problem_has;
    };
    const std::vector<dir_case> cases = {
        {"only _default", true, {{"_default", true, safe_hosts, ""}}, 0, 0, "", ""},
        {"no certs dir", false, {}, 1, 0, "/etc/containerd/certs.d", "does not exist"},
        {"empty certs dir", true, {}, 1, 0, "certs.d/_default", "does not exist"},
        {"_default without hosts.toml",
         true,
         {{"_default", true, std::nullopt, ""}},
         1,
         0,
         "_default/hosts.toml",
         "does not exist"},
        {"_default is a file", true, {{"_default", false, std::nullopt, ""}}, 1, 0, "_default", "not a directory"},
        {"_default unreadable",
         true,
         {{"_default", true, std::nullopt, "Permission denied"}},
         1,
         0,
         "hosts.toml",
         "cannot be read"},
        {"a stray host:port directory with a direct hosts.toml",
         true,
         {{"127.0.0.1:5443", true, "server = \"https://127.0.0.1:5443\"\n[host]\n", ""},
          {"_default", true, safe_hosts, ""}},
         1,
         0,
         "certs.d/127.0.0.1:5443/hosts.toml",
         "shadows _default for 127.0.0.1:5443, and server is"},
        {"host_port_ directory without hosts.toml",
         true,
         {{"_default", true, safe_hosts, ""}, {"registry.example_5443_", true, std::nullopt, ""}},
         1,
         0,
         "certs.d/registry.example_5443_",
         "shadows _default for registry.example:5443 and has no hosts.toml"},
        {"a shadowing directory in the no-bypass form is fine",
         true,
         {{"_default", true, safe_hosts, ""}, {"docker.io", true, safe_hosts, ""}},
         0,
         0,
         "",
         ""},
        {"a shadowing directory with a mirror entry",
         true,
         {{"_default", true, safe_hosts, ""},
          {"docker.io", true, safe_hosts + "[host.\"https://mirror.gcr.io\"]\n", ""}},
         1,
         0,
         "certs.d/docker.io/hosts.toml",
         "shadows _default for docker.io, and has a [host."},
        {"a plain file in the certs dir",
         true,
         {{"_default", true, safe_hosts, ""}, {"docker.io", false, std::nullopt, ""}},
         0,
         1,
         "certs.d/docker.io",
         "is not a directory"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        node_state s = gated_state();
        s.certs_dir_exists = c.exists;
        s.certs_entries = c.entries;
        const auto fs = check_certs_dir(s, mirror);
        CAPTURE(errors_of(fs));
        CHECK(count_errors(fs) == c.errors);
        CHECK(fs.size() - count_errors(fs) == c.warnings);
        if (c.file_has.empty()) {
            CHECK(fs.empty());
        } else {
            REQUIRE_FALSE(fs.empty());
            CHECK(fs.front().file.find(c.file_has) != std::string::npos);
            CHECK(fs.front().problem.find(c.problem_has) != std::string::npos);
        }
    }
}

TEST_CASE("check_node: the verdict is gated only without errors; warnings do not count") {
    node_state s = gated_state();
    auto v = check_node(s, mirror);
    CHECK(v.gated);
    CHECK(v.findings.empty());
    CHECK(summarize(v) == "gated");

    s.containerd_config = "[plugins.cri.registry]\n  config_path = \"/etc/containerd/certs.d\"\n";  // v1: warning
    v = check_node(s, mirror);
    CHECK(v.gated);
    CHECK(v.findings.size() == 1);

    s = gated_state();
    s.certs_entries.push_back({"ghcr.io", true, std::nullopt, ""});
    s.containerd_config = std::nullopt;
    v = check_node(s, mirror);
    CHECK_FALSE(v.gated);
    REQUIRE(v.findings.size() == 2);
    const std::string line = summarize(v);
    CHECK(line.starts_with("NOT gated: /etc/containerd/config.toml: does not exist"));
    CHECK(line.find("/etc/containerd/certs.d/ghcr.io: shadows _default for ghcr.io") != std::string::npos);

    const auto j = nlohmann::json::parse(render_json(v, s, mirror));
    CHECK(j["gated"] == false);
    CHECK(j["mirror"] == mirror);
    CHECK(j["certsDir"] == certs);
    REQUIRE(j["findings"].size() == 2);
    CHECK(j["findings"][1]["file"] == "/etc/containerd/certs.d/ghcr.io");
    CHECK(j["findings"][1]["severity"] == "error");
    CHECK_FALSE(j["findings"][1]["fix"].get<std::string>().empty());

    const std::string text = render_text(v, s, mirror);
    CHECK(text.find("node is NOT gated: 2 problems") != std::string::npos);
    CHECK(text.find("error: /etc/containerd/certs.d/ghcr.io\n  problem: shadows") != std::string::npos);
}

TEST_CASE("check_node_files reads the node; config_path is compared on disk") {
    test::temp_dir tmp;
    const fs::path real = tmp.path() / "certs.d";
    const fs::path link = tmp.path() / "certs-link";
    fs::create_directories(real / "_default");
    fs::create_directory_symlink(real, link);
    test::write_file(real / "_default" / "hosts.toml", safe_hosts);
    const fs::path config = tmp.path() / "config.toml";
    test::write_file(config, "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"" +
                                 link.string() + "\"\n");

    auto v = check_node_files(config.string(), real.string(), mirror);
    CAPTURE(summarize(v));
    CHECK(v.gated);

    fs::create_directories(real / "docker.io");  // shadows _default, no hosts.toml
    test::write_file(real / "README", "not a directory, ignored by name lookups of other registries");
    fs::remove(config);
    v = check_node_files(config.string(), real.string(), mirror);
    CAPTURE(summarize(v));
    CHECK_FALSE(v.gated);
    REQUIRE(v.findings.size() == 3);
    CHECK(v.findings[0].file == config.string());
    CHECK(v.findings[1].file == (real / "README").string());
    CHECK(v.findings[1].severity == finding_severity::warning);
    CHECK(v.findings[2].file == (real / "docker.io").string());
}

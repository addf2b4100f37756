// Tests for include/pullgate/containerd_hosts.hpp: the one hosts.toml shape
// that leaves containerd no way around the mirror (README "Pointing containerd at pullgate").
#include "pullgate/containerd_hosts.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace pullgate;
namespace fs = std::filesystem;

namespace {

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

// The lines TOML reads: not blank, not a whole-line comment.
std::vector<std::string> toml_statements(const std::string& text) {
    std::vector<std::string> out;
    for (const auto& raw : test::split_lines(text)) {
        std::string line = trim(raw);
        if (line.empty() || line.front() == '#') continue;
        out.push_back(line);
    }
    return out;
}

// Decodes `line` as exactly `<key> = "<TOML basic string>"`; nullopt when the
// line is anything else (e.g. an unescaped quote ends the string early).
std::optional<std::string> basic_string_value(const std::string& line, const std::string& key) {
    const std::string head = key + " = \"";
    if (!line.starts_with(head)) return std::nullopt;
    std::string value;
    std::size_t i = head.size();
    for (; i < line.size(); ++i) {
        char c = line[i];
        if (c == '"') break;
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return std::nullopt;
        if (c == '\\') {
            if (++i == line.size()) return std::nullopt;
            switch (line[i]) {
                case '"':
                    value += '"';
                    break;
                case '\\':
                    value += '\\';
                    break;
                case 'n':
                    value += '\n';
                    break;
                case 't':
                    value += '\t';
                    break;
                case 'r':
                    value += '\r';
                    break;
                default:
                    return std::nullopt;  // \u escapes are not needed for these tests
            }
            continue;
        }
        value += c;
    }
    if (i + 1 != line.size()) return std::nullopt;  // the closing quote must end the line
    return value;
}

const std::vector<std::string> mirror_urls = {
    "http://127.0.0.1:5000",
    "http://[::1]:5000",
    "https://pullgate.node.example:8443",
};

}  // namespace

TEST_CASE("no_bypass_hosts_toml: server, capabilities and an empty [host] table, nothing else") {
    for (const auto& url : mirror_urls) {
        CAPTURE(url);
        const std::string toml = no_bypass_hosts_toml(url);
        const auto statements = toml_statements(toml);
        CAPTURE(toml);
        // keys before the first table (TOML puts later keys inside the table)
        const std::vector<std::string> want = {
            "server = \"" + url + "\"",
            "capabilities = [\"pull\", \"resolve\"]",
            "[host]",
        };
        CHECK(statements == want);
        for (const auto& s : statements) {
            CAPTURE(s);
            CHECK_FALSE(s.starts_with("[host."));
            CHECK_FALSE(s.starts_with("[[host"));
            CHECK(s.find("push") == std::string::npos);
        }
        REQUIRE_FALSE(statements.empty());
        CHECK(basic_string_value(statements.front(), "server") == url);
        CHECK(toml.ends_with("\n"));
    }
}

TEST_CASE("no_bypass_hosts_toml: a mirror URL cannot inject TOML") {
    // An unescaped quote ends the string early and containerd 1.6 ignores a file
    // it cannot parse, pulling directly: the value must be escaped or refused.
    const std::vector<std::string> urls = {
        "http://127.0.0.1:5000\"",
        "http://127.0.0.1:5000\"\n[host.\"https://registry-1.docker.io\"]\n",
        "http://127.0.0.1:5000\\",
        "http://a\"b:5000",
    };
    for (const auto& url : urls) {
        CAPTURE(url);
        std::string toml;
        try {
            toml = no_bypass_hosts_toml(url);
        } catch (const std::exception&) {
            continue;  // refusing the URL is fine too
        }
        CAPTURE(toml);
        const auto statements = toml_statements(toml);
        for (const auto& s : statements) CHECK_FALSE(s.starts_with("[host."));
        CHECK(statements.size() == 3);
        if (statements.size() != 3) continue;
        CHECK(basic_string_value(statements[0], "server") == url);
        CHECK(statements[2] == "[host]");
    }
}

TEST_CASE("write_no_bypass_hosts writes _default/hosts.toml and names the directories that shadow it") {
    struct layout_case {
        std::string name;
        std::vector<std::string> dirs;   // existing subdirectories of DIR
        std::vector<std::string> files;  // existing plain files in DIR
        std::vector<std::string> shadowing;
    };
    const std::vector<layout_case> cases = {
        {"empty directory", {}, {}, {}},
        {"only _default", {"_default"}, {}, {}},
        {"other registries",
         {"_default", "docker.io", "ghcr.io", "127.0.0.1_15443_"},
         {"README"},
         {"127.0.0.1_15443_", "docker.io", "ghcr.io"}},
        {"files are not directories", {}, {"docker.io", "hosts.toml"}, {}},
        {"host:port directory", {"registry.example.com:5443"}, {}, {"registry.example.com:5443"}},
    };
    const std::string url = "http://127.0.0.1:5000";
    for (const auto& c : cases) {
        CAPTURE(c.name);
        test::temp_dir tmp;
        const fs::path dir = tmp.path() / "certs.d";
        fs::create_directory(dir);
        for (const auto& d : c.dirs) fs::create_directory(dir / d);
        for (const auto& f : c.files) test::write_file(dir / f, "x");
        if (std::find(c.dirs.begin(), c.dirs.end(), "_default") != c.dirs.end())
            test::write_file(dir / "_default" / "hosts.toml", "server = \"https://registry-1.docker.io\"\n");

        const auto shadowing = write_no_bypass_hosts(dir.string(), url);

        const fs::path target = dir / "_default" / "hosts.toml";
        REQUIRE(fs::is_regular_file(target));
        CHECK(test::read_file(target) == no_bypass_hosts_toml(url));
        CHECK_FALSE(fs::exists(dir / "_default" / ".hosts.toml.tmp"));

        std::vector<std::string> names;
        for (const auto& p : shadowing) {
            CAPTURE(p);
            CHECK(fs::is_directory(p));
            CHECK(fs::equivalent(fs::path(p).parent_path(), dir));
            names.push_back(fs::path(p).filename().string());
        }
        std::sort(names.begin(), names.end());
        CHECK(names == c.shadowing);
    }
}

TEST_CASE("write_no_bypass_hosts creates DIR when it does not exist") {
    test::temp_dir tmp;
    const fs::path dir = tmp.path() / "etc" / "containerd" / "certs.d";
    for (const auto& url : mirror_urls) {
        CAPTURE(url);
        const auto shadowing = write_no_bypass_hosts(dir.string(), url);
        CHECK(shadowing.empty());
        CHECK(test::read_file(dir / "_default" / "hosts.toml") == no_bypass_hosts_toml(url));
    }
}

TEST_CASE("write_no_bypass_hosts: I/O failure throws std::runtime_error naming the path") {
    test::temp_dir tmp;
    const fs::path file = tmp.path() / "not-a-directory";
    test::write_file(file, "x");
    const fs::path blocked = tmp.path() / "blocked";
    fs::create_directory(blocked);
    test::write_file(blocked / "_default", "a file where the directory should be");

    const std::vector<fs::path> dirs = {file, file / "certs.d", blocked};
    for (const auto& d : dirs) {
        CAPTURE(d.string());
        std::string what;
        try {
            write_no_bypass_hosts(d.string(), "http://127.0.0.1:5000");
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CAPTURE(what);
        CHECK(what.find(d.string()) != std::string::npos);
    }
}

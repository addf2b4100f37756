// Tests for include/pullgate/config.hpp: YAML parsed and validated once, with
// errors that name the file, the line and the key (README "Configuration reference").
#include "pullgate/config.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

const std::string source = "/etc/pullgate/config.yaml";

// 1-based line of the first occurrence of `needle` in `text`.
int line_of(const std::string& text, const std::string& needle) {
    auto pos = text.find(needle);
    REQUIRE_MESSAGE(pos != std::string::npos, needle);
    int line = 1;
    for (std::size_t i = 0; i < pos; ++i)
        if (text[i] == '\n') ++line;
    return line;
}

// The message of the config_error parse_config throws, or "" when it does not throw.
std::string error_of(const std::string& yaml, const std::string& src = source) {
    try {
        parse_config(yaml, src);
    } catch (const config_error& e) {
        return e.what();
    }
    return {};
}

registry_name name(const std::string& text) {
    auto r = parse_registry_name(text);
    REQUIRE_MESSAGE(r.has_value(), text);
    return *r;
}

struct error_case {
    std::string name;
    std::string yaml;
    std::string key;          // the key the message must name
    std::string line_needle;  // the text on the line the message must point at
};

// Each case must throw config_error whose message starts with "<source>:<line>:" and names the key.
void run_error_cases(const std::vector<error_case>& cases) {
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const std::string what = error_of(c.yaml);
        CAPTURE(what);
        if (what.empty()) {
            FAIL_CHECK("parse_config accepted the document");
            continue;
        }
        const std::string position = source + ":" + std::to_string(line_of(c.yaml, c.line_needle)) + ":";
        CHECK(what.starts_with(position));
        CHECK(what.find(c.key) != std::string::npos);
        CHECK_THROWS_AS(parse_config(c.yaml, source), config_error);
    }
}

}  // namespace

TEST_CASE("parse_config: the documented example") {
    const std::string yaml = R"(listen: 127.0.0.1:5000
adminListen: 127.0.0.1:5001        # /healthz /readyz /metrics
containerRegistry:
  privateBaseImageAllowList: [registry.example.com, "*.corp.example", ghcr.io/acme]
credentialsFile: /etc/pullgate/config.json   # docker config.json
defaultRegistry: ""                # registry for requests without ns
registries:                        # optional per-registry transport
  registry.example.com:5443: {caFile: /etc/pullgate/ca.pem, clientCert: /etc/pullgate/client.pem, clientKey: /etc/pullgate/client.key, insecureHttp: false}
decisionLog: {path: /var/log/pullgate/decisions.log}
)";
    const config cfg = parse_config(yaml, source);

    CHECK(cfg.source == source);
    CHECK(cfg.listen.host == "127.0.0.1");
    CHECK(cfg.listen.port == 5000);
    CHECK(cfg.listen.text == "127.0.0.1:5000");
    REQUIRE(cfg.admin_listen.has_value());
    CHECK(cfg.admin_listen->host == "127.0.0.1");
    CHECK(cfg.admin_listen->port == 5001);

    struct rule_case {
        std::string text;
        std::string host;
        std::uint16_t port;
        std::string prefix;
    };
    const std::vector<rule_case> want = {
        {"registry.example.com", "registry.example.com", 0, ""},
        {"*.corp.example", "*.corp.example", 0, ""},
        {"ghcr.io/acme", "ghcr.io", 0, "acme"},
    };
    REQUIRE(cfg.allow_list.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        CHECK(cfg.allow_list[i].text == want[i].text);
        CHECK(cfg.allow_list[i].pattern.host == want[i].host);
        CHECK(cfg.allow_list[i].pattern.port == want[i].port);
        CHECK(cfg.allow_list[i].pattern.path_prefix == want[i].prefix);
    }

    CHECK(cfg.credentials_file == "/etc/pullgate/config.json");
    CHECK_FALSE(cfg.default_registry.has_value());

    REQUIRE(cfg.registries.size() == 1);
    const registry_transport* t = cfg.transport_for(name("registry.example.com:5443"));
    REQUIRE(t != nullptr);
    CHECK(t->ca_file == "/etc/pullgate/ca.pem");
    CHECK(t->client_cert == "/etc/pullgate/client.pem");
    CHECK(t->client_key == "/etc/pullgate/client.key");
    CHECK_FALSE(t->insecure_http);
    CHECK(cfg.transport_for(name("registry.example.com")) == nullptr);
    CHECK(cfg.transport_for(name("ghcr.io")) == nullptr);

    CHECK(cfg.decision_log_path == "/var/log/pullgate/decisions.log");

    // the allowlist is the policy: these pulls are decided by the entries above
    CHECK(decide(cfg.allow_list, {}, name("registry.example.com"), "x").allowed);
    CHECK(decide(cfg.allow_list, {}, name("build.corp.example"), "x").allowed);
    CHECK(decide(cfg.allow_list, {}, name("ghcr.io"), "acme/app").allowed);
    CHECK_FALSE(decide(cfg.allow_list, {}, name("ghcr.io"), "other/app").allowed);
    CHECK_FALSE(decide(cfg.allow_list, {}, name("docker.io"), "library/alpine").allowed);
}

TEST_CASE("parse_config: every key set, block style") {
    const std::string yaml = R"(listen: "[::1]:6000"
adminListen: 0.0.0.0:6001
containerRegistry:
  privateBaseImageAllowList:
    - https://index.docker.io/v1/
    - 127.0.0.1:15443
credentialsFile: /run/credentials/pullgate.service/config.json
defaultRegistry: Index.Docker.IO
registries:
  Registry.Example.com:443:
    caFile: /etc/ssl/extra.pem
  127.0.0.1:15443:
    insecureHttp: true
  ghcr.io:
decisionLog:
  path: /srv/log/decisions.log
  onWriteError: deny
limits:
  maxConnections: 10
  maxHeaderBytes: 8192
  maxManifestBytes: 1048576
  relayBufferBytes: 4096
  relayBufferTotalBytes: 1048576
  clientHeaderTimeoutSeconds: 5
  clientIdleTimeoutSeconds: 6
  upstreamConnectTimeoutSeconds: 7
  upstreamStallTimeoutSeconds: 8
  upstreamIdleTimeoutSeconds: 9
  shutdownGraceSeconds: 11
  maxRedirects: 3
  maxUpstreamConnectionsPerOrigin: 12
threads: 4
)";
    const config cfg = parse_config(yaml, source);
    CHECK(cfg.listen.host == "::1");
    CHECK(cfg.listen.port == 6000);
    CHECK(cfg.listen.text == "[::1]:6000");
    REQUIRE(cfg.admin_listen.has_value());
    CHECK(cfg.admin_listen->host == "0.0.0.0");
    CHECK(cfg.admin_listen->port == 6001);

    REQUIRE(cfg.allow_list.size() == 2);
    CHECK(cfg.allow_list[0].text == "https://index.docker.io/v1/");
    CHECK(to_string(cfg.allow_list[0].pattern) == "docker.io");
    CHECK(cfg.allow_list[1].text == "127.0.0.1:15443");
    CHECK(to_string(cfg.allow_list[1].pattern) == "127.0.0.1:15443");

    CHECK(cfg.credentials_file == "/run/credentials/pullgate.service/config.json");
    REQUIRE(cfg.default_registry.has_value());
    CHECK(cfg.default_registry->key() == "docker.io");

    CHECK(cfg.registries.size() == 3);
    const registry_transport* example = cfg.transport_for(name("registry.example.com"));
    REQUIRE(example != nullptr);
    CHECK(example->ca_file == "/etc/ssl/extra.pem");
    CHECK_FALSE(example->insecure_http);
    const registry_transport* local = cfg.transport_for(name("127.0.0.1:15443"));
    REQUIRE(local != nullptr);
    CHECK(local->insecure_http);
    CHECK(local->ca_file.empty());
    const registry_transport* ghcr = cfg.transport_for(name("ghcr.io"));
    REQUIRE(ghcr != nullptr);
    CHECK_FALSE(ghcr->insecure_http);

    CHECK(cfg.decision_log_path == "/srv/log/decisions.log");
    CHECK(cfg.decision_log_on_write_error == log_write_error_policy::deny);
    CHECK(cfg.limits.max_upstream_connections_per_origin == 12);
    CHECK(cfg.limits.max_connections == 10);
    CHECK(cfg.limits.max_header_bytes == 8192);
    CHECK(cfg.limits.max_manifest_bytes == 1048576);
    CHECK(cfg.limits.relay_buffer_bytes == 4096);
    CHECK(cfg.limits.relay_buffer_total_bytes == 1048576);
    CHECK(cfg.limits.client_header_timeout == std::chrono::seconds(5));
    CHECK(cfg.limits.client_idle_timeout == std::chrono::seconds(6));
    CHECK(cfg.limits.upstream_connect_timeout == std::chrono::seconds(7));
    CHECK(cfg.limits.upstream_stall_timeout == std::chrono::seconds(8));
    CHECK(cfg.limits.upstream_idle_timeout == std::chrono::seconds(9));
    CHECK(cfg.limits.shutdown_grace == std::chrono::seconds(11));
    CHECK(cfg.limits.max_redirects == 3);
    CHECK(cfg.threads == 4);
}

TEST_CASE("parse_config: absent keys keep their defaults") {
    const config defaults;
    const std::vector<std::string> documents = {
        "listen: 127.0.0.1:5000\n",
        "adminListen: \"\"\ncredentialsFile: \"\"\ndefaultRegistry: \"\"\n",
        "containerRegistry:\nregistries:\ndecisionLog:\nlimits:\n",
        "containerRegistry: {privateBaseImageAllowList: }\nlimits: {}\ndecisionLog: {}\n",
    };
    for (const auto& yaml : documents) {
        CAPTURE(yaml);
        const config cfg = parse_config(yaml, source);
        CHECK(cfg.listen.host == "127.0.0.1");
        CHECK(cfg.listen.port == 5000);
        CHECK_FALSE(cfg.admin_listen.has_value());
        CHECK(cfg.allow_list.empty());
        CHECK(cfg.credentials_file.empty());
        CHECK_FALSE(cfg.default_registry.has_value());
        CHECK(cfg.registries.empty());
        CHECK(cfg.decision_log_path == "/var/log/pullgate/decisions.log");
        CHECK(cfg.threads == defaults.threads);
        CHECK(cfg.limits.max_connections == defaults.limits.max_connections);
        CHECK(cfg.limits.max_header_bytes == defaults.limits.max_header_bytes);
        CHECK(cfg.limits.max_manifest_bytes == defaults.limits.max_manifest_bytes);
        CHECK(cfg.limits.relay_buffer_bytes == defaults.limits.relay_buffer_bytes);
        CHECK(cfg.limits.relay_buffer_total_bytes == defaults.limits.relay_buffer_total_bytes);
        CHECK(cfg.limits.client_header_timeout == defaults.limits.client_header_timeout);
        CHECK(cfg.limits.client_idle_timeout == defaults.limits.client_idle_timeout);
        CHECK(cfg.limits.upstream_connect_timeout == defaults.limits.upstream_connect_timeout);
        CHECK(cfg.limits.upstream_stall_timeout == defaults.limits.upstream_stall_timeout);
        CHECK(cfg.limits.upstream_idle_timeout == defaults.limits.upstream_idle_timeout);
        CHECK(cfg.limits.shutdown_grace == defaults.limits.shutdown_grace);
        CHECK(cfg.limits.max_redirects == defaults.limits.max_redirects);
    }
}

TEST_CASE("parse_config: an empty document is refused (a truncated file must not reload as deny-all)") {
    const std::vector<std::string> documents = {"", "\n", "# nothing configured yet\n", "---\n", "~\n"};
    for (const auto& yaml : documents) {
        CAPTURE(yaml);
        const std::string what = error_of(yaml);
        CHECK(what.starts_with(source + ":"));
        CHECK(what.find("empty") != std::string::npos);
        CHECK_THROWS_AS(parse_config(yaml, source), config_error);
    }
}

TEST_CASE("parse_config: a config with only a listen address denies everything") {
    const config cfg = parse_config("listen: 127.0.0.1:5000\n", source);
    CHECK(cfg.allow_list.empty());
    CHECK(cfg.credentials_file.empty());
    CHECK_FALSE(cfg.default_registry.has_value());
    for (const auto& r : {"docker.io", "ghcr.io", "127.0.0.1:15443", "quay.io"}) {
        CAPTURE(r);
        auto d = decide(cfg.allow_list, {}, name(r), "library/alpine");
        CHECK_FALSE(d.allowed);
        CHECK(d.reason == reason_code::not_allowlisted);
    }
}

TEST_CASE("parse_config: errors name the source, the line and the key") {
    const std::vector<error_case> cases = {
        {"unknown top-level key (typo)",
         "listen: 127.0.0.1:5000\ncontainerRegistery:\n  privateBaseImageAllowList: [ghcr.io]\n", "containerRegistery",
         "containerRegistery"},
        {"unknown nested key", "listen: 127.0.0.1:5000\ncontainerRegistry:\n  privateBaseImageAllowlist: [ghcr.io]\n",
         "containerRegistry.privateBaseImageAllowlist", "privateBaseImageAllowlist"},
        {"unknown registries key", "registries:\n  registry.example.com:5443:\n    caFIle: /etc/ca.pem\n",
         "registries.registry.example.com:5443.caFIle", "caFIle"},
        {"unknown decisionLog key", "decisionLog:\n  pth: /var/log/x.log\n", "decisionLog.pth", "pth"},
        {"unknown limits key", "limits:\n  maxConnections: 5\n  maxConections: 5\n", "limits.maxConections",
         "maxConections"},
        {"list given as a string", "containerRegistry:\n  privateBaseImageAllowList: ghcr.io\n",
         "containerRegistry.privateBaseImageAllowList", "privateBaseImageAllowList"},
        {"list given as a mapping", "containerRegistry:\n  privateBaseImageAllowList:\n    ghcr.io: true\n",
         "containerRegistry.privateBaseImageAllowList", "ghcr.io: true"},
        {"insecureHttp: maybe", "registries:\n  registry.example.com:5443:\n    insecureHttp: maybe\n",
         "registries.registry.example.com:5443.insecureHttp", "maybe"},
        {"invalid allowlist entry [1], block list",
         "listen: 127.0.0.1:5000\ncontainerRegistry:\n  privateBaseImageAllowList:\n    - ghcr.io\n"
         "    - \"bad host!\"\n    - quay.io\n",
         "containerRegistry.privateBaseImageAllowList[1]", "bad host!"},
        {"invalid allowlist entry [1], flow list over lines",
         "containerRegistry:\n  privateBaseImageAllowList: [\n    ghcr.io,\n    ghcr.io/Acme\n  ]\n",
         "containerRegistry.privateBaseImageAllowList[1]", "ghcr.io/Acme"},
        {"wildcard on an IP", "containerRegistry:\n  privateBaseImageAllowList: [\"*.1.2.3.4\"]\n",
         "containerRegistry.privateBaseImageAllowList[0]", "*.1.2.3.4"},
        {"allowlist entry that is not a string",
         "containerRegistry:\n  privateBaseImageAllowList:\n    - {host: ghcr.io}\n",
         "containerRegistry.privateBaseImageAllowList[0]", "{host"},
        {"listen with a host name", "threads: 2\nlisten: localhost:5000\n", "listen", "localhost"},
        {"listen with a port out of range", "listen: 1.2.3.4:99999\n", "listen", "99999"},
        {"listen without a port", "listen: 1.2.3.4\n", "listen", "1.2.3.4"},
        {"listen as a list", "listen: [127.0.0.1:5000]\n", "listen", "listen"},
        {"adminListen with a host name", "listen: 127.0.0.1:5000\nadminListen: localhost:5001\n", "adminListen",
         "localhost"},
        {"relative credentialsFile", "credentialsFile: etc/pullgate/config.json\n", "credentialsFile", "etc/pullgate"},
        {"relative caFile", "registries:\n  ghcr.io:\n    caFile: ca.pem\n", "registries.ghcr.io.caFile", "ca.pem"},
        {"relative decisionLog.path", "decisionLog:\n  path: decisions.log\n", "decisionLog.path", "decisions.log"},
        {"decisionLog as a string", "decisionLog: /var/log/x.log\n", "decisionLog", "decisionLog"},
        {"decisionLog.onWriteError not serve or deny", "decisionLog:\n  onWriteError: drop\n",
         "decisionLog.onWriteError", "drop"},
        {"maxUpstreamConnectionsPerOrigin zero", "limits:\n  maxUpstreamConnectionsPerOrigin: 0\n",
         "limits.maxUpstreamConnectionsPerOrigin", "maxUpstreamConnectionsPerOrigin: 0"},
        {"clientCert without clientKey",
         "registries:\n  registry.example.com:5443:\n    clientCert: /etc/pullgate/client.pem\n",
         "registries.registry.example.com:5443", "clientCert"},
        {"clientKey without clientCert",
         "registries:\n  registry.example.com:5443:\n    clientKey: /etc/pullgate/client.key\n",
         "registries.registry.example.com:5443", "clientKey"},
        {"registry listed twice", "registries:\n  ghcr.io: {}\n  GHCR.io:443: {}\n", "GHCR.io:443", "GHCR.io:443"},
        {"invalid registry name", "registries:\n  u@registry.example.com: {}\n", "registries.u@registry.example.com",
         "u@registry"},
        {"invalid defaultRegistry", "defaultRegistry: ghcr.io/acme\n", "defaultRegistry", "ghcr.io/acme"},
        {"limits: zero connections", "limits:\n  maxConnections: 0\n", "limits.maxConnections", "maxConnections"},
        {"limits: negative", "limits:\n  maxHeaderBytes: -5\n", "limits.maxHeaderBytes", "maxHeaderBytes"},
        {"limits: too many redirects", "limits:\n  maxRedirects: 21\n", "limits.maxRedirects", "maxRedirects"},
        {"limits: timeout over a day", "limits:\n  clientIdleTimeoutSeconds: 86401\n",
         "limits.clientIdleTimeoutSeconds", "86401"},
        {"limits: relay buffer too small", "limits:\n  relayBufferBytes: 1024\n", "limits.relayBufferBytes",
         "relayBufferBytes"},
        {"limits: relay buffer total zero", "limits:\n  relayBufferTotalBytes: 0\n", "limits.relayBufferTotalBytes",
         "relayBufferTotalBytes"},
        {"limits: not a number", "limits:\n  maxManifestBytes: 4MiB\n", "limits.maxManifestBytes", "4MiB"},
        {"limits as a list", "limits: [1, 2]\n", "limits", "limits"},
        {"threads out of range", "listen: 127.0.0.1:5000\nthreads: 257\n", "threads", "257"},
        {"threads not a number", "threads: two\n", "threads", "two"},
    };
    run_error_cases(cases);
}

TEST_CASE("parse_config: a key given twice is an error, not silently one of the two") {
    // YAML requires unique mapping keys; yaml-cpp keeps both and node[key] returns the
    // first, so a second containerRegistry block would be ignored without a word.
    const std::vector<error_case> cases = {
        {"duplicate top-level key", "listen: 127.0.0.1:5000\nthreads: 2\nlisten: 127.0.0.1:6000\n", "listen",
         "listen: 127.0.0.1:6000"},
        {"duplicate section",
         "containerRegistry:\n  privateBaseImageAllowList: [ghcr.io]\ncontainerRegistry:\n"
         "  privateBaseImageAllowList: [quay.io]\n",
         "containerRegistry", "containerRegistry:\n  privateBaseImageAllowList: [quay.io]"},
        {"duplicate nested key",
         "containerRegistry:\n  privateBaseImageAllowList: [ghcr.io]\n  privateBaseImageAllowList: [quay.io]\n",
         "privateBaseImageAllowList", "privateBaseImageAllowList: [quay.io]"},
        {"duplicate limits key", "limits:\n  maxConnections: 10\n  maxConnections: 20\n", "limits.maxConnections",
         "maxConnections: 20"},
    };
    run_error_cases(cases);
}

TEST_CASE("parse_config: the document must be a mapping") {
    const std::vector<std::string> documents = {"- listen\n- 127.0.0.1:5000\n", "just a string\n", "42\n"};
    for (const auto& yaml : documents) {
        CAPTURE(yaml);
        const std::string what = error_of(yaml);
        CAPTURE(what);
        REQUIRE_FALSE(what.empty());
        CHECK(what.starts_with(source + ":1:"));
    }
}

TEST_CASE("parse_config: invalid YAML syntax reports a line") {
    struct syntax_case {
        std::string yaml;
        int line;  // 0: wherever the parser gave up, as long as it is a line of the document
    };
    const std::string unclosed =
        "listen: 127.0.0.1:5000\ncontainerRegistry:\n  privateBaseImageAllowList: [\"ghcr.io]\n";
    const std::vector<syntax_case> cases = {
        {"listen: 127.0.0.1:5000\nthreads: 2\nadminListen: a: b\n", 3},
        {"listen: 127.0.0.1:5000\n  threads: 2\n", 2},
        {"listen: 127.0.0.1:5000\ncontainerRegistry:\n  privateBaseImageAllowList: [ghcr.io\nthreads: 2\n", 0},
        {unclosed, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.yaml);
        const std::string what = error_of(c.yaml);
        CAPTURE(what);
        REQUIRE(what.starts_with(source + ":"));
        CHECK(what.find("YAML") != std::string::npos);
        // "<source>:<line>:<column>: ..."
        const std::string rest = what.substr(source.size() + 1);
        const auto colon = rest.find(':');
        REQUIRE(colon != std::string::npos);
        const std::string line_text = rest.substr(0, colon);
        REQUIRE(!line_text.empty());
        REQUIRE(line_text.find_first_not_of("0123456789") == std::string::npos);
        const int line = std::stoi(line_text);
        if (c.line != 0) {
            CHECK(line == c.line);
        } else {
            const int lines = static_cast<int>(std::count(c.yaml.begin(), c.yaml.end(), '\n'));
            CHECK(line >= 1);
            CHECK(line <= lines + 1);
        }
    }
}

TEST_CASE("parse_config: the source name is the one given") {
    const std::vector<std::string> sources = {"/etc/pullgate/config.yaml", "/tmp/other.yaml", "reload.yaml"};
    for (const auto& src : sources) {
        CAPTURE(src);
        CHECK(error_of("bogus: 1\n", src).starts_with(src + ":1:"));
        CHECK(error_of("listen: [\n", src).starts_with(src + ":"));
        CHECK(parse_config("threads: 1\n", src).source == src);
    }
}

TEST_CASE("parse_listen_address") {
    struct listen_case {
        std::string text;
        bool valid;
        std::string host;
        std::uint16_t port;
    };
    const std::vector<listen_case> cases = {
        {"127.0.0.1:5000", true, "127.0.0.1", 5000},
        {"0.0.0.0:1", true, "0.0.0.0", 1},
        {"10.0.0.1:65535", true, "10.0.0.1", 65535},
        {"[::1]:5000", true, "::1", 5000},
        {"[::]:5001", true, "::", 5001},
        {"[fe80::1]:80", true, "fe80::1", 80},
        {"localhost:5000", false, "", 0},
        {"pullgate.example:5000", false, "", 0},
        {"1.2.3.4:99999", false, "", 0},
        {"1.2.3.4:65536", false, "", 0},
        {"1.2.3.4", false, "", 0},
        {"1.2.3.4:", false, "", 0},
        {"1.2.3.4:abc", false, "", 0},
        {"1.2.3.4:-1", false, "", 0},
        {"1.2.3.4:+80", false, "", 0},
        {"1.2.3.4: 80", false, "", 0},
        {"1.2.3:5000", false, "", 0},
        {"127.1:5000", false, "", 0},
        {":5000", false, "", 0},
        {"::1:5000", false, "", 0},
        {"[::1]5000", false, "", 0},
        {"[::1]", false, "", 0},
        {"[localhost]:5000", false, "", 0},
        {"", false, "", 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        auto a = parse_listen_address(c.text);
        REQUIRE(a.has_value() == c.valid);
        if (!a) continue;
        CHECK(a->host == c.host);
        CHECK(a->port == c.port);
        CHECK(a->text == c.text);
    }
}

TEST_CASE("parse_config: node.* and reload.watchFiles") {
    const config defaults = parse_config("listen: 127.0.0.1:5000\n", source);
    CHECK(defaults.node.check);
    CHECK(defaults.node.containerd_config == "/etc/containerd/config.toml");
    CHECK(defaults.node.certs_dir == "/etc/containerd/certs.d");
    CHECK(defaults.reload.watch_files);

    const config c = parse_config(
        "node:\n  check: false\n  containerdConfig: /srv/containerd.toml\n  certsDir: /srv/certs.d\n"
        "reload:\n  watchFiles: false\n",
        source);
    CHECK_FALSE(c.node.check);
    CHECK(c.node.containerd_config == "/srv/containerd.toml");
    CHECK(c.node.certs_dir == "/srv/certs.d");
    CHECK_FALSE(c.reload.watch_files);

    CHECK(error_of("node:\n  check: sometimes\n").find(":2:10: node.check: expected true or false") !=
          std::string::npos);
    CHECK(error_of("node:\n  certsDir: certs.d\n").find("node.certsDir: expected an absolute path") !=
          std::string::npos);
    CHECK(error_of("node:\n  certDir: /x\n").find("node.certDir: unknown key") != std::string::npos);
    CHECK(error_of("reload:\n  watchfiles: true\n").find("reload.watchfiles: unknown key") != std::string::npos);
}

TEST_CASE("parse_config: credentialHelpers, credentialProviders, unlistedRegistries") {
    const config defaults = parse_config("listen: 127.0.0.1:5000\n", source);
    CHECK(defaults.credential_helpers.path == "/usr/local/bin:/usr/bin:/bin");
    CHECK(defaults.credential_helpers.timeout == std::chrono::seconds(10));
    CHECK(defaults.credential_helpers.cache == std::chrono::seconds(300));
    CHECK(defaults.credential_providers.config.empty());
    CHECK(defaults.credential_providers.bin_dir.empty());
    CHECK(defaults.unlisted_registries == unlisted_policy::deny);

    const config cfg =
        parse_config(R"(credentialHelpers: {path: "/opt/bin:/usr/bin", timeoutSeconds: 3, cacheSeconds: 0}
credentialProviders:
  config: /etc/eks/image-credential-provider/config.json
  binDir: /etc/eks/image-credential-provider
unlistedRegistries: anonymous
)",
                     source);
    CHECK(cfg.credential_helpers.path == "/opt/bin:/usr/bin");
    CHECK(cfg.credential_helpers.timeout == std::chrono::seconds(3));
    CHECK(cfg.credential_helpers.cache == std::chrono::seconds(0));
    CHECK(cfg.credential_providers.config == "/etc/eks/image-credential-provider/config.json");
    CHECK(cfg.credential_providers.bin_dir == "/etc/eks/image-credential-provider");
    CHECK(cfg.unlisted_registries == unlisted_policy::anonymous);
    CHECK(parse_config("unlistedRegistries: deny\n", source).unlisted_registries == unlisted_policy::deny);
}

TEST_CASE("parse_config: the credential source keys are validated with file:line:col and the key") {
    struct row {
        std::string yaml, expect;
    };
    const std::vector<row> rows = {
        {"credentialHelpers: {path: relative/bin}\n", ":1:27: credentialHelpers.path: every directory"},
        {"credentialHelpers: {path: \"/usr/bin::/bin\"}\n", "credentialHelpers.path: every directory"},
        {"credentialHelpers: {timeoutSeconds: 0}\n", "credentialHelpers.timeoutSeconds: must be between 1 and 600"},
        {"credentialHelpers: {cacheSeconds: -1}\n", "credentialHelpers.cacheSeconds: expected a whole number"},
        {"credentialHelpers: {cache: 5}\n", "credentialHelpers.cache: unknown key"},
        {"credentialProviders: {config: /etc/x.yaml}\n", "credentialProviders: config and binDir must be given"},
        {"credentialProviders: {config: x.yaml, binDir: /x}\n", "credentialProviders.config: expected an absolute"},
        {"credentialProviders: [a]\n", "credentialProviders: expected a mapping"},
        {"unlistedRegistries: allow\n", ":1:21: unlistedRegistries: expected deny or anonymous, got 'allow'"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.yaml);
        const auto e = error_of(r.yaml);
        CHECK_MESSAGE(e.find(r.expect) != std::string::npos, e);
        CHECK(e.starts_with(source));
    }
}

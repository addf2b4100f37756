// Tests for include/pullgate/credentials.hpp: docker config.json credentials,
// their keys, longest-prefix lookup and where the file is read from (README "Credentials").
#include "pullgate/credentials.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

const std::string source = "/etc/pullgate/config.json";

registry_name registry(const std::string& text) {
    auto r = parse_registry_name(text);
    REQUIRE_MESSAGE(r.has_value(), text);
    return *r;
}

// {"auths":{"<key>":<entry>}}
std::string one_entry(const std::string& key, const std::string& entry_json) {
    return R"({"auths":{")" + key + R"(":)" + entry_json + "}}";
}

// The message of the config_error parse_credentials throws, or "" when it does not throw.
std::string error_of(const std::string& json) {
    try {
        parse_credentials(json, source);
    } catch (const config_error& e) {
        return e.what();
    }
    return {};
}

// The only entry of a one-entry document.
credential only(const std::string& json) {
    auto store = parse_credentials(json, source);
    REQUIRE(store.entries().size() == 1);
    return store.entries().front();
}

// Sets or unsets an environment variable for one scope and puts back what was there.
class env_guard {
public:
    env_guard(const char* name, const std::optional<std::string>& value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            ::setenv(name, value->c_str(), 1);
        else
            ::unsetenv(name);
    }
    ~env_guard() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }
    env_guard(const env_guard&) = delete;
    env_guard& operator=(const env_guard&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

credential make_credential(const std::string& key, const std::string& username) {
    auto p = parse_registry_pattern(key, false);
    REQUIRE_MESSAGE(p.has_value(), key);
    credential c;
    c.key = key;
    c.pattern = *p;
    c.username = username;
    c.password = "pw";
    return c;
}

}  // namespace

TEST_CASE("parse_credentials: the kinds of secret") {
    struct case_t {
        std::string name;
        std::string entry;
        std::string username;
        std::string password;
        std::string identity_token;
        std::string registry_token;
    };
    const std::vector<case_t> cases = {
        {"auth, no padding needed", R"({"auth":"dXNlcjpwYXNz"})", "user", "pass", "", ""},  // user:pass
        {"auth with '==' padding", R"({"auth":"dXNlcjpwYQ=="})", "user", "pa", "", ""},     // user:pa
        {"auth with '==' padding left off", R"({"auth":"dXNlcjpwYQ"})", "user", "pa", "", ""},
        {"auth with '=' padding", R"({"auth":"dTpwYXM="})", "u", "pas", "", ""},  // u:pas
        {"auth with '=' padding left off", R"({"auth":"dTpwYXM"})", "u", "pas", "", ""},
        {"auth, shortest", R"({"auth":"dTpw"})", "u", "p", "", ""},  // u:p
        {"auth, password with ':'", R"({"auth":"dXNlcjpwYTpzczp3b3Jk"})", "user", "pa:ss:word", "", ""},
        {"auth, robot account", R"({"auth":"cm9ib3QkYWNtZStjaTp0b2s6ZW49PQ=="})", "robot$acme+ci", "tok:en==", "", ""},
        {"auth, empty password", R"({"auth":"dXNlcjo="})", "user", "", "", ""},                     // user:
        {"auth, empty username", R"({"auth":"OnB3"})", "", "pw", "", ""},                           // :pw
        {"auth, UTF-8 password", R"({"auth":"dXNlcjpww6Rzcw=="})", "user", "p\xc3\xa4ss", "", ""},  // user:päss
        {"username and password", R"({"username":"alice","password":"s3cr:et"})", "alice", "s3cr:et", "", ""},
        {"username only", R"({"username":"alice"})", "alice", "", "", ""},
        {"auth wins over username/password", R"({"username":"alice","password":"other","auth":"dXNlcjpwYXNz"})", "user",
         "pass", "", ""},
        {"empty auth falls back to username/password", R"({"auth":"","username":"alice","password":"pw"})", "alice",
         "pw", "", ""},
        {"identitytoken", R"({"identitytoken":"refresh-123"})", "", "", "refresh-123", ""},
        {"identitytoken as docker login writes it", R"({"auth":"PHRva2VuPjo=","identitytoken":"refresh-123"})",
         "<token>", "", "refresh-123", ""},  // <token>:
        {"registrytoken", R"({"registrytoken":"bearer-456"})", "", "", "", "bearer-456"},
        {"null and unknown fields are ignored",
         R"({"auth":"dTpw","email":"a@b.c","password":null,"serveraddress":"x"})", "u", "p", "", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const auto cred = only(one_entry("ghcr.io", c.entry));
        CHECK(cred.key == "ghcr.io");
        CHECK(cred.username == c.username);
        CHECK(cred.password == c.password);
        CHECK(cred.identity_token == c.identity_token);
        CHECK(cred.registry_token == c.registry_token);
        CHECK(cred.has_basic() == (!c.username.empty() || !c.password.empty()));
        CHECK(cred.fingerprint.size() == 12);
    }
}

TEST_CASE("parse_credentials: keys as docker, skopeo and kubectl write them") {
    struct case_t {
        std::string key;
        std::string host;
        std::uint16_t port;
        std::string path_prefix;
    };
    const std::vector<case_t> cases = {
        {"ghcr.io", "ghcr.io", 0, ""},
        {"GHCR.io", "ghcr.io", 0, ""},
        {"registry.example.com:5443", "registry.example.com", 5443, ""},
        {"127.0.0.1:15443", "127.0.0.1", 15443, ""},
        {"https://quay.io/v1/", "quay.io", 0, ""},
        {"https://registry.example.com:5443/v1/", "registry.example.com", 5443, ""},
        {"https://index.docker.io/v1/", "docker.io", 0, ""},
        {"index.docker.io", "docker.io", 0, ""},
        {"registry-1.docker.io", "docker.io", 0, ""},
        {"ghcr.io/acme", "ghcr.io", 0, "acme"},
        {"ghcr.io/acme/team", "ghcr.io", 0, "acme/team"},
        {"docker.io/library", "docker.io", 0, "library"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.key);
        const auto cred = only(one_entry(c.key, R"({"auth":"dTpw"})"));
        CHECK(cred.key == c.key);  // as written, for logs and the policy rule
        CHECK(cred.pattern.host == c.host);
        CHECK(cred.pattern.port == c.port);
        CHECK(cred.pattern.path_prefix == c.path_prefix);
    }
}

TEST_CASE("parse_credentials: documents without entries") {
    for (const std::string json :
         {R"({})", R"({"auths":{}})", R"({"auths":null})", R"({"credsStore":"desktop","auths":{}})"}) {
        CAPTURE(json);
        credential_store store;
        REQUIRE_NOTHROW(store = parse_credentials(json, source));
        CHECK(store.entries().empty());
        CHECK(store.keys().empty());
        CHECK(store.lookup(registry("ghcr.io"), "acme/app") == nullptr);
    }
}

TEST_CASE("parse_credentials: source is the file the store came from") {
    // credential_store::source is documented as "the file it came from", whether
    // or not the file holds entries.
    for (const std::string json :
         {R"({"auths":{"ghcr.io":{"auth":"dTpw"}}})", R"({"auths":{}})", R"({})", R"({"auths":null})"}) {
        CAPTURE(json);
        CHECK(parse_credentials(json, source).source == source);
    }
}

TEST_CASE("parse_credentials: errors name the source and the key, never the secret") {
    struct case_t {
        std::string name;
        std::string json;
        std::string must_name;             // "" when no key is involved
        std::vector<std::string> secrets;  // must not appear in the message
    };
    const std::vector<case_t> cases = {
        {"auth is not base64", one_entry("ghcr.io", R"({"auth":"!!hunter2!!"})"), "ghcr.io", {"hunter2"}},
        {"auth with a space inside",
         one_entry("ghcr.io", R"({"auth":"dXNl cjpwYXNz"})"),
         "ghcr.io",
         {"dXNl cjpwYXNz", "pass"}},
        {"auth without ':'",
         one_entry("ghcr.io/acme", R"({"auth":"bm9jb2xvbg=="})"),
         "ghcr.io/acme",
         {"nocolon", "bm9jb2xvbg"}},
        {"auth is a number", one_entry("ghcr.io", R"({"auth":12345})"), "ghcr.io", {"12345"}},
        {"password is an object",
         one_entry("quay.io", R"({"username":"u","password":{"p":"hunter2"}})"),
         "quay.io",
         {"hunter2"}},
        {"identitytoken is an array", one_entry("quay.io", R"({"identitytoken":["hunter2"]})"), "quay.io", {"hunter2"}},
        {"an entry with no secret",
         one_entry("registry.example.com:5443", R"({"email":"a@b.c"})"),
         "registry.example.com:5443",
         {}},
        {"an empty entry", one_entry("ghcr.io", R"({})"), "ghcr.io", {}},
        {"an entry whose secrets are all empty",
         one_entry("ghcr.io", R"({"auth":"","username":"","password":"","identitytoken":"","registrytoken":""})"),
         "ghcr.io",
         {}},
        {"entry is a string", one_entry("ghcr.io", R"("dXNlcjpodW50ZXIy")"), "ghcr.io", {"dXNlcjpodW50ZXIy"}},
        {"entry is null", one_entry("ghcr.io", "null"), "ghcr.io", {}},
        {"entry is an array", one_entry("ghcr.io", R"(["dXNlcjpodW50ZXIy"])"), "ghcr.io", {"dXNlcjpodW50ZXIy"}},
        {"key with uppercase repository",
         one_entry("ghcr.io/Acme", R"({"auth":"dXNlcjpodW50ZXIy"})"),
         "ghcr.io/Acme",
         {"dXNlcjpodW50ZXIy", "hunter2"}},
        {"wildcard key",
         one_entry("*.example.com", R"({"auth":"dXNlcjpodW50ZXIy"})"),
         "*.example.com",
         {"dXNlcjpodW50ZXIy"}},
        {"key with a bad port",
         one_entry("ghcr.io:99999", R"({"auth":"dXNlcjpodW50ZXIy"})"),
         "ghcr.io:99999",
         {"dXNlcjpodW50ZXIy"}},
        {"empty key", one_entry("", R"({"auth":"dXNlcjpodW50ZXIy"})"), "auths.\"\"", {"dXNlcjpodW50ZXIy"}},
        {"auths is an array", R"({"auths":[{"auth":"dXNlcjpodW50ZXIy"}]})", "auths", {"dXNlcjpodW50ZXIy"}},
        {"document is an array", R"([{"auths":{}}])", "", {}},
        {"document is a string", R"("dXNlcjpodW50ZXIy")", "", {"dXNlcjpodW50ZXIy"}},
        {"invalid JSON after a secret",
         R"({"auths":{"ghcr.io":{"auth":"dXNlcjpodW50ZXIy",,}}})",
         "",
         {"dXNlcjpodW50ZXIy"}},
        {"invalid JSON inside a secret", "{\"auths\":{\"ghcr.io\":{\"password\":\"hunter2\x01\"}}}", "", {"hunter2"}},
        {"unterminated secret", R"({"auths":{"ghcr.io":{"password":"hunter2)", "", {"hunter2"}},
        {"empty text", "", "", {}},
        {"a number overflowing a double",
         R"({"auths":{"ghcr.io":{"auth":"dXNlcjpodW50ZXIy","n":1e400}}})",
         "",
         {"dXNlcjpodW50ZXIy"}},
        {"a negative number overflowing a double", R"({"n":-1e400,"p":"hunter2"})", "", {"hunter2"}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const std::string what = error_of(c.json);
        CAPTURE(what);
        if (what.empty()) {
            FAIL_CHECK("parse_credentials accepted the document");
            continue;
        }
        CHECK(what.starts_with(source + ":"));
        if (!c.must_name.empty()) CHECK(what.find(c.must_name) != std::string::npos);
        for (const auto& secret : c.secrets) {
            CAPTURE(secret);
            CHECK(what.find(secret) == std::string::npos);
        }
        CHECK_THROWS_AS(parse_credentials(c.json, source), config_error);
    }
}

TEST_CASE("parse_credentials: malformed base64 in auth is an error, not a mangled password") {
    // docker itself (Go's base64.StdEncoding) refuses each of these; accepting
    // them would send a password with stray bytes and fail only at pull time.
    struct case_t {
        std::string name;
        std::string auth;
    };
    const std::vector<case_t> cases = {
        {"one character too many", "dTpwY"},       // "u:p" + 'Y'
        {"padding on a complete block", "dTpw="},  // "u:p" + '='
        {"too much padding", "dXNlcjpwYXNz=="},    // "user:pass" + "=="
        {"padding in the middle", "dTpw==YQ"},    {"nothing but padding", "===="},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        CAPTURE(c.auth);
        const std::string what = error_of(one_entry("ghcr.io", R"({"auth":")" + c.auth + R"("})"));
        CAPTURE(what);
        CHECK_FALSE(what.empty());
        if (!what.empty()) CHECK(what.find("ghcr.io") != std::string::npos);
    }
}

TEST_CASE("parse_credentials: a password written into a key's userinfo stays out of the error") {
    for (const std::string key :
         {"https://bob:hunter2@ghcr.io", "bob:hunter2@ghcr.io", "https://hunter2@ghcr.io/v1/"}) {
        CAPTURE(key);
        const std::string what = error_of(R"({"auths":{")" + key + R"(":{"auth":"dTpw"}}})");
        REQUIRE_FALSE(what.empty());
        CHECK(what.find("hunter2") == std::string::npos);
        CHECK(what.find("ghcr.io") != std::string::npos);  // still says which key
    }
}

TEST_CASE("parse_credentials: the source name defaults when empty") {
    try {
        parse_credentials("{", "");
        FAIL("no error");
    } catch (const config_error& e) {
        CHECK(std::string(e.what()).starts_with("<credentials>:"));
    }
}

TEST_CASE("credential_store::lookup: longest repository prefix wins, port must match") {
    const std::string json = R"({"auths":{
        "ghcr.io":                    {"username":"host"},
        "ghcr.io/acme":               {"username":"acme"},
        "ghcr.io/acme/team":          {"username":"team"},
        "registry.example.com:5443":  {"username":"port5443"},
        "https://index.docker.io/v1/":{"username":"hub"},
        "docker.io/library":          {"username":"hub-library"},
        "127.0.0.1:15443/ci":         {"username":"local-ci"}
    }})";
    const auto store = parse_credentials(json, source);
    REQUIRE(store.entries().size() == 7);

    struct case_t {
        std::string registry;
        std::string repository;
        std::string username;  // "" = no credential
    };
    const std::vector<case_t> cases = {
        {"ghcr.io", "acme/team/app", "team"},
        {"ghcr.io", "acme/team", "team"},
        {"ghcr.io", "acme/app", "acme"},
        {"ghcr.io", "acme", "acme"},
        {"ghcr.io", "acme/teamwork/app", "acme"},  // prefixes end on '/' boundaries
        {"ghcr.io", "acmecorp/app", "host"},
        {"ghcr.io", "other/app", "host"},
        {"GHCR.io:443", "acme/app", "acme"},
        {"ghcr.io:5000", "acme/team/app", ""},  // port must match
        {"registry.example.com:5443", "x/y", "port5443"},
        {"registry.example.com", "x/y", ""},
        {"registry.example.com:5444", "x/y", ""},
        {"docker.io", "library/alpine", "hub-library"},
        {"index.docker.io", "user/app", "hub"},
        {"registry-1.docker.io", "user/app", "hub"},
        {"docker.io:5000", "user/app", ""},
        {"127.0.0.1:15443", "ci/app", "local-ci"},
        {"127.0.0.1:15443", "dev/app", ""},
        {"127.0.0.1", "ci/app", ""},
        {"quay.io", "acme/app", ""},
        {"ghcr.io.evil.example", "acme/app", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.registry);
        CAPTURE(c.repository);
        const credential* cred = store.lookup(registry(c.registry), c.repository);
        if (c.username.empty()) {
            CHECK(cred == nullptr);
        } else {
            REQUIRE(cred != nullptr);
            CHECK(cred->username == c.username);
        }
    }
}

TEST_CASE("credential_store::lookup does not depend on the order of the entries") {
    const std::vector<std::string> keys = {"ghcr.io", "ghcr.io/acme", "ghcr.io/acme/team"};
    const std::vector<std::vector<int>> orders = {{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}};
    for (const auto& order : orders) {
        std::vector<credential> entries;
        for (int i : order) entries.push_back(make_credential(keys[i], keys[i]));
        const credential_store store(std::move(entries));
        CAPTURE(order[0]);
        CAPTURE(order[1]);
        const auto* team = store.lookup(registry("ghcr.io"), "acme/team/x");
        const auto* acme = store.lookup(registry("ghcr.io"), "acme/x");
        const auto* host = store.lookup(registry("ghcr.io"), "beta/x");
        REQUIRE(team != nullptr);
        REQUIRE(acme != nullptr);
        REQUIRE(host != nullptr);
        CHECK(team->key == "ghcr.io/acme/team");
        CHECK(acme->key == "ghcr.io/acme");
        CHECK(host->key == "ghcr.io");
    }
    CHECK(credential_store().lookup(registry("ghcr.io"), "x") == nullptr);
}

TEST_CASE("credential_store::keys are the seed rules of the policy") {
    const auto store = parse_credentials(
        R"({"auths":{"ghcr.io/acme":{"auth":"dTpw"},"https://index.docker.io/v1/":{"registrytoken":"t"},
                     "registry.example.com:5443":{"identitytoken":"i"}}})",
        source);
    const auto rules = store.keys();
    REQUIRE(rules.size() == 3);
    std::set<std::string> texts;
    for (const auto& r : rules) {
        texts.insert(r.text);
        // the rule's pattern is the credential's own
        const credential* owner = nullptr;
        for (const auto& c : store.entries())
            if (c.key == r.text) owner = &c;
        REQUIRE(owner != nullptr);
        CHECK(r.pattern.host == owner->pattern.host);
        CHECK(r.pattern.port == owner->pattern.port);
        CHECK(r.pattern.path_prefix == owner->pattern.path_prefix);
    }
    CHECK(texts == std::set<std::string>{"ghcr.io/acme", "https://index.docker.io/v1/", "registry.example.com:5443"});

    struct case_t {
        std::string registry;
        std::string repository;
        bool allowed;
        std::string rule;
    };
    const std::vector<case_t> cases = {
        {"ghcr.io", "acme/app", true, "ghcr.io/acme"},
        {"ghcr.io", "other/app", false, ""},
        {"docker.io", "library/alpine", true, "https://index.docker.io/v1/"},
        {"registry.example.com:5443", "a", true, "registry.example.com:5443"},
        {"registry.example.com", "a", false, ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.registry);
        CAPTURE(c.repository);
        auto d = decide({}, rules, registry(c.registry), c.repository);
        CHECK(d.allowed == c.allowed);
        CHECK(d.rule == c.rule);
        if (c.allowed) CHECK(d.reason == reason_code::has_credentials);
    }
}

TEST_CASE("credential fingerprints tell secrets apart and never show them") {
    const std::string json = R"({"auths":{
        "a.example":  {"username":"user","password":"pass"},
        "b.example":  {"auth":"dXNlcjpwYXNz"},
        "c.example/x":{"username":"user","password":"pass"},
        "d.example":  {"username":"user","password":"pasS"},
        "e.example":  {"username":"usex","password":"pass"},
        "f.example":  {"username":"user","password":"pass","identitytoken":"i"},
        "g.example":  {"username":"user","password":"pass","registrytoken":"r"},
        "h.example":  {"username":"user","password":"pass","identitytoken":"r"},
        "i.example":  {"username":"userpass"},
        "j.example":  {"password":"userpass"},
        "k.example":  {"username":"u","password":"serpass"},
        "l.example":  {"identitytoken":"userpass"},
        "m.example":  {"registrytoken":"userpass"}
    }})";
    const auto store = parse_credentials(json, source);
    REQUIRE(store.entries().size() == 13);
    std::map<std::string, std::string> fp;
    for (const auto& c : store.entries()) {
        fp[c.key] = c.fingerprint;
        CAPTURE(c.key);
        CHECK(c.fingerprint.size() == 12);
        CHECK(c.fingerprint.find_first_not_of("0123456789abcdef") == std::string::npos);
        if (!c.username.empty()) CHECK(c.fingerprint.find(c.username) == std::string::npos);
    }
    // equal secrets, whatever the key or the spelling: equal fingerprints
    CHECK(fp["a.example"] == fp["b.example"]);
    CHECK(fp["a.example"] == fp["c.example/x"]);
    // any secret differing: different fingerprints
    const std::vector<std::string> distinct = {"a.example", "d.example", "e.example", "f.example",
                                               "g.example", "h.example", "i.example", "j.example",
                                               "k.example", "l.example", "m.example"};
    std::set<std::string> seen;
    for (const auto& k : distinct) {
        CAPTURE(k);
        CHECK(seen.insert(fp[k]).second);
    }
    // and they are stable: the same document gives the same fingerprints
    const auto again = parse_credentials(json, "elsewhere.json");
    for (const auto& c : again.entries()) {
        CAPTURE(c.key);
        CHECK(c.fingerprint == fp[c.key]);
    }
}

TEST_CASE("credentials_path and load_credentials") {
    test::temp_dir dir;
    const auto systemd_dir = dir.path() / "creds";
    std::filesystem::create_directories(systemd_dir);
    const auto systemd_file = systemd_dir / "docker-config.json";
    const auto config_file = dir.path() / "config.json";
    test::write_file(systemd_file, R"({"auths":{"ghcr.io":{"username":"from-systemd"}}})");
    test::write_file(config_file, R"({"auths":{"ghcr.io":{"username":"from-config"}}})");
    const auto empty_dir = dir.path() / "empty";
    std::filesystem::create_directories(empty_dir);

    config with_file;
    with_file.credentials_file = config_file.string();
    config without_file;

    SUBCASE("neither set: no path, an empty store") {
        env_guard env("CREDENTIALS_DIRECTORY", std::nullopt);
        CHECK_FALSE(credentials_path(without_file).has_value());
        credential_store store;
        REQUIRE_NOTHROW(store = load_credentials(without_file));
        CHECK(store.entries().empty());
    }
    SUBCASE("credentialsFile only") {
        env_guard env("CREDENTIALS_DIRECTORY", std::nullopt);
        CHECK(credentials_path(with_file) == config_file.string());
        const auto store = load_credentials(with_file);
        REQUIRE(store.entries().size() == 1);
        CHECK(store.entries()[0].username == "from-config");
        CHECK(store.source == config_file.string());
    }
    SUBCASE("$CREDENTIALS_DIRECTORY wins over credentialsFile") {
        env_guard env("CREDENTIALS_DIRECTORY", systemd_dir.string());
        CHECK(credentials_path(with_file) == systemd_file.string());
        CHECK(credentials_path(without_file) == systemd_file.string());
        const auto store = load_credentials(with_file);
        REQUIRE(store.entries().size() == 1);
        CHECK(store.entries()[0].username == "from-systemd");
        CHECK(store.source == systemd_file.string());
    }
    SUBCASE("$CREDENTIALS_DIRECTORY without docker-config.json falls back to credentialsFile") {
        env_guard env("CREDENTIALS_DIRECTORY", empty_dir.string());
        CHECK(credentials_path(with_file) == config_file.string());
        CHECK_FALSE(credentials_path(without_file).has_value());
        CHECK(load_credentials(with_file).entries().at(0).username == "from-config");
    }
    SUBCASE("a missing credentialsFile is an error naming the path") {
        env_guard env("CREDENTIALS_DIRECTORY", std::nullopt);
        config missing;
        missing.credentials_file = (dir.path() / "nope" / "config.json").string();
        CHECK(credentials_path(missing) == missing.credentials_file);
        try {
            load_credentials(missing);
            FAIL("no error");
        } catch (const config_error& e) {
            CHECK(std::string(e.what()).find(missing.credentials_file) != std::string::npos);
        }
    }
    SUBCASE("a broken file is an error naming the path, not the secret") {
        env_guard env("CREDENTIALS_DIRECTORY", std::nullopt);
        test::write_file(config_file, R"({"auths":{"ghcr.io":{"password":"hunter2",}}})");
        try {
            load_credentials(with_file);
            FAIL("no error");
        } catch (const config_error& e) {
            const std::string what = e.what();
            CAPTURE(what);
            CHECK(what.find(config_file.string()) != std::string::npos);
            CHECK(what.find("hunter2") == std::string::npos);
        }
    }
}

TEST_CASE("env_guard restores CREDENTIALS_DIRECTORY") {
    // The tests above must leave the environment as they found it.
    const char* before = std::getenv("CREDENTIALS_DIRECTORY");
    const std::optional<std::string> saved = before ? std::optional<std::string>(before) : std::nullopt;
    {
        env_guard env("CREDENTIALS_DIRECTORY", "/nonexistent-for-test");
        CHECK(std::string(std::getenv("CREDENTIALS_DIRECTORY")) == "/nonexistent-for-test");
    }
    const char* after = std::getenv("CREDENTIALS_DIRECTORY");
    CHECK((after ? std::optional<std::string>(after) : std::nullopt) == saved);
}

TEST_CASE("parse_credentials: credHelpers and credsStore") {
    const auto store = parse_credentials(R"({
        "auths": {"ghcr.io": {}, "https://index.docker.io/v1/": {"auth": "dTpw"}},
        "credHelpers": {"111.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login", "https://index.docker.io/v1/": "pass",
                        "127.0.0.1:5443": "pass"},
        "credsStore": "desktop"
    })",
                                         source);
    CHECK(store.creds_store() == "desktop");
    REQUIRE(store.helpers().size() == 3);
    REQUIRE(store.entries().size() == 1);
    REQUIRE(store.secretless().size() == 1);
    CHECK(store.secretless()[0].key == "ghcr.io");
    const auto* ecr = store.helper_for(registry("111.dkr.ecr.eu-west-1.amazonaws.com"));
    REQUIRE(ecr != nullptr);
    CHECK(ecr->helper == "ecr-login");
    REQUIRE(store.helper_for(registry("docker.io")) != nullptr);
    CHECK(store.helper_for(registry("docker.io"))->key == "https://index.docker.io/v1/");
    CHECK(store.helper_for(registry("127.0.0.1:5443")) != nullptr);
    CHECK(store.helper_for(registry("127.0.0.1")) == nullptr);
    CHECK(store.helper_for(registry("222.dkr.ecr.eu-west-1.amazonaws.com")) == nullptr);
    CHECK(store.secretless_for(registry("ghcr.io"), "a/b") != nullptr);
    CHECK(store.secretless_for(registry("quay.io"), "a/b") == nullptr);
    // a secretless entry never shadows the secrets of another
    CHECK(store.lookup(registry("ghcr.io"), "a/b") == nullptr);
}

TEST_CASE("parse_credentials: bad credHelpers and credsStore name the key, never a secret") {
    struct row {
        std::string json, expect;
    };
    const std::vector<row> rows = {
        {R"({"credHelpers": {"ghcr.io": "../bin/sh"}})", "credHelpers.\"ghcr.io\": expected a helper name"},
        {R"({"credHelpers": {"ghcr.io": ""}})", "credHelpers.\"ghcr.io\": expected a helper name"},
        {R"({"credHelpers": {"ghcr.io": 5}})", "credHelpers.\"ghcr.io\": expected a helper name"},
        {R"({"credHelpers": {"ghcr.io/acme": "pass"}})", "a credential helper answers for a whole registry"},
        {R"({"credHelpers": {"*.ghcr.io": "pass"}})", "credHelpers.\"*.ghcr.io\""},
        {R"({"credHelpers": {"https://u:hunter2@ghcr.io": "pass"}})", "credHelpers.\"https://***@ghcr.io\""},
        {R"({"credHelpers": {"ghcr.io": "pass", "ghcr.io:443": "other"}})", "listed twice"},
        {R"({"credHelpers": ["pass"]})", "credHelpers: expected an object"},
        {R"({"credsStore": "a/b"})", "credsStore: not a usable helper name"},
        {R"({"credsStore": 1})", "credsStore: expected a string"},
        {R"({"auths": {"ghcr.io": {}}})", "auths.\"ghcr.io\": no auth, username/password"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.json);
        const auto e = error_of(r.json);
        CHECK_MESSAGE(e.find(r.expect) != std::string::npos, e);
        CHECK(e.find("hunter2") == std::string::npos);
    }
    CHECK(is_valid_helper_name("ecr-login"));
    CHECK(is_valid_helper_name("pass"));
    CHECK(is_valid_helper_name("osxkeychain_2.x"));
    CHECK_FALSE(is_valid_helper_name(".hidden"));
    CHECK_FALSE(is_valid_helper_name("a b"));
    CHECK_FALSE(is_valid_helper_name(std::string(65, 'a')));
}

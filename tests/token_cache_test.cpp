// Tests for include/pullgate/token_cache.hpp: token service answers and the
// bearer token cache per (registry, scope, credential) with an injected clock
// (docs/ARCHITECTURE.md, "Upstream authentication").
#include "pullgate/token_cache.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace pullgate;
using namespace std::chrono_literals;
using std::chrono::seconds;

namespace {

// A clock the test moves by hand.
struct manual_clock {
    token_cache::clock::time_point now = token_cache::clock::time_point{} + 1000h;
    std::function<token_cache::clock::time_point()> fn() {
        return [this] { return now; };
    }
};

}  // namespace

TEST_CASE("parse_token_response: token and lifetime") {
    struct case_t {
        std::string body;
        std::string token;
        seconds expires_in;
    };
    const std::vector<case_t> cases = {
        // Docker Hub
        {R"({"token":"abc","access_token":"abc","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"})", "abc", 300s},
        {R"({"token":"tok"})", "tok", 60s},                           // expires_in absent: 60 s
        {R"({"access_token":"acc","expires_in":120})", "acc", 120s},  // OAuth2 style only
        {R"({"token":"tok","access_token":"acc"})", "tok", 60s},      // both: token
        {R"({"access_token":"acc","token":"tok"})", "tok", 60s},      // whatever the order
        {R"({"token":"","access_token":"acc"})", "acc", 60s},         // an empty token counts as absent
        {R"({"token":null,"access_token":"acc"})", "acc", 60s},
        {R"({"token":42,"access_token":"acc"})", "acc", 60s},
        {R"({"token":"t","expires_in":1})", "t", 1s},
        {R"({"token":"t","expires_in":3600})", "t", 3600s},
        {R"({"token":"t","expires_in":86400})", "t", 86400s},
        // zero, negative and below one second: the 60 s default
        {R"({"token":"t","expires_in":0})", "t", 60s},
        {R"({"token":"t","expires_in":-1})", "t", 60s},
        {R"({"token":"t","expires_in":-300})", "t", 60s},
        {R"({"token":"t","expires_in":0.5})", "t", 60s},
        {R"({"token":"t","expires_in":-0.5})", "t", 60s},
        {R"({"token":"t","expires_in":-1e300})", "t", 60s},
        {R"({"token":"t","expires_in":-9223372036854775808})", "t", 60s},
        // fractions are truncated
        {R"({"token":"t","expires_in":1.9})", "t", 1s},
        {R"({"token":"t","expires_in":299.99})", "t", 299s},
        // clamped to 24 h
        {R"({"token":"t","expires_in":86401})", "t", 86400s},
        {R"({"token":"t","expires_in":1e300})", "t", 86400s},
        {R"({"token":"t","expires_in":9223372036854775807})", "t", 86400s},
        {R"({"token":"t","expires_in":18446744073709551615})", "t", 86400s},  // uint64 max
        {R"({"token":"t","expires_in":18446744073709864015})", "t", 86400s},  // beyond uint64: a double
        // not a number: the default
        {R"({"token":"t","expires_in":"300"})", "t", 60s},
        {R"({"token":"t","expires_in":null})", "t", 60s},
        {R"({"token":"t","expires_in":true})", "t", 60s},
        {R"({"token":"t","expires_in":[300]})", "t", 60s},
    };
    for (const auto& c : cases) {
        CAPTURE(c.body);
        auto r = parse_token_response(c.body);
        REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : r.error()));
        CHECK(r->token == c.token);
        CHECK(r->expires_in.count() == c.expires_in.count());
    }
}

TEST_CASE("parse_token_response: errors never quote the body") {
    struct case_t {
        std::string name;
        std::string body;
        std::string secret;  // text of the body that must not be in the error
    };
    const std::vector<case_t> cases = {
        {"empty", "", ""},
        {"not JSON", "SECRET-TOKEN-abc", "SECRET"},
        {"HTML error page", "<html><body>SECRET-TOKEN-abc</body></html>", "SECRET"},
        {"truncated JSON", R"({"token":"SECRET-TOKEN-abc")", "SECRET"},
        {"trailing garbage", R"({"token":"SECRET-TOKEN-abc"} x)", "SECRET"},
        {"array", R"(["SECRET-TOKEN-abc"])", "SECRET"},
        {"string", R"("SECRET-TOKEN-abc")", "SECRET"},
        {"null", "null", ""},
        {"empty object", "{}", ""},
        {"error body", R"({"errors":[{"code":"UNAUTHORIZED","message":"SECRET-TOKEN-abc"}]})", "SECRET"},
        {"empty token", R"({"token":"","refresh_token":"SECRET-TOKEN-abc"})", "SECRET"},
        {"empty access_token", R"({"access_token":"","refresh_token":"SECRET-TOKEN-abc"})", "SECRET"},
        {"token not a string", R"({"token":{"value":"SECRET-TOKEN-abc"}})", "SECRET"},
        {"number overflowing a double", R"({"token":"SECRET-TOKEN-abc","expires_in":1e400})", "SECRET"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        boost::system::result<token_response, std::string> r = token_response{};
        REQUIRE_NOTHROW(r = parse_token_response(c.body));
        REQUIRE_FALSE(r.has_value());
        CAPTURE(r.error());
        CHECK_FALSE(r.error().empty());
        if (!c.secret.empty()) CHECK(r.error().find(c.secret) == std::string::npos);
    }
}

TEST_CASE("token_cache: lifetime less the margin (10 %, between 1 s and 30 s)") {
    struct case_t {
        seconds expires_in;
        seconds good_for;  // expires_in - clamp(expires_in / 10, 1 s, 30 s)
    };
    const std::vector<case_t> cases = {
        {2s, 1s},                                      // margin at its 1 s floor
        {5s, 4s},       {10s, 9s},        {19s, 18s},  // 1.9 s rounds down to the 1 s floor
        {20s, 18s},                                    // 10 %
        {60s, 54s},                                    // the default lifetime
        {120s, 108s},   {299s, 270s},                  // 29 s
        {300s, 270s},                                  // 30 s
        {301s, 271s},                                  // margin at its 30 s ceiling
        {3600s, 3570s}, {86400s, 86370s},
    };
    for (const auto& c : cases) {
        CAPTURE(c.expires_in.count());
        manual_clock clk;
        token_cache cache(clk.fn());
        const auto t0 = clk.now;
        cache.put("k", "tok", c.expires_in);

        clk.now = t0;
        CHECK(cache.get("k") == std::optional<std::string>("tok"));
        clk.now = t0 + c.good_for - 1ms;
        CHECK(cache.get("k") == std::optional<std::string>("tok"));
        clk.now = t0 + c.good_for;  // at the end of the good period: a miss
        CHECK_FALSE(cache.get("k").has_value());
        clk.now = t0 + c.good_for + 1ms;
        CHECK_FALSE(cache.get("k").has_value());
        clk.now = t0 + c.expires_in + 1h;
        CHECK_FALSE(cache.get("k").has_value());
        CHECK(cache.hits() == 2);
        CHECK(cache.misses() == 3);
    }
}

TEST_CASE("token_cache: a token too short-lived for its margin is never served") {
    for (seconds expires_in : {-5s, 0s, 1s}) {
        CAPTURE(expires_in.count());
        manual_clock clk;
        token_cache cache(clk.fn());
        cache.put("k", "tok", expires_in);
        CHECK_FALSE(cache.get("k").has_value());
        CHECK(cache.misses() == 1);
        CHECK(cache.hits() == 0);
    }
}

TEST_CASE("token_cache: get before put misses; a later put replaces token and lifetime") {
    manual_clock clk;
    token_cache cache(clk.fn());
    CHECK_FALSE(cache.get("k").has_value());
    CHECK(cache.misses() == 1);
    CHECK(cache.size() == 0);

    cache.put("k", "first", 60s);  // good for 54 s
    clk.now += 50s;
    CHECK(cache.get("k") == std::optional<std::string>("first"));
    cache.put("k", "second", 300s);  // good for 270 s from now
    CHECK(cache.size() == 1);
    clk.now += 100s;
    CHECK(cache.get("k") == std::optional<std::string>("second"));
    clk.now += 170s;
    CHECK_FALSE(cache.get("k").has_value());

    // a shorter lifetime replaces a longer one too
    cache.put("k", "third", 3600s);
    cache.put("k", "fourth", 10s);  // good for 9 s
    clk.now += 9s;
    CHECK_FALSE(cache.get("k").has_value());
}

TEST_CASE("token_cache: registry, scope and credential are independent keys") {
    manual_clock clk;
    token_cache cache(clk.fn());
    const std::string scope_a = "repository:library/alpine:pull";
    const std::string scope_b = "repository:library/busybox:pull";
    const std::vector<std::tuple<std::string, std::string, std::string>> fields = {
        {"docker.io", scope_a, "anonymous"},
        {"docker.io", scope_b, "anonymous"},
        {"docker.io", scope_a, "https://index.docker.io/v1/ 0123456789ab"},
        {"docker.io", scope_a, "https://index.docker.io/v1/ ba9876543210"},
        {"ghcr.io", scope_a, "anonymous"},
        {"ghcr.io:5000", scope_a, "anonymous"},
        {"docker.io", "basic", "anonymous"},
    };
    std::set<std::string> keys;
    for (std::size_t i = 0; i < fields.size(); ++i) {
        const auto& [reg, scope, cred] = fields[i];
        keys.insert(token_cache_key(reg, scope, cred));
        cache.put(token_cache_key(reg, scope, cred), "tok" + std::to_string(i), seconds(60 * (i + 1)));
    }
    CHECK(keys.size() == fields.size());
    CHECK(cache.size() == fields.size());
    for (std::size_t i = 0; i < fields.size(); ++i) {
        const auto& [reg, scope, cred] = fields[i];
        CAPTURE(i);
        CHECK(cache.get(token_cache_key(reg, scope, cred)) == std::optional<std::string>("tok" + std::to_string(i)));
    }
    // expiry of one leaves the others (entry 0 is good for 54 s, entry 1 for 108 s)
    clk.now += 60s;
    CHECK_FALSE(cache.get(token_cache_key("docker.io", scope_a, "anonymous")).has_value());
    CHECK(cache.get(token_cache_key("docker.io", scope_b, "anonymous")) == std::optional<std::string>("tok1"));
}

TEST_CASE("token_cache_key: which fields tell keys apart") {
    // Every field matters, and moving text from one field to the next changes the key
    // as long as the fields hold what pullgate puts there.
    const std::vector<std::tuple<std::string, std::string, std::string>> distinct = {
        {"a", "b", "c"},
        {"ab", "", "c"},
        {"a", "bc", ""},
        {"", "ab", "c"},
        {"a", "", "bc"},
        {"", "", "abc"},
        {"abc", "", ""},
        {"a", "b", ""},
        {"a", "", "b"},
        {"", "a", "b"},
        {"", "", ""},
        {"a:5000", "repository:x:pull", "k"},
        {"a", "5000:repository:x:pull", "k"},
    };
    std::set<std::string> keys;
    for (const auto& [r, s, c] : distinct) keys.insert(token_cache_key(r, s, c));
    CHECK(keys.size() == distinct.size());
    CHECK(token_cache_key("docker.io", "repository:library/alpine:pull", "anonymous") ==
          token_cache_key("docker.io", "repository:library/alpine:pull", "anonymous"));

    // Finding: the fields are joined with '\n' and nothing is escaped, so a field
    // containing '\n' can produce another triple's key:
    //   token_cache_key("a", "b\nc", x) == token_cache_key("a\nb", "c", x).
    // pullgate never passes such fields: the registry is a validated registry_name::key(),
    // the scope is pull_scope() of a validated repository (or "basic"), and the
    // credential id is a key from the credentials file plus its hex fingerprint; an
    // HTTP header cannot carry a raw '\n' either. This pins the behaviour down so a
    // change to the encoding is noticed.
    CHECK(token_cache_key("a", "b\nc", "x") == token_cache_key("a\nb", "c", "x"));
    CHECK(token_cache_key("a", "b", "c\nd") == token_cache_key("a", "b\nc", "d"));
}

TEST_CASE("token_cache: when full, expired entries go first, then the one closest to expiry") {
    manual_clock clk;
    token_cache cache(clk.fn(), 3);
    const auto t0 = clk.now;
    cache.put("a", "A", 600s);  // good until t0 + 570 s
    cache.put("b", "B", 60s);   // t0 + 54 s
    cache.put("c", "C", 300s);  // t0 + 270 s
    CHECK(cache.size() == 3);

    // nothing expired: "b" is closest to expiry
    cache.put("d", "D", 3600s);  // t0 + 3570 s
    CHECK(cache.size() == 3);
    CHECK_FALSE(cache.get("b").has_value());
    CHECK(cache.get("a") == std::optional<std::string>("A"));
    CHECK(cache.get("c") == std::optional<std::string>("C"));
    CHECK(cache.get("d") == std::optional<std::string>("D"));

    // "c" expired: it goes, and nothing else does
    clk.now = t0 + 280s;
    cache.put("e", "E", 60s);  // t0 + 334 s, now the closest to expiry of the live ones
    CHECK(cache.size() == 3);
    CHECK_FALSE(cache.get("c").has_value());
    CHECK(cache.get("a") == std::optional<std::string>("A"));
    CHECK(cache.get("d") == std::optional<std::string>("D"));
    CHECK(cache.get("e") == std::optional<std::string>("E"));

    // every entry but "d" expired: both go, leaving room to spare
    clk.now = t0 + 600s;
    cache.put("f", "F", 60s);
    CHECK(cache.size() == 2);
    CHECK(cache.get("d") == std::optional<std::string>("D"));
    CHECK(cache.get("f") == std::optional<std::string>("F"));
    CHECK_FALSE(cache.get("a").has_value());
    CHECK_FALSE(cache.get("e").has_value());
}

TEST_CASE("token_cache: max_entries 1 keeps the newest") {
    manual_clock clk;
    token_cache cache(clk.fn(), 1);
    cache.put("a", "A", 3600s);
    cache.put("b", "B", 60s);
    CHECK(cache.size() == 1);
    CHECK_FALSE(cache.get("a").has_value());
    CHECK(cache.get("b") == std::optional<std::string>("B"));
}

TEST_CASE("token_cache: refreshing a key in a full cache evicts nothing else") {
    // A put for a key that is already cached replaces that entry; it does not
    // make room by dropping a different, still valid token.
    manual_clock clk;
    token_cache cache(clk.fn(), 2);
    cache.put("a", "A1", 600s);
    cache.put("b", "B", 60s);  // closest to expiry
    cache.put("a", "A2", 600s);
    CHECK(cache.size() == 2);
    CHECK(cache.get("a") == std::optional<std::string>("A2"));
    CHECK(cache.get("b") == std::optional<std::string>("B"));
}

TEST_CASE("token_cache: hits and misses") {
    manual_clock clk;
    token_cache cache(clk.fn());
    CHECK(cache.hits() == 0);
    CHECK(cache.misses() == 0);
    (void)cache.get("x");  // miss: absent
    cache.put("x", "X", 60s);
    CHECK(cache.hits() == 0);  // put counts nothing
    CHECK(cache.misses() == 1);
    for (int i = 0; i < 5; ++i) (void)cache.get("x");  // 5 hits
    (void)cache.get("y");                              // miss: absent
    clk.now += 54s;
    (void)cache.get("x");  // miss: expired
    CHECK(cache.hits() == 5);
    CHECK(cache.misses() == 3);
}

TEST_CASE("token_cache: concurrent use") {
    manual_clock clk;  // never moves while threads run
    token_cache cache(clk.fn(), 50);
    constexpr int threads = 4;
    constexpr int rounds = 2000;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&cache, t] {
            for (int i = 0; i < rounds; ++i) {
                // a put of key n, then a get of the same key n (which another thread may have evicted)
                const std::string key = "k" + std::to_string((t * rounds + i) / 2 % 100);
                if (i % 2 == 0)
                    cache.put(key, "v", 60s);
                else
                    (void)cache.get(key);
            }
        });
    }
    for (auto& th : pool) th.join();
    CHECK(cache.hits() + cache.misses() == threads * rounds / 2);
    CHECK(cache.hits() > 0);
    CHECK(cache.size() <= 50);
}

TEST_CASE("token_cache: the default clock is the steady clock") {
    token_cache cache;
    cache.put("k", "tok", 3600s);
    CHECK(cache.get("k") == std::optional<std::string>("tok"));
}

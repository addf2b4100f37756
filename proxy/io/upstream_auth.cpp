#include "pullgate/upstream_auth.hpp"

#include "pullgate/notifier.hpp"
#include "pullgate/version.hpp"
#include "pullgate/www_authenticate.hpp"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

namespace pullgate {
namespace asio = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;

// One token fetch in progress; later callers for the same key wait for it.
struct token_flight {
    std::mutex m;
    bool done = false;
    boost::system::result<std::string, failure> value{boost::system::in_place_error,
                                                      upstream_failure(502, "pending", reason_code::token_unavailable)};
    notifier finished;
};

namespace {

constexpr std::size_t max_token_body = 64 * 1024;
constexpr std::chrono::seconds basic_memory{3600};  // how long "this registry wants Basic" is remembered

using header_result = boost::system::result<std::string, failure>;
using token_result = boost::system::result<token_response, failure>;

std::string base64(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string credential_id(const credential* c) {
    return c ? c->key + "#" + c->fingerprint : "anonymous";
}

std::string who(const auth_target& t) {
    return t.cred ? "the stored credentials (" + t.cred->key + ")" : "anonymous access";
}

failure rejected(const auth_target& t, std::string detail) {
    return denied("upstream " + t.registry.key() + " rejected " + who(t) + " for " + t.repository + ": " + detail,
                  reason_code::upstream_auth_failed);
}

failure unavailable(const auth_target& t, std::string detail) {
    return upstream_failure(502, "token service of " + t.registry.key() + " failed: " + detail,
                            reason_code::token_unavailable);
}

}  // namespace

std::string pull_scope(std::string_view repository) {
    return "repository:" + std::string(repository) + ":pull";
}

upstream_auth::upstream_auth(upstream_client& client, std::shared_ptr<token_cache> cache, metrics& stats)
    : client_(client), stats_(stats), cache_(std::move(cache)) {}

std::string upstream_auth::preset(const auth_target& t) {
    if (t.cred && !t.cred->registry_token.empty()) return "Bearer " + t.cred->registry_token;
    const std::string id = credential_id(t.cred);
    if (auto v = cache_->get(token_cache_key(t.registry.key(), pull_scope(t.repository), id))) return *v;
    if (t.cred && t.cred->has_basic())
        if (auto v = cache_->get(token_cache_key(t.registry.key(), "basic", id))) return *v;
    return {};
}

asio::awaitable<header_result> upstream_auth::answer(const auth_target& t,
                                                     const upstream_parser::value_type& response) {
    std::vector<auth_challenge> challenges;
    for (auto [it, end] = response.equal_range(http::field::www_authenticate); it != end; ++it) {
        auto more = parse_www_authenticate(it->value());
        challenges.insert(challenges.end(), more.begin(), more.end());
    }
    const std::string id = credential_id(t.cred);

    if (auto bearer = find_challenge(challenges, "bearer")) {
        if (t.cred && !t.cred->registry_token.empty())
            co_return header_result(boost::system::in_place_error, rejected(t, "the registry token was refused"));
        const std::string realm = bearer->param("realm");
        const std::string service = bearer->param("service");
        std::string scope = bearer->param("scope");
        if (scope.empty()) scope = pull_scope(t.repository);
        const std::string key = token_cache_key(t.registry.key(), pull_scope(t.repository), id);

        // Join a fetch in progress, or lead one.
        std::shared_ptr<token_flight> flight;
        bool leader = false;
        {
            std::lock_guard lock(flights_mutex_);
            auto& slot = flights_[key];
            if (!slot) {
                slot = std::make_shared<token_flight>();
                leader = true;
            }
            flight = slot;
        }
        if (!leader) {
            const auto deadline = std::chrono::steady_clock::now() + 2 * client_.limits().upstream_connect_timeout +
                                  client_.limits().upstream_stall_timeout;
            while (true) {
                const std::uint64_t seen = flight->finished.generation();
                {
                    std::lock_guard lock(flight->m);
                    if (flight->done) co_return flight->value;
                }
                if (!co_await flight->finished.wait(seen, deadline))
                    co_return header_result(boost::system::in_place_error,
                                            unavailable(t, "timed out waiting for a token"));
            }
        }

        header_result out(boost::system::in_place_error, unavailable(t, "no token"));
        try {
            auto token = co_await fetch_token(t, realm, service, scope);
            if (token) {
                std::string value = "Bearer " + token->token;
                cache_->put(key, value, token->expires_in);
                out = value;
            } else {
                out = header_result(boost::system::in_place_error, token.error());
            }
        } catch (const std::exception& e) {
            out = header_result(boost::system::in_place_error, unavailable(t, e.what()));
        }
        {
            std::lock_guard lock(flight->m);
            flight->value = out;
            flight->done = true;
        }
        flight->finished.notify_all();
        {
            std::lock_guard lock(flights_mutex_);
            flights_.erase(key);
        }
        co_return out;
    }

    if (find_challenge(challenges, "basic")) {
        if (!t.cred || !t.cred->has_basic())
            co_return header_result(boost::system::in_place_error,
                                    rejected(t, "it asks for Basic credentials and none are stored for it"));
        std::string value = "Basic " + base64(t.cred->username + ":" + t.cred->password);
        cache_->put(token_cache_key(t.registry.key(), "basic", id), value, basic_memory);
        co_return value;
    }
    co_return header_result(boost::system::in_place_error, rejected(t, "it sent no usable WWW-Authenticate challenge"));
}

asio::awaitable<token_result> upstream_auth::fetch_token(const auth_target& t, const std::string& realm,
                                                         const std::string& service, const std::string& scope) {
    auto fail = [](failure f) { return token_result(boost::system::in_place_error, std::move(f)); };
    auto parsed = boost::urls::parse_absolute_uri(realm);
    if (!parsed || !parsed->has_authority() || parsed->host().empty())
        co_return fail(unavailable(t, "the challenge's realm is not an absolute URL"));
    boost::urls::url url = *parsed;
    origin o;
    if (url.scheme_id() == boost::urls::scheme::https)
        o.tls = true;
    else if (url.scheme_id() == boost::urls::scheme::http && t.insecure_http)
        o.tls = false;
    else
        co_return fail(unavailable(t, "the realm must be https (the registry is not configured insecureHttp)"));
    o.host = url.host_address();
    o.port = url.has_port() ? url.port_number() : (o.tls ? 443 : 80);
    url.remove_fragment();
    url.remove_userinfo();

    const bool refresh = t.cred && !t.cred->identity_token.empty();
    upstream_request req;
    req.version(11);
    req.set(http::field::host, url.encoded_host_and_port());
    req.set(http::field::user_agent, user_agent);
    req.keep_alive(true);
    if (refresh) {
        // OAuth2 refresh-token grant, as docker does with an identitytoken.
        boost::urls::url form("x:");
        auto params = form.params();
        params.append({"grant_type", "refresh_token"});
        params.append({"refresh_token", t.cred->identity_token});
        params.append({"service", service});
        params.append({"scope", scope});
        params.append({"client_id", "pullgate"});
        req.method(http::verb::post);
        std::string target(url.encoded_target());
        if (target.empty()) target = "/";
        req.target(target);
        req.set(http::field::content_type, "application/x-www-form-urlencoded");
        req.body() = std::string(form.encoded_query());
        req.prepare_payload();
    } else {
        auto params = url.params();
        if (!service.empty()) params.set("service", service);
        params.set("scope", scope);
        req.method(http::verb::get);
        req.target(std::string(url.encoded_target()));
        if (t.cred && t.cred->has_basic())
            req.set(http::field::authorization, "Basic " + base64(t.cred->username + ":" + t.cred->password));
    }

    stats_.count_token_fetch();
    error_code ec;
    auto res = co_await client_.exchange(o, req, false, ec);
    if (ec) co_return fail(unavailable(t, o.key() + " unreachable: " + ec.message()));
    const unsigned status = res.parser->get().result_int();
    std::string body;
    co_await client_.read_body(res, body, max_token_body, ec);
    if (ec) co_return fail(unavailable(t, "reading the token response: " + ec.message()));
    if (status == 401 || status == 403)
        co_return fail(rejected(t, "the token service answered " + std::to_string(status)));
    if (status != 200) co_return fail(unavailable(t, "the token service answered " + std::to_string(status)));
    auto token = parse_token_response(body);
    if (!token) co_return fail(unavailable(t, token.error()));
    if (res.parser->keep_alive()) client_.release(std::move(res.connection));
    spdlog::debug("token for {} {} fetched ({}s)", t.registry.key(), scope, token->expires_in.count());
    co_return *token;
}

}  // namespace pullgate

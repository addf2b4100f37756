#include "pullgate/pull_handler.hpp"

#include "pullgate/digest.hpp"
#include "pullgate/oci_path.hpp"
#include "pullgate/relay.hpp"
#include "pullgate/version.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <optional>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

bool is_redirect(unsigned status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string host_header(const origin& o) {
    std::string h = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
    if (o.port != (o.tls ? 443 : 80)) h += ":" + std::to_string(o.port);
    return h;
}

// Where a redirect points, resolved against the URL that answered it. Fails
// for anything but http(s), and for a downgrade from https to http.
std::optional<std::pair<origin, std::string>> redirect_target(const origin& from, std::string_view from_target,
                                                              std::string_view location) {
    auto ref = boost::urls::parse_uri_reference(location);
    if (!ref) return std::nullopt;
    boost::urls::url base;
    base.set_scheme(from.tls ? "https" : "http");
    base.set_host_address(from.host);
    base.set_port_number(from.port);
    auto target = boost::urls::parse_origin_form(from_target);
    if (!target) return std::nullopt;
    base.set_encoded_path(target->encoded_path());
    boost::urls::url dest;
    if (!boost::urls::resolve(base, *ref, dest)) return std::nullopt;
    origin o;
    if (dest.scheme_id() == boost::urls::scheme::https)
        o.tls = true;
    else if (dest.scheme_id() == boost::urls::scheme::http)
        o.tls = false;
    else
        return std::nullopt;
    if (from.tls && !o.tls) return std::nullopt;
    o.host = dest.host_address();
    if (o.host.empty()) return std::nullopt;
    o.port = dest.has_port() ? dest.port_number() : (o.tls ? 443 : 80);
    if (o.port == 0) return std::nullopt;
    std::string path = dest.encoded_path().empty() ? "/" : std::string(dest.encoded_path());
    if (dest.has_query()) path += "?" + std::string(dest.encoded_query());
    return std::make_pair(std::move(o), std::move(path));
}

std::string upstream_target(const oci_request& r) {
    std::string t = "/v2/" + r.repository;
    switch (r.kind) {
        case request_kind::manifest:
            t += "/manifests/" + r.reference;
            break;
        case request_kind::blob:
            t += "/blobs/" + r.reference;
            break;
        case request_kind::tags:
            t += "/tags/list";
            break;
        case request_kind::referrers:
            t += "/referrers/" + r.reference;
            break;
        case request_kind::ping:
            t = "/v2/";
            break;
    }
    if (!r.upstream_query.empty()) t += "?" + r.upstream_query;
    return t;
}

std::string deny_message(const registry_name& registry, std::string_view suggestion, const config& cfg) {
    std::string where = cfg.source.empty() ? "the config" : cfg.source;
    return "registry " + registry.key() + " is not allowed: add \"" + std::string(suggestion) +
           "\" to containerRegistry.privateBaseImageAllowList in " + where +
           ", or store credentials for it in the credentials file";
}

void set_failure(decision_record& rec, const failure& f, std::string decision) {
    rec.decision = std::move(decision);
    rec.reason = f.reason;
    rec.status = f.status;
}

}  // namespace

asio::awaitable<bool> write_json(beast::tcp_stream& down, unsigned status, std::string body, const client_request& req,
                                 bool keep_alive, const limits& lim, std::uint64_t& body_bytes) {
    http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
    res.set(http::field::content_type, "application/json");
    res.set("Docker-Distribution-API-Version", "registry/2.0");
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    error_code ec;
    down.expires_after(lim.client_idle_timeout);
    if (req.method() == http::verb::head) {
        http::response_serializer<http::string_body> sr{res};
        co_await http::async_write_header(down, sr, asio::redirect_error(asio::use_awaitable, ec));
    } else {
        co_await http::async_write(down, res, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) body_bytes += res.body().size();
    }
    co_return !ec;
}

asio::awaitable<bool> write_error(beast::tcp_stream& down, const failure& f, const client_request& req, bool keep_alive,
                                  const limits& lim, std::uint64_t& body_bytes) {
    co_return co_await write_json(down, f.status, oci_error_body(f), req, keep_alive, lim, body_bytes);
}

asio::awaitable<bool> handle_pull(request_context& ctx, decision_record& rec) {
    const config& cfg = *ctx.rt.cfg;
    const limits& lim = cfg.limits;
    const client_request& req = ctx.req;
    const bool keep_alive = req.keep_alive();

    // Arguments by value, and every call site passes a named failure: GCC 12
    // destroys temporaries of a ?: inside a co_await expression twice.
    auto refuse = [&](failure f, std::string decision) -> asio::awaitable<bool> {
        set_failure(rec, f, std::move(decision));
        const bool written = co_await write_error(ctx.down, f, req, keep_alive, lim, rec.bytes);
        co_return written&& keep_alive;
    };

    const bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
        failure refusal =
            unsupported("pullgate serves pulls only: " + std::string(req.method_string()) + " is not supported");
        co_return co_await refuse(std::move(refusal), "deny");
    }

    auto parsed = parse_request_target(req.target());
    if (!parsed) {
        failure refusal = parsed.error();
        co_return co_await refuse(std::move(refusal), "error");
    }
    oci_request& r = *parsed;
    rec.kind = std::string(to_string(r.kind));
    rec.repository = r.repository;
    rec.reference = r.reference;

    if (r.kind == request_kind::ping) {
        rec.decision = "allow";
        rec.reason = "ping";
        rec.status = 200;
        const bool written = co_await write_json(ctx.down, 200, "{}", req, keep_alive, lim, rec.bytes);
        co_return written&& keep_alive;
    }
    if (head && (r.kind == request_kind::tags || r.kind == request_kind::referrers)) {
        failure refusal = unsupported("HEAD is not supported for " + rec.kind);
        co_return co_await refuse(std::move(refusal), "deny");
    }

    // The upstream registry: containerd's ns, validated and normalised; never dialled as given.
    registry_name registry;
    if (r.ns) {
        auto name = parse_registry_name(*r.ns);
        if (!name) {
            failure refusal = bad_request("NAME_INVALID", "invalid ns parameter: " + name.error());
            co_return co_await refuse(std::move(refusal), "error");
        }
        registry = *name;
    } else if (cfg.default_registry) {
        registry = *cfg.default_registry;
    } else {
        failure refusal =
            not_found("NAME_UNKNOWN",
                      "the request names no registry (no ns parameter) and defaultRegistry is not set in the config",
                      "no_registry");
        co_return co_await refuse(std::move(refusal), "deny");
    }
    rec.registry = registry.key();

    const policy_decision decision = decide(cfg.allow_list, ctx.rt.credential_keys, registry, r.repository);
    if (!decision.allowed) {
        rec.rule = decision.suggestion;  // the entry that would have had to exist
        failure refusal = denied(deny_message(registry, decision.suggestion, cfg), decision.reason);
        co_return co_await refuse(std::move(refusal), "deny");
    }
    rec.decision = "allow";
    rec.reason = decision.reason;
    rec.rule = decision.rule;

    // The upstream request: only what a registry needs; never the client's Authorization.
    const registry_transport* transport = cfg.transport_for(registry);
    const origin registry_at = registry_origin(registry, transport);
    origin where = registry_at;
    upstream_request up_req{req.method(), upstream_target(r), 11};
    up_req.set(http::field::host, host_header(where));
    up_req.set(http::field::user_agent, user_agent);
    for (auto f : {http::field::accept, http::field::range, http::field::if_none_match, http::field::if_range})
        for (auto [it, end] = req.equal_range(f); it != end; ++it) up_req.insert(f, it->value());
    up_req.keep_alive(true);

    const auth_target auth{registry, r.repository, ctx.rt.credentials->lookup(registry, r.repository),
                           transport && transport->insecure_http};
    if (auth.cred) rec.credential = auth.cred->key;
    if (auto preset = ctx.rt.auth->preset(auth); !preset.empty()) up_req.set(http::field::authorization, preset);

    upstream_response up;
    error_code ec;
    bool challenged = false;
    for (unsigned hop = 0;;) {
        up = co_await ctx.rt.upstream->exchange(where, up_req, head, ec);
        if (ec) {
            spdlog::warn("[{}] upstream {} failed: {}", ctx.id, where.key(), ec.message());
            // A timeout means it was reached but did not answer in time.
            std::string reason = "upstream_unreachable";
            if (ec == beast::error::timeout) reason = "upstream_timeout";
            failure refusal =
                upstream_failure(502, "upstream registry " + registry.key() + " failed: " + ec.message(), reason);
            co_return co_await refuse(std::move(refusal), "error");
        }
        const unsigned status = up.parser->get().result_int();
        rec.upstream_status = status;
        if (status == 401 && !challenged && where == registry_at) {
            // Authenticate as the registry asks, then retry once.
            challenged = true;
            auto answer = co_await ctx.rt.auth->answer(auth, up.parser->get());
            up.connection.reset();  // the 401 body is not needed
            if (!answer) {
                const auth_failure& f = answer.error();
                spdlog::warn("[{}] {}", ctx.id, f.message);
                failure refusal = upstream_failure(f.status, f.message, f.reason);
                if (f.status == 403) refusal = denied(f.message, f.reason);
                co_return co_await refuse(std::move(refusal), "error");
            }
            up_req.set(http::field::authorization, *answer);
            continue;
        }
        if (!is_redirect(status) || r.kind != request_kind::blob) break;
        auto location = up.parser->get()[http::field::location];
        auto next = redirect_target(where, up_req.target(), location);
        if (!next || ++hop > lim.max_redirects) {
            std::string what = "upstream registry " + registry.key();
            if (next)
                what += " redirected more than limits.maxRedirects times";
            else
                what += " sent an unusable redirect";
            failure refusal = upstream_failure(502, std::move(what), "upstream_bad_redirect");
            co_return co_await refuse(std::move(refusal), "error");
        }
        // The redirect body is not needed; the connection is not reused.
        up.connection.reset();
        // Credentials go to the registry's origin only (presigned URLs reject them anyway).
        if (!(next->first == where)) up_req.erase(http::field::authorization);
        where = std::move(next->first);
        up_req.target(next->second);
        up_req.set(http::field::host, host_header(where));
    }

    const unsigned up_status = up.parser->get().result_int();
    if (up_status == 401 || up_status == 403) {
        // pullgate's own attempt was refused. Never pass WWW-Authenticate on:
        // containerd would fetch a token itself, around pullgate.
        std::string who = "anonymous access";
        if (auth.cred) who = "the stored credentials (" + auth.cred->key + ")";
        const std::string message = "upstream " + registry.key() + " rejected " + who + " for " + r.repository + " (" +
                                    std::to_string(up_status) + ")";
        spdlog::warn("[{}] {}", ctx.id, message);
        failure refusal = denied(message, "upstream_auth_failed");
        co_return co_await refuse(std::move(refusal), "error");
    }

    // Verify what is addressed by digest and fetched whole.
    std::optional<digester> verify;
    if (!head && up_status == 200 && !req.count(http::field::range) &&
        (r.kind == request_kind::blob || (r.kind == request_kind::manifest && is_digest(r.reference))))
        verify.emplace(r.reference);
    if (r.kind == request_kind::manifest || r.kind == request_kind::tags || r.kind == request_kind::referrers) {
        auto len = up.parser->content_length();
        if (len && *len > lim.max_manifest_bytes) {
            failure refusal = upstream_failure(502, "upstream " + rec.kind + " is larger than limits.maxManifestBytes",
                                               "upstream_too_large");
            co_return co_await refuse(std::move(refusal), "error");
        }
        up.parser->body_limit(lim.max_manifest_bytes);
    }

    auto header = make_downstream_header(up.parser->get(), req.version(), keep_alive);
    rec.status = header.result_int();
    relay_result rr = co_await relay(up, ctx.down, header, head, verify ? &*verify : nullptr, *ctx.rt.buffers, lim);
    rec.bytes = rr.bytes;
    if (rr.upstream_reusable) ctx.rt.upstream->release(std::move(up.connection));
    if (!rr.complete) {
        if (rr.failure != "client_closed") rec.decision = "error";
        rec.reason = rr.failure;
        if (rr.failure == "digest_mismatch")
            spdlog::error("[{}] digest mismatch from {}: expected {}, got {}", ctx.id, registry.key(), r.reference,
                          rr.actual_digest);
        co_return false;
    }
    co_return keep_alive;
}

}  // namespace pullgate

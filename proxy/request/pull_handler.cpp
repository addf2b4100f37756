#include "pullgate/pull_handler.hpp"

#include "pullgate/digest.hpp"
#include "pullgate/relay.hpp"
#include "pullgate/request_plan.hpp"
#include "pullgate/upstream_round_trip.hpp"
#include "pullgate/version.hpp"

#include <spdlog/spdlog.h>

#include <optional>

namespace pullgate {
namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

// What the plan says about the request, for the decision log.
void record_plan(decision_record& rec, const request_plan& plan) {
    if (plan.kind) rec.kind = std::string(to_string(*plan.kind));
    rec.repository = plan.repository;
    rec.reference = plan.reference;
    if (plan.registry) rec.registry = plan.registry->key();
    rec.decision = plan.decision;
    rec.reason = plan.reason;
    rec.rule = plan.rule;
}

// The upstream request: only what a registry needs; never the client's Authorization.
upstream_request upstream_request_for(const request_context& ctx, const request_plan& plan, const origin& to) {
    upstream_request up{ctx.req.method(), plan.upstream_target, 11};
    up.set(http::field::host, host_header(to));
    up.set(http::field::user_agent, user_agent);
    for (auto f : {http::field::accept, http::field::range, http::field::if_none_match, http::field::if_range})
        for (auto [it, end] = ctx.req.equal_range(f); it != end; ++it) up.insert(f, it->value());
    up.keep_alive(true);
    return up;
}

// Answers with pullgate's own error body. Returns whether the connection may stay open.
asio::awaitable<bool> refuse(request_context& ctx, decision_record& rec, failure f, verdict decision) {
    rec.decision = decision;
    rec.reason = f.reason;
    rec.status = f.status;
    const bool keep_alive = ctx.req.keep_alive();
    const bool written = co_await write_error(ctx.down, f, ctx.req, keep_alive, ctx.rt.cfg->limits, rec.bytes);
    co_return written&& keep_alive;
}

// The answer's body must fit limits.maxManifestBytes where the plan bounds it.
std::optional<failure> too_large(const request_plan& plan, upstream_parser& parser, const limits& lim) {
    if (!plan.bounded_body) return std::nullopt;
    if (auto len = parser.content_length(); len && *len > lim.max_manifest_bytes)
        return upstream_failure(
            502, "upstream " + std::string(to_string(*plan.kind)) + " is larger than limits.maxManifestBytes",
            reason_code::upstream_too_large);
    parser.body_limit(lim.max_manifest_bytes);
    return std::nullopt;
}

// Relays the upstream answer and records how it ended. Returns whether the
// connection may stay open.
asio::awaitable<bool> relay_answer(request_context& ctx, decision_record& rec, const request_plan& plan,
                                   upstream_response& up) {
    const unsigned status = up.parser->get().result_int();
    const bool manifest = plan.kind == request_kind::manifest;
    // The manifest's digest for the decision log: the upstream's, or the one
    // computed while the body streams (verified when fetched by digest).
    if (manifest) rec.digest = up.parser->get()["Docker-Content-Digest"];
    std::optional<digester> hash;
    body_hash hashing;
    if (status == 200 && plan.verify) {
        hash.emplace(*plan.verify);
        hashing = {&*hash, true};
    } else if (status == 200 && manifest && !plan.head && rec.digest.empty()) {
        hash.emplace("sha256:");
        hashing = {&*hash, false};
    }
    const bool keep_alive = ctx.req.keep_alive();
    auto header = make_downstream_header(up.parser->get(), ctx.req.version(), keep_alive);
    rec.status = header.result_int();
    relay_result rr = co_await relay(up, ctx.down, header, plan.head, hashing, *ctx.rt.buffers, ctx.rt.cfg->limits);
    rec.bytes = rr.bytes;
    if (manifest && rec.digest.empty()) rec.digest = rr.body_digest;
    if (rr.upstream_reusable) ctx.rt.upstream->release(std::move(up.connection));
    if (rr.complete()) co_return keep_alive;
    rec.reason = reason_for(rr.outcome);
    if (rr.outcome != relay_outcome::client_closed) rec.decision = verdict::error;
    if (rr.outcome == relay_outcome::digest_mismatch) {
        rec.digest.clear();  // never log the digest of content the client did not get
        spdlog::error("[{}] digest mismatch from {}: expected {}, got {}", ctx.id, rec.registry, plan.reference,
                      rr.body_digest);
    }
    co_return false;
}

// A credential source that failed: the pull fails closed.
asio::awaitable<bool> refuse_source(request_context& ctx, decision_record& rec, const credential_source_error& e) {
    rec.credential = e.source;
    spdlog::warn("[{}] {}", ctx.id, e.message);
    failure f = upstream_failure(502, e.message, reason_code::credential_source_failed);
    co_return co_await refuse(ctx, rec, std::move(f), verdict::error);
}

// The upstream request with `source`'s credential (a cached token or Basic
// header up front), through the round trip.
asio::awaitable<round_trip_result> ask_upstream(request_context& ctx, const request_plan& plan,
                                                const resolved_credential& source) {
    const runtime& rt = ctx.rt;
    const registry_transport* transport = rt.cfg->transport_for(*plan.registry);
    const auth_target auth{*plan.registry, plan.repository, source.cred.get(), transport && transport->insecure_http};
    upstream_request up_req = upstream_request_for(ctx, plan, registry_origin(*plan.registry, transport));
    if (auto preset = rt.auth->preset(auth); !preset.empty()) up_req.set(http::field::authorization, preset);
    co_return co_await round_trip(rt, ctx.id, plan, auth, up_req);
}

}  // namespace

asio::awaitable<bool> handle_pull(request_context& ctx, decision_record& rec) {
    const runtime& rt = ctx.rt;
    const request_plan plan =
        plan_request({ctx.req.method_string(), ctx.req.target(), ctx.req.count(http::field::range) > 0}, *rt.cfg,
                     rt.credential_keys);
    record_plan(rec, plan);
    if (plan.action == plan_action::refuse) co_return co_await refuse(ctx, rec, *plan.refusal, plan.decision);
    if (plan.action == plan_action::answer_ping) {
        rec.status = 200;
        const bool keep_alive = ctx.req.keep_alive();
        co_return co_await write_json(ctx.down, 200, "{}", ctx.req, keep_alive, rt.cfg->limits, rec.bytes) &&
            keep_alive;
    }
    if (rt.log->refuses_requests()) {
        failure f = upstream_failure(503,
                                     "the decision log cannot be written and decisionLog.onWriteError is deny: "
                                     "pulls are refused until it can",
                                     reason_code::decision_log_unavailable);
        co_return co_await refuse(ctx, rec, std::move(f), verdict::deny);
    }

    // The credential: none for an unlisted registry pulled anonymously;
    // otherwise from the source the order picks (stored, helper, plugin, or none).
    resolved_credential source{"anonymous", nullptr, {}, true};
    if (plan.reason != reason_code::anonymous_unlisted) {
        auto resolved = co_await rt.resolver->resolve(*plan.registry, plan.repository);
        if (!resolved) co_return co_await refuse_source(ctx, rec, resolved.error());
        source = std::move(*resolved);
    }
    rec.credential = source.source;

    round_trip_result answer = co_await ask_upstream(ctx, plan, source);
    if (answer.refusal && answer.refusal->reason == reason_code::upstream_auth_failed && source.from_cache &&
        !source.cache_key.empty()) {
        // The upstream rejected a cached helper/plugin answer, which may have
        // rotated: drop it, ask the source again and retry once.
        rt.resolver->forget(source);
        auto fresh = co_await rt.resolver->resolve(*plan.registry, plan.repository);
        if (!fresh) co_return co_await refuse_source(ctx, rec, fresh.error());
        source = std::move(*fresh);
        answer = co_await ask_upstream(ctx, plan, source);
    }
    rec.upstream_status = answer.upstream_status;
    if (answer.refusal) co_return co_await refuse(ctx, rec, std::move(*answer.refusal), verdict::error);
    if (auto f = too_large(plan, *answer.response.parser, rt.cfg->limits))
        co_return co_await refuse(ctx, rec, std::move(*f), verdict::error);
    co_return co_await relay_answer(ctx, rec, plan, answer.response);
}

}  // namespace pullgate

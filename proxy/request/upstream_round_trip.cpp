#include "pullgate/upstream_round_trip.hpp"

#include <boost/beast/core/error.hpp>
#include <spdlog/spdlog.h>

namespace pullgate {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

bool is_redirect(unsigned status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

round_trip_result refused(round_trip_result r, failure f) {
    r.response = upstream_response{};
    r.refusal = std::move(f);
    return r;
}

// pullgate's own attempt was refused.
failure rejected_credentials(const request_plan& plan, const auth_target& auth, unsigned status) {
    std::string who = "anonymous access";
    if (auth.cred) who = "the stored credentials (" + auth.cred->key + ")";
    return denied("upstream " + plan.registry->key() + " rejected " + who + " for " + plan.repository + " (" +
                      std::to_string(status) + ")",
                  reason_code::upstream_auth_failed);
}

}  // namespace

asio::awaitable<round_trip_result> round_trip(const runtime& rt, std::string_view request_id, const request_plan& plan,
                                              const auth_target& auth, upstream_request& req) {
    const std::string registry = plan.registry->key();
    const origin registry_at = registry_origin(*plan.registry, rt.cfg->transport_for(*plan.registry));
    origin where = registry_at;
    round_trip_result out;
    bool challenged = false;
    for (unsigned hop = 0;;) {
        error_code ec;
        out.response = co_await rt.upstream->exchange(where, req, plan.head, ec);
        if (ec) {
            spdlog::warn("[{}] upstream {} failed: {}", request_id, where.key(), ec.message());
            // A timeout means it was reached but did not answer in time.
            const reason_code why =
                ec == beast::error::timeout ? reason_code::upstream_timeout : reason_code::upstream_unreachable;
            co_return refused(std::move(out),
                              upstream_failure(502, "upstream registry " + registry + " failed: " + ec.message(), why));
        }
        const auto& answer = out.response.parser->get();
        out.upstream_status = answer.result_int();
        if (out.upstream_status == 401 && !challenged && where == registry_at) {
            // Authenticate as the registry asks, then retry once.
            challenged = true;
            auto authorization = co_await rt.auth->answer(auth, answer);
            out.response.connection.reset();  // the 401 body is not needed
            if (!authorization) {
                spdlog::warn("[{}] {}", request_id, authorization.error().message);
                co_return refused(std::move(out), authorization.error());
            }
            req.set(http::field::authorization, *authorization);
            continue;
        }
        if (is_redirect(out.upstream_status) && plan.kind == request_kind::blob) {
            auto next = redirect_target(where, req.target(), answer[http::field::location]);
            if (!next || ++hop > rt.cfg->limits.max_redirects) {
                std::string what = "upstream registry " + registry;
                what += next ? " redirected more than limits.maxRedirects times" : " sent an unusable redirect";
                co_return refused(std::move(out),
                                  upstream_failure(502, std::move(what), reason_code::upstream_bad_redirect));
            }
            // The redirect body is not needed; the connection is not reused.
            out.response.connection.reset();
            // Credentials go to the registry's origin only (presigned URLs reject them anyway).
            if (!(next->to == where)) req.erase(http::field::authorization);
            where = std::move(next->to);
            req.target(next->target);
            req.set(http::field::host, host_header(where));
            continue;
        }
        break;
    }
    if (out.upstream_status == 401 || out.upstream_status == 403) {
        failure f = rejected_credentials(plan, auth, out.upstream_status);
        spdlog::warn("[{}] {}", request_id, f.message);
        co_return refused(std::move(out), std::move(f));
    }
    co_return out;
}

}  // namespace pullgate

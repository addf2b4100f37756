#include "pullgate/origin.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

namespace pullgate {
namespace {

std::string bracketed(const std::string& host) {
    return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

std::string origin::key() const {
    return std::string(tls ? "https://" : "http://") + bracketed(host) + ":" + std::to_string(port);
}

origin registry_origin(const registry_name& r, const registry_transport* t) {
    origin o;
    o.tls = !(t && t->insecure_http);
    o.host = r.endpoint_host();
    o.port = r.port != 0 ? r.port : (o.tls ? 443 : 80);
    return o;
}

std::string host_header(const origin& o) {
    std::string h = bracketed(o.host);
    if (o.port != (o.tls ? 443 : 80)) h += ":" + std::to_string(o.port);
    return h;
}

std::optional<redirect> redirect_target(const origin& from, std::string_view from_target, std::string_view location) {
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
    redirect out;
    if (dest.scheme_id() == boost::urls::scheme::https)
        out.to.tls = true;
    else if (dest.scheme_id() == boost::urls::scheme::http)
        out.to.tls = false;
    else
        return std::nullopt;
    if (from.tls && !out.to.tls) return std::nullopt;  // never downgrade
    out.to.host = dest.host_address();
    if (out.to.host.empty()) return std::nullopt;
    out.to.port = dest.has_port() ? dest.port_number() : (out.to.tls ? 443 : 80);
    if (out.to.port == 0) return std::nullopt;
    out.target = dest.encoded_path().empty() ? "/" : std::string(dest.encoded_path());
    if (dest.has_query()) out.target += "?" + std::string(dest.encoded_query());
    return out;
}

}  // namespace pullgate

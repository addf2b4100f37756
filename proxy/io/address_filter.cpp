#include "pullgate/address_filter.hpp"

#include <boost/url/ipv4_address.hpp>
#include <boost/url/ipv6_address.hpp>

namespace pullgate {
namespace asio = boost::asio;

bool is_ip_literal(const std::string& host) {
    return boost::urls::parse_ipv4_address(host).has_value() || boost::urls::parse_ipv6_address(host).has_value();
}

bool is_forbidden_resolution(const asio::ip::address& a) {
    if (a.is_unspecified() || a.is_multicast()) return true;
    if (a.is_v4()) return (a.to_v4().to_uint() & 0xffff0000u) == 0xa9fe0000u;
    const auto v6 = a.to_v6();
    if (v6.is_link_local() || v6.is_multicast_link_local()) return true;
    if (v6.is_v4_mapped()) return is_forbidden_resolution(asio::ip::make_address_v4(asio::ip::v4_mapped, v6));
    return false;
}

std::vector<asio::ip::tcp::endpoint> dialable_endpoints(const std::string& host,
                                                        const asio::ip::tcp::resolver::results_type& resolved) {
    const bool literal = is_ip_literal(host);
    std::vector<asio::ip::tcp::endpoint> out;
    for (const auto& entry : resolved)
        if (literal || !is_forbidden_resolution(entry.endpoint().address())) out.push_back(entry.endpoint());
    return out;
}

}  // namespace pullgate

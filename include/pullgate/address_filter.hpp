// Which resolved addresses pullgate may dial for an upstream host: a registry
// reached by DNS name is never dialled at a link-local (cloud metadata),
// unspecified or multicast address; an IP registry is dialled as allowlisted.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <string>
#include <vector>

namespace pullgate {

// True for an IPv4 or IPv6 literal (without brackets).
bool is_ip_literal(const std::string& host);

// Link-local (169.254/16, fe80::/10), unspecified, multicast, and their
// IPv4-mapped forms.
bool is_forbidden_resolution(const boost::asio::ip::address& a);

// The endpoints of `resolved` that may be dialled for `host`: all of them for
// an IP literal, the others only when not forbidden.
std::vector<boost::asio::ip::tcp::endpoint> dialable_endpoints(
    const std::string& host, const boost::asio::ip::tcp::resolver::results_type& resolved);

}  // namespace pullgate

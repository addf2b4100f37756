// TLS client contexts for upstream connections: the system CAs, TLS 1.2 at
// least, peer verification, session resumption; a registry's own caFile and
// client certificate apply to that registry's origin only (redirect targets
// such as CDNs are verified against the system CAs).
#pragma once

#include "pullgate/config.hpp"
#include "pullgate/origin.hpp"

#include <boost/asio/ssl/context.hpp>

#include <map>
#include <memory>
#include <string>

namespace pullgate {

class tls_contexts {
public:
    // Throws config_error when a CA file, client certificate or key cannot be loaded.
    explicit tls_contexts(const config& cfg);

    boost::asio::ssl::context& for_origin(const origin& o);

private:
    boost::asio::ssl::context default_;
    std::map<std::string, std::unique_ptr<boost::asio::ssl::context>> by_origin_;  // origin key
};

}  // namespace pullgate

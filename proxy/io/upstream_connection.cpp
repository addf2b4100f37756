#include "pullgate/upstream_connection.hpp"

#include "pullgate/upstream_pool.hpp"

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include <cstdio>

namespace pullgate {
namespace asio = boost::asio;

std::string pool_key_for(const origin& o, const asio::any_io_executor& ex) {
    const void* context = &asio::query(ex, asio::execution::context);
    char buf[32];
    std::snprintf(buf, sizeof buf, "#%p", context);
    return o.key() + buf;
}

upstream_connection::upstream_connection(asio::any_io_executor ex, asio::ssl::context& ctx, origin o,
                                         upstream_pool& pool, metrics& stats)
    : stream_(ex, ctx),
      origin_(std::move(o)),
      origin_key_(origin_.key()),
      pool_key_(pool_key_for(origin_, ex)),
      pool_(pool),
      stats_(stats) {
    ++stats_.upstream_connections;
}

upstream_connection::~upstream_connection() {
    --stats_.upstream_connections;
    pool_.closed(origin_key_);
}

}  // namespace pullgate

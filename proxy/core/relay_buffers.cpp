#include "pullgate/relay_buffers.hpp"

#include <algorithm>
#include <utility>

namespace pullgate {

relay_buffers::lease::lease(lease&& other) noexcept
    : data_(std::move(other.data_)),
      size_(std::exchange(other.size_, 0)),
      reserved_(std::exchange(other.reserved_, 0)),
      owner_(std::exchange(other.owner_, nullptr)) {}

relay_buffers::lease& relay_buffers::lease::operator=(lease&& other) noexcept {
    if (this != &other) {
        give_back();
        data_ = std::move(other.data_);
        size_ = std::exchange(other.size_, 0);
        reserved_ = std::exchange(other.reserved_, 0);
        owner_ = std::exchange(other.owner_, nullptr);
    }
    return *this;
}

relay_buffers::lease::~lease() {
    give_back();
}

void relay_buffers::lease::give_back() noexcept {
    if (owner_ && reserved_ > 0) owner_->in_use_.fetch_sub(reserved_, std::memory_order_relaxed);
    reserved_ = 0;
    owner_ = nullptr;
}

relay_buffers::lease relay_buffers::acquire(std::optional<std::uint64_t> body_size, const limits& lim) {
    const std::size_t most = std::max(min_buffer, lim.relay_buffer_bytes);
    const std::size_t want =
        body_size ? static_cast<std::size_t>(std::clamp<std::uint64_t>(*body_size, min_buffer, most)) : most;
    lease l;
    l.size_ = std::min(want, fallback);
    std::size_t used = in_use_.load(std::memory_order_relaxed);
    while (used + want <= lim.relay_buffer_total_bytes) {
        if (in_use_.compare_exchange_weak(used, used + want, std::memory_order_relaxed)) {
            l.size_ = want;
            l.reserved_ = want;
            l.owner_ = this;
            break;
        }
    }
    l.data_ = std::make_unique_for_overwrite<char[]>(l.size_);
    return l;
}

}  // namespace pullgate

// Relay buffers, sized per body and drawn from a process-wide budget. A blob
// relay gets `limits.relay_buffer_bytes` (fewer, larger reads and writes, one
// client wake-up per buffer: a faster pull), a smaller body a buffer its
// size, both while all buffers handed out stay within
// `limits.relay_buffer_total_bytes`. Beyond that a relay gets `fallback`
// bytes: memory stays bounded by the number of connections however many
// blobs stream at once. Shared across reloads; thread-safe. Pure: no I/O.
#pragma once

#include "pullgate/config.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

namespace pullgate {

class relay_buffers {
public:
    // A buffer for one relay; gives its share of the budget back when destroyed.
    class lease {
    public:
        lease() = default;
        lease(lease&& other) noexcept;
        lease& operator=(lease&& other) noexcept;
        ~lease();

        std::span<char> bytes() const { return {data_.get(), size_}; }
        bool budgeted() const { return reserved_ > 0; }

    private:
        friend class relay_buffers;
        void give_back() noexcept;
        std::unique_ptr<char[]> data_;
        std::size_t size_ = 0;
        std::size_t reserved_ = 0;  // bytes counted against the budget
        relay_buffers* owner_ = nullptr;
    };

    static constexpr std::size_t min_buffer = 4096;
    static constexpr std::size_t fallback = 16 * 1024;  // one TLS record

    // `body_size` is the Content-Length, or nullopt for a body of unknown
    // length (chunked).
    lease acquire(std::optional<std::uint64_t> body_size, const limits& lim);

    std::size_t bytes_in_use() const { return in_use_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::size_t> in_use_{0};
};

}  // namespace pullgate

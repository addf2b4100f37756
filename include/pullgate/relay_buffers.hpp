// Relay buffers, sized per body: a small body gets a buffer its size, a blob
// gets `limits.relay_buffer_bytes`, and a blob may get the larger
// `limits.relay_large_buffer_bytes` while the large buffers handed out stay
// within `limits.relay_large_buffer_total_bytes`. Fewer, larger reads and
// writes make a single pull faster (one loop turn, one client wake-up per
// large buffer), and the budget keeps memory bounded by the number of
// connections however many blobs stream at once. Process-wide, shared across
// reloads; thread-safe. Pure: no I/O.
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
    // A buffer for one relay; gives its share of the large-buffer budget
    // back when destroyed.
    class lease {
    public:
        lease() = default;
        lease(lease&& other) noexcept;
        lease& operator=(lease&& other) noexcept;
        ~lease();

        std::span<char> bytes() const { return {data_.get(), size_}; }
        bool large() const { return reserved_ > 0; }

    private:
        friend class relay_buffers;
        void give_back() noexcept;
        std::unique_ptr<char[]> data_;
        std::size_t size_ = 0;
        std::size_t reserved_ = 0;  // bytes counted against the large budget
        relay_buffers* owner_ = nullptr;
    };

    // `body_size` is the Content-Length, or nullopt for a body of unknown
    // length (chunked).
    lease acquire(std::optional<std::uint64_t> body_size, const limits& lim);

    std::size_t large_bytes_in_use() const { return large_in_use_.load(std::memory_order_relaxed); }

    static constexpr std::size_t min_buffer = 4096;

private:
    std::atomic<std::size_t> large_in_use_{0};
};

}  // namespace pullgate

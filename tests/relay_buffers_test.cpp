// Tests for include/pullgate/relay_buffers.hpp: buffer sizes per body and the
// process-wide budget (docs/ARCHITECTURE.md, "Relay": memory bounded by connections, not by blob
// sizes).
#include "pullgate/relay_buffers.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

using namespace pullgate;

namespace {

limits sized(std::size_t per_relay, std::size_t total) {
    limits l;
    l.relay_buffer_bytes = per_relay;
    l.relay_buffer_total_bytes = total;
    return l;
}

constexpr std::size_t KiB = 1024;

}  // namespace

TEST_CASE("relay_buffers: the buffer follows the body size") {
    const limits lim = sized(256 * KiB, 1024 * KiB);
    relay_buffers buffers;
    struct size_case {
        std::optional<std::uint64_t> body;
        std::size_t expected;
    };
    const std::vector<size_case> cases = {
        {0, relay_buffers::min_buffer},    // empty body: the minimum
        {100, relay_buffers::min_buffer},  // small manifest: the minimum
        {10'000, 10'000},                  // a body below the relay size: its size
        {256 * KiB - 1, 256 * KiB - 1},
        {256 * KiB, 256 * KiB},
        {512ull << 20, 256 * KiB},  // a blob: the relay size
        {std::nullopt, 256 * KiB},  // chunked, length unknown: the relay size
    };
    for (const auto& c : cases) {
        CAPTURE(c.body.value_or(0));
        CAPTURE(c.body.has_value());
        const auto lease = buffers.acquire(c.body, lim);
        CHECK(lease.bytes().size() == c.expected);
        CHECK(lease.budgeted());
        CHECK(buffers.bytes_in_use() == c.expected);
        std::memset(lease.bytes().data(), 0xab, lease.bytes().size());  // all of it is usable (ASan checks)
    }
    CHECK(buffers.bytes_in_use() == 0);
}

TEST_CASE("relay_buffers: beyond the total, relays get the fallback size") {
    const limits lim = sized(256 * KiB, 1024 * KiB);
    relay_buffers buffers;
    std::vector<relay_buffers::lease> held;
    for (int i = 0; i < 4; ++i) {
        held.push_back(buffers.acquire(1ull << 30, lim));
        CHECK(held.back().budgeted());
    }
    CHECK(buffers.bytes_in_use() == 1024 * KiB);
    auto over = buffers.acquire(1ull << 30, lim);
    CHECK_FALSE(over.budgeted());
    CHECK(over.bytes().size() == relay_buffers::fallback);
    auto small = buffers.acquire(1000, lim);  // a manifest still gets its few KiB
    CHECK(small.bytes().size() == relay_buffers::min_buffer);
    CHECK_FALSE(small.budgeted());
    CHECK(buffers.bytes_in_use() == 1024 * KiB);

    held.pop_back();  // a relay ends: its share comes back
    CHECK(buffers.bytes_in_use() == 768 * KiB);
    auto next = buffers.acquire(1ull << 30, lim);
    CHECK(next.budgeted());
    CHECK(next.bytes().size() == 256 * KiB);

    // Moving a lease moves its share, once.
    relay_buffers::lease moved = std::move(next);
    CHECK(moved.budgeted());
    CHECK(buffers.bytes_in_use() == 1024 * KiB);
    moved = relay_buffers::lease{};
    CHECK(buffers.bytes_in_use() == 768 * KiB);
    held.clear();
    over = relay_buffers::lease{};
    CHECK(buffers.bytes_in_use() == 0);
}

TEST_CASE("relay_buffers: a relay size at or below the fallback is never cut") {
    relay_buffers buffers;
    const limits lim = sized(8 * KiB, 4 * KiB);  // the total cannot hold even one
    const auto lease = buffers.acquire(1ull << 30, lim);
    CHECK(lease.bytes().size() == 8 * KiB);
    CHECK_FALSE(lease.budgeted());
    CHECK(buffers.bytes_in_use() == 0);
}

TEST_CASE("relay_buffers: the total holds under concurrent relays") {
    const limits lim = sized(256 * KiB, 1024 * KiB);
    relay_buffers buffers;
    std::atomic<std::size_t> over{0};
    std::atomic<std::size_t> budgeted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                auto lease = buffers.acquire(1ull << 30, lim);
                if (lease.budgeted()) ++budgeted;
                if (buffers.bytes_in_use() > lim.relay_buffer_total_bytes) ++over;
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(over == 0);
    CHECK(budgeted > 0);
    CHECK(buffers.bytes_in_use() == 0);
}

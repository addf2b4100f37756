// Tests for include/pullgate/relay_buffers.hpp: buffer sizes per body and the
// process-wide budget for large buffers (DESIGN §4: memory bounded by
// connections, not by blob sizes).
#include "pullgate/relay_buffers.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <thread>
#include <vector>

using namespace pullgate;

namespace {

limits sized(std::size_t floor, std::size_t large, std::size_t total) {
    limits l;
    l.relay_buffer_bytes = floor;
    l.relay_large_buffer_bytes = large;
    l.relay_large_buffer_total_bytes = total;
    return l;
}

}  // namespace

TEST_CASE("relay_buffers: the buffer follows the body size") {
    const limits lim = sized(64 * 1024, 256 * 1024, 1024 * 1024);
    relay_buffers buffers;
    struct size_case {
        std::optional<std::uint64_t> body;
        std::size_t expected;
        bool large;
    };
    const std::vector<size_case> cases = {
        {0, relay_buffers::min_buffer, false},                  // empty body: the minimum
        {100, relay_buffers::min_buffer, false},                // small manifest: the minimum
        {10'000, 10'000, false},                                // a body below the floor: its size
        {64 * 1024 - 1, 64 * 1024 - 1, false},
        {std::nullopt, 64 * 1024, false},                       // chunked: the floor, never large
        {64 * 1024, 64 * 1024, false},                          // exactly the floor: no gain from more
        {100'000, 100'000, true},                               // between floor and large: its size
        {512ull << 20, 256 * 1024, true},                       // a blob: the large buffer
    };
    for (const auto& c : cases) {
        CAPTURE(c.body.value_or(0));
        CAPTURE(c.body.has_value());
        const auto lease = buffers.acquire(c.body, lim);
        CHECK(lease.bytes().size() == c.expected);
        CHECK(lease.large() == c.large);
        CHECK(buffers.large_bytes_in_use() == (c.large ? c.expected : 0));
        std::memset(lease.bytes().data(), 0xab, lease.bytes().size());  // all of it is usable (ASan checks)
    }
    CHECK(buffers.large_bytes_in_use() == 0);
}

TEST_CASE("relay_buffers: large buffers stay within the total, then blobs get the floor") {
    const limits lim = sized(64 * 1024, 256 * 1024, 1024 * 1024);
    relay_buffers buffers;
    std::vector<relay_buffers::lease> held;
    for (int i = 0; i < 4; ++i) {
        held.push_back(buffers.acquire(1ull << 30, lim));
        CHECK(held.back().large());
    }
    CHECK(buffers.large_bytes_in_use() == 1024 * 1024);
    auto fifth = buffers.acquire(1ull << 30, lim);
    CHECK_FALSE(fifth.large());
    CHECK(fifth.bytes().size() == 64 * 1024);
    CHECK(buffers.large_bytes_in_use() == 1024 * 1024);

    held.pop_back();  // a relay ends: its share comes back
    CHECK(buffers.large_bytes_in_use() == 768 * 1024);
    auto next = buffers.acquire(1ull << 30, lim);
    CHECK(next.large());

    // Moving a lease moves its share, once.
    relay_buffers::lease moved = std::move(next);
    CHECK(moved.large());
    CHECK(buffers.large_bytes_in_use() == 1024 * 1024);
    moved = relay_buffers::lease{};
    CHECK(buffers.large_bytes_in_use() == 768 * 1024);
    held.clear();
    fifth = relay_buffers::lease{};
    CHECK(buffers.large_bytes_in_use() == 0);
}

TEST_CASE("relay_buffers: a large size not above the floor turns large buffers off") {
    relay_buffers buffers;
    const auto lease = buffers.acquire(1ull << 30, sized(64 * 1024, 64 * 1024, 1024 * 1024));
    CHECK(lease.bytes().size() == 64 * 1024);
    CHECK_FALSE(lease.large());
    const auto tiny_total = buffers.acquire(1ull << 30, sized(64 * 1024, 256 * 1024, 100 * 1024));
    CHECK(tiny_total.bytes().size() == 64 * 1024);  // the total cannot hold one large buffer
    CHECK(buffers.large_bytes_in_use() == 0);
}

TEST_CASE("relay_buffers: the total holds under concurrent relays") {
    const limits lim = sized(64 * 1024, 256 * 1024, 1024 * 1024);
    relay_buffers buffers;
    std::atomic<std::size_t> over{0};
    std::atomic<std::size_t> large_seen{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                auto lease = buffers.acquire(1ull << 30, lim);
                if (lease.large()) ++large_seen;
                if (buffers.large_bytes_in_use() > lim.relay_large_buffer_total_bytes) ++over;
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(over == 0);
    CHECK(large_seen > 0);
    CHECK(buffers.large_bytes_in_use() == 0);
}

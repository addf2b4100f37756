// Tests for include/pullgate/digest.hpp: incremental sha256/sha512 used to
// verify blobs while they stream (docs/ARCHITECTURE.md, "Relay"). Vectors from FIPS 180-2.
#include "pullgate/digest.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

using namespace pullgate;

namespace {

struct vector_case {
    std::string input;
    std::string digest;
};

const std::string million_a(1'000'000, 'a');

const std::vector<vector_case> sha256_vectors = {
    {"", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {million_a, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
};

const std::vector<vector_case> sha512_vectors = {
    {"",
     "sha512:"
     "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a"
     "538327af927da3e"},
    {"abc",
     "sha512:"
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2"
     "a9ac94fa54ca49f"},
};

std::string with_last_hex_changed(std::string digest) {
    digest.back() = digest.back() == '0' ? '1' : '0';
    return digest;
}

}  // namespace

TEST_CASE("sha256_digest matches the FIPS 180-2 vectors") {
    for (const auto& v : sha256_vectors) {
        CAPTURE(v.input.size());
        CHECK(sha256_digest(v.input) == v.digest);
    }
}

TEST_CASE("digester: one shot over the known vectors, sha256 and sha512") {
    std::vector<vector_case> all = sha256_vectors;
    all.insert(all.end(), sha512_vectors.begin(), sha512_vectors.end());
    for (const auto& v : all) {
        CAPTURE(v.digest);
        digester d(v.digest);
        d.update(std::span<const char>(v.input.data(), v.input.size()));
        CHECK(d.matches());
        CHECK(d.actual() == v.digest);
    }
}

TEST_CASE("digester: incremental updates over several spans equal one shot") {
    std::vector<vector_case> all = sha256_vectors;
    all.insert(all.end(), sha512_vectors.begin(), sha512_vectors.end());
    const std::vector<std::size_t> chunk_sizes = {1, 3, 63, 64, 65, 4096, 65536};
    for (const auto& v : all) {
        for (std::size_t chunk : chunk_sizes) {
            CAPTURE(v.digest);
            CAPTURE(chunk);
            digester d(v.digest);
            d.update(std::span<const char>());  // empty updates change nothing
            for (std::size_t off = 0; off < v.input.size(); off += chunk) {
                const std::size_t n = std::min(chunk, v.input.size() - off);
                d.update(std::span<const char>(v.input.data() + off, n));
                d.update(std::span<const char>(v.input.data() + off + n, 0));
            }
            CHECK(d.matches());
            CHECK(d.actual() == v.digest);
        }
    }
}

TEST_CASE("digester: a mismatch reports what was actually hashed") {
    struct mismatch_case {
        std::string expected;
        std::string input;
        std::string actual;
    };
    const std::vector<mismatch_case> cases = {
        {with_last_hex_changed(sha256_vectors[1].digest), "abc", sha256_vectors[1].digest},
        {sha256_vectors[1].digest, "abd", sha256_digest("abd")},
        {sha256_vectors[1].digest, "", sha256_vectors[0].digest},
        {sha256_vectors[0].digest, std::string(1, '\0'), sha256_digest(std::string(1, '\0'))},
        {with_last_hex_changed(sha512_vectors[1].digest), "abc", sha512_vectors[1].digest},
        {sha512_vectors[0].digest, "abc", sha512_vectors[1].digest},
    };
    for (const auto& c : cases) {
        CAPTURE(c.expected);
        CAPTURE(c.input.size());
        digester d(c.expected);
        d.update(std::span<const char>(c.input.data(), c.input.size()));
        CHECK_FALSE(d.matches());
        CHECK(d.actual() == c.actual);
        CHECK(d.actual() != c.expected);
    }
}

TEST_CASE("digester: the algorithm follows the expected digest") {
    const std::string input = "The quick brown fox jumps over the lazy dog";
    digester d256("sha256:" + std::string(64, '0'));
    digester d512("sha512:" + std::string(128, '0'));
    d256.update(std::span<const char>(input.data(), input.size()));
    d512.update(std::span<const char>(input.data(), input.size()));
    CHECK_FALSE(d256.matches());
    CHECK_FALSE(d512.matches());
    CHECK(d256.actual().starts_with("sha256:"));
    CHECK(d256.actual().size() == 7 + 64);
    CHECK(d512.actual().starts_with("sha512:"));
    CHECK(d512.actual().size() == 7 + 128);
    CHECK(d256.actual() == sha256_digest(input));
}

TEST_CASE("digester: a moved digester keeps its state") {
    const std::string input = "abc";
    digester a(sha256_vectors[1].digest);
    a.update(std::span<const char>(input.data(), 1));
    digester b(std::move(a));
    b.update(std::span<const char>(input.data() + 1, 2));
    digester c(sha256_vectors[0].digest);
    c = std::move(b);
    CHECK(c.matches());
    CHECK(c.actual() == sha256_vectors[1].digest);
}

// Content digests (sha256, sha512) computed incrementally with OpenSSL EVP,
// so a blob can be verified while it streams. Pure; no I/O.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace pullgate {

class digester {
public:
    // `expected` is an OCI digest "sha256:<hex>" or "sha512:<hex>", already
    // validated by is_valid_digest().
    explicit digester(std::string_view expected);
    ~digester();
    digester(digester&&) noexcept;
    digester& operator=(digester&&) noexcept;

    void update(std::span<const char> bytes);
    // Finishes the hash; true when it equals the expected digest. Call once.
    bool matches();
    // "algo:hex" of what was hashed; valid after matches().
    const std::string& actual() const { return actual_; }

private:
    struct ctx_deleter {
        void operator()(void* p) const;
    };
    std::unique_ptr<void, ctx_deleter> ctx_;
    std::string expected_;
    std::string actual_;
};

// One-shot digest of `bytes` as "sha256:<hex>".
std::string sha256_digest(std::string_view bytes);

}  // namespace pullgate

#include "pullgate/digest.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace pullgate {
namespace {

std::string to_hex(const unsigned char* data, unsigned len) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned i = 0; i < len; ++i) {
        out += digits[data[i] >> 4];
        out += digits[data[i] & 0xf];
    }
    return out;
}

}  // namespace

void digester::ctx_deleter::operator()(void* p) const {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(p));
}

digester::digester(std::string_view expected) : ctx_(EVP_MD_CTX_new()), expected_(expected) {
    if (!ctx_) throw std::bad_alloc();
    const EVP_MD* md = expected.starts_with("sha512:") ? EVP_sha512() : EVP_sha256();
    if (EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_.get()), md, nullptr) != 1)
        throw std::runtime_error("EVP_DigestInit_ex failed");
}

digester::~digester() = default;
digester::digester(digester&&) noexcept = default;
digester& digester::operator=(digester&&) noexcept = default;

void digester::update(std::span<const char> bytes) {
    EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_.get()), bytes.data(), bytes.size());
}

bool digester::matches() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_.get()), md, &len);
    actual_ = expected_.substr(0, expected_.find(':') + 1) + to_hex(md, len);
    return actual_ == expected_;
}

std::string sha256_digest(std::string_view bytes) {
    digester d("sha256:");
    d.update(bytes);
    d.matches();
    return d.actual();
}

}  // namespace pullgate

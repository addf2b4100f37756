// Invariant checks for the fuzz targets: a violated invariant prints what
// was expected and aborts, so libFuzzer records the input as a crash.
#pragma once

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <typeinfo>

namespace pullgate_fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "\n==== pullgate fuzz invariant violated at %s:%d\n  %s\n", file, line, what);
    if (!detail.empty()) std::fprintf(stderr, "  detail: %.*s\n", static_cast<int>(detail.size()), detail.data());
    std::fflush(stderr);
    std::abort();
}

// Any exception other than the allowed one is a finding: name its type.
[[noreturn]] inline void unexpected_exception(const char* file, int line) {
    try {
        throw;
    } catch (const std::exception& e) {
        int status = 0;
        char* name = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
        std::fprintf(stderr, "\n==== unexpected exception %s: %s\n", status == 0 ? name : typeid(e).name(), e.what());
        std::free(name);
    } catch (...) {
        std::fprintf(stderr, "\n==== unexpected non-std exception\n");
    }
    fail(file, line, "only pullgate::config_error may escape");
}

}  // namespace pullgate_fuzz

#define FUZZ_CHECK(cond, ...)                                                                     \
    do {                                                                                          \
        if (!(cond)) ::pullgate_fuzz::fail(__FILE__, __LINE__, #cond __VA_OPT__(, ) __VA_ARGS__); \
    } while (0)

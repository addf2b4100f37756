#include "pullgate/error.hpp"

#include <nlohmann/json.hpp>

namespace pullgate {

failure bad_request(std::string code, std::string message) {
    return {400, std::move(code), std::move(message), reason_code::bad_request};
}

failure not_found(std::string code, std::string message, reason_code reason) {
    return {404, std::move(code), std::move(message), reason};
}

failure denied(std::string message, reason_code reason) {
    return {403, "DENIED", std::move(message), reason};
}

failure unsupported(std::string message) {
    return {405, "UNSUPPORTED", std::move(message), reason_code::unsupported};
}

failure upstream_failure(unsigned status, std::string message, reason_code reason) {
    return {status, "UNAVAILABLE", std::move(message), reason};
}

std::string oci_error_body(const failure& f) {
    nlohmann::json body = {
        {"errors",
         nlohmann::json::array({{{"code", f.code}, {"message", f.message}, {"detail", nlohmann::json::object()}}})}};
    // replace invalid UTF-8 instead of throwing: messages may quote client input
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace pullgate

// The docker credential helper protocol, client side, as docker's
// credential-helpers `client` package speaks it: `docker-credential-<name>
// get`, the server URL and a newline on stdin, a JSON answer on stdout.
// Pure: building the request and reading the answer; running the program is
// credential_resolver's job.
#pragma once

#include "pullgate/registry_name.hpp"

#include <string>
#include <string_view>

namespace pullgate {

// The program for helper `name`: "docker-credential-<name>".
std::string helper_program(std::string_view name);

// The server as docker names it to helpers: "https://index.docker.io/v1/"
// for Docker Hub, "host[:port]" otherwise.
std::string helper_server_url(const registry_name& registry);

// What a `get` answered.
struct helper_answer {
    enum class outcome { found, not_found, failure };
    outcome result = outcome::failure;
    std::string username;        // when found; "<token>" has been turned into identity_token
    std::string secret;          // the password, when username is a real user
    std::string identity_token;  // when the helper answered Username "<token>"
    std::string error;           // on failure: what was wrong, never a secret
};

// Reads a `get` answer from its exit status and stdout. Exit 0 with
// {"ServerURL","Username","Secret"}: found, or not_found when Username and
// Secret are both empty (docker-credential-pass 0.6.4 answers an unknown
// server so). A non-zero exit whose stdout is "credentials not found in
// native keychain": not_found. Anything else: failure.
helper_answer parse_helper_answer(int exit_code, std::string_view stdout_text);

}  // namespace pullgate

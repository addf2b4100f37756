// Running a helper program as a child process on the caller's executor
// (Boost.Process v2): no shell, an explicit minimal environment, stdin
// written then closed, stdout and stderr read with a cap, killed at a
// deadline. Never blocks the calling thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace pullgate {

struct child_request {
    std::string program;            // absolute path; run as is, never through a shell
    std::vector<std::string> args;  // argv[1..]
    // The whole environment of the child, "NAME=value" each (nothing is inherited).
    std::vector<std::string> env;
    std::string input;  // written to stdin, which is then closed
    std::chrono::milliseconds timeout{10'000};
    std::size_t stdout_limit = 64 * 1024;
    std::size_t stderr_limit = 4 * 1024;
};

struct child_result {
    bool started = false;          // false: it could not be run (start_error says why)
    std::string start_error;       // e.g. "No such file or directory"
    bool timed_out = false;        // killed at the deadline
    bool stdout_overflow = false;  // wrote more than stdout_limit: killed
    int exit_code = -1;            // valid when started and neither timed out nor overflowed
    std::string out;               // at most stdout_limit bytes
    std::string err;               // at most stderr_limit bytes (the rest is dropped)
};

// Runs `req` and waits for the child to exit (or kills it, with its process
// group, at the deadline or when stdout passes its limit). Completes on
// `exec`; never throws for a failing child.
boost::asio::awaitable<child_result> run_child(boost::asio::any_io_executor exec, child_request req);

// The environment pullgate gives helpers: PATH and HOME, then `extra`.
std::vector<std::string> minimal_environment(const std::string& path,
                                             const std::vector<std::pair<std::string, std::string>>& extra = {});

}  // namespace pullgate

#include "pullgate/child_process.hpp"

// Boost.Process v2 as header-only (Boost 1.81); std::filesystem, not Boost's.
// Under BOOST_PROCESS_USE_STD_FS, 1.81's headers name boost::optional and
// boost::remove_pointer without including them: they come first.
#define BOOST_PROCESS_USE_STD_FS 1
#include <boost/optional.hpp>
#include <boost/type_traits/remove_pointer.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
// 1.81's header-only mode leaves process_environment::on_setup undefined.
#include <boost/process/v2/impl/environment.ipp>

#include <signal.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <optional>

namespace pullgate {
namespace asio = boost::asio;
namespace bp = boost::process::v2;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

namespace {

// Puts the child into a process group of its own, so that a kill at the
// deadline also reaches whatever it started (a shell script's children).
struct own_process_group {
    error_code on_exec_setup(bp::posix::default_launcher&, const std::filesystem::path&, const char* const*) {
        if (::setpgid(0, 0) == -1) return error_code(errno, boost::system::system_category());
        return {};
    }
};

// What the strand-side of a run shares with the deadline timer's handler,
// which may run after the coroutine has returned.
struct run_state {
    pid_t pid = -1;
    bool exited = false;
    bool timed_out = false;
    bool overflow = false;

    void kill_group() {
        if (pid > 0 && !exited) ::kill(-pid, SIGKILL);
    }
};

using strand_type = asio::strand<asio::any_io_executor>;

asio::awaitable<void> write_input(asio::writable_pipe& in, const std::string& input) {
    error_code ec;
    if (!input.empty())
        co_await asio::async_write(in, asio::buffer(input), asio::redirect_error(asio::use_awaitable, ec));
    in.close(ec);  // EOF for the child; a child that exited early is not an error here
}

asio::awaitable<void> read_capped(asio::readable_pipe& pipe, std::string& out, std::size_t limit,
                                  std::shared_ptr<run_state> state, bool kill_on_overflow) {
    std::array<char, 4096> buf;
    for (;;) {
        error_code ec;
        const std::size_t n =
            co_await pipe.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
        const std::size_t room = limit - out.size();
        out.append(buf.data(), std::min(n, room));
        if (n > room && kill_on_overflow) {
            // More than any honest answer: stop it rather than buffer without bound.
            state->overflow = true;
            state->kill_group();
            break;
        }
        if (ec) break;  // EOF: every writer (the child and its children) is gone
    }
    error_code ignored;
    pipe.close(ignored);
}

asio::awaitable<child_result> run_on_strand(strand_type strand, child_request req) {
    child_result res;
    asio::writable_pipe in(strand);
    asio::readable_pipe out(strand);
    asio::readable_pipe err(strand);
    std::optional<bp::process> proc;
    try {
        proc.emplace(asio::any_io_executor(strand), std::filesystem::path(req.program), req.args,
                     bp::process_stdio{in, out, err}, bp::process_environment(req.env), own_process_group{});
    } catch (const boost::system::system_error& e) {
        res.start_error = e.code().message();
        co_return res;
    }
    res.started = true;
    auto state = std::make_shared<run_state>();
    state->pid = proc->id();

    asio::steady_timer deadline(strand, req.timeout);
    deadline.async_wait([state](error_code ec) {
        if (ec) return;
        state->timed_out = true;
        state->kill_group();
    });

    co_await (write_input(in, req.input) && read_capped(out, res.out, req.stdout_limit, state, true) &&
              read_capped(err, res.err, req.stderr_limit, state, false));
    error_code ec;
    const int code = co_await proc->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    state->exited = true;
    // Reaped: its pid may be reused, so the handle's destructor must not signal it.
    if (!ec) proc->detach();
    deadline.cancel();
    res.timed_out = state->timed_out;
    res.stdout_overflow = state->overflow;
    res.exit_code = ec ? -1 : code;
    co_return res;
}

}  // namespace

asio::awaitable<child_result> run_child(asio::any_io_executor exec, child_request req) {
    // One strand per run: the pipes, the process handle and the deadline
    // never race, whichever thread of the pool runs them.
    strand_type strand = asio::make_strand(exec);
    co_return co_await asio::co_spawn(strand, run_on_strand(strand, std::move(req)), asio::use_awaitable);
}

std::vector<std::string> minimal_environment(const std::string& path,
                                             const std::vector<std::pair<std::string, std::string>>& extra) {
    std::vector<std::string> env = {"PATH=" + path};
    const char* home = std::getenv("HOME");
    env.push_back(std::string("HOME=") + (home && *home ? home : "/"));
    for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
    return env;
}

}  // namespace pullgate

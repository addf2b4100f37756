#include "pullgate/node_check.hpp"

#include <toml++/toml.h>
#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace pullgate {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view default_dir = "_default";

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string in_quotes(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

std::string join_path(std::string_view dir, std::string_view name) {
    return (fs::path(std::string(dir)) / std::string(name)).string();
}

std::string no_bypass_form(std::string_view mirror_url) {
    return "server = " + in_quotes(mirror_url) + ", capabilities = [\"pull\", \"resolve\"], an empty [host] table";
}

// The registry a certs.d directory stands for: `<host>_<port>_` is host:port.
std::string registry_of_dir(std::string_view name) {
    if (name.size() > 2 && name.back() == '_') {
        auto inner = name.substr(0, name.size() - 1);
        auto us = inner.rfind('_');
        if (us != std::string_view::npos && us + 1 < inner.size() &&
            inner.substr(us + 1).find_first_not_of("0123456789") == std::string_view::npos)
            return std::string(inner.substr(0, us)) + ":" + std::string(inner.substr(us + 1));
    }
    return std::string(name);
}

// A server URL as containerd reads it (no scheme means https), reduced to
// what decides where pulls go: scheme, host, port, API root.
struct endpoint {
    std::string scheme, host, port, path;
};

std::optional<endpoint> parse_endpoint(std::string_view text) {
    std::string s(text);
    if (!s.starts_with("http")) s = "https://" + s;
    auto u = boost::urls::parse_absolute_uri(s);
    if (!u || !u->has_authority()) return std::nullopt;
    endpoint e;
    e.scheme = lower(u->scheme());
    e.host = lower(u->encoded_host());
    if (e.host.size() > 2 && e.host.front() == '[') e.host = e.host.substr(1, e.host.size() - 2);
    e.port = u->has_port() ? std::string(u->port()) : (e.scheme == "https" ? "443" : "80");
    e.path = std::string(u->encoded_path());
    while (e.path.ends_with("/")) e.path.pop_back();
    if (e.path == "/v2") e.path.clear();
    return e;
}

bool unspecified_host(std::string_view host) {
    return host == "0.0.0.0" || host == "::";
}

// `server` names the mirror. pullgate listening on 0.0.0.0 / [::] is reached
// under any of the node's addresses, so only scheme and port must match then.
bool same_endpoint(std::string_view server, std::string_view mirror_url) {
    auto a = parse_endpoint(server);
    auto b = parse_endpoint(mirror_url);
    if (!a || !b) return false;
    const bool host_ok = a->host == b->host || unspecified_host(b->host);
    return a->scheme == b->scheme && host_ok && a->port == b->port && a->path == b->path;
}

bool is_string_array(const toml::node& n) {
    const auto* arr = n.as_array();
    if (!arr) return false;
    return std::all_of(arr->begin(), arr->end(), [](const toml::node& e) { return e.is_string(); });
}

// `client` is a path, a list of paths, or a list of [cert, key] pairs.
bool valid_client(const toml::node& n) {
    if (n.is_string()) return true;
    const auto* arr = n.as_array();
    if (!arr) return false;
    return std::all_of(arr->begin(), arr->end(), [](const toml::node& e) {
        if (e.is_string()) return true;
        return is_string_array(e) && e.as_array()->size() == 2;
    });
}

bool valid_header(const toml::node& n) {
    const auto* t = n.as_table();
    if (!t) return false;
    return std::all_of(t->begin(), t->end(),
                       [](const auto& kv) { return kv.second.is_string() || is_string_array(kv.second); });
}

// The keys containerd decodes from a hosts.toml table; a wrong type makes it
// reject the whole file.
std::optional<std::string> type_problem(const toml::table& t) {
    struct key_check {
        const char* key;
        bool (*ok)(const toml::node&);
        const char* expected;
    };
    static const key_check checks[] = {
        {"server", [](const toml::node& n) { return n.is_string(); }, "a string"},
        {"capabilities", [](const toml::node& n) { return is_string_array(n); }, "a list of strings"},
        {"ca", [](const toml::node& n) { return n.is_string() || is_string_array(n); }, "a path or a list of paths"},
        {"client", valid_client, "a path, a list of paths or a list of [cert, key] pairs"},
        {"skip_verify", [](const toml::node& n) { return n.is_boolean(); }, "true or false"},
        {"header", valid_header, "a table of strings or lists of strings"},
        {"override_path", [](const toml::node& n) { return n.is_boolean(); }, "true or false"},
    };
    for (const auto& c : checks) {
        const toml::node* n = t.get(c.key);
        if (n && !c.ok(*n)) return std::string(c.key) + " is not " + c.expected;
    }
    if (const auto* caps = t.get_as<toml::array>("capabilities")) {
        for (const auto& e : *caps) {
            const std::string cap = lower(e.value_or(std::string_view{}));
            if (cap != "pull" && cap != "resolve" && cap != "push") return "unknown capability " + in_quotes(cap);
        }
    }
    return std::nullopt;
}

node_finding error(std::string file, std::string problem, std::string fix) {
    return {std::move(file), std::move(problem), std::move(fix), finding_severity::error};
}

node_finding warning(std::string file, std::string problem, std::string fix) {
    return {std::move(file), std::move(problem), std::move(fix), finding_severity::warning};
}

bool lexically_same(std::string_view a, std::string_view b) {
    auto norm = [](std::string_view p) {
        std::string s = fs::path(std::string(p)).lexically_normal().string();
        while (s.size() > 1 && s.ends_with("/")) s.pop_back();
        return s;
    };
    return norm(a) == norm(b);
}

const char* severity_name(finding_severity s) {
    return s == finding_severity::error ? "error" : "warning";
}

}  // namespace

std::vector<node_finding> check_hosts_toml(std::string_view text, std::string_view file_view,
                                           std::string_view mirror_url) {
    const std::string file(file_view);
    const std::string rewrite = "write the no-bypass form (" + no_bypass_form(mirror_url) + ")";
    std::vector<node_finding> out;
    if (text.empty())
        return {error(file, "is empty: containerd ignores an empty hosts.toml and pulls from the registry directly",
                      rewrite)};
    toml::table t;
    try {
        t = toml::parse(text, file);
    } catch (const toml::parse_error& e) {
        std::ostringstream os;
        os << "does not parse as TOML (line " << e.source().begin.line << ", column " << e.source().begin.column << ": "
           << e.description()
           << "): containerd logs \"failed to decode hosts.toml\", ignores the file and pulls from the registry "
              "directly";
        return {error(file, os.str(), rewrite)};
    }
    if (auto problem = type_problem(t))
        out.push_back(error(file,
                            *problem + ": containerd cannot decode the file, ignores it and pulls from the "
                                       "registry directly",
                            rewrite));

    const toml::node* server = t.get("server");
    if (!server) {
        out.push_back(error(file,
                            "has no server: containerd falls back to the registry itself after any mirror "
                            "error",
                            "add server = " + in_quotes(mirror_url)));
    } else if (const auto* s = server->as_string(); s && !same_endpoint(s->get(), mirror_url)) {
        out.push_back(error(file,
                            "server is " + in_quotes(s->get()) + ", not pullgate (" + std::string(mirror_url) +
                                "): pulls go there instead",
                            "set server = " + in_quotes(mirror_url)));
    }

    if (const auto* caps = t.get_as<toml::array>("capabilities"); caps && is_string_array(*caps)) {
        bool pull = false, resolve = false;
        for (const auto& e : *caps) {
            const std::string cap = lower(e.value_or(std::string_view{}));
            pull = pull || cap == "pull";
            resolve = resolve || cap == "resolve";
        }
        if (!pull || !resolve)
            out.push_back(error(file,
                                std::string("capabilities lack ") +
                                    (!pull && !resolve ? "pull and resolve"
                                     : !pull           ? "pull"
                                                       : "resolve") +
                                    ": containerd does not send those requests to pullgate and pulls fail",
                                "set capabilities = [\"pull\", \"resolve\"]"));
    }

    const toml::node* host = t.get("host");
    if (!host || !host->is_table()) {
        out.push_back(error(file,
                            std::string(host ? "host is not a table" : "has no [host] table") +
                                ": containerd up to 1.7.31 logs \"invalid host tree\", ignores the file and "
                                "pulls from the registry directly",
                            "add an empty [host] table at the end of the file"));
    } else {
        for (const auto& [key, value] : *host->as_table()) {
            if (value.is_table())
                out.push_back(error(file,
                                    "has a [host." + in_quotes(key.str()) +
                                        "] entry: containerd tries it and then falls back to the next host "
                                        "and to the registry itself after a mirror error",
                                    "remove [host." + in_quotes(key.str()) + "]; keep [host] empty"));
            else
                out.push_back(error(file,
                                    "[host] has the key " + in_quotes(key.str()) +
                                        ": containerd cannot decode the file, ignores it and pulls from the "
                                        "registry directly",
                                    "keep [host] empty"));
        }
    }
    return out;
}

std::vector<node_finding> check_containerd_config(const node_state& state, const same_path_fn& same_path_in) {
    const same_path_fn same_path = same_path_in ? same_path_in : lexically_same;
    const std::string& file = state.containerd_config_file;
    const std::string set_it = "set config_path = " + in_quotes(state.certs_dir) +
                               " under [plugins.\"io.containerd.grpc.v1.cri\".registry] (version = 2; "
                               "containerd 2.x, version = 3: [plugins.\"io.containerd.cri.v1.images\".registry]) "
                               "and restart containerd";
    if (!state.containerd_config_error.empty())
        return {error(file, "cannot be read (" + state.containerd_config_error + ")", "make it readable")};
    if (!state.containerd_config)
        return {error(file,
                      "does not exist, so config_path is not set: CRI pulls (kubelet) ignore the certs dir and "
                      "go to the registry directly (Debian 12 ships no config.toml)",
                      "write " + file + " with version = 2 and " + set_it.substr(4))};
    toml::table t;
    try {
        t = toml::parse(*state.containerd_config, file);
    } catch (const toml::parse_error& e) {
        std::ostringstream os;
        os << "does not parse as TOML (line " << e.source().begin.line << ", column " << e.source().begin.column << ": "
           << e.description() << "): containerd does not start with it";
        return {error(file, os.str(), "fix the TOML syntax")};
    }
    std::vector<node_finding> out;
    std::int64_t version = 1;
    if (const toml::node* v = t.get("version")) {
        if (!v->is_integer()) return {error(file, "version is not a number", "set version = 2")};
        version = v->as_integer()->get();
    }
    std::string table_name;
    toml::node_view<const toml::node> registry;
    const toml::node_view<const toml::node> plugins = std::as_const(t)["plugins"];
    switch (version) {
        case 1:
            table_name = "plugins.cri.registry";
            registry = plugins["cri"]["registry"];
            out.push_back(warning(file,
                                  "has no version (a version 1 config): containerd 1.x reads "
                                  "[plugins.cri.registry], containerd 2.x no longer reads this layout",
                                  "write version = 2 and [plugins.\"io.containerd.grpc.v1.cri\".registry]"));
            break;
        case 2:
            table_name = "plugins.\"io.containerd.grpc.v1.cri\".registry";
            registry = plugins["io.containerd.grpc.v1.cri"]["registry"];
            break;
        case 3:
            table_name = "plugins.\"io.containerd.cri.v1.images\".registry";
            registry = plugins["io.containerd.cri.v1.images"]["registry"];
            break;
        default:
            return {error(file, "has version = " + std::to_string(version) + ", a layout pullgate does not know",
                          "use version = 2 (containerd 1.x) or 3 (containerd 2.x)")};
    }

    for (const char* deprecated : {"mirrors", "configs"}) {
        const toml::node* n = registry[deprecated].node();
        if (n && !(n->is_table() && n->as_table()->empty()))
            out.push_back(error(file,
                                "sets the deprecated " + table_name + "." + deprecated +
                                    ": mirrors there fall back to the registry after any mirror error, and "
                                    "containerd rejects them together with config_path",
                                "remove " + table_name + "." + deprecated + "; use config_path and certs.d"));
    }

    const toml::node* config_path = registry["config_path"].node();
    if (!config_path || (config_path->is_string() && config_path->as_string()->get().empty())) {
        out.push_back(error(file,
                            table_name + ".config_path is not set: CRI pulls (kubelet) ignore the certs dir and go "
                                         "to the registry directly",
                            set_it));
    } else if (!config_path->is_string()) {
        out.push_back(error(file, table_name + ".config_path is not a string", set_it));
    } else {
        // A ':'-separated list; containerd asks each root in turn, and a
        // _default in the first one answers for every registry.
        const std::string value = config_path->as_string()->get();
        const std::string first = value.substr(0, value.find(':'));
        if (!same_path(first, state.certs_dir))
            out.push_back(error(file,
                                table_name + ".config_path is " + in_quotes(value) + ": CRI pulls use " +
                                    in_quotes(first) + ", not " + in_quotes(state.certs_dir),
                                set_it));
    }
    return out;
}

std::vector<node_finding> check_certs_dir(const node_state& state, std::string_view mirror_url) {
    const std::string& dir = state.certs_dir;
    const std::string write_default = "run `pullgate containerd-hosts --dir " + dir + "`";
    if (!state.certs_dir_exists)
        return {error(dir, "does not exist: containerd finds no hosts.toml and pulls every registry directly",
                      write_default)};
    std::vector<node_finding> out;
    const auto def = std::find_if(state.certs_entries.begin(), state.certs_entries.end(),
                                  [](const certs_dir_entry& e) { return e.name == default_dir; });
    const std::string default_file = join_path(join_path(dir, default_dir), "hosts.toml");
    if (def == state.certs_entries.end() || !def->is_directory) {
        out.push_back(error(join_path(dir, default_dir),
                            def == state.certs_entries.end()
                                ? "does not exist: containerd pulls every registry without a directory of "
                                  "its own directly"
                                : "is not a directory: containerd cannot read _default/hosts.toml",
                            write_default));
    } else if (!def->read_error.empty()) {
        out.push_back(error(default_file, "cannot be read (" + def->read_error + ")", "make it readable"));
    } else if (!def->hosts_toml) {
        out.push_back(error(default_file,
                            "does not exist: containerd pulls every registry without a directory of its own "
                            "directly",
                            write_default));
    } else {
        for (auto& f : check_hosts_toml(*def->hosts_toml, default_file, mirror_url)) out.push_back(std::move(f));
    }

    for (const auto& e : state.certs_entries) {
        if (e.name == default_dir) continue;
        const std::string path = join_path(dir, e.name);
        const std::string registry = registry_of_dir(e.name);
        const std::string remove = "remove " + path + " (or write the no-bypass form into " + path + "/hosts.toml)";
        if (!e.is_directory) {
            out.push_back(warning(
                path, "is not a directory: containerd fails pulls of " + registry + " when it finds a file there",
                "remove " + path));
            continue;
        }
        const std::string shadows = "shadows _default for " + registry + " and ";
        if (!e.read_error.empty()) {
            out.push_back(
                error(join_path(path, "hosts.toml"), shadows + "cannot be read (" + e.read_error + ")", remove));
        } else if (!e.hosts_toml) {
            out.push_back(
                error(path, shadows + "has no hosts.toml: containerd pulls " + registry + " directly", remove));
        } else {
            for (auto& f : check_hosts_toml(*e.hosts_toml, join_path(path, "hosts.toml"), mirror_url)) {
                f.problem = "shadows _default for " + registry + ", and " + f.problem;
                f.fix = remove;
                out.push_back(std::move(f));
            }
        }
    }
    return out;
}

node_verdict check_node(const node_state& state, std::string_view mirror_url, const same_path_fn& same_path) {
    node_verdict v;
    v.findings = check_containerd_config(state, same_path);
    for (auto& f : check_certs_dir(state, mirror_url)) v.findings.push_back(std::move(f));
    v.gated = std::none_of(v.findings.begin(), v.findings.end(),
                           [](const node_finding& f) { return f.severity == finding_severity::error; });
    return v;
}

std::string summarize(const node_verdict& verdict) {
    std::string out = verdict.gated ? "gated" : "NOT gated";
    const char* sep = ": ";
    for (const auto& f : verdict.findings) {
        out += sep;
        out += std::string(f.severity == finding_severity::warning ? "(warning) " : "") + f.file + ": " + f.problem +
               " (fix: " + f.fix + ")";
        sep = "; ";
    }
    return out;
}

std::string render_text(const node_verdict& verdict, const node_state& state, std::string_view mirror_url) {
    std::ostringstream os;
    std::size_t errors = 0;
    for (const auto& f : verdict.findings) errors += f.severity == finding_severity::error;
    os << "containerd config: " << state.containerd_config_file << "\n"
       << "certs dir:         " << state.certs_dir << "\n"
       << "pullgate:          " << mirror_url << "\n\n";
    for (const auto& f : verdict.findings)
        os << severity_name(f.severity) << ": " << f.file << "\n  problem: " << f.problem << "\n  fix:     " << f.fix
           << "\n\n";
    if (verdict.gated)
        os << "node is gated: containerd sends every pull to pullgate, with no way around it\n";
    else
        os << "node is NOT gated: " << errors << " problem" << (errors == 1 ? "" : "s")
           << " above let pulls go around pullgate\n";
    return os.str();
}

std::string render_json(const node_verdict& verdict, const node_state& state, std::string_view mirror_url) {
    nlohmann::json j;
    j["gated"] = verdict.gated;
    j["containerdConfig"] = state.containerd_config_file;
    j["certsDir"] = state.certs_dir;
    j["mirror"] = std::string(mirror_url);
    j["findings"] = nlohmann::json::array();
    for (const auto& f : verdict.findings)
        j["findings"].push_back(
            {{"file", f.file}, {"problem", f.problem}, {"fix", f.fix}, {"severity", severity_name(f.severity)}});
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

namespace {

// Reads a whole file: the text, nullopt when it does not exist, or an error.
std::optional<std::string> read_text(const fs::path& p, std::string& error) {
    std::error_code ec;
    if (!fs::exists(p, ec)) {
        if (ec && ec != std::errc::no_such_file_or_directory) error = ec.message();
        return std::nullopt;
    }
    if (fs::is_directory(p, ec)) {
        error = "is a directory";
        return std::nullopt;
    }
    std::ifstream in(p, std::ios::binary);
    if (!in) {
        error = "cannot open";
        return std::nullopt;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    return buf.str();
}

}  // namespace

node_state read_node_state(const std::string& containerd_config, const std::string& certs_dir) {
    node_state s;
    s.containerd_config_file = containerd_config;
    s.containerd_config = read_text(containerd_config, s.containerd_config_error);
    s.certs_dir = certs_dir;
    std::error_code ec;
    s.certs_dir_exists = fs::is_directory(certs_dir, ec);
    if (!s.certs_dir_exists) return s;
    for (const auto& entry : fs::directory_iterator(certs_dir, ec)) {
        certs_dir_entry e;
        e.name = entry.path().filename().string();
        std::error_code ec2;
        e.is_directory = entry.is_directory(ec2);  // follows symlinks, as containerd's stat does
        if (e.is_directory) e.hosts_toml = read_text(entry.path() / "hosts.toml", e.read_error);
        s.certs_entries.push_back(std::move(e));
    }
    std::sort(s.certs_entries.begin(), s.certs_entries.end(),
              [](const certs_dir_entry& a, const certs_dir_entry& b) { return a.name < b.name; });
    return s;
}

bool same_directory_on_disk(std::string_view a, std::string_view b) {
    std::error_code ec;
    if (fs::equivalent(fs::path(std::string(a)), fs::path(std::string(b)), ec)) return true;
    return lexically_same(a, b);
}

node_verdict check_node_files(const std::string& containerd_config, const std::string& certs_dir,
                              std::string_view mirror_url) {
    const node_state state = read_node_state(containerd_config, certs_dir);
    return check_node(state, mirror_url, same_directory_on_disk);
}

}  // namespace pullgate

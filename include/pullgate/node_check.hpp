// Does containerd on this node send every pull through pullgate, with no way
// around it (README "Is this node gated?")? A pure check over the contents of containerd's
// config.toml and of the certs dir (hosts.toml files), given as values, plus
// a thin reader that collects them from the filesystem.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pullgate {

enum class finding_severity { error, warning };

// One thing wrong on the node: which file, what is wrong (and what containerd
// then does), how to fix it. Errors make the node not gated; warnings do not.
struct node_finding {
    std::string file;
    std::string problem;
    std::string fix;
    finding_severity severity = finding_severity::error;

    bool operator==(const node_finding&) const = default;
};

// One entry of the certs dir (containerd's config_path).
struct certs_dir_entry {
    std::string name;
    bool is_directory = true;
    std::optional<std::string> hosts_toml;  // <name>/hosts.toml; nullopt when it does not exist
    std::string read_error;                 // hosts.toml exists but could not be read
};

// What the checker looks at, read from the node (or written by a test).
struct node_state {
    std::string containerd_config_file;            // path, named in findings
    std::optional<std::string> containerd_config;  // its text; nullopt when the file does not exist
    std::string containerd_config_error;           // exists but could not be read
    std::string certs_dir;
    bool certs_dir_exists = false;
    std::vector<certs_dir_entry> certs_entries;
};

struct node_verdict {
    bool gated = false;  // no finding of severity error
    std::vector<node_finding> findings;
};

// Decides whether two paths name the same directory. The default compares
// them lexically (normalised, without a trailing '/').
using same_path_fn = std::function<bool(std::string_view, std::string_view)>;

// The checks of one hosts.toml text against the no-bypass form for a mirror
// at `mirror_url` (http://<listen>): parses as TOML, `server` is the mirror,
// capabilities include pull and resolve, an empty [host] table, no
// [host."..."] entry, every key containerd reads has the type it expects.
// `file` is named in the findings. Empty when the text is in that form.
std::vector<node_finding> check_hosts_toml(std::string_view text, std::string_view file, std::string_view mirror_url);

// The checks of containerd's config.toml (v1, v2 and containerd 2.x's v3
// layout): config_path set, its first entry the certs dir, no deprecated
// registry.mirrors / registry.configs.
std::vector<node_finding> check_containerd_config(const node_state& state, const same_path_fn& same_path = {});

// The checks of the certs dir: _default/hosts.toml in the no-bypass form, and
// every other directory (which shadows _default for its registry) in that
// form too.
std::vector<node_finding> check_certs_dir(const node_state& state, std::string_view mirror_url);

// Both of the above.
node_verdict check_node(const node_state& state, std::string_view mirror_url, const same_path_fn& same_path = {});

// One line for diagnostics: "gated" or "NOT gated: FILE: PROBLEM (fix: FIX); ...".
std::string summarize(const node_verdict& verdict);

// Human-readable report, one finding per paragraph.
std::string render_text(const node_verdict& verdict, const node_state& state, std::string_view mirror_url);

// The same as JSON: {"gated", "containerdConfig", "certsDir", "mirror", "findings": [...]}.
std::string render_json(const node_verdict& verdict, const node_state& state, std::string_view mirror_url);

// Reads containerd's config and the certs dir from the filesystem (the certs
// dir's direct entries and their hosts.toml). Never throws: what cannot be
// read is recorded in the state and becomes a finding.
node_state read_node_state(const std::string& containerd_config, const std::string& certs_dir);

// A same_path_fn for a real node: the same directory on disk (symlinks
// resolved), or lexically the same when either does not exist.
bool same_directory_on_disk(std::string_view a, std::string_view b);

// read_node_state + check_node, paths compared with same_directory_on_disk.
node_verdict check_node_files(const std::string& containerd_config, const std::string& certs_dir,
                              std::string_view mirror_url);

}  // namespace pullgate

#include "pullgate/commands.hpp"

#include "pullgate/config.hpp"
#include "pullgate/containerd_hosts.hpp"
#include "pullgate/credential_helper.hpp"
#include "pullgate/credential_provider.hpp"
#include "pullgate/credential_resolver.hpp"
#include "pullgate/credential_sources.hpp"
#include "pullgate/credentials.hpp"
#include "pullgate/image_ref.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/node_check.hpp"
#include "pullgate/policy.hpp"
#include "pullgate/registries_conf.hpp"
#include "pullgate/upstream_client.hpp"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <ostream>
#include <set>

namespace pullgate {
namespace {

// The provider config named by credentialProviders.config, or null.
std::shared_ptr<const provider_config> load_providers(const config& cfg) {
    if (cfg.credential_providers.config.empty()) return nullptr;
    return std::make_shared<const provider_config>(load_provider_config(cfg.credential_providers.config));
}

bool is_executable_file(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

// Finds every helper program and plugin without running it; prints where
// each is and returns how many are missing (each reported on `err`).
int check_credential_sources(const config& cfg, const credential_store& creds, const provider_config* providers,
                             std::ostream& out, std::ostream& err) {
    int missing = 0;
    std::set<std::string> helpers;
    for (const auto& h : creds.helpers()) helpers.insert(h.helper);
    if (!creds.creds_store().empty()) helpers.insert(creds.creds_store());
    if (!helpers.empty())
        out << "credentialHelpers.path: " << cfg.credential_helpers.path << " (timeout "
            << cfg.credential_helpers.timeout.count() << " s, cache " << cfg.credential_helpers.cache.count()
            << " s)\n";
    for (const auto& h : creds.helpers())
        out << "  - credHelpers " << h.key << ": " << helper_program(h.helper) << " (allowed by the seed rule)\n";
    if (!creds.creds_store().empty())
        out << "  - credsStore: " << helper_program(creds.creds_store()) << " (for " << creds.secretless().size()
            << " auths entr" << (creds.secretless().size() == 1 ? "y" : "ies")
            << " without a secret; allows nothing by itself)\n";
    for (const auto& name : helpers) {
        const std::string where = credential_resolver::find_helper(cfg.credential_helpers.path, name);
        if (where.empty()) {
            err << "error: credential helper " << helper_program(name)
                << " not found (executable) in credentialHelpers.path " << cfg.credential_helpers.path << "\n";
            ++missing;
        } else {
            out << "    " << helper_program(name) << ": " << where << "\n";
        }
    }
    if (providers) {
        out << "credentialProviders.config: " << cfg.credential_providers.config << "\n"
            << "credentialProviders.binDir: " << cfg.credential_providers.bin_dir << "\n";
        for (const auto& p : providers->providers) {
            out << "  - provider " << p.name << " matchImages:";
            for (const auto& m : p.match_images) out << " " << m.text;
            out << " (defaultCacheDuration "
                << std::chrono::duration_cast<std::chrono::seconds>(p.default_cache_duration).count()
                << " s; patterns allow nothing by themselves)\n";
            const std::string program = cfg.credential_providers.bin_dir + "/" + p.name;
            if (!is_executable_file(program)) {
                err << "error: credential provider plugin " << p.name << " not found (executable) in "
                    << "credentialProviders.binDir: " << program << "\n";
                ++missing;
            }
        }
    }
    return missing;
}

}  // namespace

int check_config(const std::string& config_path, std::ostream& out, std::ostream& err) {
    try {
        const config cfg = load_config(config_path);
        const credential_store creds = load_credentials(cfg);
        const auto providers = load_providers(cfg);
        {
            // Loads every caFile / clientCert / clientKey exactly as serve will.
            metrics unused;
            upstream_client probe(cfg, unused);
        }
        out << "config " << config_path << ": ok\n"
            << "listen: " << cfg.listen.text << "\n"
            << "adminListen: " << (cfg.admin_listen ? cfg.admin_listen->text : "(off)") << "\n"
            << "containerRegistry.privateBaseImageAllowList:";
        if (cfg.allow_list.empty()) out << " (empty)";
        out << "\n";
        for (const auto& r : cfg.allow_list) out << "  - " << r.text << "\n";
        const auto path = credentials_path(cfg);
        out << "credentials: " << (path ? *path : "(none)") << "\n";
        for (const auto& c : creds.entries()) {
            std::string kind = !c.registry_token.empty()   ? "registrytoken"
                               : !c.identity_token.empty() ? "identitytoken"
                                                           : "username/password";
            out << "  - " << c.key << " (" << kind << "; allowed by the seed rule)\n";
        }
        if (cfg.allow_list.empty() && creds.entries().empty())
            out << "note: nothing is allowed: every pull will be refused\n";
        out << "defaultRegistry: " << (cfg.default_registry ? cfg.default_registry->key() : "(none)") << "\n";
        for (const auto& [key, t] : cfg.registries)
            out << "registry " << key << ": " << (t.insecure_http ? "plain HTTP" : "HTTPS")
                << (t.ca_file.empty() ? "" : ", caFile " + t.ca_file)
                << (t.client_cert.empty() ? "" : ", client certificate " + t.client_cert) << "\n";
        out << "unlistedRegistries: "
            << (cfg.unlisted_registries == unlisted_policy::anonymous ? "anonymous (pulled without credentials)"
                                                                      : "deny")
            << "\n";
        out << "decisionLog.path: " << cfg.decision_log_path << "\n";
        if (check_credential_sources(cfg, creds, providers.get(), out, err) > 0) return 1;
        return 0;
    } catch (const config_error& e) {
        err << e.what() << "\n";
        return 1;
    }
}

int explain(const std::string& config_path, const std::string& image, std::ostream& out, std::ostream& err) {
    config cfg;
    credential_store creds;
    std::shared_ptr<const provider_config> providers;
    try {
        cfg = load_config(config_path);
        creds = load_credentials(cfg);
        providers = load_providers(cfg);
    } catch (const config_error& e) {
        err << e.what() << "\n";
        return 2;
    }
    auto ref = parse_image_ref(image);
    if (!ref) {
        err << "pullgate: " << image << ": " << ref.error() << "\n";
        return 2;
    }
    const policy_decision d = decide(cfg.allow_list, creds.keys(), ref->registry, ref->repository,
                                     cfg.unlisted_registries == unlisted_policy::anonymous);
    const credential_source source = pick_credential_source(creds, providers.get(), ref->registry, ref->repository);
    const origin at = registry_origin(ref->registry, cfg.transport_for(ref->registry));
    out << "image:      " << ref->canonical() << "\n"
        << "registry:   " << ref->registry.key() << " (pulled from " << at.key() << ")\n"
        << "repository: " << ref->repository << "\n"
        << "decision:   " << (d.allowed ? "allow" : "deny") << " (" << to_string(d.reason) << ")\n";
    if (d.reason == reason_code::anonymous_unlisted) {
        out << "rule:       none (unlistedRegistries: anonymous)\n";
    } else if (d.allowed) {
        out << "rule:       " << d.rule
            << (d.reason == reason_code::allowlisted ? " (containerRegistry.privateBaseImageAllowList)"
                                                     : " (credentials key)")
            << "\n";
    } else {
        out << "to allow:   add \"" << d.suggestion << "\" to containerRegistry.privateBaseImageAllowList"
            << " (or \"" << ref->registry.key() << "/" << ref->repository
            << "\" for this repository only), or store credentials for " << ref->registry.key() << "\n";
    }
    if (!d.allowed) {
        out << "credential: " << source.name << " (not used: the pull is denied)\n";
    } else if (d.reason == reason_code::anonymous_unlisted) {
        out << "credential: anonymous (unlisted registries get no credentials from any source)\n";
    } else if (source.type == credential_source::kind::helper) {
        const std::string where = credential_resolver::find_helper(cfg.credential_helpers.path, source.helper);
        out << "credential: " << source.name << " (" << helper_program(source.helper) << " get, server "
            << helper_server_url(ref->registry) << "; "
            << (where.empty() ? "NOT FOUND in credentialHelpers.path" : where) << ")\n";
    } else if (source.type == credential_source::kind::provider) {
        out << "credential: " << source.name << " (" << cfg.credential_providers.bin_dir << "/" << source.provider->name
            << ", image " << ref->registry.key() << "/" << ref->repository << ")\n";
    } else {
        out << "credential: " << source.name
            << (source.type == credential_source::kind::anonymous ? " (no credentials)" : "") << "\n";
    }
    return d.allowed ? 0 : 1;
}

int registries_conf(const std::string& config_path, const std::string& mirror, std::ostream& out, std::ostream& err) {
    config cfg;
    credential_store creds;
    try {
        cfg = load_config(config_path);
        creds = load_credentials(cfg);
    } catch (const config_error& e) {
        err << e.what() << "\n";
        return 1;
    }
    std::string mirror_text = mirror;
    if (mirror_text.empty()) {
        // A wildcard listen address accepts on loopback too.
        mirror_text = cfg.listen.host == "0.0.0.0" ? "127.0.0.1:" + std::to_string(cfg.listen.port) : cfg.listen.text;
    }
    auto where = parse_registries_conf_mirror(mirror_text);
    if (!where) {
        err << "pullgate: " << where.error() << (mirror.empty() ? " (from listen in the config; give --mirror)" : "")
            << "\n";
        return 2;
    }
    const registries_conf_plan plan = plan_registries_conf(cfg.allow_list, creds.keys());
    out << render_registries_conf(plan, *where);
    if (plan.routes.empty())
        err << "warning: nothing is allowlisted and no credentials are stored: no registry is routed\n";
    for (const auto& b : plan.blocks) err << "note: " << b.prefix << " is blocked, not routed: " << b.why << "\n";
    for (const auto& s : plan.skipped) err << "note: " << s.rule << " is not written: " << s.why << "\n";
    return 0;
}

int containerd_hosts(const std::string& config_path, const std::string& dir, std::string mirror_url, std::ostream& out,
                     std::ostream& err) {
    if (dir.empty()) {
        err << "pullgate: containerd-hosts needs --dir DIR\n";
        return 2;
    }
    if (mirror_url.empty()) {
        try {
            mirror_url = "http://" + load_config(config_path).listen.text;
        } catch (const config_error& e) {
            err << e.what() << "\n(give --mirror URL to write hosts.toml without a config)\n";
            return 1;
        }
    }
    if (!mirror_url.starts_with("http://") && !mirror_url.starts_with("https://")) {
        err << "pullgate: --mirror must be an http:// or https:// URL\n";
        return 2;
    }
    try {
        write_no_bypass_hosts(dir, mirror_url);
    } catch (const std::exception& e) {
        err << "pullgate: " << e.what() << "\n";
        return 1;
    }
    out << "wrote " << dir << "/_default/hosts.toml (mirror " << mirror_url << ")\n";
    // Read back what containerd will read, with the same check as check-node.
    const node_state state = read_node_state("", dir);
    int status = 0;
    for (const auto& f : check_certs_dir(state, mirror_url)) {
        const bool ours = f.file.starts_with((std::filesystem::path(dir) / "_default").string());
        if (ours && f.severity == finding_severity::error) {
            err << "error: " << f.file << ": " << f.problem << "\n";
            status = 1;
        } else {
            err << "warning: " << f.file << ": " << f.problem << "; fix: " << f.fix << "\n";
        }
    }
    return status;
}

int check_node(const check_node_options& o, std::ostream& out, std::ostream& err) {
    std::string containerd_config = o.containerd_config, certs_dir = o.certs_dir, mirror = o.mirror;
    if (mirror.empty() || o.config_given) {
        try {
            const config cfg = load_config(o.config_path);
            if (mirror.empty()) mirror = "http://" + cfg.listen.text;
            if (containerd_config.empty()) containerd_config = cfg.node.containerd_config;
            if (certs_dir.empty()) certs_dir = cfg.node.certs_dir;
        } catch (const config_error& e) {
            err << e.what() << "\n(check-node needs pullgate's listen address: give --config FILE or --mirror URL)\n";
            return 2;
        }
    }
    const node_settings defaults;
    if (containerd_config.empty()) containerd_config = defaults.containerd_config;
    if (certs_dir.empty()) certs_dir = defaults.certs_dir;
    if (!mirror.starts_with("http://") && !mirror.starts_with("https://")) {
        err << "pullgate: --mirror must be an http:// or https:// URL\n";
        return 2;
    }
    const node_state state = read_node_state(containerd_config, certs_dir);
    const node_verdict verdict = check_node(state, mirror, same_directory_on_disk);
    out << (o.json ? render_json(verdict, state, mirror) : render_text(verdict, state, mirror));
    return verdict.gated ? 0 : 1;
}

}  // namespace pullgate

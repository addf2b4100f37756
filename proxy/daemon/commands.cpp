#include "pullgate/commands.hpp"

#include "pullgate/config.hpp"
#include "pullgate/containerd_hosts.hpp"
#include "pullgate/credentials.hpp"
#include "pullgate/image_ref.hpp"
#include "pullgate/metrics.hpp"
#include "pullgate/node_check.hpp"
#include "pullgate/policy.hpp"
#include "pullgate/registries_conf.hpp"
#include "pullgate/upstream_client.hpp"

#include <filesystem>
#include <ostream>

namespace pullgate {

int check_config(const std::string& config_path, std::ostream& out, std::ostream& err) {
    try {
        const config cfg = load_config(config_path);
        const credential_store creds = load_credentials(cfg);
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
        out << "decisionLog.path: " << cfg.decision_log_path << "\n";
        return 0;
    } catch (const config_error& e) {
        err << e.what() << "\n";
        return 1;
    }
}

int explain(const std::string& config_path, const std::string& image, std::ostream& out, std::ostream& err) {
    config cfg;
    credential_store creds;
    try {
        cfg = load_config(config_path);
        creds = load_credentials(cfg);
    } catch (const config_error& e) {
        err << e.what() << "\n";
        return 2;
    }
    auto ref = parse_image_ref(image);
    if (!ref) {
        err << "pullgate: " << image << ": " << ref.error() << "\n";
        return 2;
    }
    const policy_decision d = decide(cfg.allow_list, creds.keys(), ref->registry, ref->repository);
    const credential* cred = creds.lookup(ref->registry, ref->repository);
    const origin at = registry_origin(ref->registry, cfg.transport_for(ref->registry));
    out << "image:      " << ref->canonical() << "\n"
        << "registry:   " << ref->registry.key() << " (pulled from " << at.key() << ")\n"
        << "repository: " << ref->repository << "\n"
        << "decision:   " << (d.allowed ? "allow" : "deny") << " (" << to_string(d.reason) << ")\n";
    if (d.allowed) {
        out << "rule:       " << d.rule
            << (d.reason == reason_code::allowlisted ? " (containerRegistry.privateBaseImageAllowList)"
                                                     : " (credentials key)")
            << "\n";
    } else {
        out << "to allow:   add \"" << d.suggestion << "\" to containerRegistry.privateBaseImageAllowList"
            << " (or \"" << ref->registry.key() << "/" << ref->repository
            << "\" for this repository only), or store credentials for " << ref->registry.key() << "\n";
    }
    out << "credential: " << (cred ? cred->key : "none (anonymous)") << "\n";
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

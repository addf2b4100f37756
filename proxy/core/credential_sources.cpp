#include "pullgate/credential_sources.hpp"

namespace pullgate {

credential_source pick_credential_source(const credential_store& store, const provider_config* providers,
                                         const registry_name& registry, std::string_view repository) {
    credential_source s;
    if (const credential* c = store.lookup(registry, repository)) {
        s.type = credential_source::kind::auths;
        s.name = "auths:" + c->key;
        s.stored = c;
        return s;
    }
    if (const helper_entry* h = store.helper_for(registry)) {
        s.type = credential_source::kind::helper;
        s.name = "helper:" + h->helper;
        s.helper = h->helper;
        return s;
    }
    if (!store.creds_store().empty() && store.secretless_for(registry, repository)) {
        s.type = credential_source::kind::helper;
        s.name = "helper:" + store.creds_store();
        s.helper = store.creds_store();
        return s;
    }
    if (providers)
        if (const credential_provider* p = providers->provider_for(registry, repository)) {
            s.type = credential_source::kind::provider;
            s.name = "provider:" + p->name;
            s.provider = p;
            return s;
        }
    s.name = "anonymous";
    return s;
}

}  // namespace pullgate

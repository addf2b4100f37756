# The source lists of pullgate's libraries, one per layer (docs/ARCHITECTURE.md).
# Included by the main build and by fuzz/, so both compile the same files.
# Paths are relative to the repository root; PULLGATE_ROOT must be set.

# Layer 1: pure decision logic, no Asio; unit-tested without sockets.
set(PULLGATE_CORE_SOURCES
  proxy/core/outcome.cpp
  proxy/core/error.cpp
  proxy/core/oci_path.cpp
  proxy/core/registry_name.cpp
  proxy/core/policy.cpp
  proxy/core/yaml_context.cpp
  proxy/core/config.cpp
  proxy/core/digest.cpp
  proxy/core/decision_log.cpp
  proxy/core/metrics.cpp
  proxy/core/relay_buffers.cpp
  proxy/core/www_authenticate.cpp
  proxy/core/credentials.cpp
  proxy/core/token_cache.cpp
  proxy/core/containerd_hosts.cpp
  proxy/core/registries_conf.cpp
  proxy/core/image_ref.cpp
  proxy/core/origin.cpp
  proxy/core/request_plan.cpp
  proxy/core/node_check.cpp
  proxy/core/watched_files.cpp
  proxy/core/credential_helper.cpp
  proxy/core/credential_provider.cpp
  proxy/core/credential_sources.cpp
)

# Layer 2: I/O: upstream connections, the relay, token fetches.
set(PULLGATE_IO_SOURCES
  proxy/io/notifier.cpp
  proxy/io/tls_stream.cpp
  proxy/io/address_filter.cpp
  proxy/io/session_cache.cpp
  proxy/io/tls_context.cpp
  proxy/io/upstream_connection.cpp
  proxy/io/upstream_pool.cpp
  proxy/io/upstream_client.cpp
  proxy/io/upstream_auth.cpp
  proxy/io/relay.cpp
  proxy/io/file_watcher.cpp
  proxy/io/child_process.cpp
  proxy/io/credential_resolver.cpp
)

# Layer 3: the request path that strings layers 1 and 2 together.
set(PULLGATE_REQUEST_SOURCES
  proxy/request/local_response.cpp
  proxy/request/upstream_round_trip.cpp
  proxy/request/pull_handler.cpp
  proxy/request/runtime.cpp
)

# Layer 4: the daemon: listeners, admin endpoints, reload, commands.
set(PULLGATE_DAEMON_SOURCES
  proxy/daemon/server.cpp
  proxy/daemon/admin_server.cpp
  proxy/daemon/commands.cpp
  proxy/daemon/live_state.cpp
)

function(pullgate_sources out)
  set(list)
  foreach(layer IN LISTS ARGN)
    foreach(f IN LISTS PULLGATE_${layer}_SOURCES)
      list(APPEND list ${PULLGATE_ROOT}/${f})
    endforeach()
  endforeach()
  set(${out} ${list} PARENT_SCOPE)
endfunction()

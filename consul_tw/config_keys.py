# -*- test-case-name: tests.unit.test_config -*-
"""
Consul's configuration keys, split into the ones consul-tw acts on and the
ones it accepts but has not built yet.

A key Consul knows but we do not act on is accepted with one WARN naming it,
so an existing Consul config file still starts the agent; a key Consul itself
does not know is a start-up error, as in Consul (``invalid config key``).
"""

from __future__ import annotations

#: Top-level keys consul-tw reads (nested ones listed in NESTED_BUILT).
BUILT = frozenset(
    {
        "advertise_addr",
        "encrypt",
        "reconnect_timeout",
        "retry_interval",
        "retry_join",
        "retry_max",
        "start_join",
        "bind_addr",
        "client_addr",
        "data_dir",
        "datacenter",
        "disable_update_check",  # we never phone home, so it is honoured by default
        "domain",
        "leave_on_terminate",
        "log_level",
        "node_id",
        "node_meta",
        "node_name",
        "performance",
        "ports",
        "server",
        "skip_leave_on_interrupt",
        "bootstrap",
        "bootstrap_expect",
        "raft_snapshot_threshold",
        "raft_snapshot_interval",  # accepted: the threshold is checked after every apply
        "raft_trailing_logs",
        "autopilot",
    }
)

#: Nested keys of built sections that consul-tw reads.
NESTED_BUILT = {
    "ports": frozenset({"dns", "http", "https", "grpc", "serf_lan", "serf_wan", "server"}),
    "performance": frozenset({"raft_multiplier", "leave_drain_time", "rpc_hold_timeout"}),
    "autopilot": frozenset({"cleanup_dead_servers"}),
}

#: Nested keys Consul knows in those sections but consul-tw does not act on yet.
NESTED_KNOWN = {
    "ports": frozenset(
        {
            "grpc_tls",
            "sidecar_min_port",
            "sidecar_max_port",
            "expose_min_port",
            "expose_max_port",
        }
    ),
    "performance": frozenset(),
    "autopilot": frozenset(
        {
            "last_contact_threshold",
            "max_trailing_logs",
            "min_quorum",
            "server_stabilization_time",
            "redundancy_zone_tag",
            "disable_upgrade_migration",
            "upgrade_version_tag",
        }
    ),
}

#: Every other top-level key Consul 1.8-1.17 accepts.  Their features are not
#: built yet: accepted with a WARN.
KNOWN_NOT_BUILT = frozenset(
    {
        "acl",
        "acl_datacenter",
        "acl_default_policy",
        "acl_down_policy",
        "acl_enforce_version_8",
        "acl_master_token",
        "acl_replication_token",
        "acl_token",
        "acl_ttl",
        "addresses",
        "advertise_addr_ipv4",
        "advertise_addr_ipv6",
        "advertise_addr_wan",
        "advertise_addr_wan_ipv4",
        "advertise_addr_wan_ipv6",
        "advertise_reconnect_timeout",
        "alt_domain",
        "audit",
        "auto_config",
        "auto_encrypt",
        "auto_reload_config",
        "ca_file",
        "ca_path",
        "cache",
        "cert_file",
        "check",
        "check_output_max_size",
        "check_update_interval",
        "checks",
        "cloud",
        "config_entries",
        "connect",
        "default_query_time",
        "disable_anonymous_signature",
        "disable_coordinates",
        "disable_host_node_id",
        "disable_http_unprintable_char_filter",
        "disable_keyring_file",
        "disable_remote_exec",
        "discard_check_output",
        "discovery_max_stale",
        "dns_config",
        "enable_acl_replication",
        "enable_agent_tls_for_checks",
        "enable_central_service_config",
        "enable_debug",
        "enable_local_script_checks",
        "enable_script_checks",
        "enable_syslog",
        "encrypt_verify_incoming",
        "encrypt_verify_outgoing",
        "experiments",
        "gossip_lan",
        "gossip_wan",
        "http_config",
        "key_file",
        "license_path",
        "limits",
        "locality",
        "log_file",
        "log_json",
        "log_rotate_bytes",
        "log_rotate_duration",
        "log_rotate_max_files",
        "max_query_time",
        "non_voting_server",
        "peering",
        "pid_file",
        "primary_datacenter",
        "primary_gateways",
        "primary_gateways_interval",
        "protocol",
        "raft_boltdb",
        "raft_logstore",
        "raft_protocol",
        "read_replica",
        "recursor",
        "recursors",
        "reporting",
        "retry_interval_wan",
        "retry_join_wan",
        "retry_max_wan",
        "rpc",
        "segment",
        "segments",
        "serf_lan",
        "serf_lan_allowed_cidrs",
        "serf_wan",
        "serf_wan_allowed_cidrs",
        "server_name",
        "service",
        "services",
        "session_ttl_min",
        "start_join_wan",
        "syslog_facility",
        "telemetry",
        "tls",
        "tls_cipher_suites",
        "tls_min_version",
        "tls_prefer_server_cipher_suites",
        "translate_wan_addrs",
        "ui",
        "ui_config",
        "ui_content_path",
        "ui_dir",
        "unix_sockets",
        "use_streaming_backend",
        "verify_incoming",
        "verify_incoming_https",
        "verify_incoming_rpc",
        "verify_outgoing",
        "verify_server_hostname",
        "watches",
    }
)

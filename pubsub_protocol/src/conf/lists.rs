//! Which mosquitto keys pubsub implements, accepts at their default, ignores or
//! refuses. The README and `CONFORMANCE.md` quote these lists; `tests.rs` checks that
//! every key mosquitto 2.0 knows is in exactly one of them.

/// mosquitto keys pubsub reads into a [`ConfFile`](super::ConfFile) field.
pub const SUPPORTED: &[&str] = &[
    "listener",
    "port",
    "bind_address",
    "allow_anonymous",
    "password_file",
    "acl_file",
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "max_packet_size",
    "message_size_limit",
    "persistent_client_expiration",
    "sys_interval",
    "max_connections",
    "max_keepalive",
    "retain_available",
];

/// pubsub's own keys (not in mosquitto), named like the broker's bounds.
pub const EXTENSIONS: &[&str] = &[
    "max_topic_levels",
    "max_topic_length",
    "max_client_id_length",
    "max_persistent_sessions",
    "max_retained_messages",
    "max_retained_bytes",
    "message_expiry",
    "overflow",
];

/// `(key, value)`: mosquitto keys accepted only with this value, mosquitto's default
/// and what pubsub does; any other value is an error (it would ask for behaviour
/// pubsub does not have). Booleans and numbers compare by value (`0` = `false`).
pub const DEFAULT_ONLY: &[(&str, &str)] = &[
    ("protocol", "mqtt"),
    ("per_listener_settings", "false"),
    ("allow_zero_length_clientid", "true"),
    ("queue_qos0_messages", "false"),
    ("max_qos", "2"),
    ("maximum_qos", "2"),
    ("check_retain_source", "false"),
    ("use_username_as_clientid", "false"),
    ("upgrade_outgoing_qos", "false"),
    ("max_inflight_bytes", "0"),
    ("memory_limit", "0"),
];

const LOGGING: &str = "pubsub logs to stderr, filtered by RUST_LOG";
const PERSISTENCE: &str = "pubsub keeps sessions and retained messages in memory only, lost on restart";
const WEBSOCKETS: &str = "only used by websockets listeners, which pubsub does not have yet";

/// `(key, why)`: mosquitto keys with no effect in pubsub; each occurrence is a warning
/// and its value is not checked.
pub const IGNORED: &[(&str, &str)] = &[
    ("log_dest", LOGGING),
    ("log_type", LOGGING),
    ("log_facility", LOGGING),
    ("log_timestamp", LOGGING),
    ("log_timestamp_format", LOGGING),
    ("connection_messages", LOGGING),
    ("websockets_log_level", LOGGING),
    ("persistence", PERSISTENCE),
    ("retained_persistence", PERSISTENCE),
    ("persistence_file", PERSISTENCE),
    ("persistence_location", PERSISTENCE),
    ("autosave_interval", PERSISTENCE),
    ("autosave_on_changes", PERSISTENCE),
    ("http_dir", WEBSOCKETS),
    ("websockets_headers_size", WEBSOCKETS),
    ("pid_file", "pubsub writes no pid file"),
    ("user", "pubsub does not change user: start it as the user it should run as"),
    ("set_tcp_nodelay", "not configurable"),
    ("socket_domain", "a listener binds the one address it is given"),
    ("retry_interval", "mosquitto 2.0 ignores it too"),
    ("allow_duplicate_messages", "deprecated in mosquitto 2.0"),
    ("auto_id_prefix", "generated client ids always start with `auto-`, mosquitto's default"),
    ("max_topic_alias", "an MQTT 5 setting; pubsub speaks MQTT 3.1.1"),
];

const TLS: &str = "TLS";
const BRIDGE: &str = "bridges";
const PLUGIN: &str = "plugins";

/// `(key, feature)`: mosquitto keys for features pubsub does not have yet; each is an
/// error, so that a file relying on one never runs unprotected.
pub const REFUSED: &[(&str, &str)] = &[
    ("cafile", TLS),
    ("capath", TLS),
    ("certfile", TLS),
    ("keyfile", TLS),
    ("ciphers", TLS),
    ("ciphers_tls1.3", TLS),
    ("crlfile", TLS),
    ("dhparamfile", TLS),
    ("require_certificate", TLS),
    ("tls_version", TLS),
    ("tls_engine", TLS),
    ("tls_engine_kpass_sha1", TLS),
    ("tls_keyform", TLS),
    ("psk_file", TLS),
    ("psk_hint", TLS),
    ("use_identity_as_username", TLS),
    ("use_subject_as_username", TLS),
    ("auth_plugin", PLUGIN),
    ("plugin", PLUGIN),
    ("auth_plugin_deny_special_chars", PLUGIN),
    ("connection", BRIDGE),
    ("address", BRIDGE),
    ("addresses", BRIDGE),
    ("clientid", BRIDGE),
    ("remote_clientid", BRIDGE),
    ("local_clientid", BRIDGE),
    ("cleansession", BRIDGE),
    ("local_cleansession", BRIDGE),
    ("idle_timeout", BRIDGE),
    ("keepalive_interval", BRIDGE),
    ("username", BRIDGE),
    ("remote_username", BRIDGE),
    ("password", BRIDGE),
    ("remote_password", BRIDGE),
    ("local_username", BRIDGE),
    ("local_password", BRIDGE),
    ("notifications", BRIDGE),
    ("notifications_local_only", BRIDGE),
    ("notification_topic", BRIDGE),
    ("restart_timeout", BRIDGE),
    ("round_robin", BRIDGE),
    ("start_type", BRIDGE),
    ("threshold", BRIDGE),
    ("topic", BRIDGE),
    ("try_private", BRIDGE),
    ("include_dir", "include_dir (put the settings in this file)"),
    ("bind_interface", "binding to an interface (use `listener PORT ADDRESS`)"),
    ("mount_point", "mount points"),
    ("clientid_prefixes", "client id prefixes"),
];

/// `(prefix, feature)`: every key starting with the prefix is refused like
/// [`REFUSED`].
pub const REFUSED_PREFIXES: &[(&str, &str)] =
    &[("bridge_", BRIDGE), ("auth_opt_", PLUGIN), ("plugin_opt_", PLUGIN)];

/// The feature a refused key belongs to.
pub(super) fn refused(key: &str) -> Option<&'static str> {
    let exact = REFUSED.iter().find(|(name, _)| *name == key);
    let prefixed = || REFUSED_PREFIXES.iter().find(|(prefix, _)| key.starts_with(prefix));
    exact.or_else(prefixed).map(|(_, feature)| *feature)
}

/// Why an ignored key has no effect.
pub(super) fn ignored(key: &str) -> Option<&'static str> {
    IGNORED.iter().find(|(name, _)| *name == key).map(|(_, why)| *why)
}

/// The only value accepted for a default-only key.
pub(super) fn default_only(key: &str) -> Option<&'static str> {
    DEFAULT_ONLY.iter().find(|(name, _)| *name == key).map(|(_, value)| *value)
}

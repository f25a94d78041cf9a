//! The conditions under which an ignored field stays harmless, and the
//! extension lookups that Envoy 1.40 refuses: each check rvoy makes so that
//! what it accepts behaves as in Envoy.

use rvoy_config_load::ErrorKind;
use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_model::BuildOptions;

/// Builds `yaml`; `Ok` with the ignored fields, or the errors as text.
fn build(yaml: &str) -> Result<Vec<String>, Vec<(ErrorKind, String)>> {
    let loaded = load_bootstrap(&LoadOptions {
        config_yaml: Some(yaml.to_owned()),
        ..LoadOptions::default()
    })
    .map_err(|e| {
        e.0.iter()
            .map(|e| (e.kind, e.to_string()))
            .collect::<Vec<_>>()
    })?;
    rvoy_model::build(
        &loaded.bootstrap,
        &loaded.message,
        &loaded.sources,
        &BuildOptions::default(),
    )
    .map(|c| c.ignored.iter().map(|i| i.field.clone()).collect())
    .map_err(|e| e.0.iter().map(|e| (e.kind, e.to_string())).collect())
}

fn first_error(yaml: &str) -> (ErrorKind, String) {
    match build(yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(errors) => errors.into_iter().next().expect("an error"),
    }
}

/// A listener proxying to cluster `c`, with `route_extra` added to its route
/// and `hcm_extra` to its connection manager.
fn proxy(hcm_extra: &str, route_extra: &str, cluster_extra: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          {hcm_extra}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: c}}
                {route_extra}
  clusters:
  - name: c
    {cluster_extra}
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}
"#
    )
}

#[test]
fn metadata_is_ignored_until_a_format_string_reads_it() {
    let meta = "metadata: {filter_metadata: {app: {team: a}}}";
    let ignored = build(&proxy("", "", meta)).expect("accepted");
    assert_eq!(ignored, ["envoy.config.cluster.v3.Cluster.metadata"]);

    let header =
        "request_headers_to_add: [{header: {key: x-team, value: '%CLUSTER_METADATA(app:team)%'}}]";
    let (kind, e) = first_error(&proxy("", header, meta));
    assert_eq!(kind, ErrorKind::NotSupported);
    assert!(
        e.starts_with("static_resources.clusters[0].metadata: envoy.config.cluster.v3.Cluster.metadata read by %CLUSTER_METADATA...% is not supported by rvoy"),
        "{e}"
    );

    // Without metadata the operator renders nothing, in Envoy as in rvoy.
    build(&proxy("", header, "")).expect("accepted");

    let route_meta = "metadata: {filter_metadata: {app: {team: a}}}";
    let log = r#"access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {text_format: "%METADATA(ROUTE:app:team)%\n"}"#;
    let (kind, e) = first_error(&proxy(log, route_meta, ""));
    assert_eq!(kind, ErrorKind::NotSupported);
    assert!(
        e.contains("Route.metadata read by %METADATA(ROUTE...%"),
        "{e}"
    );
}

#[test]
fn endpoint_metadata_is_read_for_transport_socket_matching_only() {
    let with_endpoint_meta = |meta: &str, hcm_extra: &str| {
        proxy(hcm_extra, "", "").replace(
            "port_value: 1}}}\n",
            &format!("port_value: 1}}}}}}\n          metadata: {{filter_metadata: {meta}}}\n"),
        )
    };
    let socket_match = "{envoy.transport_socket_match: {tls: true}}";
    let yaml = with_endpoint_meta(socket_match, "");
    assert!(yaml.contains("envoy.transport_socket_match"), "{yaml}");
    assert_eq!(build(&yaml).expect("accepted"), Vec::<String>::new());
    let other = "{envoy.transport_socket_match: {tls: true}, app: {team: a}}";
    assert_eq!(
        build(&with_endpoint_meta(other, "")).expect("accepted"),
        ["envoy.config.endpoint.v3.LbEndpoint.metadata"]
    );
    // rvoy does not render %UPSTREAM_METADATA%: whatever the keys, a format
    // string reading endpoint metadata is refused.
    let log = r#"access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {text_format: "%UPSTREAM_METADATA(envoy.transport_socket_match:tls)%\n"}"#;
    let (kind, e) = first_error(&with_endpoint_meta(socket_match, log));
    assert_eq!(kind, ErrorKind::NotSupported);
    assert!(
        e.contains("LbEndpoint.metadata read by %UPSTREAM_METADATA"),
        "{e}"
    );
}

#[test]
fn local_cluster_must_exist_and_zone_aware_routing_is_rejected() {
    let with_local = |name: &str, node: &str, endpoints: &str| {
        format!(
            r#"
node: {node}
cluster_manager: {{local_cluster_name: {name}}}
static_resources:
  clusters:
  - name: local
    load_assignment: {{cluster_name: local}}
  - name: upstream
    load_assignment:
      cluster_name: upstream
      endpoints: {endpoints}
"#
        )
    };
    let one = "[{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]";
    let two = "[{locality: {zone: a}, lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}, {locality: {zone: b}, lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.2, port_value: 1}}}}]}]";

    let (kind, e) = first_error(&with_local("nope", "{}", one));
    assert_eq!(kind, ErrorKind::Semantic);
    assert!(e.starts_with("local cluster 'nope' must be defined"), "{e}");

    build(&with_local("local", "{locality: {zone: a}}", one)).expect("one locality");
    build(&with_local("local", "{}", two)).expect("no node locality");
    let (kind, e) = first_error(&with_local("local", "{locality: {zone: a}}", two));
    assert_eq!(kind, ErrorKind::NotSupported);
    assert!(
        e.starts_with("static_resources.clusters[1].load_assignment.endpoints: zone-aware routing"),
        "{e}"
    );
}

#[test]
fn runtime_keys_a_static_layer_sets_are_rejected() {
    let route = "request_mirror_policies: [{cluster: c, runtime_fraction: {default_value: {numerator: 50}, runtime_key: mirror.c}}]";
    let config = proxy("", "", "");
    let with_route = config.replace(
        "route: {cluster: c}",
        &format!("route: {{cluster: c, {route}}}"),
    );
    build(&with_route).expect("no runtime layer");
    let layered = format!(
        "layered_runtime: {{layers: [{{name: static, static_layer: {{mirror.c: 10}}}}]}}\n{with_route}"
    );
    let (kind, e) = first_error(&layered);
    assert_eq!(kind, ErrorKind::NotSupported);
    assert!(e.contains("a runtime override of 'mirror.c'"), "{e}");
}

#[test]
fn extensions_need_a_typed_config() {
    let config = proxy("", "", "").replace(
        r#"typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}"#,
        "",
    );
    let (kind, e) = first_error(&config);
    assert_eq!(kind, ErrorKind::UnknownExtension);
    assert!(
        e.starts_with(
            "Didn't find a registered implementation for 'envoy.filters.http.router' with type URL: ''"
        ),
        "{e}"
    );
    // An optional filter Envoy cannot find is skipped.
    let optional = proxy("", "", "").replace(
        "          http_filters:\n",
        "          http_filters:\n          - {name: envoy.filters.http.buffer, is_optional: true}\n",
    );
    build(&optional).expect("optional filter skipped");
}

#[test]
fn unknown_extensions_under_unsupported_fields_get_envoys_error() {
    let config = r#"
bootstrap_extensions:
- name: custom
  typed_config:
    "@type": type.googleapis.com/udpa.type.v1.TypedStruct
    type_url: type.googleapis.com/acme.Extension
    value: {}
"#;
    let (kind, e) = first_error(config);
    assert_eq!(kind, ErrorKind::UnknownExtension);
    assert!(
        e.starts_with(
            "Didn't find a registered implementation for 'custom' with type URL: 'acme.Extension'"
        ),
        "{e}"
    );
}

#[test]
fn extensions_are_named_by_their_config_type() {
    let config = proxy("", "", "").replace(
        "          http_filters:\n",
        "          http_filters:\n          - name: my-lua\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, default_source_code: {inline_string: x}}\n",
    );
    let (kind, e) = first_error(&config);
    assert_eq!(kind, ErrorKind::NotSupported);
    assert!(
        e.contains("http_filters[0]: envoy.filters.http.lua is not supported by rvoy"),
        "{e}"
    );
}

#[test]
fn upstream_connection_limits_rvoy_lacks_are_rejected() {
    for field in [
        "max_connection_duration: 10s",
        "max_stream_duration: 10s",
        "headers_with_underscores_action: DROP_HEADER",
    ] {
        let cluster = format!("common_http_protocol_options: {{{field}}}");
        let (kind, message) = first_error(&proxy("", "", &cluster));
        let name = field.split(':').next().unwrap_or_default();
        assert_eq!(kind, ErrorKind::NotSupported, "{message}");
        assert!(
            message.contains(&format!(
                "static_resources.clusters[0].common_http_protocol_options.{name}: upstream {name} is not supported by rvoy"
            )),
            "{message}"
        );
    }
    let limits = "common_http_protocol_options: {idle_timeout: 1s, max_requests_per_connection: 5, max_headers_count: 50}";
    assert!(build(&proxy("", "", limits)).is_ok());
}

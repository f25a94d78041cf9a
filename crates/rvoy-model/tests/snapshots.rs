//! Snapshots of the model built from small bootstraps (`tests/fixtures/`),
//! rendered with [`rvoy_model::render::compact`]. Each fixture is a config
//! Envoy 1.40 accepts as well.

use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_model::BuildOptions;

fn model(fixture: &str) -> String {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let loaded = load_bootstrap(&LoadOptions {
        config_path: Some(path),
        ..LoadOptions::default()
    })
    .unwrap_or_else(|e| panic!("{fixture} does not load: {e}"));
    let config = rvoy_model::build(
        &loaded.bootstrap,
        &loaded.message,
        &loaded.sources,
        &BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{fixture} does not build: {e}"));
    // Lookup indexes derived from the config have tests of their own.
    rvoy_model::render::compact_skipping(&config, &["chain_index"])
}

#[test]
fn direct_response() {
    insta::assert_snapshot!(model("direct_response.yaml"));
}

#[test]
fn static_proxy() {
    insta::assert_snapshot!(model("static_proxy.yaml"));
}

#[test]
fn strict_dns() {
    insta::assert_snapshot!(model("strict_dns.yaml"));
}

#[test]
fn access_logs() {
    insta::assert_snapshot!(model("access_logs.yaml"));
}

//! What both targets run: rvoy's `--mode validate` pipeline on one config.
//!
//! `load_bootstrap` (parse, merge, unknown-field / PGV / deprecation checks, transcode)
//! then, on success, `rvoy_model::build` (support tables, extension registry, lowering),
//! exactly as `rvoy-server`'s `load()` does, and the messages the server would print
//! (errors, warnings, ignored fields) are rendered too. Any `Err` is a correct answer;
//! a panic, a hang (libFuzzer `-timeout`) or an OOM (`-rss_limit_mb`) is a bug.

use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_model::BuildOptions;

pub fn validate(options: &LoadOptions) {
    let loaded = match load_bootstrap(options) {
        Ok(l) => l,
        Err(e) => {
            std::hint::black_box(e.to_string());
            return;
        }
    };
    for w in &loaded.warnings {
        std::hint::black_box(w.to_string());
    }
    match rvoy_model::build(
        &loaded.bootstrap,
        &loaded.message,
        &loaded.sources,
        &BuildOptions::default(),
    ) {
        Ok(config) => {
            for i in &config.ignored {
                std::hint::black_box(format!("{}: {} ({})", i.path, i.field, i.reason));
            }
            std::hint::black_box(&config);
        }
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
    }
}

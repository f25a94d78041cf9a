//! `config_yaml`: the input is a `--config-yaml` document.
//!
//! Non-UTF-8 input is rejected (kept out of the corpus): rvoy's command line only
//! takes UTF-8 arguments, so no such `--config-yaml` can reach the loader.

#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use rvoy_config_load::bootstrap::LoadOptions;

mod common;

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    common::validate(&LoadOptions {
        config_yaml: Some(text.to_owned()),
        ..LoadOptions::default()
    });
    Corpus::Keep
});

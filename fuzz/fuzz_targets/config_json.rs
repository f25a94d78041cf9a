//! `config_json`: the input is a `-c FILE.json` bootstrap.
//!
//! The loader picks the reader by extension (`.json`, and anything not
//! `.yaml`/`.yml`/`.pb`/`.pb_text`, goes through the strict-JSON reader), so the bytes
//! are written as-is to a per-process `.json` file and loaded through `config_path`,
//! which is the path `rvoy -c envoy.json` takes (non-UTF-8 included: it must be an
//! error, not a panic). The file is removed after each run.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rvoy_config_load::bootstrap::LoadOptions;

mod common;

static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("rvoy-fuzz-config-{}.json", std::process::id()))
});

fuzz_target!(|data: &[u8]| {
    let path = &*PATH;
    std::fs::write(path, data).expect("write the fuzz input file");
    common::validate(&LoadOptions {
        config_path: Some(path.to_string_lossy().into_owned()),
        ..LoadOptions::default()
    });
    // Nothing is left behind in /dev/shm, except the input of a crash (also saved
    // under fuzz/artifacts/).
    let _ = std::fs::remove_file(path);
});

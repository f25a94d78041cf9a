//! Differential test against `envoy --mode validate` (Envoy 1.40): every
//! format in `data/envoy_1.40_validate.json` was put in an access log's
//! `text_format_source` and Envoy's verdict recorded (`OK` or its error
//! message). Compiling it here must give the same verdict and message.

use rvoy_format::Format;

#[test]
fn same_verdicts_as_envoy() {
    let data = include_str!("data/envoy_1.40_validate.json");
    let cases: Vec<(String, String)> = serde_json::from_str(data).expect("corpus parses");
    assert!(cases.len() > 1000);
    let mut failures = Vec::new();
    for (format, envoy) in &cases {
        // CEL is rejected by rvoy; JSON library messages differ in wording.
        if format.contains("CEL")
            || envoy.starts_with("COALESCE: failed to parse JSON configuration")
        {
            continue;
        }
        let ours = match Format::parse(format) {
            Ok(_) => "OK".to_owned(),
            Err(e) => e.to_string(),
        };
        if ours != *envoy {
            failures.push(format!("{format}\n    envoy: {envoy}\n    rvoy:  {ours}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

//! Writes rvoy's compatibility table (`docs/compat.md`) for a set of Envoy configs.
//!
//! ```text
//! cargo run -p rvoy-model --example compat_table -- [--units UNITS.tsv] [--verdicts VERDICTS.tsv] [PATH...]
//! ```
//!
//! Each PATH is a bootstrap file, or a directory searched for `*.yaml`, `*.yml`,
//! `*.json`, `*.pb`, `*.pb_text`. `--units` reads the listing printed by the
//! corpus runner's `validate-all --prepare-only` (`unit<TAB>prepared file<TAB>extra
//! args`), so that xDS sets are read as the wrapped bootstraps the runner makes.
//! `--verdicts` (`file<TAB>exit code<TAB>first error`, Envoy's verdicts) marks the
//! units Envoy rejects: they still count in the field and extension tables, but
//! not in the summary of what keeps rvoy from accepting what Envoy accepts.
//!
//! Every unit is loaded with rvoy's loader and walked with
//! [`rvoy_model::compat::usage`]; then the model is built. When the build fails
//! with "not supported" errors, the fields those errors name are stripped from
//! the config one after the other and the build is retried, to bring out any
//! other error hidden behind them (such an error, in a unit Envoy accepts, is a
//! bug in rvoy, not a missing feature). The document goes to stdout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use prost::Message as _;
use prost_reflect::{DynamicMessage, MapKey, ReflectMessage as _, Value};
use rvoy_config_load::bootstrap::{LoadOptions, LoadedBootstrap, load_bootstrap};
use rvoy_config_load::{ConfigError, ErrorKind, FieldPath, Seg};
use rvoy_model::BuildOptions;
use rvoy_model::compat::{ExtensionStatus, FieldTier, usage};
use rvoy_model::extension;

/// One config to check.
struct Unit {
    name: String,
    path: PathBuf,
    options: BuildOptions,
}

/// Envoy's verdict on a unit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepts,
    Rejects,
    /// Envoy crashed on it (a negative exit code): no verdict.
    Crashed,
}

/// What happened to one unit.
struct Outcome {
    /// `None`: accepted.
    first_error: Option<ConfigError>,
    /// Not-supported features met (first, and all met while stripping), with
    /// the path each error named.
    features: Vec<(FieldPath, String)>,
    /// Errors other than "not supported" found once those were stripped.
    hidden: Vec<ConfigError>,
    /// A not-supported error whose field could not be stripped: what is behind
    /// it was not checked.
    stuck: Option<ConfigError>,
}

#[derive(Default)]
struct ExtRow {
    type_name: String,
    status: ExtensionStatus,
    sites: BTreeSet<String>,
    names: BTreeSet<String>,
    units: BTreeSet<String>,
}

#[derive(Default)]
struct Tally {
    units: BTreeSet<String>,
    tier: Option<FieldTier>,
    /// Not-supported features whose error points at this field.
    partial: BTreeSet<String>,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut units = Vec::new();
    let mut verdicts: HashMap<String, Verdict> = HashMap::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--units" => {
                let Some(file) = args.next() else {
                    eprintln!("--units needs a file");
                    return ExitCode::FAILURE;
                };
                match std::fs::read_to_string(&file) {
                    Ok(text) => units.extend(text.lines().filter_map(unit_from_listing)),
                    Err(e) => {
                        eprintln!("{file}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "--verdicts" => {
                let Some(file) = args.next() else {
                    eprintln!("--verdicts needs a file");
                    return ExitCode::FAILURE;
                };
                match std::fs::read_to_string(&file) {
                    Ok(text) => {
                        for line in text.lines().skip(1) {
                            let mut cols = line.split('\t');
                            if let (Some(name), Some(code)) = (cols.next(), cols.next())
                                && let Ok(code) = code.parse::<i32>()
                            {
                                let verdict = match code {
                                    0 => Verdict::Accepts,
                                    c if c > 0 => Verdict::Rejects,
                                    _ => Verdict::Crashed,
                                };
                                verdicts.insert(name.to_owned(), verdict);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("{file}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "-h" | "--help" => {
                eprintln!(
                    "usage: compat_table [--units UNITS.tsv] [--verdicts VERDICTS.tsv] [PATH...]"
                );
                return ExitCode::SUCCESS;
            }
            path => collect_files(Path::new(path), &mut units),
        }
    }
    if units.is_empty() {
        eprintln!("no configs given (see --help)");
        return ExitCode::FAILURE;
    }
    units.sort_by(|a, b| a.name.cmp(&b.name));
    print!("{}", report(&units, &verdicts));
    ExitCode::SUCCESS
}

fn unit_from_listing(line: &str) -> Option<Unit> {
    let mut cols = line.split('\t');
    let name = cols.next()?.trim();
    let path = cols.next()?.trim();
    if name.is_empty() || path.is_empty() || !Path::new(path).is_file() {
        return None;
    }
    let mut options = BuildOptions::default();
    let extra: Vec<&str> = cols.next().unwrap_or("").split_whitespace().collect();
    for pair in extra.windows(2) {
        match pair[0] {
            "--service-node" => options.service_node = Some(pair[1].to_owned()),
            "--service-cluster" => options.service_cluster = Some(pair[1].to_owned()),
            "--service-zone" => options.service_zone = Some(pair[1].to_owned()),
            _ => {}
        }
    }
    Some(Unit {
        name: name.to_owned(),
        path: path.into(),
        options,
    })
}

fn collect_files(path: &Path, out: &mut Vec<Unit>) {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for entry in entries {
            collect_files(&entry, out);
        }
        return;
    }
    let name = path.to_string_lossy();
    let lower = name.to_ascii_lowercase();
    if [".yaml", ".yml", ".json", ".pb", ".pb_text"]
        .iter()
        .any(|ext| lower.ends_with(ext))
    {
        out.push(Unit {
            name: name.into_owned(),
            path: path.into(),
            options: BuildOptions::default(),
        });
    }
}

/// The feature a "not supported" error names.
fn feature(e: &ConfigError) -> String {
    e.message
        .strip_suffix(" is not supported by rvoy")
        .unwrap_or(&e.message)
        .to_owned()
}

fn load(unit: &Unit) -> Result<LoadedBootstrap, ConfigError> {
    load_bootstrap(&LoadOptions {
        config_path: Some(unit.path.to_string_lossy().into_owned()),
        ..LoadOptions::default()
    })
    .map_err(|e| {
        e.0.into_iter().next().unwrap_or_else(|| {
            ConfigError::new(ErrorKind::Syntax, FieldPath::root(), "load failed")
        })
    })
}

fn build(loaded: &LoadedBootstrap, message: &DynamicMessage, unit: &Unit) -> Vec<ConfigError> {
    let bootstrap = match message.transcode_to() {
        Ok(b) => b,
        Err(e) => {
            return vec![ConfigError::new(
                ErrorKind::Syntax,
                FieldPath::root(),
                format!("transcoding: {e}"),
            )];
        }
    };
    match rvoy_model::build(&bootstrap, message, &loaded.sources, &unit.options) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

/// Builds the unit, then strips not-supported features until the build
/// passes or fails for another reason.
fn outcome(loaded: &LoadedBootstrap, unit: &Unit) -> Outcome {
    let mut message = loaded.message.clone();
    let mut errors = build(loaded, &message, unit);
    let first_error = errors.first().cloned();
    let mut features = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // Fields cleared so far (not removed list elements), to tell errors that
    // the stripping itself caused.
    let mut cleared: Vec<FieldPath> = Vec::new();
    for _ in 0..400 {
        let (supported, others): (Vec<_>, Vec<_>) = errors
            .iter()
            .partition(|e| e.kind == ErrorKind::NotSupported);
        for e in &supported {
            if seen.insert(format!("{}|{}", e.path, e.message)) {
                features.push((e.path.clone(), feature(e)));
            }
        }
        if !others.is_empty() && supported.is_empty() {
            // An error about what holds a cleared field (an emptied list, a
            // listener left without its address) is our doing: strip the
            // element holding it instead.
            let escalate = others.iter().find_map(|e| {
                let element = enclosing_element(&e.path)?;
                cleared
                    .iter()
                    .any(|c| is_prefix(&e.path, c) || is_prefix(&element, c))
                    .then_some(element)
            });
            if let Some(target) = escalate {
                if std::env::var_os("COMPAT_TABLE_DEBUG").is_some() {
                    eprintln!("{}: stripping {target} for: {}", unit.name, others[0]);
                }
                if apply(&mut message, &target, &mut cleared) {
                    errors = build(loaded, &message, unit);
                    continue;
                }
            }
            let hidden = if features.is_empty() {
                Vec::new()
            } else {
                others.into_iter().cloned().collect()
            };
            return Outcome {
                first_error,
                features,
                hidden,
                stuck: None,
            };
        }
        if supported.is_empty() {
            break;
        }
        // Not-supported errors go first: what they leave behind may explain
        // the others.
        let Some((probe, probe_cleared)) = supported.iter().find_map(|e| {
            let target = strip_target(&e.path);
            let mut probe = message.clone();
            let mut probe_cleared = cleared.clone();
            apply(&mut probe, &target, &mut probe_cleared).then_some((probe, probe_cleared))
        }) else {
            return Outcome {
                first_error,
                features,
                hidden: Vec::new(),
                stuck: supported.first().map(|e| (*e).clone()),
            };
        };
        if std::env::var_os("COMPAT_TABLE_DEBUG").is_some() {
            eprintln!("{}: cleared now {:?}", unit.name, probe_cleared);
        }
        message = probe;
        cleared = probe_cleared;
        errors = build(loaded, &message, unit);
    }
    Outcome {
        first_error,
        features,
        hidden: Vec::new(),
        stuck: errors.first().cloned(),
    }
}

/// Strips `target` and keeps the record of cleared fields in step: removing a
/// list element shifts the indices after it.
fn apply(message: &mut DynamicMessage, target: &FieldPath, cleared: &mut Vec<FieldPath>) -> bool {
    if !strip(message, &target.0) {
        return false;
    }
    // A custom cluster type rvoy lacks: read the cluster as a DNS cluster
    // rather than as a STATIC one (its endpoints are host names).
    if matches!(target.0.last(), Some(Seg::Field(f)) if f.as_ref() == "cluster_type") {
        let cluster = FieldPath(target.0[..target.0.len() - 1].to_vec());
        set_enum(message, &cluster.0, "type", 1);
    }
    match target.0.last() {
        Some(Seg::Index(removed)) => {
            let list = &target.0[..target.0.len() - 1];
            cleared.retain_mut(|c| {
                if c.0.len() < target.0.len() || c.0[..list.len()] != list[..] {
                    return true;
                }
                match &mut c.0[list.len()] {
                    Seg::Index(i) if *i == *removed => false,
                    Seg::Index(i) if *i > *removed => {
                        *i -= 1;
                        true
                    }
                    _ => true,
                }
            });
            // The list lost an element: an error about the list itself (now
            // empty) is ours too.
            cleared.push(FieldPath(list.to_vec()));
        }
        _ => cleared.push(target.clone()),
    }
    true
}

/// Sets enum field `field` of the message at `path` (outside any `Any`).
fn set_enum(msg: &mut DynamicMessage, path: &[Seg], field: &str, number: i32) {
    match path.split_first() {
        None => {
            if let Some(fd) = msg.descriptor().get_field_by_name(field) {
                msg.set_field(&fd, Value::EnumNumber(number));
            }
        }
        Some((Seg::Field(name), rest)) => {
            let Some(fd) = msg.descriptor().get_field_by_name(name) else {
                return;
            };
            match (msg.get_field_mut(&fd), rest.split_first()) {
                (Value::List(items), Some((Seg::Index(i), rest))) => {
                    if let Some(Value::Message(m)) = items.get_mut(*i) {
                        set_enum(m, rest, field, number);
                    }
                }
                (Value::Message(m), _) => set_enum(m, rest, field, number),
                _ => {}
            }
        }
        Some(_) => {}
    }
}

fn is_prefix(prefix: &FieldPath, path: &FieldPath) -> bool {
    prefix.0.len() <= path.0.len() && path.0[..prefix.0.len()] == prefix.0[..]
}

/// The list element or map entry holding `path` (the path cut after its last
/// index or key).
fn enclosing_element(path: &FieldPath) -> Option<FieldPath> {
    let last = path
        .0
        .iter()
        .rposition(|s| matches!(s, Seg::Index(_) | Seg::Key(_)))?;
    Some(FieldPath(path.0[..=last].to_vec()))
}

/// What to strip for a not-supported error at `path`, so that what is left
/// still makes sense to rvoy:
/// - a listener whose address, kind or chain selection rvoy lacks (UDP,
///   internal, reverse connection, `filter_chain_matcher`) goes whole, and so
///   does an endpoint with such an address;
/// - a filter chain goes whole when rvoy lacks its network filter (a chain
///   needs its terminal filter) or part of its match criteria (else it could
///   collide with the chains beside it);
/// - anything else is cleared alone.
fn strip_target(path: &FieldPath) -> FieldPath {
    let segs = &path.0;
    let field_at =
        |i: usize, name: &str| matches!(segs.get(i), Some(Seg::Field(f)) if f.as_ref() == name);
    for (i, seg) in segs.iter().enumerate() {
        let Seg::Index(_) = seg else { continue };
        let element = || FieldPath(segs[..=i].to_vec());
        if i >= 1 && field_at(i - 1, "listeners") {
            // `filter_chain_matcher` too: with it, Envoy ignores the chains'
            // own match criteria (they may repeat).
            let listener_wide = [
                "address",
                "additional_addresses",
                "udp_listener_config",
                "internal_listener",
                "filter_chain_matcher",
            ];
            if listener_wide.iter().any(|f| field_at(i + 1, f)) {
                return element();
            }
        }
        if i >= 1 && field_at(i - 1, "lb_endpoints") && field_at(i + 2, "address") {
            return element();
        }
        if i >= 1 && field_at(i - 1, "filter_chains") {
            let whole = field_at(i + 1, "filter_chain_match")
                || (field_at(i + 1, "filters") && segs.len() == i + 3);
            if whole {
                return element();
            }
        }
    }
    if let Some(i) = segs
        .iter()
        .position(|s| matches!(s, Seg::Field(f) if f.as_ref() == "default_filter_chain"))
    {
        let whole = field_at(i + 1, "filter_chain_match")
            || (field_at(i + 1, "filters") && segs.len() == i + 3);
        if whole {
            return FieldPath(segs[..=i].to_vec());
        }
    }
    path.clone()
}

/// Removes what `path` designates from `msg`; false when it is not there.
fn strip(msg: &mut DynamicMessage, path: &[Seg]) -> bool {
    if msg.descriptor().full_name() == "google.protobuf.Any" {
        return strip_in_any(msg, path);
    }
    let Some((Seg::Field(name), rest)) = path.split_first() else {
        return false;
    };
    let Some(field) = msg.descriptor().get_field_by_name(name) else {
        return false;
    };
    if !msg.has_field(&field) {
        return false;
    }
    if rest.is_empty() {
        msg.clear_field(&field);
        return true;
    }
    let value = msg.get_field_mut(&field);
    match (value, &rest[0]) {
        (Value::List(items), Seg::Index(i)) => {
            if *i >= items.len() {
                return false;
            }
            if rest.len() == 1 {
                items.remove(*i);
                true
            } else {
                strip_value(&mut items[*i], &rest[1..])
            }
        }
        (Value::Map(entries), Seg::Key(k)) => {
            let key = MapKey::String(k.to_string());
            if rest.len() == 1 {
                entries.remove(&key).is_some()
            } else {
                entries
                    .get_mut(&key)
                    .is_some_and(|v| strip_value(v, &rest[1..]))
            }
        }
        (v @ Value::Message(_), Seg::Field(_)) => strip_value(v, rest),
        _ => false,
    }
}

fn strip_value(value: &mut Value, path: &[Seg]) -> bool {
    match value {
        Value::Message(m) => strip(m, path),
        _ => false,
    }
}

/// Strips inside the message an `Any` holds (a `TypedStruct` is repacked as
/// the message it names).
fn strip_in_any(any: &mut DynamicMessage, path: &[Seg]) -> bool {
    let Ok(packed) = any.transcode_to::<prost_types::Any>() else {
        return false;
    };
    let Ok(Some(unpacked)) = rvoy_config_load::any::unpack(&packed, &FieldPath::root()) else {
        return false;
    };
    let mut inner = std::sync::Arc::unwrap_or_clone(unpacked.message);
    if !strip(&mut inner, path) {
        return false;
    }
    any.set_field_by_number(
        1,
        Value::String(format!("type.googleapis.com/{}", unpacked.type_name)),
    );
    any.set_field_by_number(2, Value::Bytes(inner.encode_to_vec().into()));
    true
}

fn tier_text(tier: FieldTier, partial: &BTreeSet<String>) -> String {
    let mut text = match tier {
        FieldTier::Implemented => "implemented".to_owned(),
        FieldTier::Ignored(why) => format!("ignored, warned ({why})"),
        FieldTier::NotSupported => "**not supported**".to_owned(),
    };
    if !partial.is_empty() && tier != FieldTier::NotSupported {
        let list: Vec<String> = partial.iter().map(|f| format!("`{}`", esc(f))).collect();
        let _ = write!(text, "; not supported: {}", list.join(", "));
    }
    text
}

fn esc(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn report(units: &[Unit], verdicts: &HashMap<String, Verdict>) -> String {
    let mut fields: BTreeMap<String, Tally> = BTreeMap::new();
    let mut extensions: BTreeMap<String, ExtRow> = BTreeMap::new();
    let mut first_features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut all_features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut accepted = Vec::new();
    let mut other_rejections = Vec::new();
    let mut hidden = Vec::new();
    let mut envoy_rejects = Vec::new();
    let mut unreadable = Vec::new();
    let mut stuck = Vec::new();

    for unit in units {
        let verdict = verdicts.get(&unit.name).copied();
        let excluded = matches!(verdict, Some(Verdict::Rejects | Verdict::Crashed));
        let loaded = match load(unit) {
            Ok(l) => l,
            Err(e) => {
                if excluded {
                    envoy_rejects.push((unit.name.clone(), verdict, shorten(&plain(&e))));
                } else {
                    unreadable.push((unit.name.clone(), plain(&e)));
                }
                continue;
            }
        };
        let used = usage(&loaded.message);
        let result = outcome(&loaded, unit);
        let partial_at: HashMap<String, &String> = result
            .features
            .iter()
            .map(|(path, f)| (path.to_string(), f))
            .collect();
        for u in &used.fields {
            let key = format!("{}.{}", u.message, u.field);
            let tally = fields.entry(key).or_default();
            tally.units.insert(unit.name.clone());
            tally.tier = Some(u.tier);
            if let Some(f) = partial_at.get(&u.path.to_string()) {
                tally.partial.insert((*f).clone());
            }
        }
        for e in &used.extensions {
            let key = if e.type_name.is_empty() {
                format!("~{}", e.name)
            } else {
                e.type_name.clone()
            };
            let row = extensions.entry(key).or_insert_with(|| ExtRow {
                type_name: e.type_name.clone(),
                status: e.status,
                ..ExtRow::default()
            });
            row.sites.insert(short_site(&e.site));
            if !e.name.is_empty() {
                row.names.insert(e.name.clone());
            }
            row.units.insert(unit.name.clone());
        }
        if excluded {
            let mut why = result
                .first_error
                .as_ref()
                .map(|e| shorten(&plain(e)))
                .unwrap_or_else(|| "(rvoy accepts it)".to_owned());
            if let Some(e) = result.hidden.first() {
                let _ = write!(why, "; behind it: {}", shorten(&plain(e)));
            }
            envoy_rejects.push((unit.name.clone(), verdict, why));
            continue;
        }
        match &result.first_error {
            None => accepted.push(unit.name.clone()),
            Some(e) if e.kind == ErrorKind::NotSupported => {
                first_features
                    .entry(feature(e))
                    .or_default()
                    .insert(unit.name.clone());
            }
            Some(e) => other_rejections.push((unit.name.clone(), plain(e))),
        }
        for (_, f) in &result.features {
            all_features
                .entry(f.clone())
                .or_default()
                .insert(unit.name.clone());
        }
        for e in &result.hidden {
            hidden.push((unit.name.clone(), plain(e)));
        }
        if let Some(e) = &result.stuck {
            stuck.push((unit.name.clone(), plain(e)));
        }
    }

    let mut out = String::new();
    let counted = units.len() - envoy_rejects.len();
    let rejected_ns: usize = first_features.values().map(BTreeSet::len).sum();
    let _ = writeln!(out, "{HEADER}");
    let _ = writeln!(out, "## Summary\n");
    if verdicts.is_empty() {
        let _ = writeln!(out, "{} config units read.\n", units.len());
        let _ = writeln!(out, "| of the {counted} units | units |");
    } else {
        let _ = writeln!(
            out,
            "{} config units read; Envoy 1.40 rejects or crashes on {} of them \
             (left out of the counts below, listed at the end).\n",
            units.len(),
            envoy_rejects.len()
        );
        let _ = writeln!(out, "| of the {counted} units Envoy accepts | units |");
    }
    let _ = writeln!(out, "|---|---:|");
    let _ = writeln!(out, "| accepted by rvoy | {} |", accepted.len());
    let _ = writeln!(
        out,
        "| rejected: a feature rvoy does not implement yet | {rejected_ns} |"
    );
    let _ = writeln!(
        out,
        "| rejected for another reason (a bug in rvoy) | {} |",
        other_rejections.len() + unreadable.len()
    );
    let _ = writeln!(
        out,
        "| errors other than \"not supported\" behind those features (bugs) | {} |",
        hidden.len()
    );
    let _ = writeln!(
        out,
        "| units not checked past a feature the stripping could not take out | {} |",
        stuck.len()
    );
    out.push('\n');
    for (name, e) in other_rejections.iter().chain(&unreadable) {
        let _ = writeln!(out, "- rejected: `{name}`: {}", esc(e));
    }
    for (name, e) in &hidden {
        let _ = writeln!(out, "- hidden error: `{name}`: {}", esc(e));
    }
    for (name, e) in &stuck {
        let _ = writeln!(out, "- not checked past: `{name}`: {}", esc(e));
    }

    let _ = writeln!(out, "\n## Not-supported features\n");
    let _ = writeln!(
        out,
        "Each feature as rvoy's error names it (`<path>: <feature> is not supported by rvoy`). \
         *first*: units whose first error it is (what `rvoy --mode validate` reports first); \
         *needed by*: units that use it (found by stripping each unsupported feature in turn \
         and building again), i.e. units that need it before rvoy can accept them.\n"
    );
    let _ = writeln!(out, "| feature | first | needed by |");
    let _ = writeln!(out, "|---|---:|---:|");
    let mut rows: Vec<(&String, usize, usize)> = all_features
        .iter()
        .map(|(f, us)| (f, first_features.get(f).map_or(0, BTreeSet::len), us.len()))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
    for (f, first, all) in rows {
        let _ = writeln!(out, "| `{}` | {first} | {all} |", esc(f));
    }

    let _ = writeln!(out, "\n## Units each feature keeps out\n");
    let _ = writeln!(
        out,
        "The units Envoy accepts and rvoy rejects, by the feature of rvoy's first error.\n"
    );
    let mut by_first: Vec<(&String, &BTreeSet<String>)> = first_features.iter().collect();
    by_first.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    for (f, us) in by_first {
        let list: Vec<String> = us.iter().map(|u| format!("`{u}`")).collect();
        let _ = writeln!(out, "- `{}` ({}): {}", esc(f), us.len(), list.join(", "));
    }

    let _ = writeln!(out, "\n## Extensions\n");
    let _ = writeln!(
        out,
        "Every typed config met, by config type (Envoy picks an extension by the type of \
         its config; extensions named without a config are listed by name): Envoy's name \
         for it where it follows from the type, where it sits (`Message.field`), rvoy's \
         status, the number of units using it, and the other names configs give it. \
         Status: *implemented*; *not supported* (Envoy 1.40 has it, rvoy rejects it); \
         *unknown to Envoy* (the API has no such type: Envoy 1.40 rejects it too).\n"
    );
    let _ = writeln!(
        out,
        "| Envoy name | config type | where | status | units | other names in configs |"
    );
    let _ = writeln!(out, "|---|---|---|---|---:|---|");
    let mut rows: Vec<(String, &ExtRow)> = extensions
        .values()
        .map(|row| {
            let canonical = if row.type_name.is_empty() {
                row.names.iter().next().cloned()
            } else {
                extension::canonical_name_any(&row.type_name)
                    .map(str::to_owned)
                    .or_else(|| {
                        row.names
                            .iter()
                            .find(|n| extension::envoy_knows_any(n))
                            .cloned()
                    })
            };
            (canonical.unwrap_or_default(), row)
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.0.is_empty(), &a.0, &a.1.type_name).cmp(&(b.0.is_empty(), &b.0, &b.1.type_name))
    });
    for (canonical, row) in rows {
        let status = match row.status {
            ExtensionStatus::Implemented => "implemented",
            ExtensionStatus::NotSupported => "**not supported**",
            ExtensionStatus::UnknownToEnvoy => "unknown to Envoy",
            ExtensionStatus::MissingConfig => "no `typed_config` (Envoy rejects it)",
        };
        let type_name = if row.type_name.is_empty() {
            "(no config)".to_owned()
        } else {
            format!("`{}`", row.type_name)
        };
        let name = if canonical.is_empty() {
            String::new()
        } else {
            format!("`{canonical}`")
        };
        let others: Vec<&String> = row.names.iter().filter(|n| **n != canonical).collect();
        let mut other_text: Vec<String> = others
            .iter()
            .take(4)
            .map(|n| format!("`{}`", esc(n)))
            .collect();
        if others.len() > 4 {
            other_text.push(format!("{} more", others.len() - 4));
        }
        let sites: Vec<&str> = row.sites.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "| {name} | {type_name} | {} | {status} | {} | {} |",
            sites.join(", "),
            row.units.len(),
            other_text.join(", ")
        );
    }

    let _ = writeln!(out, "\n## Fields\n");
    let _ = writeln!(
        out,
        "Every field set anywhere in the configs, as `Message.field` (full proto names), \
         with its tier in rvoy's support tables: *implemented*; *ignored, warned* (accepted, \
         no effect, one warning per load; the reason says why it cannot change traffic); \
         *not supported* (rejected). Fields of messages rvoy has no table for (inside \
         extensions it lacks) are *not supported*. An implemented field some of whose \
         values rvoy rejects lists the features those errors name.\n"
    );
    let _ = writeln!(out, "| field | tier | units |");
    let _ = writeln!(out, "|---|---|---:|");
    for (name, tally) in &fields {
        let tier = tally.tier.unwrap_or(FieldTier::NotSupported);
        let _ = writeln!(
            out,
            "| `{name}` | {} | {} |",
            tier_text(tier, &tally.partial),
            tally.units.len()
        );
    }

    if !envoy_rejects.is_empty() {
        let _ = writeln!(out, "\n## Units Envoy 1.40 rejects\n");
        let _ = writeln!(out, "| unit | Envoy | rvoy's first error |");
        let _ = writeln!(out, "|---|---|---|");
        for (name, verdict, e) in &envoy_rejects {
            let envoy = if *verdict == Some(Verdict::Crashed) {
                "crashes"
            } else {
                "rejects"
            };
            let _ = writeln!(out, "| `{name}` | {envoy} | {} |", esc(e));
        }
    }
    out
}

/// An error without its file location (the prepared copies live in a
/// temporary directory).
fn plain(e: &ConfigError) -> String {
    let mut e = e.clone();
    e.location = None;
    e.to_string()
}

fn shorten(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_owned(),
    }
}

/// `a.b.v3.Message.field` shortened to `Message.field`.
fn short_site(site: &str) -> String {
    let mut parts: Vec<&str> = site.split('.').collect();
    let field = parts.pop().unwrap_or("");
    // Keep the message name, including nested-message prefixes (capitalised).
    let mut keep = Vec::new();
    while let Some(p) = parts.pop() {
        if p.chars().next().is_some_and(char::is_uppercase) {
            keep.push(p);
        } else {
            break;
        }
    }
    keep.reverse();
    if keep.is_empty() {
        return site.to_owned();
    }
    format!("{}.{field}", keep.join("."))
}

const HEADER: &str = "# rvoy compatibility with Envoy 1.40 configs

Generated by `crates/rvoy-model/examples/compat_table.rs`: do not edit by hand.
It loads each config with rvoy's loader, walks every set field and typed config
against rvoy's support tables and extension registry, and builds rvoy's model.

To regenerate it against the shared corpus (from the workspace root):

```sh
mkdir -p /tmp/rvoy-corpus
../shared/corpus/validate-all --prepare-only --workdir /tmp/rvoy-corpus > /tmp/rvoy-corpus/units.tsv
cargo run -q -p rvoy-model --example compat_table -- \\
    --units /tmp/rvoy-corpus/units.tsv \\
    --verdicts ../shared/corpus/envoy-1.40-verdicts.tsv > docs/compat.md
```

(`--prepare-only` rewrites certificate paths and wraps xDS resource sets into
bootstraps exactly as `validate-all` does before running a proxy.)  Plain
files and directories can be passed instead of `--units`.

rvoy treats every config field in one of three tiers (`crates/rvoy-model/src/support.rs`):
**implemented** (behaves as in Envoy), **ignored, warned** (accepted, no
effect, a warning once per load; only fields that cannot change traffic), and
**not supported** (rejected at load with
`<path>: <feature> is not supported by rvoy`). A feature listed under
*Not-supported features* below is one rvoy does not implement yet. Every
ignored field is reviewed in `support.rs` (`REVIEWED`, checked by
`every_ignored_field_is_reviewed`); where a field is harmless only under a
condition, the model checks it and rejects the config otherwise: metadata
read by a format string (`%CLUSTER_METADATA(...)%`...), zone-aware routing
(a local cluster with endpoints in the node's and other localities), a
`runtime_key` that a static runtime layer sets.

Beyond the first error of each config, the tool strips every unsupported
feature in turn and builds again, so that an error hidden behind them (a bug
in rvoy, for a config Envoy accepts) still shows up below.

## Deliberate differences

Where rvoy does not do what Envoy 1.40 does, on purpose:

* **YAML alias expansion is bounded.** yaml-cpp expands aliases without
  limit, so a few hundred bytes of nested aliases take gigabytes and minutes
  (found by fuzzing, `fuzz/regressions/alias-*.yaml`). rvoy refuses a document
  whose aliases copy more than 100,000 nodes or 16 MiB of text, and any
  document above 5,000,000 nodes. Real configs stay far below.
* **The descriptor pool is decoded in part, and released after start-up.**
  Envoy keeps its reflection data for the life of the process. rvoy loads the
  bootstrap with only the part of the pool its type URLs reach (a fifth of it
  for a typical config, ~3 ms instead of ~20 ms to decode; a failed load is
  retried with the whole pool, so verdicts and errors are the same), drops it
  once config is loaded and decodes the whole pool again for `/config_dump`
  or an SDS file rotation. Output is the same.
* **HTTP/2 connection window below ~96 KiB.** With an
  `initial_connection_window_size` between 65,536 and about 98,302 bytes,
  Envoy sends the connection's WINDOW_UPDATE with its first SETTINGS; rvoy's
  codec (the h2 crate) sends it once half of the window is unclaimed. Other
  sizes, and the SETTINGS values and their order, are Envoy's.
* **Routes are indexed.** In a virtual host of 16 or more routes, rvoy only
  evaluates the routes whose literal path matcher can match the request
  (regex and case-insensitive routes are always evaluated), in config order;
  the route chosen is the same as Envoy's first-match scan.
";

//! Named secrets from file-based SDS (`sds_config.path_config_source`): the
//! file (a `DiscoveryResponse` of `Secret`s, YAML or JSON) is read on first
//! use and watched afterwards, together with the certificate files its
//! secrets name; when any of them changes the contexts using it rebuild their
//! rustls configs, which new connections pick up while open ones continue.
//!
//! Each secret read from a file has Envoy's `sds.<name>.*` stats: a change of
//! the SDS file is an update attempt (accepted, rejected by the contexts, or
//! failed to parse); a change of only the certificate files it names is a key
//! rotation (`key_rotation_failed` when a context refuses it).
//!
//! The manager also keeps (weakly) every live TLS context, for `/certs`.
//! Its lock is taken at config build, by the watcher and by `/certs` only,
//! never on the request path.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use prost::Message as _;
use rvoy_api::envoy::extensions::transport_sockets::tls::v3 as pb;
use rvoy_api::envoy::service::discovery::v3::DiscoveryResponse;
use rvoy_config_load::FieldPath;
use rvoy_model::tls::{SecretOrigin, SecretRef, SecretValue, Source, ValidationContext};
use rvoy_stats::{Counter, Gauge, GaugeImportMode, HistogramUnit, Scope};

use crate::TlsError;
use crate::certs::ContextCerts;

/// A TLS context the manager can rebuild and list.
pub trait ManagedContext: Send + Sync + std::fmt::Debug {
    /// Whether the context reads secrets from this SDS file.
    fn uses_file(&self, path: &Path) -> bool;
    /// Rebuilds the rustls config from the current secrets.
    fn reload(&self, secrets: &SecretManager) -> Result<(), TlsError>;
    /// The context's certificates, for `/certs`.
    fn certs(&self) -> ContextCerts;
}

#[derive(Debug)]
struct SdsFile {
    /// The SDS file and the files its secrets name.
    fingerprint: u64,
    /// The SDS file alone.
    file_fingerprint: u64,
    secrets: HashMap<String, SecretValue>,
}

/// Envoy's `sds.<secret>.*` stats of one file-based secret.
#[derive(Debug)]
struct SdsStats {
    /// The SDS file the secret comes from.
    path: PathBuf,
    update_attempt: Counter,
    update_success: Counter,
    update_failure: Counter,
    update_rejected: Counter,
    key_rotation_failed: Counter,
    /// xxHash64 of the accepted `version_info`.
    version: Gauge,
    /// When the last update was accepted (ms since the epoch).
    update_time: Gauge,
}

impl SdsStats {
    fn new(scope: &Scope, name: &str, path: &Path) -> Self {
        let s = scope.scope(&format!("sds.{name}."));
        // Created with the others, as Envoy does (never incremented here).
        s.counter("init_fetch_timeout");
        s.histogram("update_duration", HistogramUnit::Milliseconds);
        SdsStats {
            path: path.to_path_buf(),
            update_attempt: s.counter("update_attempt"),
            update_success: s.counter("update_success"),
            update_failure: s.counter("update_failure"),
            update_rejected: s.counter("update_rejected"),
            key_rotation_failed: s.counter("key_rotation_failed"),
            version: s.gauge("version", GaugeImportMode::NeverImport),
            update_time: s.gauge("update_time", GaugeImportMode::NeverImport),
        }
    }

    fn accepted(&self, version_info: &str) {
        self.update_success.inc();
        self.version.set(xxhash64(version_info.as_bytes()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.update_time.set(now);
    }
}

/// What a change of an SDS file (or of the files its secrets name) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Update {
    /// The SDS file changed and every context took it.
    Accepted,
    /// The SDS file changed and a context refused it.
    Rejected,
    /// The SDS file changed and could not be read.
    Failed,
    /// Only the named files changed, and a context refused them.
    RotationFailed,
    /// Only the named files changed, and the contexts took them.
    Rotated,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<PathBuf, SdsFile>,
    contexts: Vec<Weak<dyn ManagedContext>>,
    /// `sds.*` stats go here once set.
    scope: Option<Scope>,
    /// By secret name.
    stats: HashMap<String, SdsStats>,
    /// `version_info` of each SDS file's last accepted read.
    versions: HashMap<PathBuf, String>,
}

/// Secrets by name and the contexts that use them.
#[derive(Debug, Default)]
pub struct SecretManager {
    inner: Mutex<Inner>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn files_of(value: &SecretValue) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut push = |s: &Source| {
        if let Source::File(p) = s {
            out.push(p.clone());
        }
    };
    match value {
        SecretValue::TlsCertificate(pair) => {
            push(&pair.chain);
            push(&pair.key);
        }
        SecretValue::ValidationContext(ValidationContext {
            trusted_ca, crl, ..
        }) => {
            if let Some(s) = trusted_ca {
                push(s);
            }
            if let Some(s) = crl {
                push(s);
            }
        }
    }
    out
}

/// A hash of the SDS file and of every file its secrets name, read until two
/// reads agree (at most three), so that a rotation landing between the reads
/// of a certificate and its key is not taken for a state of its own.
fn fingerprint(path: &Path, secrets: Option<&HashMap<String, SecretValue>>) -> u64 {
    let mut last = read_fingerprint(path, secrets);
    for _ in 0..2 {
        let again = read_fingerprint(path, secrets);
        if again == last {
            break;
        }
        last = again;
    }
    last
}

fn read_fingerprint(path: &Path, secrets: Option<&HashMap<String, SecretValue>>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).ok().hash(&mut h);
    if let Some(secrets) = secrets {
        let mut names: Vec<&String> = secrets.keys().collect();
        names.sort();
        for n in names {
            for f in files_of(&secrets[n]) {
                std::fs::read(&f).ok().hash(&mut h);
            }
        }
    }
    h.finish()
}

/// A hash of the SDS file alone.
fn file_fingerprint(path: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).ok().hash(&mut h);
    h.finish()
}

/// Reads an SDS file: a `DiscoveryResponse` whose resources are `Secret`s.
pub fn read_sds_file(path: &Path) -> Result<HashMap<String, SecretValue>, TlsError> {
    read_sds_response(path).map(|(_, secrets)| secrets)
}

/// [`read_sds_file`], with the response's `version_info`.
fn read_sds_response(path: &Path) -> Result<(String, HashMap<String, SecretValue>), TlsError> {
    let err = |m: String| TlsError::Secret(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let node = if lower.ends_with(".json") {
        rvoy_config_load::yaml::parse_json(&text)
    } else {
        rvoy_config_load::yaml::parse_yaml(&text)
    }
    .map_err(|e| err(e.message))?;
    let pool = &rvoy_api::descriptor_pool();
    let desc = pool
        .get_message_by_name("envoy.service.discovery.v3.DiscoveryResponse")
        .ok_or_else(|| err("DiscoveryResponse missing from the API pool".into()))?;
    let parsed = rvoy_config_load::proto_json::parse_message(
        pool,
        &node,
        &desc,
        Some(path.to_string_lossy().as_ref().into()),
        FieldPath::root(),
    );
    if let Some(e) = parsed.errors.first().or(parsed.unknown_fields.first()) {
        return Err(err(e.to_string()));
    }
    if let Some(e) = rvoy_config_load::validate::validate(&parsed.message, &FieldPath::root())
        .into_iter()
        .next()
    {
        return Err(err(e.to_string()));
    }
    let response: DiscoveryResponse = parsed
        .message
        .transcode_to()
        .map_err(|e| err(e.to_string()))?;
    let mut out = HashMap::new();
    for (i, any) in response.resources.iter().enumerate() {
        let p = FieldPath::root().field("resources").index(i);
        let unpacked = rvoy_config_load::any::unpack(any, &p)
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err(format!("{p}: unknown resource type {}", any.type_url)))?;
        if unpacked.type_name != "envoy.extensions.transport_sockets.tls.v3.Secret" {
            return Err(err(format!(
                "{p}: expected a Secret, got {}",
                unpacked.type_name
            )));
        }
        let mut diags = rvoy_model::Diagnostics::default();
        rvoy_model::support::check(&unpacked.message, &p, &mut diags);
        if let Some(e) = diags.errors.first() {
            return Err(err(e.to_string()));
        }
        let secret = pb::Secret::decode(unpacked.message.encode_to_vec().as_slice())
            .map_err(|e| err(e.to_string()))?;
        let value =
            rvoy_model::tls::secret_value(&secret, &p, true).map_err(|e| err(e.to_string()))?;
        out.insert(secret.name.clone(), value);
    }
    Ok((response.version_info, out))
}

/// xxHash64 (seed 0) of `data`: Envoy's hash of a config version.
fn xxhash64(data: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    fn round(acc: u64, lane: u64) -> u64 {
        acc.wrapping_add(lane.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    }
    fn merge(acc: u64, v: u64) -> u64 {
        (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
    }
    let u64_at = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_le_bytes(a)
    };
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, u64_at(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(data.len() as u64);
    while rest.len() >= 8 {
        h ^= round(0, u64_at(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let w = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        h ^= u64::from(w).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for b in rest {
        h ^= u64::from(*b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

impl SecretManager {
    pub fn new() -> Arc<SecretManager> {
        Arc::new(SecretManager::default())
    }

    /// The current value of a file-based secret (reading the file the first time).
    pub fn get(&self, r: &SecretRef) -> Result<SecretValue, TlsError> {
        let SecretOrigin::File { path, .. } = &r.origin else {
            return Err(TlsError::Secret(format!(
                "static secret '{}' is resolved at load",
                r.name
            )));
        };
        let mut inner = lock(&self.inner);
        if !inner.files.contains_key(path) {
            let (version, secrets) = read_sds_response(path)?;
            let fp = fingerprint(path, Some(&secrets));
            inner.files.insert(
                path.clone(),
                SdsFile {
                    fingerprint: fp,
                    file_fingerprint: file_fingerprint(path),
                    secrets,
                },
            );
            inner.versions.insert(path.clone(), version);
        }
        let found = inner
            .files
            .get(path)
            .is_some_and(|f| f.secrets.contains_key(&r.name));
        if found
            && !inner.stats.contains_key(&r.name)
            && let Some(scope) = &inner.scope
        {
            // The secret's subscription starts with the file's first read.
            let stats = SdsStats::new(scope, &r.name, path);
            stats.update_attempt.inc();
            stats.accepted(inner.versions.get(path).map_or("", String::as_str));
            inner.stats.insert(r.name.clone(), stats);
        }
        inner
            .files
            .get(path)
            .and_then(|f| f.secrets.get(&r.name))
            .cloned()
            .ok_or_else(|| {
                TlsError::Secret(format!(
                    "secret '{}' not found in {}",
                    r.name,
                    path.display()
                ))
            })
    }

    /// Where the `sds.<secret>.*` stats of the secrets read from now on go.
    pub fn set_stats(&self, scope: Scope) {
        lock(&self.inner).scope = Some(scope);
    }

    /// Counts an SDS file's update in the stats of its secrets.
    fn count(&self, path: &Path, update: Update) {
        let inner = lock(&self.inner);
        let version = inner.versions.get(path).map_or("", String::as_str);
        for stats in inner.stats.values().filter(|s| s.path == path) {
            if matches!(update, Update::Accepted | Update::Rejected | Update::Failed) {
                stats.update_attempt.inc();
            }
            match update {
                Update::Accepted => stats.accepted(version),
                Update::Rejected => stats.update_rejected.inc(),
                Update::Failed => stats.update_failure.inc(),
                Update::RotationFailed => stats.key_rotation_failed.inc(),
                Update::Rotated => {}
            }
        }
    }

    /// Keeps a context for reloads and `/certs` (until it is dropped).
    pub fn register(&self, ctx: Weak<dyn ManagedContext>) {
        let mut inner = lock(&self.inner);
        inner.contexts.retain(|c| c.strong_count() > 0);
        inner.contexts.push(ctx);
    }

    /// Every live context, in registration order.
    pub fn contexts(&self) -> Vec<Arc<dyn ManagedContext>> {
        lock(&self.inner)
            .contexts
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Whether any SDS file is in use (the watcher has work).
    pub fn has_files(&self) -> bool {
        !lock(&self.inner).files.is_empty()
    }

    /// Checks every SDS file (and the files its secrets name) for changes,
    /// re-reads the changed ones and rebuilds the contexts using them.
    /// Returns how many contexts were rebuilt.
    pub fn poll(&self) -> usize {
        let paths: Vec<PathBuf> = lock(&self.inner).files.keys().cloned().collect();
        let mut changed = Vec::new();
        for path in paths {
            let old = {
                let inner = lock(&self.inner);
                inner
                    .files
                    .get(&path)
                    .map(|f| (f.fingerprint, f.file_fingerprint, f.secrets.clone()))
            };
            let Some((old_fp, old_file_fp, old_secrets)) = old else {
                continue;
            };
            if fingerprint(&path, Some(&old_secrets)) == old_fp {
                continue;
            }
            let file_fp = file_fingerprint(&path);
            let sds_changed = file_fp != old_file_fp;
            match read_sds_response(&path) {
                Ok((version, secrets)) => {
                    let fp = fingerprint(&path, Some(&secrets));
                    let mut inner = lock(&self.inner);
                    inner.files.insert(
                        path.clone(),
                        SdsFile {
                            fingerprint: fp,
                            file_fingerprint: file_fp,
                            secrets,
                        },
                    );
                    inner.versions.insert(path.clone(), version);
                    changed.push((path, sds_changed));
                }
                Err(e) => {
                    rvoy_log::warn!(
                        rvoy_log::Component::Secret,
                        "SDS file {} not reloaded: {}",
                        path.display(),
                        e
                    );
                    // Do not retry the same content every tick.
                    let fp = fingerprint(&path, Some(&old_secrets));
                    if let Some(f) = lock(&self.inner).files.get_mut(&path) {
                        f.fingerprint = fp;
                        f.file_fingerprint = file_fp;
                    }
                    self.count(
                        &path,
                        if sds_changed {
                            Update::Failed
                        } else {
                            Update::RotationFailed
                        },
                    );
                }
            }
        }
        let mut rebuilt = 0;
        let mut refused: Vec<&Path> = Vec::new();
        for ctx in self.contexts() {
            let mut uses = changed.iter().filter(|(p, _)| ctx.uses_file(p)).peekable();
            if uses.peek().is_none() {
                continue;
            }
            match ctx.reload(self) {
                Ok(()) => rebuilt += 1,
                Err(e) => {
                    refused.extend(uses.map(|(p, _)| p.as_path()));
                    rvoy_log::warn!(
                        rvoy_log::Component::Secret,
                        "TLS context not updated from SDS: {}",
                        e
                    );
                }
            }
        }
        for (path, sds_changed) in &changed {
            let ok = !refused.contains(&path.as_path());
            let update = match (sds_changed, ok) {
                (true, true) => Update::Accepted,
                (true, false) => Update::Rejected,
                (false, true) => Update::Rotated,
                (false, false) => Update::RotationFailed,
            };
            self.count(path, update);
        }
        rebuilt
    }

    /// Starts a thread that polls the SDS files every `interval`.
    pub fn watch(self: &Arc<Self>, interval: std::time::Duration) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("sds-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(m) = weak.upgrade() else { break };
                    m.poll();
                }
            })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::xxhash64;

    #[test]
    fn xxhash64_matches_the_reference() {
        // Envoy's `sds.<name>.version` for an empty `version_info`.
        assert_eq!(xxhash64(b""), 17241709254077376921);
        assert_eq!(xxhash64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash64(b"abc"), 0x44BC_2CF5_AD77_0999);
    }
}

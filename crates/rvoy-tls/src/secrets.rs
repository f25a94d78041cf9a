//! Named secrets from file-based SDS (`sds_config.path_config_source`): the
//! file (a `DiscoveryResponse` of `Secret`s, YAML or JSON) is read on first
//! use and watched afterwards, together with the certificate files its
//! secrets name; when any of them changes the contexts using it rebuild their
//! rustls configs, which new connections pick up while open ones continue.
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
    fingerprint: u64,
    secrets: HashMap<String, SecretValue>,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<PathBuf, SdsFile>,
    contexts: Vec<Weak<dyn ManagedContext>>,
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

/// Reads an SDS file: a `DiscoveryResponse` whose resources are `Secret`s.
pub fn read_sds_file(path: &Path) -> Result<HashMap<String, SecretValue>, TlsError> {
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
    Ok(out)
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
            let secrets = read_sds_file(path)?;
            let fp = fingerprint(path, Some(&secrets));
            inner.files.insert(
                path.clone(),
                SdsFile {
                    fingerprint: fp,
                    secrets,
                },
            );
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
                    .map(|f| (f.fingerprint, f.secrets.clone()))
            };
            let Some((old_fp, old_secrets)) = old else {
                continue;
            };
            if fingerprint(&path, Some(&old_secrets)) == old_fp {
                continue;
            }
            match read_sds_file(&path) {
                Ok(secrets) => {
                    let fp = fingerprint(&path, Some(&secrets));
                    let mut inner = lock(&self.inner);
                    inner.files.insert(
                        path.clone(),
                        SdsFile {
                            fingerprint: fp,
                            secrets,
                        },
                    );
                    changed.push(path);
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
                    }
                }
            }
        }
        let mut rebuilt = 0;
        for ctx in self.contexts() {
            if !changed.iter().any(|p| ctx.uses_file(p)) {
                continue;
            }
            match ctx.reload(self) {
                Ok(()) => rebuilt += 1,
                Err(e) => rvoy_log::warn!(
                    rvoy_log::Component::Secret,
                    "TLS context not updated from SDS: {}",
                    e
                ),
            }
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

//! Compiles the vendored Envoy API snapshot (`proto/`) with `protox` (no `protoc`)
//! into one `FileDescriptorSet`, and generates the prost types from that same set,
//! so that types and descriptors can never come from different snapshots.

use std::path::{Path, PathBuf};

use prost::Message as _;

#[path = "build_options.rs"]
mod options;
#[path = "type_name_hash.rs"]
mod type_name_hash;

/// Include roots inside `proto/`, in the order `protoc -I` would take them.
const INCLUDE_ROOTS: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "client_model",
    "opentelemetry-proto",
    "ratelimit/api",
    "xds-schema",
];

fn collect(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let proto = manifest.join("proto");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build_options.rs");
    println!("cargo:rerun-if-changed=type_name_hash.rs");

    let roots: Vec<PathBuf> = INCLUDE_ROOTS.iter().map(|r| proto.join(r)).collect();
    let mut files = Vec::new();
    for root in &roots {
        collect(root, root, &mut files);
    }

    // Each file is compiled on its own, with only its imports loaded: protox resolves
    // relative type names against every file it has loaded, while protoc only sees
    // the packages of a file's imports, and Envoy's protos rely on that (e.g.
    // `config.core.v3.HttpUri` inside `envoy.extensions.*`, where a loaded
    // `envoy.extensions.config` package would shadow it). The per-file sets are then
    // joined, dependencies first, each file once.
    let mut fds = prost_types::FileDescriptorSet::default();
    // The embedded set is assembled from protox's encoded output, which keeps
    // custom options (`validate.rules`, Envoy's deprecation annotations); the
    // decoded `FileDescriptorSet` used for code generation drops them.
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for file in &files {
        let mut compiler = protox::Compiler::new(&roots).expect("include roots exist");
        compiler.include_imports(true).include_source_info(false);
        if let Err(e) = compiler.open_file(file) {
            failures.push(format!("{file}: {e}"));
            continue;
        }
        let encoded = compiler.encode_file_descriptor_set();
        for entry in raw_file_entries(&encoded) {
            let decoded =
                prost_types::FileDescriptorProto::decode(entry).expect("protox output decodes");
            if seen.insert(decoded.name().to_owned()) {
                entries.push(entry.to_vec());
                fds.file.push(decoded);
            }
        }
    }
    if !failures.is_empty() {
        panic!("compiling the Envoy API snapshot:\n{}", failures.join("\n"));
    }
    let (entries, files) = common_files_first(entries, std::mem::take(&mut fds.file));
    fds.file = files;

    // The embedded set keeps only the built-in options the pool needs; the
    // custom options rvoy reads go to a side table (see `options::Kept`).
    let kept = options::Kept::of(&fds);
    let mut custom = options::CustomOptions::default();
    let mut raw_fds: Vec<u8> = Vec::new();
    // Where each file's entry sits in `raw_fds`.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for entry in &entries {
        let entry = kept.strip_file(entry, &mut custom);
        let start = raw_fds.len();
        // Field 1 (file), wire type 2 (length-delimited).
        raw_fds.push(0x0a);
        prost::encoding::encode_varint(entry.len() as u64, &mut raw_fds);
        raw_fds.extend_from_slice(&entry);
        spans.push((start, raw_fds.len()));
    }

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("envoy_api.fds"), &raw_fds).expect("write descriptor set");
    std::fs::write(out.join("envoy_api_index.rs"), file_index(&fds, &spans))
        .expect("write descriptor set index");
    std::fs::write(out.join("envoy_api_options.rs"), custom.into_rust())
        .expect("write the custom options");

    let mut config = prost_build::Config::new();
    config
        .enable_type_names()
        .include_file("envoy_api.rs")
        // Large protos; boxing keeps enum variants small.
        .boxed(".envoy.config.route.v3.RouteAction.hash_policy")
        .out_dir(&out);
    config
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating Rust for the Envoy API: {e}"));
}

/// The files nearly every config reads, with their imports: the bootstrap, the
/// HTTP connection manager and the router.
const COMMON_ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
];

/// `entries` and `files` (the same files, dependencies first) reordered so that
/// [`COMMON_ROOTS`] and everything they import come first, each part in its
/// old order (so dependencies still come first). A load copies the files its
/// config can use out of the embedded set, and the kernel maps the binary's
/// read-only data in blocks of 64 KiB or more: files read together sit together.
fn common_files_first(
    entries: Vec<Vec<u8>>,
    files: Vec<prost_types::FileDescriptorProto>,
) -> (Vec<Vec<u8>>, Vec<prost_types::FileDescriptorProto>) {
    let index: std::collections::HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name(), i))
        .collect();
    let mut common = vec![false; files.len()];
    let mut pending: Vec<usize> = COMMON_ROOTS
        .iter()
        .map(|root| {
            *index
                .get(root)
                .unwrap_or_else(|| panic!("{root} is in the snapshot"))
        })
        .collect();
    while let Some(i) = pending.pop() {
        if !std::mem::replace(&mut common[i], true) {
            pending.extend(
                files[i]
                    .dependency
                    .iter()
                    .filter_map(|d| index.get(d.as_str())),
            );
        }
    }
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for (i, pair) in entries.into_iter().zip(files).enumerate() {
        if common[i] {
            first.push(pair)
        } else {
            rest.push(pair)
        }
    }
    first.into_iter().chain(rest).unzip()
}

/// The raw bytes of each `file` entry of an encoded `FileDescriptorSet`.
fn raw_file_entries(mut buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).expect("valid descriptor set");
        let wire_type = key & 7;
        let field = key >> 3;
        assert_eq!(wire_type, 2, "descriptor set fields are length-delimited");
        let len = prost::encoding::decode_varint(&mut buf).expect("valid length") as usize;
        let (entry, rest) = buf.split_at(len);
        if field == 1 {
            out.push(entry);
        }
        buf = rest;
    }
    out
}

/// The index of the embedded set that lets rvoy decode only part of it: each
/// file's byte range and dependencies, and which file declares each message
/// and enum (by the hash of its full name).
fn file_index(fds: &prost_types::FileDescriptorSet, spans: &[(usize, usize)]) -> String {
    use std::fmt::Write as _;
    let by_name: std::collections::HashMap<&str, usize> = fds
        .file
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name(), i))
        .collect();
    let mut out = String::new();
    out.push_str("/// Byte range of each file's entry in `FILE_DESCRIPTOR_SET`.\n");
    out.push_str("pub(crate) const FILE_SPANS: &[(u32, u32)] = &[\n");
    for (start, end) in spans {
        let _ = writeln!(out, "    ({start}, {end}),");
    }
    // No table below holds a reference: a table of `&str` or `&[u16]` is
    // pointers, which a position-independent binary relocates at start-up,
    // so every page of it is written and stays resident (43 KiB for the type
    // names). Offsets into one array, and hashes, are read-only data, read
    // only where a lookup lands.
    out.push_str("];\n/// Each file's dependencies: `(start, count)` in `DEPENDENCIES`.\n");
    out.push_str("pub(crate) const FILE_DEPS: &[(u32, u16)] = &[\n");
    let mut dependencies: Vec<usize> = Vec::new();
    for f in &fds.file {
        let start = dependencies.len();
        dependencies.extend(f.dependency.iter().map(|d| {
            *by_name
                .get(d.as_str())
                .expect("dependencies are in the set")
        }));
        let _ = writeln!(out, "    ({start}, {}),", dependencies.len() - start);
    }
    out.push_str("];\n/// The files' dependencies (indexes into `FILE_SPANS`).\n");
    out.push_str("pub(crate) const DEPENDENCIES: &[u16] = &[\n");
    for d in &dependencies {
        let _ = writeln!(out, "    {d},");
    }
    out.push_str("];\n");
    let mut types: Vec<(String, usize)> = Vec::new();
    for (i, f) in fds.file.iter().enumerate() {
        let package = f.package();
        let prefix = if package.is_empty() {
            String::new()
        } else {
            format!("{package}.")
        };
        for e in &f.enum_type {
            types.push((format!("{prefix}{}", e.name()), i));
        }
        for m in &f.message_type {
            message_names(m, &prefix, i, &mut types);
        }
    }
    // The types are found by a 64-bit hash of their full names, without the
    // names: a binary search over the names read ~11 of them (~75 KB in
    // all, spread over every page) for each type URL and each `/word.word`
    // of a config's text at start-up. A word that is no type name could
    // only match by a collision of the hash (about 2^-53 for a word against
    // the 1,809 hashes): the narrowing would then decode one file more.
    let mut hashed: Vec<(u64, usize)> = types
        .iter()
        .map(|(name, file)| (type_name_hash::type_name_hash(name), *file))
        .collect();
    hashed.sort_unstable();
    assert!(
        hashed.windows(2).all(|w| w[0].0 != w[1].0),
        "two type names of the snapshot hash alike: change `type_name_hash`"
    );
    out.push_str(
        "/// The FNV-1a hash of every message's and enum's full name, sorted \
         (see `declaring_file`).\n",
    );
    out.push_str("pub(crate) const TYPE_HASHES: &[u64] = &[\n");
    for (hash, _) in &hashed {
        let _ = writeln!(out, "    {hash:#018x},");
    }
    out.push_str("];\n/// The file that declares the type of the same index in `TYPE_HASHES`.\n");
    out.push_str("pub(crate) const TYPE_HASH_FILES: &[u16] = &[\n");
    for (_, file) in &hashed {
        let _ = writeln!(out, "    {file},");
    }
    out.push_str("];\n");
    out
}

fn message_names(
    m: &prost_types::DescriptorProto,
    prefix: &str,
    file: usize,
    out: &mut Vec<(String, usize)>,
) {
    let name = format!("{prefix}{}", m.name());
    for e in &m.enum_type {
        out.push((format!("{name}.{}", e.name()), file));
    }
    for nested in &m.nested_type {
        message_names(nested, &format!("{name}."), file, out);
    }
    out.push((name, file));
}

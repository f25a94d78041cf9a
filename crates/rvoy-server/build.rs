//! Build script: records the git commit and tree state for `--version` and `/server_info`.
//!
//! Sets `RVOY_GIT_SHA` (40 hex digits, or 40 zeros without git) and `RVOY_GIT_STATUS`
//! (`Clean` or `Modified`; `Modified` when git is unavailable).

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());

    let sha = git(&manifest_dir, &["rev-parse", "HEAD"])
        .map(|s| s.trim().to_owned())
        .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "0".repeat(40));
    let status = match git(&manifest_dir, &["status", "--porcelain"]) {
        Some(s) if s.trim().is_empty() => "Clean",
        _ => "Modified",
    };
    println!("cargo:rustc-env=RVOY_GIT_SHA={sha}");
    println!("cargo:rustc-env=RVOY_GIT_STATUS={status}");

    // Re-run when HEAD moves: HEAD itself, the ref it points to, packed refs, and the index
    // (staging changes what `git status` reports). Only existing paths are watched, since a
    // missing one would make cargo re-run this script on every build.
    if let Some(git_dir) = git(&manifest_dir, &["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir.trim());
        let mut watch = vec![
            git_dir.join("HEAD"),
            git_dir.join("index"),
            git_dir.join("packed-refs"),
        ];
        if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD"))
            && let Some(reference) = head.trim().strip_prefix("ref: ")
        {
            let ref_path = git_dir.join(reference);
            // Before the first commit the ref file does not exist yet: watch its folder.
            match (ref_path.exists(), ref_path.parent()) {
                (false, Some(parent)) => watch.push(parent.to_path_buf()),
                _ => watch.push(ref_path),
            }
        }
        for path in watch {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

//! Starting rvoy or Envoy the way a user does, on a rendered config, and stopping it.
//!
//! [`ProxyBuilder`] writes the config template (with `{{port:NAME}}`, `{{tmp}}`,
//! `{{config}}` substituted) to a fresh temp dir, starts the binary as
//! `BINARY -c CONFIG --concurrency N --disable-hot-restart EXTRA...` with stdout and stderr
//! captured to files, and waits (bounded) until every listener port is in LISTEN state.
//! [`Proxy`] sends SIGTERM on drop, waits up to 5 s, then SIGKILLs. [`run_once`] runs a
//! command that is expected to exit by itself (`--mode validate`, `--version`) with a
//! bounded wait.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};
use crate::ports::{Ports, render};
use crate::procnet;

/// How long [`Proxy::stop`] waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The default bound on startup (debug builds and Envoy on a busy 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which implementation a binary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binary {
    /// The rvoy binary at this path.
    Rvoy(PathBuf),
    /// Real Envoy at this path.
    Envoy(PathBuf),
}

impl Binary {
    /// The executable.
    pub fn path(&self) -> &Path {
        match self {
            Binary::Rvoy(p) | Binary::Envoy(p) => p,
        }
    }

    /// `"rvoy"` or `"envoy"`.
    pub fn name(&self) -> &'static str {
        match self {
            Binary::Rvoy(_) => "rvoy",
            Binary::Envoy(_) => "envoy",
        }
    }

    /// rvoy: `cargo_bin` (pass `env!("CARGO_BIN_EXE_rvoy")`), else `$RVOY_BIN`.
    pub fn rvoy(cargo_bin: Option<&str>) -> Result<Binary> {
        rvoy_binary(cargo_bin).map(Binary::Rvoy)
    }

    /// Envoy if installed (see [`envoy_binary`]).
    pub fn envoy() -> Option<Binary> {
        envoy_binary().map(Binary::Envoy)
    }
}

/// The rvoy executable: `cargo_bin` if given, else `$RVOY_BIN`.
pub fn rvoy_binary(cargo_bin: Option<&str>) -> Result<PathBuf> {
    if let Some(p) = cargo_bin {
        return Ok(PathBuf::from(p));
    }
    match std::env::var_os("RVOY_BIN") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(Error::Usage(
            "no rvoy binary: pass env!(\"CARGO_BIN_EXE_rvoy\") or set RVOY_BIN".into(),
        )),
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Real Envoy: `$ENVOY_BIN`, else `<workspace>/.envoy/bin/envoy` (what `.ci/run` installs),
/// else `envoy` on `PATH`; `None` when none of them is an executable file.
pub fn envoy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return is_executable(&p).then_some(p);
    }
    let local = workspace_root().join(".envoy/bin/envoy");
    if is_executable(&local) {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("envoy"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How to start one proxy.
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    binary: Binary,
    config: Option<String>,
    files: Vec<(String, String)>,
    args: Option<Vec<String>>,
    extra_args: Vec<String>,
    concurrency: u32,
    ports: Ports,
    wait_ports: Option<Vec<String>>,
    no_wait: Vec<String>,
    ready_timeout: Duration,
}

impl ProxyBuilder {
    /// A builder for `binary` with no config yet, concurrency 1.
    pub fn new(binary: Binary) -> ProxyBuilder {
        ProxyBuilder {
            binary,
            config: None,
            files: Vec::new(),
            args: None,
            extra_args: Vec::new(),
            concurrency: 1,
            ports: Ports::new(),
            wait_ports: None,
            no_wait: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// The bootstrap template, written to `{{tmp}}/envoy.yaml` (= `{{config}}`) and passed as
    /// `-c {{config}}` unless [`ProxyBuilder::args`] replaces the default arguments.
    pub fn config(mut self, template: &str) -> Self {
        self.config = Some(template.to_owned());
        self
    }

    /// Another file written into the temp dir (templated like the config).
    pub fn file(mut self, name: &str, template: &str) -> Self {
        self.files.push((name.to_owned(), template.to_owned()));
        self
    }

    /// Replaces the default `-c {{config}}` (templated; `--concurrency`/
    /// `--disable-hot-restart` are still appended).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = Some(args.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Appends arguments (templated) after the defaults.
    pub fn extra_args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|s| (*s).to_owned()));
        self
    }

    /// `--concurrency` (1 by default).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Starts from these named ports (echo upstreams already bound, reserved dead ports).
    /// Ports named here are not waited for.
    pub fn ports(mut self, ports: &Ports) -> Self {
        self.ports = ports.clone();
        self
    }

    /// Waits for exactly these port names (default: every `{{port:NAME}}` first picked while
    /// rendering).
    pub fn wait_ports(mut self, names: &[&str]) -> Self {
        self.wait_ports = Some(names.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Does not wait for this port name.
    pub fn no_wait(mut self, name: &str) -> Self {
        self.no_wait.push(name.to_owned());
        self
    }

    /// The startup bound (20 s by default).
    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.ready_timeout = d;
        self
    }

    /// Renders the config, files and arguments into a fresh temp dir.
    fn prepare(&self) -> Result<Prepared> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("rvoy-testkit-{}-", self.binary.name()))
            .tempdir()
            .ctx("creating temp dir")?;
        let mut ports = self.ports.clone();
        let preset: Vec<String> = ports.all().keys().cloned().collect();
        let tmp_str = tmp.path().to_string_lossy().into_owned();
        let config_path = tmp.path().join("envoy.yaml");
        ports.set_var("tmp", &tmp_str);
        ports.set_var("config", &config_path.to_string_lossy());
        ports.set_var("stdout", &tmp.path().join("stdout.txt").to_string_lossy());
        ports.set_var("stderr", &tmp.path().join("stderr.txt").to_string_lossy());
        let mut used = Vec::new();
        if let Some(cfg) = &self.config {
            let (text, u) = render(cfg, &mut ports)?;
            std::fs::write(&config_path, text).ctx("writing config")?;
            used.extend(u);
        }
        for (name, template) in &self.files {
            let (text, u) = render(template, &mut ports)?;
            std::fs::write(tmp.path().join(name), text).ctx("writing file")?;
            used.extend(u);
        }
        let base: Vec<String> = match &self.args {
            Some(a) => a.clone(),
            None if self.config.is_some() => vec!["-c".into(), "{{config}}".into()],
            None => Vec::new(),
        };
        let mut args = Vec::new();
        for a in base.iter().chain(&self.extra_args) {
            let (text, u) = render(a, &mut ports)?;
            used.extend(u);
            args.push(text);
        }
        let wait: Vec<String> = match &self.wait_ports {
            Some(w) => w.clone(),
            None => {
                let mut w: Vec<String> = Vec::new();
                for u in used {
                    if !preset.contains(&u) && !self.no_wait.contains(&u) && !w.contains(&u) {
                        w.push(u);
                    }
                }
                w
            }
        };
        Ok(Prepared {
            tmp,
            ports,
            args,
            wait,
        })
    }

    fn command(&self, prep: &Prepared, serve_flags: bool) -> Result<Command> {
        let mut cmd = Command::new(self.binary.path());
        cmd.args(&prep.args);
        if serve_flags {
            cmd.arg("--concurrency")
                .arg(self.concurrency.to_string())
                .arg("--disable-hot-restart");
        }
        let out = File::create(prep.tmp.path().join("stdout.txt")).ctx("creating stdout file")?;
        let err = File::create(prep.tmp.path().join("stderr.txt")).ctx("creating stderr file")?;
        cmd.current_dir(prep.tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        Ok(cmd)
    }

    /// Starts the proxy and waits until its listeners are in LISTEN state.
    pub fn start(&self) -> Result<Proxy> {
        let prep = self.prepare()?;
        let mut cmd = self.command(&prep, true)?;
        let child = cmd
            .spawn()
            .ctx(&format!("starting {}", self.binary.path().display()))?;
        let mut proxy = Proxy {
            binary: self.binary.clone(),
            child: Some(child),
            ports: prep.ports,
            args: prep.args,
            tmp: prep.tmp,
        };
        let want: Vec<u16> = prep
            .wait
            .iter()
            .filter_map(|name| proxy.ports.get(name))
            .collect();
        proxy.wait_listening(&want, self.ready_timeout)?;
        Ok(proxy)
    }

    /// Runs the binary to completion (for `--mode validate` and similar), without the
    /// serving flags, killing it after `timeout`.
    pub fn run_to_exit(&self, timeout: Duration) -> Result<RunOutput> {
        let prep = self.prepare()?;
        let mut cmd = self.command(&prep, false)?;
        let mut out = wait_child(&mut cmd, timeout, prep.tmp.path())?;
        out.tmp = prep.tmp.path().to_string_lossy().into_owned();
        out.ports = prep.ports;
        Ok(out)
    }
}

struct Prepared {
    tmp: tempfile::TempDir,
    ports: Ports,
    args: Vec<String>,
    wait: Vec<String>,
}

/// The result of a run to completion.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// The temp dir the run used (already deleted), for normalizing paths.
    pub tmp: String,
    /// The named ports of the run.
    pub ports: Ports,
}

impl RunOutput {
    /// `text` with the temp dir path replaced by `{{tmp}}` and ports by `{{port:NAME}}`.
    pub fn normalize(&self, text: &str) -> String {
        let t = if self.tmp.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.tmp, "{{tmp}}")
        };
        self.ports.unport(&t)
    }
}

fn wait_child(cmd: &mut Command, timeout: Duration, dir: &Path) -> Result<RunOutput> {
    let mut child = cmd.spawn().ctx("starting command")?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().ctx("waiting for command")? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = std::fs::read_to_string(dir.join("stdout.txt")).unwrap_or_default();
    let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
    match status {
        Some(st) => Ok(RunOutput {
            code: st.code(),
            stdout,
            stderr,
            ..RunOutput::default()
        }),
        None => Err(Error::timeout(
            format!("command to exit; stderr tail:\n{}", tail(&stderr, 20)),
            timeout,
        )),
    }
}

/// Runs `binary args...` in a fresh temp dir (its cwd) and waits at most `timeout`.
pub fn run_once(binary: &Path, args: &[&str], timeout: Duration) -> Result<RunOutput> {
    let tmp = tempfile::tempdir().ctx("creating temp dir")?;
    let out = File::create(tmp.path().join("stdout.txt")).ctx("creating stdout file")?;
    let err = File::create(tmp.path().join("stderr.txt")).ctx("creating stderr file")?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let mut res = wait_child(&mut cmd, timeout, tmp.path())?;
    res.tmp = tmp.path().to_string_lossy().into_owned();
    Ok(res)
}

/// A running proxy. Dropping it stops it (SIGTERM, then SIGKILL after 5 s).
#[derive(Debug)]
pub struct Proxy {
    binary: Binary,
    child: Option<Child>,
    ports: Ports,
    args: Vec<String>,
    tmp: tempfile::TempDir,
}

impl Proxy {
    /// Which binary this is.
    pub fn binary(&self) -> &Binary {
        &self.binary
    }

    /// The rendered arguments it was started with (before the serving flags).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The port named `name` in its config.
    ///
    /// # Panics
    /// If the config has no `{{port:NAME}}` (a bug in the test).
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .get(name)
            .unwrap_or_else(|| panic!("no port named {name:?} in this proxy's config"))
    }

    /// `127.0.0.1:port(name)`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(name)))
    }

    /// Every named port.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The temp dir (cwd of the process, config, captured output).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("stdout.txt")).unwrap_or_default()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("stderr.txt")).unwrap_or_default()
    }

    /// `text` with the temp dir replaced by `{{tmp}}` and ports by `{{port:NAME}}`.
    pub fn normalize(&self, text: &str) -> String {
        self.ports
            .unport(&text.replace(&*self.tmp.path().to_string_lossy(), "{{tmp}}"))
    }

    /// Waits until stdout has at least `n` lines containing `needle`; returns those lines.
    pub fn wait_stdout_lines(
        &self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        self.wait_file_lines("stdout.txt", needle, n, timeout)
    }

    /// Waits until the file `name` in the temp dir has at least `n` lines containing
    /// `needle`; returns those lines.
    pub fn wait_file_lines(
        &self,
        name: &str,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let path = self.tmp.path().join(name);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = text
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= n {
                return Ok(lines);
            }
            if Instant::now() >= deadline {
                return Err(Error::timeout(
                    format!(
                        "{n} line(s) containing {needle:?} in {name}; got:\n{}",
                        tail(&text, 20)
                    ),
                    timeout,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn wait_listening(&mut self, ports: &[u16], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::NotReady {
                    message: format!(
                        "{} exited with {status} before listening",
                        self.binary.name()
                    ),
                    stderr_tail: tail(&self.stderr(), 30),
                });
            }
            let listening = procnet::listening_ports();
            let missing: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| !listening.contains(p))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    message: format!(
                        "{} not listening on {missing:?} after {timeout:?}",
                        self.binary.name()
                    ),
                    stderr_tail: tail(&self.stderr(), 30),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the process (e.g. SIGHUP); errors if it already exited.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let Some(child) = self.child.as_ref() else {
            return Err(Error::Usage("process already stopped".into()));
        };
        let pid = i32::try_from(child.id()).map_err(|_| Error::Usage("pid out of range".into()))?;
        kill(Pid::from_raw(pid), sig)
            .map_err(|e| Error::io("sending signal", std::io::Error::from(e)))
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::Usage("process already stopped".into()));
        };
        if let Ok(Some(st)) = child.try_wait() {
            return Ok(st);
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(st) = child.try_wait().ctx("waiting for exit")? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return child.wait().ctx("waiting after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} args {:?}, ports {:?}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
                self.binary.name(),
                self.args,
                self.ports.all(),
                tail(&self.stdout(), 20),
                tail(&self.stderr(), 40)
            );
        }
    }
}

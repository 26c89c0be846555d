//! Running generated code for `pass@1` (HumanEval): the program (prompt +
//! completion + the task's tests) is written into a fresh temporary folder and
//! run there by `python3 -I` in its own process group, with a wall-clock
//! timeout (the whole group is killed), resource limits set before the program
//! starts (address space, CPU seconds, file size, processes, no core dumps),
//! an empty environment, and the destructive parts of `os`, `shutil` and
//! `subprocess` (and every way to start a process or leave the process
//! group) disabled as in OpenAI's human-eval `reliability_guard`. Where the
//! kernel allows (found once by trying, see [`isolation`]), the program also
//! gets its own network namespace (no network, loopback down) and its own
//! mount namespace in which every file system is read-only but its folder.
//! `run.json` records which (`code_sandbox`). It never runs in the user's
//! tree. This is a guard against accidents and careless code, not a security
//! boundary against a determined attacker: run untrusted models' code in a
//! container or VM.

use anyhow::{Context, Result};
use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Address-space limit of a generated program.
pub const MEMORY_LIMIT_BYTE: u64 = 2 << 30;

/// Sets the limits, disables destructive functions, then runs the program.
const RUNNER: &str = r#"
import resource, sys
mem, cpu, procs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 24, 1 << 24))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_NPROC, (procs, procs))
with open(sys.argv[1]) as f:
    source = f.read()
import builtins, os, posix, shutil, subprocess, faulthandler
faulthandler.disable()
os.environ["OMP_NUM_THREADS"] = "1"
for name in ["kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
             "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod",
             "fchown", "chmod", "chown", "chroot", "lchown", "chdir", "posix_spawn", "posix_spawnp",
             "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnv",
             "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe", "popen",
             "setsid", "setpgid", "setpgrp", "register_at_fork"]:
    setattr(os, name, None)
    if hasattr(posix, name):
        setattr(posix, name, None)
shutil.rmtree = shutil.move = shutil.chown = None
subprocess.Popen = None
for name in ["ipdb", "joblib", "psutil", "tkinter", "ctypes", "_ctypes", "_posixsubprocess",
             "multiprocessing", "pty"]:
    sys.modules[name] = None
exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
"#;

/// Most processes (and threads) one program may have at once: its pids
/// cgroup's `pids.max`, and `RLIMIT_NPROC` (which does not bind root).
pub const MAX_PROCESSES: u32 = 64;

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

/// How far generated programs are shut in on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Own network namespace (no network) and own mount namespace with every
    /// file system read-only but the program's folder.
    NetworkAndFiles,
    /// Own network namespace only (mounts could not be made read-only).
    Network,
    /// Neither: the kernel refused namespaces (the program has the host's
    /// network and can write where the user can).
    None,
}

impl Isolation {
    /// What `run.json` records as `code_sandbox`.
    pub fn describe(self) -> String {
        let procs = if pids_cgroups() {
            format!(
                "processes ({MAX_PROCESSES}, by a pids cgroup of its own, whose every process is killed when it ends)"
            )
        } else {
            format!("processes ({MAX_PROCESSES} by RLIMIT_NPROC, which binds only a non-root user: no pids cgroup could be made)")
        };
        let base = format!("python3 -I in a fresh temporary folder, own process group killed at the timeout, empty environment, limits on memory (2 GiB address space), CPU time, file size (16 MiB) and {procs}, process-starting and destructive functions disabled");
        match self {
            Isolation::NetworkAndFiles => format!("{base}; own network namespace (no network); every file system read-only but its folder"),
            Isolation::Network => format!("{base}; own network namespace (no network); NOT shut off from writing files outside its folder (mount namespaces unavailable)"),
            Isolation::None => format!("{base}; NOT shut off from the network or from writing files outside its folder (namespaces unavailable: unshare refused)"),
        }
    }
}

/// Mount points that are writable now, but the kernel's pseudo file systems:
/// what the program's mount namespace makes read-only.
fn writable_mounts() -> Vec<CString> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<CString> = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (point, opts) = (*f.get(4)?, *f.get(5)?);
            let pseudo = ["/proc", "/sys", "/dev/pts", "/dev/mqueue"]
                .iter()
                .any(|p| point == *p || point.starts_with(&format!("{p}/")));
            (opts.split(',').any(|o| o == "rw") && !pseudo && !point.contains('\\'))
                .then(|| CString::new(point).ok())?
        })
        .collect();
    points.sort();
    points.dedup();
    points
}

/// In the child, between fork and exec (only system calls, nothing
/// allocated): enter new namespaces as `level` asks.
fn enter(level: Isolation, folder: &CStr, mounts: &[CString]) -> std::io::Result<()> {
    if level == Isolation::None {
        return Ok(());
    }
    let files = level == Isolation::NetworkAndFiles;
    let flags = libc::CLONE_NEWNET | if files { libc::CLONE_NEWNS } else { 0 };
    let err = std::io::Error::last_os_error;
    // SAFETY: plain system calls on pointers to C strings that outlive them.
    unsafe {
        if libc::unshare(flags) != 0 && libc::unshare(flags | libc::CLONE_NEWUSER) != 0 {
            return Err(err());
        }
        if files {
            let none = std::ptr::null();
            if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
                || libc::mount(folder.as_ptr(), folder.as_ptr(), none, libc::MS_BIND, std::ptr::null()) != 0
            {
                return Err(err());
            }
            let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
            for m in mounts {
                let failed = libc::mount(none, m.as_ptr(), none, ro, std::ptr::null()) != 0;
                if failed && m.as_bytes() == b"/" {
                    return Err(err());
                }
            }
            // The working folder was entered before the bind mount: enter the writable one.
            if libc::chdir(folder.as_ptr()) != 0 {
                return Err(err());
            }
        }
    }
    Ok(())
}

/// The strongest isolation this machine grants, found once by starting
/// `true` under each level in turn.
pub fn isolation() -> Isolation {
    static LEVEL: OnceLock<Isolation> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let Ok(dir) = tempfile::Builder::new().prefix("openweigh-probe-").tempdir() else { return Isolation::None };
        for level in [Isolation::NetworkAndFiles, Isolation::Network] {
            if spawn_isolated(Command::new("true").stdout(Stdio::null()).stderr(Stdio::null()), level, dir.path(), None)
                .and_then(|mut c| c.wait())
                .is_ok_and(|s| s.success())
            {
                return level;
            }
        }
        Isolation::None
    })
}

/// Starts `cmd` inside `level`'s namespaces, its folder `folder`, in
/// `cgroup` when given.
fn spawn_isolated(
    cmd: &mut Command,
    level: Isolation,
    folder: &Path,
    cgroup: Option<&PidsCgroup>,
) -> std::io::Result<std::process::Child> {
    let folder = CString::new(folder.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mounts = if level == Isolation::NetworkAndFiles { writable_mounts() } else { vec![] };
    let procs = cgroup.map(|c| c.procs.clone());
    // SAFETY: `join_cgroup` and `enter` make only system calls (async-signal-safe) on data built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(procs) = &procs {
                join_cgroup(procs)?;
            }
            enter(level, &folder, &mounts)
        })
    }
    .spawn()
}

/// A pids cgroup made for one program: `pids.max` bounds everything it
/// starts (a fork bomb stops at [`MAX_PROCESSES`], root or not), and when
/// it is dropped every process still in it is killed and it is removed.
struct PidsCgroup {
    dir: PathBuf,
    /// Its `cgroup.procs`, which the child writes itself into before exec.
    procs: CString,
}

/// Where pids cgroups can be made: cgroup v1's pids hierarchy, else this
/// process's own cgroup v2 folder when the pids controller is on there.
fn pids_hierarchy() -> Option<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").exists() {
        return Some(v1.into());
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    std::fs::read_to_string(dir.join("cgroup.subtree_control")).ok()?.contains("pids").then_some(dir)
}

impl PidsCgroup {
    fn new(max: u32) -> Option<Self> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = pids_hierarchy()?.join(format!("openweigh-exec-{}-{seq}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cg = PidsCgroup { procs: CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok()?, dir };
        std::fs::write(cg.dir.join("pids.max"), max.to_string()).ok()?;
        Some(cg)
    }

    fn pids(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Kills every process in the cgroup, until none is left (or ~2 s pass).
    fn kill_all(&self) {
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: a signal to a process of the program's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// In the child before exec: moves itself into the cgroup whose
/// `cgroup.procs` is `procs` (writing "0" means "the writer").
fn join_cgroup(procs: &CStr) -> std::io::Result<()> {
    // SAFETY: open/write/close on a C string built before the fork.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if ok {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// Whether this machine lets openweigh make pids cgroups (found once).
pub fn pids_cgroups() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| PidsCgroup::new(MAX_PROCESSES).is_some())
}

/// Runs `cmd` shut in (namespaces as [`isolation`] grants, a pids cgroup
/// where [`pids_cgroups`]), killed with everything it started after
/// `timeout`; `None` when it timed out.
fn run_contained(cmd: &mut Command, folder: &Path, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
    let cgroup = if pids_cgroups() { PidsCgroup::new(MAX_PROCESSES) } else { None };
    let mut child = spawn_isolated(cmd, isolation(), folder, cgroup.as_ref())
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
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
    // Anything left behind (in the cgroup, even outside the group) dies here.
    drop(cgroup);
    Ok(status)
}

/// Runs `program` with python3 in a new temporary folder, killed after `timeout`.
pub fn run_python(program: &str, timeout: Duration) -> Result<Outcome> {
    let dir = tempfile::Builder::new().prefix("openweigh-exec-").tempdir().context("creating a temporary folder")?;
    std::fs::write(dir.path().join("program.py"), program)?;
    let stderr_path = dir.path().join("stderr.txt");
    let stderr = std::fs::File::create(&stderr_path)?;
    let cpu_s = timeout.as_secs().max(1);
    let mut cmd = Command::new("python3");
    let (mem, cpu, procs) = (MEMORY_LIMIT_BYTE.to_string(), cpu_s.to_string(), MAX_PROCESSES.to_string());
    cmd.args(["-I", "-B", "-c", RUNNER, "program.py", &mem, &cpu, &procs])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
    let status = run_contained(&mut cmd, dir.path(), timeout)?;
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
        // Every way to start a process or leave the group is gone.
        for start in [
            "import os\nwhile True:\n    os.fork()\n",
            "import os\nos.posix_spawn('/bin/true', ['true'], {})\n",
            "import os\nos.setsid()\n",
            "import posix\nwhile True:\n    posix.fork()\n",
            "import ctypes\nctypes.CDLL(None).fork()\n",
            "import multiprocessing\n",
            "import _posixsubprocess\n",
        ] {
            assert!(!run_python(start, T).unwrap().passed(), "{start}");
        }
        // 4 GiB allocation exceeds the address-space limit.
        let big = run_python("x = bytearray(4 << 30)\n", T).unwrap();
        assert!(matches!(big, Outcome::Failed(ref w) if w.contains("MemoryError")), "{big:?}");
    }

    /// The sandbox cases of the pass@1 guard on this machine: no network (a
    /// listener on 127.0.0.1 is never reached) and no writes outside the
    /// program's folder, when the kernel grants namespaces (it does on the
    /// machines openweigh's CI runs on).
    #[test]
    fn no_network_and_no_writes_outside_its_folder() {
        let level = isolation();
        eprintln!("isolation: {level:?}: {}", level.describe());
        assert_eq!(level, Isolation::NetworkAndFiles);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connect =
            format!("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n");
        assert!(!run_python(&connect, T).unwrap().passed());
        assert!(listener.accept().is_err(), "the program reached a listener on 127.0.0.1");

        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("written.txt");
        let write = format!("open({:?}, 'w').write('x')\n", target.display().to_string());
        let out = run_python(&write, T).unwrap();
        assert!(matches!(out, Outcome::Failed(ref w) if w.contains("Read-only file system")), "{out:?}");
        assert!(!target.exists());
        // Its own folder stays writable.
        assert_eq!(run_python("open('scratch.txt', 'w').write('x')\n", T).unwrap(), Outcome::Passed);
    }

    /// A fork bomb that no Python guard stops (a shell's) runs as root here,
    /// where RLIMIT_NPROC does not bind: the pids cgroup stops it at
    /// MAX_PROCESSES, and every process it left is killed when it ends.
    #[test]
    fn fork_bomb_stops_at_the_process_limit_and_leaves_nothing() {
        assert!(pids_cgroups(), "no pids cgroup could be made: {}", isolation().describe());
        let dir = tempfile::tempdir().unwrap();
        let marker = format!("openweigh-bomb-{}", std::process::id());
        // 200 sleepers wanted, each marking a file as it starts.
        let script = format!("for n in $(seq 200); do (: > started.$n; exec -a {marker} sleep 60) & done; wait");
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script]).current_dir(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
        let status = run_contained(&mut cmd, dir.path(), Duration::from_secs(3)).unwrap();
        assert!(status.is_none(), "the shell was meant to wait until killed: {status:?}");
        let started = std::fs::read_dir(dir.path()).unwrap().count() as u32;
        eprintln!("fork bomb: {started} of 200 processes started (limit {MAX_PROCESSES})");
        assert!((10..MAX_PROCESSES).contains(&started), "{started} processes started; the limit is {MAX_PROCESSES}");
        let left = Command::new("pgrep").args(["-c", "-f", &marker]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "0", "processes of the bomb outlived it");
    }
}

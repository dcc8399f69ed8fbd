//! The processes of the local target — model servers and routers — whether this `slipway run`
//! started them or adopted them from one before it, and the record of each deployment's
//! processes that lets the next `slipway run` adopt them (`<state>/logs/routers/<id>.json`,
//! written whenever they change).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::control::{self, Ask, Reply};

/// A process this target started, or adopted from an earlier `slipway run`.
pub enum Proc {
    /// Started here: waited for here.
    Own {
        /// It.
        child: Child,
        /// When it started ([`identity`]).
        started: String,
    },
    /// Adopted: known by its id and when it started (a reused id is another process).
    Adopted {
        /// The process id.
        pid: u32,
        /// When it started ([`identity`]).
        started: String,
    },
}

/// When process `pid` started, as `BOOT_ID/TICKS` (the boot, and field 22 of `/proc/PID/stat`:
/// clock ticks since that boot) — what tells it from any later process given the same id, even
/// one running the same command; None when it does not run (or is a zombie).
pub fn identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised name, from field 3 (the state) on.
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields
        .first()
        .is_none_or(|s| s.starts_with('Z') || s.starts_with('X'))
    {
        return None;
    }
    let ticks = fields.get(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    Some(format!("{}/{ticks}", boot.trim()))
}

/// Whether process `pid` is the one that started at `started` and still runs.
pub fn runs(pid: u32, started: &str) -> bool {
    !started.is_empty() && identity(pid).as_deref() == Some(started)
}

impl Proc {
    /// A child just started.
    pub fn own(child: Child) -> Proc {
        let started = identity(child.id()).unwrap_or_default();
        Proc::Own { child, started }
    }
}

/// The parts of a command line, the program by its file name (a launcher such as pyenv execs
/// the real binary, which shows with its full path).
fn parts(line: &str) -> Vec<String> {
    let mut parts: Vec<String> = line
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(first) = parts.first_mut() {
        *first = Path::new(first.as_str())
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
    }
    parts
}

/// Whether process `pid` is alive (not a zombie) and runs `command` (the pid files of older
/// versions recorded only that).
pub fn runs_command(pid: u32, command: &[String]) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised name: "123 (name) S …".
    let zombie = stat
        .rsplit_once(") ")
        .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'));
    if zombie {
        return false;
    }
    let running = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !command.is_empty() && parts(&running) == parts(&command.join("\0"))
}

/// Kills a process and, when it leads a process group (servers and routers are started so),
/// what it started in it.
pub fn kill_pid(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

impl Proc {
    /// The process id.
    pub fn id(&self) -> u32 {
        match self {
            Proc::Own { child, .. } => child.id(),
            Proc::Adopted { pid, .. } => *pid,
        }
    }

    /// When it started ([`identity`]).
    pub fn started(&self) -> &str {
        match self {
            Proc::Own { started, .. } | Proc::Adopted { started, .. } => started,
        }
    }

    /// None while it runs; how it ended once it has.
    pub fn exited(&mut self) -> Option<String> {
        match self {
            Proc::Own { child, .. } => child.try_wait().ok().flatten().map(|s| s.to_string()),
            // Started by an earlier run: its exit status went to no one here.
            Proc::Adopted { pid, started } => {
                (!runs(*pid, started)).then(|| "an exit status not known".to_string())
            }
        }
    }

    /// Stops it at once.
    pub fn kill(&mut self) {
        match self {
            Proc::Own { child, .. } => {
                if child.try_wait().ok().flatten().is_none() {
                    kill_pid(child.id());
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Proc::Adopted { pid, started } => {
                if runs(*pid, started) {
                    kill_pid(*pid);
                }
            }
        }
    }

    /// Waits up to `within` for it to end by itself; true if it did.
    pub fn ended_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.exited().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A model server in a deployment's record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Its process.
    pub pid: u32,
    /// Its command line (for people: a process is known by `started`).
    pub command: Vec<String>,
    /// When it started ([`identity`]).
    #[serde(default)]
    pub started: String,
    /// Its port.
    pub port: u16,
    /// `MODEL_URI`.
    pub uri: String,
    /// The digest it was verified against.
    pub digest: String,
    /// How often it was restarted.
    pub restarts: u32,
}

/// A router in a deployment's record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouterRecord {
    /// Its process.
    pub pid: u32,
    /// Its command line (for people: a process is known by `started`).
    pub command: Vec<String>,
    /// When it started ([`identity`]).
    #[serde(default)]
    pub started: String,
    /// The port it serves.
    pub port: u16,
}

/// A deployment's processes, as the next `slipway run` finds them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The deployment's namespace.
    pub namespace: String,
    /// The deployment.
    pub name: String,
    /// Its router.
    pub router: Option<RouterRecord>,
    /// Its servers, by version.
    pub servers: BTreeMap<String, ServerRecord>,
}

/// Creates `dir` (mode 0700) or makes sure the one there is this user's and no one else's: the
/// records there say which processes Slipway may stop, and the sockets steer traffic.
pub fn private_folder(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let m = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be a folder of user {me} that nobody else may write to (it says which processes Slipway may stop); run `chmod 700` on it or use another --state",
            dir.display()
        ));
    }
    Ok(())
}

/// Whether `dir` is there and private ([`private_folder`] without creating it).
fn trusted(dir: &Path) -> bool {
    dir.exists() && private_folder(dir).is_ok()
}

/// Where the records and router sockets are.
pub fn folder(logs: &Path) -> PathBuf {
    logs.join("routers")
}

/// `NAMESPACE_NAME.json` (neither has a `_`): a person finds a deployment's record by name.
fn record_path(logs: &Path, key: &(String, String)) -> PathBuf {
    folder(logs).join(format!("{}_{}.json", key.0, key.1))
}

/// Writes a deployment's record (replacing the file whole).
pub fn write_record(logs: &Path, record: &Record) {
    let key = (record.namespace.clone(), record.name.clone());
    let path = record_path(logs, &key);
    if private_folder(&folder(logs)).is_err() {
        return;
    }
    let tmp = path.with_extension("json.tmp");
    // A new file (never through a link someone left there), then renamed over the record.
    let _ = std::fs::remove_file(&tmp);
    let written = serde_json::to_vec_pretty(record).ok().and_then(|text| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ok()?;
        f.write_all(&text).ok()
    });
    if written.is_some() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// A record file: a regular file of at most 1 MiB in the private folder (nothing else is read).
fn read_json(path: &Path) -> Option<Record> {
    use std::io::Read as _;
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() || m.len() > 1 << 20 {
        return None;
    }
    let mut text = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut text)
        .ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes a deployment's record.
pub fn remove_record(logs: &Path, key: &(String, String)) {
    let _ = std::fs::remove_file(record_path(logs, key));
}

/// A deployment's record, if one was left.
pub fn read_record(logs: &Path, key: &(String, String)) -> Option<Record> {
    trusted(&folder(logs)).then(|| read_json(&record_path(logs, key)))?
}

/// Whether the router a deployment's record names still runs.
pub fn router_runs(logs: &Path, key: &(String, String)) -> bool {
    read_record(logs, key)
        .and_then(|r| r.router)
        .is_some_and(|r| runs(r.pid, &r.started))
}

/// Every record left in the folder.
pub fn records(logs: &Path) -> Vec<Record> {
    if !trusted(&folder(logs)) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(folder(logs)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| read_json(&e.path()))
        .collect()
}

/// A deployment's router process and how to reach it.
pub struct Router {
    /// Its process.
    pub proc: Proc,
    /// The port it serves.
    pub port: u16,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its command line.
    pub command: Vec<String>,
}

impl Router {
    /// Asks it.
    pub fn ask(&self, question: &Ask) -> Result<Reply, String> {
        control::ask_now(&self.socket, question)
    }

    /// Its record.
    pub fn record(&self) -> RouterRecord {
        RouterRecord {
            pid: self.proc.id(),
            command: self.command.clone(),
            started: self.proc.started().to_string(),
            port: self.port,
        }
    }

    /// Tells it to stop (it drains what is in flight) and makes sure it has, within 6 s.
    pub fn stop(mut self) {
        let _ = self.ask(&Ask::Stop);
        if !self.proc.ended_within(Duration::from_secs(6)) {
            self.proc.kill();
        }
    }

    /// Starts a router for `key` on `port`, with `program` (the `slipway` executable), logging
    /// to `log`; returns once it answers, or why it could not start (its own words, from its
    /// log, when it exited: a port that is taken).
    pub fn start(
        program: &Path,
        logs: &Path,
        key: &(String, String),
        port: u16,
    ) -> Result<Router, String> {
        let socket = control::socket_for(&folder(logs), key, port);
        private_folder(&folder(logs))?;
        if let Some(parent) = socket.parent() {
            private_folder(parent)?;
        }
        let _ = std::fs::remove_file(&socket);
        let log_path = logs.join(format!("{}-{}-router.log", key.0, key.1));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
        let logged_before = log.metadata().map_or(0, |m| m.len());
        let command = vec![
            program.display().to_string(),
            "router".to_string(),
            "--port".to_string(),
            port.to_string(),
            "--control".to_string(),
            socket.display().to_string(),
        ];
        let mut cmd = Command::new(program);
        cmd.args(&command[1..])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // Its own process group: a Ctrl-C at the terminal reaches `slipway run`, which decides.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{} router`: {e}", program.display()))?;
        let mut router = Router {
            proc: Proc::own(child),
            port,
            socket,
            command,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Only this very process (not one answering on the path from before).
            if let Ok(Reply::Hello { pid, .. }) =
                control::ask(&router.socket, &Ask::Hello, Duration::from_millis(500))
                && pid == router.proc.id()
            {
                return Ok(router);
            }
            if router.proc.exited().is_some() {
                let text = std::fs::read(&log_path).unwrap_or_default();
                let said = String::from_utf8_lossy(
                    text.get(usize::try_from(logged_before).unwrap_or(0)..)
                        .unwrap_or_default(),
                )
                .trim()
                .to_string();
                return Err(said
                    .strip_prefix("error: ")
                    .unwrap_or(&said)
                    .lines()
                    .next()
                    .unwrap_or("the router exited at once")
                    .to_string());
            }
            if Instant::now() >= deadline {
                router.proc.kill();
                return Err("the router did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The router `record` names, if it still runs, answers this protocol and serves `port`.
    pub fn adopt(
        logs: &Path,
        key: &(String, String),
        record: &RouterRecord,
        port: u16,
    ) -> Option<Router> {
        if !runs(record.pid, &record.started) {
            return None;
        }
        let router = Router {
            proc: Proc::Adopted {
                pid: record.pid,
                started: record.started.clone(),
            },
            port: record.port,
            socket: control::socket_for(&folder(logs), key, record.port),
            command: record.command.clone(),
        };
        match router.ask(&Ask::Hello) {
            Ok(Reply::Hello {
                protocol,
                pid,
                port: serving,
            }) if protocol == control::PROTOCOL && pid == record.pid && serving == port => {
                Some(router)
            }
            // Another protocol, another port, or no answer: it goes.
            _ => {
                router.stop();
                None
            }
        }
    }
}

/// Stops servers an older Slipway recorded in `pid_dir` (one pid file each, before routers had
/// processes of their own) that still run the recorded command line.
pub(super) fn reap_orphans(pid_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pid_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        let recorded = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let command: Vec<String> = recorded.split('\0').map(str::to_string).collect();
        if let Ok(pid) = pid.parse::<u32>()
            && runs_command(pid, &command)
            && let Some(started) = identity(pid)
        {
            Proc::Adopted { pid, started }.kill();
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_ours_only_while_it_runs_the_recorded_command() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        // (Until it has exec'd, the child still shows this test's command line.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while !runs_command(pid, &["/usr/bin/sleep".into(), "30".into()]) {
            assert!(Instant::now() < deadline, "sleep never showed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!runs_command(pid, &["sleep".into(), "31".into()]));
        // Known by when it started: another start time is another process.
        let started = identity(pid).unwrap();
        assert!(runs(pid, &started));
        assert!(!runs(pid, &format!("{started}0")));
        assert!(!runs(pid, ""));
        let mut adopted = Proc::Adopted { pid, started };
        assert_eq!(adopted.exited(), None);
        adopted.kill();
        let _ = child.wait();
        assert!(adopted.exited().is_some());
    }

    #[test]
    fn records_are_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record {
            namespace: "default".into(),
            name: "api".into(),
            router: Some(RouterRecord {
                pid: 42,
                command: vec!["slipway".into(), "router".into()],
                port: 8765,
                started: "boot/1".into(),
            }),
            servers: [(
                "7".to_string(),
                ServerRecord {
                    pid: 43,
                    port: 4000,
                    ..ServerRecord::default()
                },
            )]
            .into(),
        };
        write_record(dir.path(), &record);
        let key = ("default".to_string(), "api".to_string());
        assert_eq!(read_record(dir.path(), &key), Some(record.clone()));
        assert_eq!(records(dir.path()), vec![record]);
        remove_record(dir.path(), &key);
        assert_eq!(read_record(dir.path(), &key), None);
    }
}

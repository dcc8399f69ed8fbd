//! The local router as a process of its own (`slipway router`), and how the reconciler talks to
//! it: one JSON line asked, one answered, over a Unix socket beside the state (mode 0600).
//!
//! The router owns the deployment's port and keeps serving while `slipway run` is killed,
//! restarted or upgraded; the next `slipway run` finds it through the deployment's record
//! (see [`super::local`]) and adopts it with its weights, rules and observation windows. It stops
//! when told to ([`Ask::Stop`]: it stops accepting, lets requests in flight finish for up to 5 s,
//! and exits), on SIGTERM, or when its socket is removed or replaced (the state folder is gone:
//! no reconciler can ever reach it again).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::router::{Totals, TrafficRouter};
use crate::decide::rollout::Window;
use crate::decide::rollout::routing::Routing;

/// The protocol's number: a router that answers [`Ask::Hello`] with another is not adopted (it
/// is stopped and a new one started).
pub const PROTOCOL: u32 = 1;

/// The longest a control answer is waited for.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// What the reconciler asks a router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "camelCase")]
pub enum Ask {
    /// Who it is: [`Reply::Hello`].
    Hello,
    /// Route by these weights to these upstream ports, and start new observation windows.
    Set {
        /// Version → percent.
        weights: BTreeMap<String, u32>,
        /// Version → upstream port (shadows too).
        ports: BTreeMap<String, u16>,
    },
    /// Route by these request rules before the weights.
    Routing {
        /// The rules.
        routing: Routing,
    },
    /// Requests to a version in flight: [`Reply::Count`].
    InFlight {
        /// The version.
        version: String,
    },
    /// What was observed for a version since the weights last changed: [`Reply::Window`].
    Window {
        /// The version.
        version: String,
    },
    /// The current weights: [`Reply::Weights`].
    Weights,
    /// Everything observed per version since the router started: [`Reply::Totals`].
    Totals,
    /// The model servers behind it: stopped with it when it stops because its socket is gone
    /// (nothing could ever stop them otherwise).
    Servers {
        /// Their process ids and when they started (a process that started at another time
        /// is not one of them).
        servers: Vec<(u32, String)>,
    },
    /// Stop accepting, let requests in flight finish (5 s at most), exit.
    Stop,
}

/// What a router answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "camelCase")]
pub enum Reply {
    /// Its protocol, process and port.
    Hello {
        /// [`PROTOCOL`].
        protocol: u32,
        /// Its process id.
        pid: u32,
        /// The port it serves.
        port: u16,
    },
    /// Done.
    Done,
    /// A number.
    Count {
        /// It.
        count: u32,
    },
    /// A window.
    Window {
        /// It.
        window: Window,
    },
    /// Weights.
    Weights {
        /// Version → percent.
        weights: BTreeMap<String, u32>,
    },
    /// Totals per version.
    Totals {
        /// Version → totals.
        totals: BTreeMap<String, Totals>,
    },
    /// The question could not be read.
    Error {
        /// Why.
        message: String,
    },
}

/// Asks the router listening on `socket`, waiting `within` at most.
pub fn ask(socket: &Path, question: &Ask, within: Duration) -> Result<Reply, String> {
    let said = |e: std::io::Error| format!("the router at {} {e}", socket.display());
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("the router at {} does not answer: {e}", socket.display()))?;
    s.set_read_timeout(Some(within)).map_err(said)?;
    s.set_write_timeout(Some(within)).map_err(said)?;
    let mut line = serde_json::to_string(question).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(said)?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).map_err(said)?;
    match serde_json::from_str(&answer) {
        Ok(Reply::Error { message }) => Err(message),
        Ok(reply) => Ok(reply),
        Err(e) => Err(format!(
            "the router at {} answered something else than its protocol: {e}",
            socket.display()
        )),
    }
}

/// [`ask`] with the usual patience.
pub fn ask_now(socket: &Path, question: &Ask) -> Result<Reply, String> {
    ask(socket, question, ANSWER_WITHIN)
}

/// The servers behind a router: each process id with when it started.
type Servers = std::sync::Mutex<Vec<(u32, String)>>;

/// Answers one question.
fn answer(router: &TrafficRouter, question: Ask, stop: &AtomicBool, servers: &Servers) -> Reply {
    match question {
        Ask::Hello => Reply::Hello {
            protocol: PROTOCOL,
            pid: std::process::id(),
            port: router.addr.port(),
        },
        Ask::Set { weights, ports } => {
            router.set(&weights, &ports);
            Reply::Done
        }
        Ask::Routing { routing } => {
            router.set_routing(&routing);
            Reply::Done
        }
        Ask::InFlight { version } => Reply::Count {
            count: router.in_flight(&version),
        },
        Ask::Window { version } => Reply::Window {
            window: router.window(&version),
        },
        Ask::Weights => Reply::Weights {
            weights: router.weights(),
        },
        Ask::Totals => Reply::Totals {
            totals: router.totals(),
        },
        Ask::Servers { servers: told } => {
            *servers.lock().unwrap_or_else(|p| p.into_inner()) = told;
            Reply::Done
        }
        Ask::Stop => {
            stop.store(true, Ordering::SeqCst);
            Reply::Done
        }
    }
}

/// Serves one control connection: one question, one answer.
fn converse(stream: UnixStream, router: &TrafficRouter, stop: &AtomicBool, servers: &Servers) {
    let _ = stream.set_read_timeout(Some(ANSWER_WITHIN));
    let _ = stream.set_write_timeout(Some(ANSWER_WITHIN));
    let mut line = String::new();
    let Ok(mut reader) = stream.try_clone().map(BufReader::new) else {
        return;
    };
    // A question is small: a line longer than 1 MiB is not one.
    if (&mut reader).take(1 << 20).read_line(&mut line).is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Ask>(&line) {
        Ok(q) => answer(router, q, stop, servers),
        Err(e) => Reply::Error {
            message: format!("not a question of protocol {PROTOCOL}: {e}"),
        },
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let mut stream = stream;
        let _ = stream.write_all(text.as_bytes());
    }
}

/// `slipway router`: serves `127.0.0.1:port` and answers on `socket` until stopped. A port it
/// cannot listen on ends it at once with the reason on stderr (the reconciler reads it from the
/// router's log).
pub fn run(port: u16, socket: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let router = runtime
        .block_on(TrafficRouter::start(port))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let router = Arc::new(router);
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let mine = std::fs::metadata(socket)?.ino();
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let servers: Arc<Servers> = Arc::default();
    eprintln!(
        "slipway router (pid {}): serving 127.0.0.1:{}, answering on {}",
        std::process::id(),
        router.addr.port(),
        socket.display()
    );
    let mut checked = Instant::now();
    let mut orphaned = false;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let (router, stop, servers) = (router.clone(), stop.clone(), servers.clone());
                std::thread::spawn(move || converse(stream, &router, &stop, &servers));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
        if checked.elapsed() >= Duration::from_secs(2) {
            checked = Instant::now();
            // The socket removed or replaced: nobody can reach this router any more.
            if std::fs::metadata(socket).map(|m| m.ino()).ok() != Some(mine) {
                eprintln!(
                    "slipway router: {} was removed; stopping, with the model servers behind it",
                    socket.display()
                );
                orphaned = true;
                break;
            }
        }
    }
    router.close();
    let deadline = Instant::now() + Duration::from_secs(5);
    while router.in_flight_total() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if std::fs::metadata(socket).map(|m| m.ino()).ok() == Some(mine) {
        let _ = std::fs::remove_file(socket);
    }
    if orphaned {
        // Only the very process it was told of (not a reused id).
        for (pid, started) in servers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if super::processes::runs(*pid, started) {
                super::processes::kill_pid(*pid);
            }
        }
    }
    eprintln!("slipway router: stopped");
    drop(router);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Where the router of a deployment on a port answers: one socket per router (a router started
/// for a new port never takes its predecessor's), in the state's `routers` folder — or, when
/// that path would be too long for a Unix socket (107 bytes), in `slipway-UID` under the
/// temporary folder (mode 0700), named after the state folder too.
pub fn socket_for(folder: &Path, key: &(String, String), port: u16) -> PathBuf {
    let name = format!("{}.sock", short_id(&format!("{}/{}:{port}", key.0, key.1)));
    let there = folder.join(&name);
    if there.as_os_str().len() <= 100 {
        return there;
    }
    let unique = short_id(&format!("{}\0{name}", folder.display()));
    short_folder().join(format!("{unique}.sock"))
}

/// The folder of sockets whose state folder is too deep: `slipway-UID` under the temporary
/// folder.
pub fn short_folder() -> PathBuf {
    std::env::temp_dir().join(format!("slipway-{}", rustix::process::geteuid().as_raw()))
}

/// 16 hex digits of the SHA-256 of `s`.
fn short_id(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_answers_are_one_json_line_each() {
        let q = Ask::Set {
            weights: [("7".to_string(), 80), ("8".to_string(), 20)].into(),
            ports: [("7".to_string(), 4001), ("8".to_string(), 4002)].into(),
        };
        let text = serde_json::to_string(&q).unwrap();
        assert!(!text.contains('\n'));
        assert!(text.starts_with(r#"{"ask":"set","#), "{text}");
        assert_eq!(serde_json::from_str::<Ask>(&text).unwrap(), q);
        let r = Reply::Count { count: 3 };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"reply":"count","count":3}"#
        );
    }

    #[test]
    fn a_socket_path_is_short_and_one_per_deployment() {
        let a = socket_for(Path::new("/s"), &("default".into(), "api".into()), 8765);
        let b = socket_for(Path::new("/s"), &("default".into(), "api2".into()), 8765);
        let c = socket_for(Path::new("/s"), &("default".into(), "api".into()), 8766);
        assert!(a != b && a != c && b != c);
        assert_eq!(a.file_name().unwrap().len(), 16 + 5);
        assert!(a.starts_with("/s"));
        // A state folder too deep for a socket path: the short folder, still one per state.
        let deep = Path::new("/x").join("d".repeat(120));
        let d = socket_for(&deep, &("default".into(), "api".into()), 8765);
        assert!(
            d.starts_with(short_folder()) && d.as_os_str().len() <= 107,
            "{d:?}"
        );
        let other = socket_for(&deep.join("e"), &("default".into(), "api".into()), 8765);
        assert_ne!(d, other);
    }

    #[test]
    fn a_router_answers_on_its_socket_and_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("r.sock");
        let s = socket.clone();
        let serving = std::thread::spawn(move || run(0, &s).map_err(|e| e.to_string()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let hello = loop {
            if let Ok(h) = ask_now(&socket, &Ask::Hello) {
                break h;
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            matches!(
                hello,
                Reply::Hello {
                    protocol: PROTOCOL,
                    ..
                }
            ),
            "{hello:?}"
        );
        let weights: BTreeMap<String, u32> = [("7".to_string(), 100)].into();
        let ports: BTreeMap<String, u16> = [("7".to_string(), 9)].into();
        ask_now(
            &socket,
            &Ask::Set {
                weights: weights.clone(),
                ports,
            },
        )
        .unwrap();
        assert_eq!(
            ask_now(&socket, &Ask::Weights).unwrap(),
            Reply::Weights { weights }
        );
        // Not a question: said so, and the router keeps answering.
        let mut raw = UnixStream::connect(&socket).unwrap();
        raw.write_all(b"{\"ask\":\"format-disk\"}\n").unwrap();
        let mut said = String::new();
        BufReader::new(raw).read_line(&mut said).unwrap();
        assert!(said.contains("not a question of protocol 1"), "{said}");
        assert_eq!(ask_now(&socket, &Ask::Stop).unwrap(), Reply::Done);
        serving.join().unwrap().unwrap();
        assert!(!socket.exists());
    }
}

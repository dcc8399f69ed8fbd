//! A smart-HTTP git server for the tests: `git http-backend` behind Python's CGI server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

/// A smart-HTTP git server (`git http-backend` behind Python's CGI server) for the repositories
/// under `root` (pushes too: `http.receivepack`); killed on drop.
pub struct GitHttp {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl GitHttp {
    pub fn start(root: &Path) -> GitHttp {
        let dir = tempfile::tempdir().unwrap();
        let cgi = dir.path().join("cgi-bin");
        std::fs::create_dir(&cgi).unwrap();
        // CGI scripts may run as another user; allow any repository owner.
        std::fs::write(
            cgi.join("git"),
            "#!/bin/sh\nexec git -c safe.directory=* -c http.receivepack=true http-backend\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(cgi.join("git"), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Python's CGI server runs scripts as `nobody` when it runs as root: a push must be able
        // to write the repository's objects.
        let _ = Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(root)
            .status();
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--cgi", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir.path())
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        GitHttp {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A throw-away PostgreSQL server for tests (never a mock): Debian's
//! `postgresql` binaries, `initdb` into a temporary folder and `postgres` on
//! a free loopback port, as an unprivileged user when the tests run as root
//! (initdb refuses root). `scripts/ensure-engine.sh` installs the package.
//!
//! The server is stopped (fast shutdown) and its folder removed when the
//! handle is dropped, also when the test panics; if the test process dies
//! first, the kernel sends the server SIGINT (`PR_SET_PDEATHSIG`), so
//! nothing outlives the tests.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL server; superuser `drydock`, trust authentication,
/// loopback only, no Unix socket.
pub struct Postgres {
    dir: tempfile::TempDir,
    child: Child,
    bin: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
}

/// The folder of Debian's PostgreSQL binaries (the newest version there).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").is_file().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/ensure-engine.sh")
    })
}

/// uid and gid of `name` from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == name)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// The user the server runs as: ourselves, or (as root) `postgres`, else
/// `nobody`.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    Some(
        user_ids("postgres")
            .or_else(|| user_ids("nobody"))
            .unwrap_or((65534, 65534)),
    )
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; it runs in the child after the
    // uid change (which would clear the parent-death signal otherwise).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            Ok(())
        });
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// Makes and starts a server (about a second).
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let user = server_user();
        let dir = tempfile::Builder::new()
            .prefix("drydock-test-pg-")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "drydock",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .current_dir(dir.path());
        as_server_user(&mut initdb, user);
        let out = initdb.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log_path = dir.path().join("postgres.log");
            let log = std::fs::File::create(&log_path).unwrap();
            if let Some((uid, gid)) = user {
                let _ = std::os::unix::fs::chown(&log_path, Some(uid), Some(gid));
            }
            let mut postgres = Command::new(bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args([
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=32MB",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .current_dir(dir.path());
            as_server_user(&mut postgres, user);
            let mut child = postgres.spawn().expect("postgres runs");
            let started = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ready = Command::new(bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .args(["-U", "drydock", "-d", "postgres"])
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    return Postgres {
                        dir,
                        child,
                        bin,
                        port,
                    };
                }
                if started.elapsed() > Duration::from_secs(60) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if !last_log.contains("could not bind") {
                break;
            }
        }
        panic!("PostgreSQL did not start: {last_log}");
    }

    /// The address of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://drydock@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (`createdb`); returns its address.
    pub fn create_database(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "drydock", name])
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// Runs SQL with `psql` against database `db`; returns its output
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "drydock", "-d", db, "-X", "-q", "-A", "-t"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The server's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Fast shutdown: clients are disconnected, the server exits cleanly.
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `ssh://[user@]host[:port]` engines, reached as the docker CLI reaches
//! them: each connection runs `ssh … docker system dial-stdio` on the remote
//! host and speaks the Engine API over the command's stdin and stdout.
//!
//! bollard 0.21's own SSH support drops the user and port of the address
//! (it hands `user@host:port` to `ssh` as a host name), so drydock serves a
//! private Unix socket (mode 0700 folder) and connects bollard to it; every
//! connection accepted there is one `ssh` child process, killed with the
//! connection. The system `ssh` does the rest (keys, agent, `~/.ssh/config`,
//! known hosts), in batch mode: it never prompts.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// A parsed `ssh://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAddress {
    /// The user, when given.
    pub user: Option<String>,
    /// The host.
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
}

impl SshAddress {
    /// Parses `ssh://[user@]host[:port][/]`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(url: &str) -> Result<SshAddress, String> {
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("{url:?} is not an ssh:// address"))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!(
                "{url:?}: an ssh:// address takes no path (the remote engine is the one `docker` finds there)"
            ));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(format!("{url:?}: empty user")),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("{url:?}: invalid port {p:?}"))?,
                ),
            ),
            _ => (hostport.to_string(), None),
        };
        if host.is_empty() || host.starts_with('-') {
            return Err(format!("{url:?}: invalid host"));
        }
        Ok(SshAddress { user, host, port })
    }

    /// The `ssh` arguments that run `docker system dial-stdio` there.
    pub fn ssh_args(&self) -> Vec<String> {
        let mut args = vec![
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            "ConnectTimeout=30".to_string(),
            "-T".to_string(),
        ];
        if let Some(user) = &self.user {
            args.extend(["-l".to_string(), user.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".to_string(), port.to_string()]);
        }
        args.extend([
            "--".to_string(),
            self.host.clone(),
            "docker".to_string(),
            "system".to_string(),
            "dial-stdio".to_string(),
        ]);
        args
    }
}

/// A private Unix socket whose connections go through `ssh` to a remote
/// engine. Dropping it stops accepting and removes the socket's folder.
#[derive(Debug)]
pub struct SshTunnel {
    dir: tempfile::TempDir,
    accept: JoinHandle<()>,
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SshTunnel {
    /// Serves a socket for `address` (on the current tokio runtime).
    ///
    /// # Errors
    /// When the folder or the socket cannot be made.
    pub fn start(address: &SshAddress) -> std::io::Result<SshTunnel> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("drydock-ssh-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let listener = UnixListener::bind(dir.path().join("engine.sock"))?;
        let args = address.ssh_args();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let args = args.clone();
                tokio::spawn(async move {
                    let child = tokio::process::Command::new("ssh")
                        .args(&args)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .kill_on_drop(true)
                        .spawn();
                    let mut child = match child {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("cannot run ssh: {e}");
                            return;
                        }
                    };
                    let (Some(stdin), Some(stdout), stderr) =
                        (child.stdin.take(), child.stdout.take(), child.stderr.take())
                    else {
                        return;
                    };
                    let mut remote = tokio::io::join(stdout, stdin);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut stream, &mut remote).await {
                        tracing::debug!("ssh connection ended: {e}");
                    }
                    drop(remote);
                    let _ = child.start_kill();
                    if let Some(mut stderr) = stderr {
                        use tokio::io::AsyncReadExt;
                        let mut text = String::new();
                        let _ = (&mut stderr).take(4096).read_to_string(&mut text).await;
                        if !text.trim().is_empty() {
                            tracing::warn!("ssh: {}", text.trim());
                        }
                    }
                    let _ = child.wait().await;
                });
            }
        });
        Ok(SshTunnel { dir, accept })
    }

    /// The `unix://` address bollard connects to.
    pub fn socket(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("engine.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_the_docker_cli_reads_them() {
        let a = SshAddress::parse("ssh://deploy@build-1.example:2222").unwrap();
        assert_eq!(a.user.as_deref(), Some("deploy"));
        assert_eq!(a.host, "build-1.example");
        assert_eq!(a.port, Some(2222));
        assert_eq!(
            a.ssh_args()[5..],
            [
                "-l",
                "deploy",
                "-p",
                "2222",
                "--",
                "build-1.example",
                "docker",
                "system",
                "dial-stdio"
            ]
        );
        let a = SshAddress::parse("ssh://host/").unwrap();
        assert_eq!((a.user, a.host.as_str(), a.port), (None, "host", None));
        let a = SshAddress::parse("ssh://u@[::1]:22").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", Some(22)));
        for bad in [
            "ssh://",
            "ssh://@h",
            "ssh://h:port",
            "ssh://h/var/run",
            "ssh://-oProxyCommand=x",
        ] {
            assert!(SshAddress::parse(bad).is_err(), "{bad}");
        }
    }
}

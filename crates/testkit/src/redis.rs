//! [`RedisServer`]: a private `redis-server` for a test, on 127.0.0.1 and a free port, stopped
//! when dropped. Tests of the Redis store run against a real Redis, never a mock.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a server may take to answer its first `PING`.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` process of a test's own: bound to 127.0.0.1 on a free port, with no
/// persistence (`--save '' --appendonly no`) and its working directory in a fresh temporary
/// directory. Dropping it kills the process and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (the message says how to install it), or if it
    /// does not start.
    pub fn start() -> Self {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sturnus-redis-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the Redis server's temporary directory");
        // A few tries: another process may take the free port before the server binds it.
        for _ in 0..5 {
            let port = free_port();
            let child = match Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--protected-mode", "yes"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server is not installed; the Redis store's tests run a real one. \
                     install redis-server: apt-get install -y redis-server"
                ),
                Err(e) => panic!("could not start redis-server: {e}"),
            };
            let mut server = Self { child, port, dir: dir.clone() };
            if server.wait_ready() {
                return server;
            }
            // Dropping it kills it; the directory is made again for the next try.
            drop(server);
            std::fs::create_dir_all(&dir).expect("create the Redis server's temporary directory");
        }
        panic!("redis-server did not start on 127.0.0.1 (five ports tried)");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its URL, `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until it answers `PING`, in steps of a few milliseconds; false if it exited or
    /// did not answer within [`STARTUP`].
    fn wait_ready(&mut self) -> bool {
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(10);
        while waited < STARTUP {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if ping(self.addr()) {
                return true;
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "a test harness waiting for a child process to start listening"
            )]
            std::thread::sleep(step);
            waited += step;
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port no one listens on now (the OS's pick, released at once).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Whether a Redis at `addr` answers `PING` with `+PONG`.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    reader.read_line(&mut line).is_ok() && line.starts_with("+PONG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_answers_and_stops_when_dropped() {
        let server = RedisServer::start();
        let addr = server.addr();
        assert!(ping(addr));
        let other = RedisServer::start();
        assert_ne!(other.port(), server.port());
        drop(server);
        assert!(!ping(addr), "a dropped server no longer answers");
    }
}

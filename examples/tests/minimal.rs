//! The README's first command: the minimal game plays a server and two clients over real UDP
//! in one process. Every player is greeted, and each client sees both avatars walk — its own
//! moved by its commands, the other's by the other client's.

use std::process::Command;

#[test]
fn the_minimal_game_greets_players_and_syncs_their_walks() {
    // A free port: bind one, let it go, hand it to the game.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_minimal"))
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for name in ["ada", "bob"] {
        assert!(stdout.contains(&format!("{name} hears: welcome, player ")), "{stdout}");
        // Ada walks east and bob north: some moment shows both avatars moved, to each client.
        let both_moved = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} sees avatars at ")))
            .any(|seen| {
                let positions = parse(seen);
                positions.len() == 2
                    && positions.iter().any(|&(x, y)| x > 0 && y == 0)
                    && positions.iter().any(|&(x, y)| x == 0 && y > 0)
            });
        assert!(both_moved, "{name} never saw both avatars walk:\n{stdout}");
    }
}

/// `[(1, 0), (0, 2)]` → the pairs.
fn parse(seen: &str) -> Vec<(i32, i32)> {
    seen.trim_matches(|c| c == '[' || c == ']')
        .split("), (")
        .filter_map(|pair| {
            let (x, y) = pair.trim_matches(|c| c == '(' || c == ')').split_once(", ")?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect()
}

/// Lines of a child's pipe, as they come.
fn lines(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (at most a minute, against a hang) for a line containing `text`.
#[expect(clippy::disallowed_methods, reason = "a guard against a hang, not a timing")]
fn wait_for(
    lines: &std::sync::mpsc::Receiver<String>,
    text: &str,
    seen: &mut Vec<String>,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {text:?}; saw:\n{}", seen.join("\n"));
}

#[test]
fn ctrl_c_leaves_the_game_gracefully() {
    use std::process::Stdio;
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_minimal"))
        .args(["--server", &addr])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server_log = lines(server.stderr.take().unwrap());
    let mut client = Command::new(env!("CARGO_BIN_EXE_minimal"))
        .args(["--client", &addr])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let client_out = lines(client.stdout.take().unwrap());
    let mut seen = Vec::new();
    // Playing: greeted, and its avatar is there.
    wait_for(&client_out, "you hears: welcome", &mut seen);
    wait_for(&server_log, "player authenticated", &mut seen);

    // Ctrl-C: the client tells the server on its way out and exits with success.
    let pid = libc::pid_t::try_from(client.id()).unwrap();
    // SAFETY: kill(2) on the child this test spawned; it has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = client.wait().unwrap();
    // The server saw it leave because it said so, not because it went silent (a timeout).
    let left = wait_for(&server_log, "player left", &mut seen);
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "the client exited with {status:?}");
    assert!(left.contains("closed by the peer"), "{left}");
}

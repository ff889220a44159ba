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

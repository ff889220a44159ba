//! The objects example end to end: both clients see both tanks, the commands run on the
//! server, the explosions reach both clients, each hit marker only its shooter, and the
//! scoreboard converges.

const OBJECTS: &str = env!("CARGO_BIN_EXE_objects");

#[test]
fn two_clients_fire_at_each_other_and_see_the_same_world() {
    let out = std::process::Command::new(OBJECTS).args(["--shots", "2"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let count = |line: &str| text.lines().filter(|l| *l == line).count();
    for viewer in ["ada", "bob"] {
        for owner in ["ada", "bob"] {
            let whose = if owner == viewer { "mine" } else { "theirs" };
            let line = format!("[{viewer}] sees {owner}'s tank ({whose}), health 100");
            assert_eq!(count(&line), 1, "{line:?} in {text}");
        }
        assert_eq!(count(&format!("[{viewer}] boom! ada hit bob's tank")), 2, "{text}");
        assert_eq!(count(&format!("[{viewer}] boom! bob hit ada's tank")), 2, "{text}");
        // Each client's hit markers are its own: one per shot it fired.
        assert_eq!(count(&format!("[{viewer}] hit marker: 10 damage dealt")), 2, "{text}");
        assert_eq!(count(&format!("[{viewer}] final scores: ada 20, bob 20")), 1, "{text}");
    }
    assert_eq!(count("[server] ada fires a HE shell at bob"), 2, "{text}");
}

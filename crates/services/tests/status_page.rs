//! The status page as an operator sees it: `sturnusd`'s `/` loaded in headless Chromium
//! (Debian's `chromium`), its script run, and what it shows read off the rendered page.

mod common;

use std::process::Command;

use common::Sturnusd;
use sturnus_lobby::api::{CreateMatch, HostMode, JoinRequest};

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// The page after its script has run (Chromium's virtual time lets its timers fire).
fn render(url: &str) -> String {
    let browser = chromium().expect("chromium is installed");
    let profile = std::env::temp_dir().join(format!("sturnus-chromium-{}", std::process::id()));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the element with this id (`<b id="x">text</b>`).
fn shown(dom: &str, id: &str) -> String {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[start..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    rest[..rest.find('<').unwrap()].to_owned()
}

#[test]
fn the_status_page_shows_matches_players_and_the_relay() {
    if chromium().is_none() {
        assert!(
            std::env::var_os("STURNUS_REQUIRE_CHROMIUM").is_none(),
            "STURNUS_REQUIRE_CHROMIUM is set but chromium is not installed \
             (apt-get install -y chromium)"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium)");
        return;
    }
    let node = Sturnusd::start(&["--no-limits"]);
    let lobby = node.lobby();
    let request = |name: &str, host| CreateMatch {
        name: name.into(),
        size: 4,
        listed: true,
        password: None,
        attributes: Default::default(),
        region: Some("eu".into()),
        protocol_id: 1,
        host,
    };
    let direct = HostMode::Direct { address: "192.0.2.1:7777".parse().unwrap() };
    let relayed = lobby.create(&request("Relayed night", HostMode::Relay)).unwrap();
    lobby.create(&request("Direct duel", direct)).unwrap();
    lobby.create(&request("Third", direct)).unwrap();
    for _ in 0..3 {
        lobby.join(relayed.info.id, &JoinRequest::default()).unwrap();
    }
    let dom = render(&node.url());
    assert_eq!(shown(&dom, "matches"), "3", "{dom}");
    assert_eq!(shown(&dom, "players"), "3");
    assert_eq!(shown(&dom, "relay_sessions"), "0", "no host has bound to the relay yet");
    assert!(dom.contains("<td>Relayed night</td><td>3 / 4</td><td>eu</td><td>yes</td>"), "{dom}");
    assert!(dom.contains("<td>Direct duel</td><td>0 / 4</td>"), "{dom}");
    assert!(shown(&dom, "state").starts_with("store: memory"), "{dom}");

    // Live: a destroyed match leaves the page at its next refresh.
    lobby.destroy(&relayed).unwrap();
    let dom = render(&node.url());
    assert_eq!(shown(&dom, "matches"), "2");
    assert!(!dom.contains("Relayed night"));
}

#[test]
fn health_metrics_and_help() {
    let node = Sturnusd::start(&[]);
    let get = |path: &str| {
        let mut response = ureq::get(&format!("{}{path}", node.url())).call().expect("an answer");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (response.status().as_u16(), content_type, response.body_mut().read_to_string().unwrap())
    };
    let (status, _, body) = get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    node.lobby()
        .create(&CreateMatch {
            name: "metered".into(),
            size: 2,
            listed: true,
            password: None,
            attributes: Default::default(),
            region: None,
            protocol_id: 1,
            host: HostMode::Relay,
        })
        .unwrap();
    let (status, content_type, body) = get("/metrics");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert!(body.contains("# TYPE sturnus_matches gauge\nsturnus_matches 1\n"), "{body}");
    assert!(body.contains("sturnus_matches_created_total 1\n"), "{body}");
    assert!(body.contains("sturnus_api_errors_total{kind=\"not_found\"} 0\n"), "{body}");
    assert!(body.contains("# TYPE sturnus_relay_forwarded_total counter\n"), "{body}");
    // Every sample line is `name{labels} value` with an integer value.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(name.starts_with("sturnus_"), "{line}");
        value.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
    }

    let help = Command::new(env!("CARGO_BIN_EXE_sturnusd")).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in ["--http ADDR", "--relay ADDR", "--store SPEC", "--config FILE"] {
        assert!(help.contains(flag), "--help names {flag}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_sturnusd")).arg("--stroe").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown option `--stroe`"));
}

//! The NetworkManager's "scene changed" logs, at info, inside the span naming each endpoint.
//! A test binary of its own: the subscriber is the test's (`with_default`), and other tests'
//! threads logging without one would make tracing cache the callsites as disabled.

use std::time::{Duration, Instant};

use sturnus::prelude::*;

/// Ticks every manager `rounds` times, 16 ms apart.
fn pump(now: &mut Instant, managers: &mut [&mut NetworkManager], rounds: usize) {
    for _ in 0..rounds {
        for manager in managers.iter_mut() {
            manager.tick(*now).unwrap();
        }
        *now += Duration::from_millis(16);
    }
}

#[test]
fn scene_changes_are_logged_in_the_span_naming_each_endpoint() {
    let ((), logs) = sturnus_testkit::logs::capture_logs("info", || {
        let network = MemoryNetwork::new();
        let addr = "10.0.1.4:7777".parse().unwrap();
        let mut now = driver::now();
        let named = |name: &str| {
            let mut config = ManagerConfig {
                transport: TransportChoice::Memory(network.clone()),
                ..ManagerConfig::default()
            };
            config.server.name = name.into();
            config.client.name = name.into();
            NetworkManager::new(config)
        };
        let (mut server, mut client) = (named("arena"), named("ada"));
        server.start_server(addr).unwrap();
        client.start_client(addr).unwrap();
        server.change_scene("forest").unwrap();
        pump(&mut now, &mut [&mut server, &mut client], 5);
    });
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("scene changed")).collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines.iter().any(|l| l.contains("endpoint{name=arena}") && l.contains("forest")));
    assert!(lines.iter().any(|l| l.contains("endpoint{name=ada}") && l.contains("forest")));
}

//! Password guessing is throttled per source address, across connections: a guesser that
//! reconnects for every guess gets no more evaluated than the configured rate allows, the rest
//! are refused unseen and counted, and an honest client from another address still logs in.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Path, World, client_config, server_config};
use sturnus_message::{
    AuthThrottle, ClientEvent, DisconnectReason, Login, NetworkClient, PasswordAuthenticator,
    ServerConfig, ServerEvent,
};

/// A client of the world's memory network at `ip` (a fresh port each time), connecting.
fn client_from(world: &World, ip: IpAddr, port: &mut u16, login: &Login) -> NetworkClient {
    *port += 1;
    let kinds = world.server.channels().kinds().to_vec();
    let transport = world.memory().bind(SocketAddr::new(ip, *port), kinds).unwrap();
    let mut client = NetworkClient::new(client_config()).unwrap();
    client.set_credentials(login).unwrap();
    client.connect(world.now(), transport, world.addr().unwrap()).unwrap();
    client
}

fn login(name: &str, password: &str) -> Login {
    Login { name: name.into(), password: password.into() }
}

/// What a finished guess ended in, as its client saw it.
fn outcome(client: &mut NetworkClient) -> Option<DisconnectReason> {
    let mut end = None;
    while let Some(event) = client.poll_event() {
        if let ClientEvent::Disconnected(reason) = event {
            end = Some(reason);
        }
    }
    end
}

#[test]
fn guessing_is_slowed_to_the_configured_rate_and_honest_logins_pass() {
    const GUESSES: usize = 120;
    const CONCURRENT: usize = 16;
    let limit = AuthThrottle {
        per_second: 2.0,
        burst: 3,
        // Only the rate here; the backoff has its own unit tests.
        backoff_after: 1_000_000,
        ..AuthThrottle::default()
    };
    let config = ServerConfig { auth_throttle: Some(limit), ..server_config() };
    // Virtual time: the memory network has no address limits of its own to get in the way.
    let mut world = World::new(Path::Memory, config, |server| {
        server.set_authenticator(PasswordAuthenticator::new("sesame"));
    });
    world.tick = Duration::from_millis(5);
    let attacker: IpAddr = "10.9.9.9".parse().unwrap();
    let honest: IpAddr = "10.1.1.1".parse().unwrap();
    let mut port = 0;

    let start = world.now();
    let mut started = 0;
    let mut guessing: Vec<NetworkClient> = Vec::new();
    let mut outcomes: Vec<DisconnectReason> = Vec::new();
    let mut friend: Option<NetworkClient> = None;
    let done = world.run_until(|w| {
        let now = w.now();
        // Every guess on a connection of its own, sixteen at a time, as a guesser does.
        while guessing.len() < CONCURRENT && started < GUESSES {
            let guess = login("eve", &format!("guess {started}"));
            guessing.push(client_from(w, attacker, &mut port, &guess));
            started += 1;
        }
        guessing.retain_mut(|client| {
            client.update(now).unwrap();
            match outcome(client) {
                Some(reason) => {
                    outcomes.push(reason);
                    false
                }
                None => true,
            }
        });
        // While the guessing goes on, an honest player from elsewhere logs in.
        if friend.is_none() && outcomes.len() >= 2 * CONCURRENT {
            friend = Some(client_from(w, honest, &mut port, &login("ada", "sesame")));
        }
        if let Some(client) = &mut friend {
            client.update(now).unwrap();
        }
        outcomes.len() == GUESSES && friend.as_ref().is_some_and(|c| c.is_authenticated())
    });
    let elapsed = world.now() - start;
    let stats = world.server.stats();
    assert!(done, "{} of {GUESSES} guesses ended; {stats:?}", outcomes.len());

    // Every guess was answered: evaluated and rejected, or refused unseen.
    let wrong = DisconnectReason::AuthRejected("wrong password".into());
    let rejected = outcomes.iter().filter(|r| **r == wrong).count();
    let throttled: Vec<Duration> = outcomes
        .iter()
        .filter_map(|r| match r {
            DisconnectReason::AuthThrottled { retry_after } => Some(*retry_after),
            _ => None,
        })
        .collect();
    assert_eq!(rejected + throttled.len(), GUESSES, "{outcomes:?}");
    // The server counted the same.
    assert_eq!(stats.auth_requests, GUESSES as u64 + 1, "{stats:?}");
    assert_eq!(stats.auth_rejected, rejected as u64, "{stats:?}");
    assert_eq!(stats.auth_throttled, throttled.len() as u64, "{stats:?}");
    assert_eq!(stats.auth_accepted, 1, "{stats:?}");
    assert_eq!(stats.throttle_sources, 2, "{stats:?}");
    let events = world.log.server.clone();
    let throttled_events = events
        .iter()
        .filter(|e| {
            matches!(e, ServerEvent::Disconnected(_, DisconnectReason::AuthThrottled { .. }))
        })
        .count();
    assert_eq!(throttled_events, throttled.len());

    println!(
        "{rejected} of {GUESSES} guesses evaluated, {} throttled, in {elapsed:?}",
        throttled.len()
    );
    // The guesser's sixteen connections share one budget: at most the burst plus the rate
    // over the whole test were evaluated (virtual time, so exactly what the server saw) …
    let allowed = f64::from(limit.burst) + limit.per_second * elapsed.as_secs_f64();
    assert!(
        (rejected as f64) <= allowed,
        "{rejected} guesses evaluated in {elapsed:?}, over the {allowed:.1} allowed"
    );
    // … and the throttle refused no more than it had to: a guess was waiting at every moment,
    // so every token the rate refilled was spent (give or take the last one).
    assert!(
        (rejected as f64) >= allowed - 2.0,
        "{rejected} guesses evaluated in {elapsed:?}, well under the {allowed:.1} allowed"
    );
    // Without backoff, no wait is longer than one token's refill.
    assert!(!throttled.is_empty());
    for wait in &throttled {
        assert!(*wait > Duration::ZERO && *wait <= Duration::from_millis(500), "{wait:?}");
    }
}

/// A guesser that keeps failing is barred for longer and longer; the bar shows in the reason
/// its clients get.
#[test]
fn repeated_failures_back_off() {
    let limit = AuthThrottle {
        per_second: 1000.0,
        burst: 1000,
        backoff_after: 2,
        backoff_base: Duration::from_secs(300),
        backoff_max: Duration::from_secs(600),
        ..AuthThrottle::default()
    };
    let config = ServerConfig { auth_throttle: Some(limit), ..server_config() };
    let mut world = World::new(Path::Memory, config, |server| {
        server.set_authenticator(PasswordAuthenticator::new("sesame"));
    });
    let attacker: IpAddr = "10.9.9.9".parse().unwrap();
    let mut port = 0;
    let mut outcomes = Vec::new();
    let start = world.now();
    // One guess at a time: two free failures, a third that starts a 300 s bar, then refusals.
    for n in 0..5 {
        let password = if n == 4 { "sesame" } else { "guess" };
        let mut client = client_from(&world, attacker, &mut port, &login("eve", password));
        let mut end = None;
        assert!(world.run_until(|w| {
            client.update(w.now()).unwrap();
            end = outcome(&mut client);
            end.is_some() || client.is_authenticated()
        }));
        outcomes.push(end.unwrap_or(DisconnectReason::Closed));
    }
    let wrong = DisconnectReason::AuthRejected("wrong password".into());
    assert_eq!(outcomes[..3], [wrong.clone(), wrong.clone(), wrong], "{outcomes:?}");
    // Barred for 300 s from the third failure, even with the right password.
    let bar = Duration::from_secs(300);
    let elapsed = world.now() - start;
    for reason in &outcomes[3..] {
        let DisconnectReason::AuthThrottled { retry_after } = reason else {
            panic!("expected a throttle, got {outcomes:?}");
        };
        assert!(*retry_after <= bar && *retry_after >= bar - elapsed, "{retry_after:?}");
    }
    let stats = world.server.stats();
    assert_eq!((stats.auth_rejected, stats.auth_throttled, stats.auth_accepted), (3, 2, 0));
}

//! Password guessing is throttled per source address, across connections: a guesser that
//! reconnects for every guess gets no more evaluated than the configured rate allows, the rest
//! are refused unseen and counted, and an honest client from another address still logs in.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Path, World, client_config, server_config};
use sturnus_message::{
    AuthThrottle, ClientEvent, DisconnectReason, Login, NetworkClient, PasswordAuthenticator,
    ServerConfig, ServerEvent,
};
use sturnus_socket::{LoopbackNetwork, LoopbackSocket, SocketError, SocketFactory};
use sturnus_transport::AddressLimits;

/// Client sockets on the loopback network bound to one IP address (each on a fresh port).
#[derive(Debug)]
struct From {
    network: LoopbackNetwork,
    ip: IpAddr,
}

impl SocketFactory for From {
    type Socket = LoopbackSocket;

    fn server_socket(&self, bind: SocketAddr) -> Result<LoopbackSocket, SocketError> {
        self.network.bind(bind)
    }

    fn client_socket(&self, _remote: SocketAddr) -> Result<LoopbackSocket, SocketError> {
        self.network.bind(SocketAddr::new(self.ip, 0))
    }
}

fn login(name: &str, password: &str) -> Login {
    Login { name: name.into(), password: password.into() }
}

#[expect(clippy::disallowed_methods, reason = "bounds what the server's own clock can have seen")]
fn clock() -> Instant {
    Instant::now()
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
    let mut config = ServerConfig { auth_throttle: Some(limit), ..server_config() };
    // The transport's own per-address handshake limits would turn most of these connections
    // away before they could guess: the subject here is the throttle of the guesses.
    config.transport.address_limits = AddressLimits::UNLIMITED;
    let mut world = World::new(Path::Netem { seed: 7, loss: 0.0 }, config, |server| {
        server.set_authenticator(PasswordAuthenticator::new("sesame"));
    });
    let server = world.addr().unwrap();
    let attacker = From { network: world.network().clone(), ip: "10.9.9.9".parse().unwrap() };
    let honest = From { network: world.network().clone(), ip: "10.1.1.1".parse().unwrap() };

    let start = clock();
    let mut started = 0;
    let mut guessing: Vec<NetworkClient> = Vec::new();
    let mut outcomes: Vec<DisconnectReason> = Vec::new();
    let mut friend: Option<NetworkClient> = None;
    let done = world.run_until(|_| {
        // Every guess on a connection of its own, sixteen at a time, as a guesser does.
        while guessing.len() < CONCURRENT && started < GUESSES {
            let mut client = NetworkClient::new(client_config()).unwrap();
            client.set_credentials(&login("eve", &format!("guess {started}"))).unwrap();
            client.connect_on(&attacker, server).unwrap();
            guessing.push(client);
            started += 1;
        }
        guessing.retain_mut(|client| {
            client.update().unwrap();
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
            let mut client = NetworkClient::new(client_config()).unwrap();
            client.set_credentials(&login("ada", "sesame")).unwrap();
            client.connect_on(&honest, server).unwrap();
            friend = Some(client);
        }
        if let Some(client) = &mut friend {
            client.update().unwrap();
        }
        outcomes.len() == GUESSES && friend.as_ref().is_some_and(|c| c.is_authenticated())
    });
    let elapsed = start.elapsed();
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
    let events = world.log.lock().server.clone();
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
    // over the whole test were evaluated, however fast or slow the machine.
    let allowed = f64::from(limit.burst) + limit.per_second * elapsed.as_secs_f64();
    assert!(
        (rejected as f64) <= allowed,
        "{rejected} guesses evaluated in {elapsed:?}, over the {allowed:.1} allowed"
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
    let mut world = World::new(Path::Netem { seed: 8, loss: 0.0 }, config, |server| {
        server.set_authenticator(PasswordAuthenticator::new("sesame"));
    });
    let server = world.addr().unwrap();
    let attacker = From { network: world.network().clone(), ip: "10.9.9.9".parse().unwrap() };
    let mut outcomes = Vec::new();
    let start = clock();
    // One guess at a time: two free failures, a third that starts a 300 s bar, then refusals.
    for n in 0..5 {
        let mut client = NetworkClient::new(client_config()).unwrap();
        let password = if n == 4 { "sesame" } else { "guess" };
        client.set_credentials(&login("eve", password)).unwrap();
        client.connect_on(&attacker, server).unwrap();
        let mut end = None;
        assert!(world.run_until(|_| {
            client.update().unwrap();
            end = outcome(&mut client);
            end.is_some() || client.is_authenticated()
        }));
        outcomes.push(end.unwrap_or(DisconnectReason::Closed));
    }
    let wrong = DisconnectReason::AuthRejected("wrong password".into());
    assert_eq!(outcomes[..3], [wrong.clone(), wrong.clone(), wrong], "{outcomes:?}");
    // Barred for 300 s from the third failure, even with the right password.
    let bar = Duration::from_secs(300);
    let elapsed = start.elapsed();
    for reason in &outcomes[3..] {
        let DisconnectReason::AuthThrottled { retry_after } = reason else {
            panic!("expected a throttle, got {outcomes:?}");
        };
        assert!(*retry_after <= bar && *retry_after >= bar - elapsed, "{retry_after:?}");
    }
    let stats = world.server.stats();
    assert_eq!((stats.auth_rejected, stats.auth_throttled, stats.auth_accepted), (3, 2, 0));
}

//! The matchmaker's behaviour through real `sturnusd` processes, the same suite on three
//! deployments: one node with the memory store, one node on a private Redis, and two nodes
//! sharing one Redis (every call alternates between them). Plus what scaling out promises:
//! killing a node loses no match, a graceful stop keeps them, and 1,000 joiners racing across
//! nodes for 8 slots admit exactly 8.
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and sockets: the test waits on the wall clock (never asserts on it)"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::Sturnusd;
use sturnus_lobby::api::{
    CreateMatch, Created, ErrorKind, Filter, HostMode, JoinRequest, ListQuery, MatchInfo, Op,
    UpdateMatch, Value,
};
use sturnus_lobby::{LobbyClient, LobbyError};
use sturnus_testkit::RedisServer;

fn request(name: &str, size: u16) -> CreateMatch {
    CreateMatch {
        name: name.into(),
        size,
        listed: true,
        password: None,
        attributes: Default::default(),
        region: None,
        protocol_id: 7,
        host: HostMode::Direct { address: "192.0.2.7:7777".parse().unwrap() },
    }
}

fn kind<T: std::fmt::Debug>(result: Result<T, LobbyError>) -> ErrorKind {
    result.unwrap_err().kind().expect("an API error, not a transport one")
}

/// Lists until `done` accepts the page (a list on another node may lag a write by the store's
/// replication delay) or 5 s pass; the last page.
fn list_until(
    lobby: &LobbyClient,
    query: &ListQuery,
    done: impl Fn(&[MatchInfo]) -> bool,
) -> Vec<MatchInfo> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = lobby.list(query).unwrap().matches;
        if done(&page) || Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn names(page: &[MatchInfo]) -> BTreeSet<String> {
    page.iter().map(|m| m.name.clone()).collect()
}

/// The suite: `nodes` are the same service (one node, or several sharing a store); call `i`
/// goes to node `i % nodes.len()`.
fn suite(nodes: &[LobbyClient]) {
    let mut turn = 0usize;
    let mut next = || {
        turn += 1;
        &nodes[turn % nodes.len()]
    };
    let tag = format!("suite{}", std::process::id());

    // Create on one node, read and join on the others; slots count from 1.
    let created = next().create(&request(&format!("{tag} a"), 3)).unwrap();
    assert_eq!(next().get(created.info.id).unwrap().name, format!("{tag} a"));
    let first = next().join_code(created.join_code, &JoinRequest::default()).unwrap();
    let second = next().join(created.info.id, &JoinRequest::default()).unwrap();
    assert_eq!((first.slot, second.slot), (1, 2));
    assert_eq!(first.connect_token.0.len(), 2048, "a netcode connect token");
    assert_eq!(next().get(created.info.id).unwrap().players, 2);

    // Leaving frees the slot; a wrong leave token is refused; the host may drop a player.
    let mut forged = second.clone();
    forged.leave_token = first.leave_token.clone();
    assert_eq!(kind(next().leave(&forged)), ErrorKind::Unauthorized);
    next().leave(&second).unwrap();
    assert_eq!(next().get(created.info.id).unwrap().players, 1);
    next().drop_player(&created, first.slot).unwrap();
    assert_eq!(next().get(created.info.id).unwrap().players, 0);

    // Full, password, unauthorized.
    let small = next().create(&request(&format!("{tag} small"), 1)).unwrap();
    next().join(small.info.id, &JoinRequest::default()).unwrap();
    assert_eq!(kind(next().join(small.info.id, &JoinRequest::default())), ErrorKind::Full);
    let mut locked = request(&format!("{tag} locked"), 4);
    locked.password = Some("hunter2".into());
    let locked = next().create(&locked).unwrap();
    let with = |p: &str| JoinRequest { password: Some(p.into()), user_data: None };
    assert_eq!(
        kind(next().join(locked.info.id, &JoinRequest::default())),
        ErrorKind::WrongPassword
    );
    assert_eq!(kind(next().join(locked.info.id, &with("hunter3"))), ErrorKind::WrongPassword);
    assert_eq!(next().join(locked.info.id, &with("hunter2")).unwrap().slot, 1);
    let mut impostor = locked.clone();
    impostor.host_token = created.host_token.clone();
    assert_eq!(kind(next().destroy(&impostor)), ErrorKind::Unauthorized);
    assert_eq!(kind(next().heartbeat(&impostor)), ErrorKind::Unauthorized);

    // Filters on declared attributes, seen from every node.
    let mut made: Vec<Created> = Vec::new();
    for (i, (region, skill)) in
        [("eu", 100.0), ("eu", 900.0), ("us", 500.0), ("eu", 500.0)].into_iter().enumerate()
    {
        let mut r = request(&format!("{tag} f{i}"), 4);
        r.attributes.insert("s1".into(), Value::from(region));
        r.attributes.insert("n1".into(), Value::Num(skill));
        made.push(next().create(&r).unwrap());
    }
    let query = ListQuery {
        name_contains: Some(format!("{} F", tag.to_uppercase())),
        filters: vec![
            Filter::new("s1", Op::Eq, "eu"),
            Filter::new("n1", Op::Ge, 200.0),
            Filter::new("n1", Op::Le, 900.0),
        ],
        ..ListQuery::default()
    };
    let want: BTreeSet<String> = [format!("{tag} f1"), format!("{tag} f3")].into();
    for _ in 0..nodes.len() {
        let page = list_until(next(), &query, |p| names(p) == want);
        assert_eq!(names(&page), want);
    }
    // An undeclared attribute cannot be filtered on; a declared one only with its type.
    let bad = ListQuery { filters: vec![Filter::new("mood", Op::Eq, "happy")], ..query.clone() };
    assert_eq!(kind(next().list(&bad)), ErrorKind::BadRequest);
    let bad = ListQuery { filters: vec![Filter::new("n1", Op::Eq, "high")], ..query.clone() };
    assert_eq!(kind(next().list(&bad)), ErrorKind::BadRequest);

    // Updates move a match between filters; unlisting hides it; lists follow on every node.
    let update =
        UpdateMatch { listed: None, attributes: [("n1".to_owned(), Value::Num(50.0))].into() };
    next().update(&made[3], &update).unwrap();
    let want: BTreeSet<String> = [format!("{tag} f1")].into();
    for _ in 0..nodes.len() {
        assert_eq!(names(&list_until(next(), &query, |p| names(p) == want)), want);
    }
    next().update(&made[1], &UpdateMatch { listed: Some(false), ..Default::default() }).unwrap();
    for _ in 0..nodes.len() {
        assert!(list_until(next(), &query, <[MatchInfo]>::is_empty).is_empty());
    }
    // Unlisted is still joinable by code.
    assert_eq!(next().join_code(made[1].join_code, &JoinRequest::default()).unwrap().slot, 1);

    // A new code retires the old one; a heartbeat moves the expiry; destroy ends it.
    let code = next().new_code(&made[0]).unwrap();
    assert_ne!(code, made[0].join_code);
    assert_eq!(
        kind(next().join_code(made[0].join_code, &JoinRequest::default())),
        ErrorKind::NotFound
    );
    assert_eq!(next().join_code(code, &JoinRequest::default()).unwrap().info.id, made[0].info.id);
    let before = next().get(made[0].info.id).unwrap().expires_unix;
    std::thread::sleep(Duration::from_millis(1100));
    assert!(next().heartbeat(&made[0]).unwrap().expires_unix > before);
    next().destroy(&made[0]).unwrap();
    assert_eq!(kind(next().get(made[0].info.id)), ErrorKind::NotFound);
    assert_eq!(kind(next().join_code(code, &JoinRequest::default())), ErrorKind::NotFound);

    // Quick-join joins a match the query finds, else creates one.
    let quick = sturnus_lobby::api::QuickJoin {
        query: ListQuery { name_contains: Some(format!("{tag} f2")), ..ListQuery::default() },
        join: JoinRequest::default(),
        create: request(&format!("{tag} fresh"), 2),
    };
    match next().quick_join(&quick).unwrap() {
        sturnus_lobby::api::QuickJoined::Joined(j) => assert_eq!(j.info.id, made[2].info.id),
        other => panic!("expected to join f2, got {other:?}"),
    }
    let quick = sturnus_lobby::api::QuickJoin {
        query: ListQuery { name_contains: Some(format!("{tag} nothing")), ..ListQuery::default() },
        ..quick
    };
    assert!(matches!(
        next().quick_join(&quick).unwrap(),
        sturnus_lobby::api::QuickJoined::Created(_)
    ));

    race(nodes, 1000);
}

/// `racers` joiners on their own threads and connections, spread over `nodes`, released at
/// once at one 8-slot match: exactly 8 get in, with slots 1 to 8.
fn race(nodes: &[LobbyClient], racers: usize) {
    let target = nodes[0].create(&request("race", 8)).unwrap();
    let barrier = Arc::new(Barrier::new(racers));
    let full = AtomicUsize::new(0);
    let slots = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for i in 0..racers {
            let (barrier, full, slots, target) = (Arc::clone(&barrier), &full, &slots, &target);
            let base = nodes[i % nodes.len()].base().to_owned();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn_scoped(scope, move || {
                    let lobby = LobbyClient::new(&base).unwrap();
                    barrier.wait();
                    match lobby.join(target.info.id, &JoinRequest::default()) {
                        Ok(joined) => slots.lock().unwrap().push(joined.slot),
                        Err(e) if e.kind() == Some(ErrorKind::Full) => {
                            full.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("a racer failed otherwise: {e}"),
                    }
                })
                .unwrap();
        }
    });
    let mut slots = slots.into_inner().unwrap();
    slots.sort_unstable();
    assert_eq!(slots, (1..=8).collect::<Vec<u16>>(), "exactly 8 joined, slots 1 to 8");
    assert_eq!(full.into_inner(), racers - 8);
    for node in nodes {
        assert_eq!(node.get(target.info.id).unwrap().players, 8);
    }
}

#[test]
fn one_node_with_the_memory_store() {
    let node = Sturnusd::start(&["--no-limits"]);
    suite(&[node.lobby()]);
}

#[test]
fn one_node_on_redis() {
    let redis = RedisServer::start();
    let node = Sturnusd::start(&["--no-limits", "--store", &redis.url()]);
    suite(&[node.lobby()]);
}

#[test]
fn two_nodes_sharing_one_redis() {
    let redis = RedisServer::start();
    let a = Sturnusd::start(&["--no-limits", "--store", &redis.url()]);
    let b = Sturnusd::start(&["--no-limits", "--store", &redis.url()]);
    suite(&[a.lobby(), b.lobby()]);
}

#[test]
fn killing_a_node_loses_no_match_and_a_graceful_stop_keeps_them() {
    let redis = RedisServer::start();
    let a = Sturnusd::start(&["--no-limits", "--store", &redis.url()]);
    let b = Sturnusd::start(&["--no-limits", "--store", &redis.url()]);
    let made: Vec<Created> =
        (0..20).map(|i| a.lobby().create(&request(&format!("kept {i}"), 4)).unwrap()).collect();
    a.kill();
    let query =
        ListQuery { name_contains: Some("kept".into()), page_size: 100, ..Default::default() };
    let all: BTreeSet<String> = (0..20).map(|i| format!("kept {i}")).collect();
    assert_eq!(names(&list_until(&b.lobby(), &query, |p| names(p) == all)), all);
    for m in &made {
        assert_eq!(b.lobby().join_code(m.join_code, &JoinRequest::default()).unwrap().slot, 1);
    }
    // A graceful stop exits with success and leaves the matches for the others.
    assert!(b.terminate(), "sturnusd exits with success on SIGTERM");
    let c = Sturnusd::start(&["--no-limits", "--store", &redis.url()]);
    assert_eq!(names(&list_until(&c.lobby(), &query, |p| names(p) == all)), all);
    for m in &made {
        assert_eq!(c.lobby().get(m.info.id).unwrap().players, 1);
        // The host's token still works on a node that never saw the match created.
        c.lobby().heartbeat(m).unwrap();
    }
}

#[test]
fn join_code_lookups_are_rate_limited_per_address() {
    // The default limit on code lookups (60 a minute, a burst of 120), and a general limit
    // high enough not to interfere.
    let dir = std::env::temp_dir().join(format!("sturnusd-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("limits.toml");
    std::fs::write(&config, "[limits]\nrequests_per_second = 100000.0\n").unwrap();
    let node = Sturnusd::start(&["--config", config.to_str().unwrap()]);
    let lobby = node.lobby();
    let created = lobby.create(&request("limited", 4)).unwrap();
    let mut refused = 0;
    let mut missed = 0;
    for i in 0..200u64 {
        let guess = sturnus_lobby::JoinCode::from_bits(i * 7919 + 1);
        match lobby.join_code(guess, &JoinRequest::default()) {
            Err(e) if e.kind() == Some(ErrorKind::RateLimited) => refused += 1,
            Err(e) if e.kind() == Some(ErrorKind::NotFound) => missed += 1,
            other => panic!("a guess should miss or be refused: {other:?}"),
        }
    }
    assert!(missed <= 61, "the join burst allows about 60 guesses, {missed} were looked up");
    assert!(refused >= 79, "the rest are refused: {refused}");
    // Even the right code is refused while the address is over its limit.
    assert_eq!(
        kind(lobby.join_code(created.join_code, &JoinRequest::default())),
        ErrorKind::RateLimited
    );
    // A join by id spends the same per-address join budget (30 a minute, a burst of 60),
    // which the guesses used up: joins nobody uses cannot fill a service's matches.
    assert_eq!(kind(lobby.join(created.info.id, &JoinRequest::default())), ErrorKind::RateLimited);
    // Other calls are not limited by the code and join buckets.
    assert_eq!(lobby.get(created.info.id).unwrap().name, "limited");
}

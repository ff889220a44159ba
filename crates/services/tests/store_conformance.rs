//! The store conformance suite: one set of behaviours, written once against the `Store` trait,
//! run against the memory store, one Redis store node on a private `redis-server`, and two
//! Redis store nodes sharing one (writes on one node, reads and lists on the other).
//!
//! Lists across two nodes lag by the replication delay: the suite polls node B's lists until
//! they match what the exact calls say, with a deadline (never a fixed sleep). A single node
//! must answer right on the first try (it reads its own writes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sturnus_lobby::JoinCode;
use sturnus_lobby::api::{Filter, HostMode, ListQuery, MatchId, MatchInfo, Op, Value};
use sturnus_services::store::{
    Digest, JoinOutcome, JoinTicket, MemoryStore, RedisStore, Schema, Store, StoreCounts,
    StoreError, StoredMatch,
};
use sturnus_testkit::RedisServer;

/// The suite's clock: Unix seconds.
const NOW: u64 = 1_700_000_000;
/// How long node B's lists may take to catch up with node A's writes.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(10);

/// The stores a behaviour runs on: `a()` writes, `b()` reads (the same store but with two
/// Redis nodes).
struct Nodes<S> {
    nodes: Vec<S>,
    /// Whether `b()` is another node (its lists may lag).
    replicated: bool,
    /// Dropped after the nodes.
    _server: Option<RedisServer>,
}

impl<S: Store> Nodes<S> {
    fn a(&self) -> &S {
        &self.nodes[0]
    }

    fn b(&self) -> &S {
        &self.nodes[self.nodes.len() - 1]
    }

    /// Every page of `query` on node B (page size `query.page_size`), once B's lists show
    /// exactly the matches among `ids` that `get` and [`ListQuery::accepts`] say they should,
    /// with the infos `get` gives. Panics on a duplicate, a gap, a wrong `more` or a
    /// difference that outlasts the deadline.
    async fn list_all(&self, query: &ListQuery, now: u64, ids: &[MatchId]) -> Vec<MatchInfo> {
        let mut expected = BTreeMap::new();
        for &id in ids {
            if let Some(m) = self.a().get(id, now).await.unwrap()
                && query.accepts(&m.info)
            {
                expected.insert(id, m.info);
            }
        }
        let mut tries = 0u32;
        let started = tokio::time::Instant::now();
        loop {
            tries += 1;
            let pages = pages(self.b(), query, now).await;
            let got: BTreeMap<MatchId, MatchInfo> =
                pages.iter().map(|m| (m.id, m.clone())).collect();
            assert_eq!(got.len(), pages.len(), "a match shows twice in the pages of {query:?}");
            if got == expected {
                return pages;
            }
            if !self.replicated || started.elapsed() > REPLICATION_DEADLINE {
                panic!(
                    "the list of {query:?} (try {tries}) shows {:?}, expected {:?}",
                    got.keys().collect::<Vec<_>>(),
                    expected.keys().collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Polls node B until `list` of `query` holds exactly `ids` (in any order).
    async fn list_ids(&self, query: &ListQuery, now: u64) -> BTreeSet<MatchId> {
        pages(self.b(), query, now).await.into_iter().map(|m| m.id).collect()
    }

    /// Waits until node B's list of `query` equals `want` (at once on one node).
    async fn await_list(&self, query: &ListQuery, now: u64, want: &[MatchId]) {
        let want: BTreeSet<MatchId> = want.iter().copied().collect();
        let started = tokio::time::Instant::now();
        loop {
            let got = self.list_ids(query, now).await;
            if got == want {
                return;
            }
            if !self.replicated || started.elapsed() > REPLICATION_DEADLINE {
                panic!("the list of {query:?} shows {got:?}, expected {want:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every page of a query, checking `more` and that no page is empty before the last.
async fn pages<S: Store>(store: &S, query: &ListQuery, now: u64) -> Vec<MatchInfo> {
    let mut all = Vec::new();
    for page in 0u32.. {
        let q = ListQuery { page, ..query.clone() };
        let got = store.list(&q, now).await.unwrap();
        assert!(got.matches.len() <= usize::from(query.page_size), "a page is too long");
        let full = got.matches.len() == usize::from(query.page_size);
        all.extend(got.matches);
        if !got.more {
            let after = store.list(&ListQuery { page: page + 1, ..query.clone() }, now).await;
            assert!(after.unwrap().matches.is_empty(), "a page after `more: false` has matches");
            return all;
        }
        assert!(full, "page {page} of {query:?} says `more` but is not full");
    }
    unreachable!()
}

impl Nodes<RedisStore> {
    /// Every node followed the change stream without missing an event (each loaded the state
    /// once, at start), once its lists have caught up with the last write.
    async fn assert_no_reloads(&self) {
        // A node notices a gap only at the next event: write one more and wait for it.
        let marker = MatchId(u64::MAX - 1);
        self.a().create(new_match(marker.0)).await.unwrap();
        let query = ListQuery { name_contains: Some(format!("Match {}", marker.0)), ..q() };
        self.await_list(&query, NOW, &[marker]).await;
        for (i, node) in self.nodes.iter().enumerate() {
            assert_eq!(node.reloads(), 1, "node {i} missed events and reloaded");
        }
    }
}

fn memory() -> Nodes<MemoryStore> {
    Nodes { nodes: vec![MemoryStore::new(Schema::default())], replicated: false, _server: None }
}

async fn redis(nodes: usize) -> Nodes<RedisStore> {
    let server = RedisServer::start();
    let mut stores = Vec::new();
    for _ in 0..nodes {
        stores.push(RedisStore::connect(&server.url(), Schema::default()).await.unwrap());
    }
    Nodes { nodes: stores, replicated: nodes > 1, _server: Some(server) }
}

/// A digest made of one byte.
fn digest(b: u8) -> Digest {
    [b; 32]
}

/// A listed, open, direct match of size 8 with no attributes, expiring at `NOW + 60`.
fn new_match(id: u64) -> StoredMatch {
    StoredMatch {
        info: MatchInfo {
            id: MatchId(id),
            name: format!("Match {id}"),
            size: 8,
            players: 0,
            listed: true,
            has_password: false,
            attributes: BTreeMap::new(),
            region: None,
            relayed: false,
            created_unix: NOW,
            expires_unix: NOW + 60,
        },
        code: JoinCode::from_bits(id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        host_token: digest(0xAA),
        password: None,
        private_key: std::array::from_fn(|i| u8::try_from(i).unwrap()),
        protocol_id: 0xFEDC_BA98_7654_3211,
        host: HostMode::Direct { address: "203.0.113.7:40000".parse().unwrap() },
        server_address: std::net::SocketAddr::from(([192, 0, 2, 1], 7777)),
        relay_session: None,
        next_slot: 1,
        members: BTreeMap::new(),
    }
}

fn with_password(mut m: StoredMatch, pw: u8) -> StoredMatch {
    m.password = Some(digest(pw));
    m.info.has_password = true;
    m
}

fn ticket(password: Option<u8>, leave: u8, now: u64) -> JoinTicket {
    JoinTicket { password: password.map(digest), leave_token: digest(leave), now_unix: now }
}

fn joined_slot(outcome: JoinOutcome) -> u16 {
    match outcome {
        JoinOutcome::Joined { slot, joined } => {
            assert!(joined.members.contains_key(&slot), "the joined match holds the joiner");
            slot
        }
        other => panic!("expected a join, got {other:?}"),
    }
}

fn attrs(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

async fn create_get_find_code<S: Store>(n: &Nodes<S>) {
    let mut m = new_match(1);
    m.info.attributes = attrs(&[
        ("s1", Value::from("dust")),
        ("n1", Value::Num(0.1 + 0.2)),
        ("n2", Value::Num(-1e300)),
        ("extra", Value::from("kept")),
    ]);
    m.info.region = Some("eu-west".into());
    m.relay_session = Some(77);
    m.host = HostMode::Relay;
    let m = with_password(m, 9);
    n.a().create(m.clone()).await.unwrap();
    // Exact round trip, every bit (u64 protocol id, float attributes, keys), on both nodes.
    assert_eq!(n.a().get(MatchId(1), NOW).await.unwrap(), Some(m.clone()));
    assert_eq!(n.b().get(MatchId(1), NOW).await.unwrap(), Some(m.clone()));
    assert_eq!(n.b().find_code(m.code, NOW).await.unwrap(), Some(MatchId(1)));
    assert_eq!(n.b().get(MatchId(2), NOW).await.unwrap(), None);
    assert_eq!(n.b().find_code(new_match(2).code, NOW).await.unwrap(), None);
    // Collisions: the caller draws again.
    let mut same_id = new_match(1);
    same_id.code = new_match(3).code;
    assert!(matches!(n.b().create(same_id).await, Err(StoreError::IdTaken)));
    let mut same_code = new_match(2);
    same_code.code = m.code;
    assert!(matches!(n.b().create(same_code).await, Err(StoreError::CodeTaken)));
    assert_eq!(n.a().get(MatchId(2), NOW).await.unwrap(), None, "a refused create adds nothing");
    n.b().create(new_match(2)).await.unwrap();
    assert_eq!(n.a().find_code(new_match(2).code, NOW).await.unwrap(), Some(MatchId(2)));
    assert_eq!(n.a().counts(NOW).await.unwrap(), StoreCounts { matches: 2, players: 0 });
    assert!(matches!(n.a().kind(), "memory" | "redis"));
}

/// The matches the list tests filter: names, regions, passwords, sizes, players, listing and
/// attributes of every kind.
async fn populate<S: Store>(n: &Nodes<S>) -> Vec<MatchId> {
    let maps = ["dust", "inferno", "nuke", "Mirage", "vertigo"];
    let modes = ["ctf", "dm", "koth"];
    let regions = [Some("eu-west"), Some("us-east"), None];
    let mut ids = Vec::new();
    for i in 1..=60u64 {
        let mut m = new_match(i);
        let k = usize::try_from(i).unwrap();
        m.info.name = match i % 4 {
            0 => format!("Friday NIGHT #{i}"),
            1 => format!("friday night {i}"),
            2 => format!("Casual {i}"),
            _ => format!("ranked-{i}"),
        };
        m.info.size = u16::try_from(2 + i % 5).unwrap();
        m.info.region = regions[k % 3].map(str::to_owned);
        m.info.listed = i % 11 != 0;
        let mut a = vec![
            ("s1", Value::from(maps[k % 5])),
            ("n1", Value::Num(f64::from(u32::try_from(i * 37 % 100).unwrap()))),
            ("n2", Value::Num(f64::from(u32::try_from(i % 7).unwrap()) - 3.5)),
        ];
        if i % 3 != 0 {
            a.push(("s2", Value::from(modes[k % 3])));
        }
        if i % 10 == 0 {
            // A declared string attribute holding a number, and vice versa: no filter of the
            // other type passes them.
            a.push(("s3", Value::Num(5.0)));
            a.push(("n3", Value::from("five")));
        } else {
            a.push(("s3", Value::from("x")));
            a.push(("n3", Value::Num(5.0)));
        }
        if i == 7 {
            a.push(("n4", Value::Num(-0.0)));
        } else if i == 8 {
            a.push(("n4", Value::Num(0.0)));
        }
        m.info.attributes = attrs(&a);
        let m = if i % 6 == 0 { with_password(m, 1) } else { m };
        n.a().create(m).await.unwrap();
        // Some players: free slots vary.
        for p in 0..(i % 4) {
            let pw = (i % 6 == 0).then_some(1);
            let out = n.a().join(MatchId(i), &ticket(pw, u8::try_from(p).unwrap(), NOW)).await;
            assert!(matches!(out.unwrap(), JoinOutcome::Joined { .. } | JoinOutcome::Full));
        }
        ids.push(MatchId(i));
    }
    ids
}

fn q() -> ListQuery {
    ListQuery { page_size: 100, min_free_slots: 0, ..ListQuery::default() }
}

fn filtered(filters: Vec<Filter>) -> ListQuery {
    ListQuery { filters, ..q() }
}

async fn list_filters<S: Store>(n: &Nodes<S>) {
    let ids = populate(n).await;
    let count = |v: &Vec<MatchInfo>| v.len();
    // Hand-checked anchors, so the brute-force oracle cannot be trivially empty.
    let all = n.list_all(&q(), NOW, &ids).await;
    assert_eq!(count(&all), 55, "60 matches, 5 unlisted");
    let friday = ListQuery { name_contains: Some("FRIDAY night".into()), ..q() };
    let got = n.list_all(&friday, NOW, &ids).await;
    assert_eq!(count(&got), 28, "names match whatever their case");
    let eu = ListQuery { region: Some("eu-west".into()), ..q() };
    assert!(
        n.list_all(&eu, NOW, &ids).await.iter().all(|m| m.region.as_deref() == Some("eu-west"))
    );
    let open = ListQuery { hide_passworded: true, ..q() };
    assert!(n.list_all(&open, NOW, &ids).await.iter().all(|m| !m.has_password));
    let roomy = ListQuery { min_free_slots: 3, ..q() };
    assert!(n.list_all(&roomy, NOW, &ids).await.iter().all(|m| m.free_slots() >= 3));
    let zero = filtered(vec![Filter::new("n4", Op::Eq, 0.0)]);
    assert_eq!(count(&n.list_all(&zero, NOW, &ids).await), 2, "-0.0 equals 0.0");
    let dust = filtered(vec![Filter::new("s1", Op::Eq, "dust")]);
    assert!(!n.list_all(&dust, NOW, &ids).await.is_empty());

    // Every operator on strings and numbers, alone and combined, against the oracle.
    let ops = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge];
    let mut queries = Vec::new();
    for op in ops {
        for v in ["dust", "Mirage", "nuke", "a", "zzz"] {
            queries.push(filtered(vec![Filter::new("s1", op, v)]));
        }
        queries.push(filtered(vec![Filter::new("s2", op, "dm")]));
        queries.push(filtered(vec![Filter::new("s3", op, "x")]));
        for v in [0.0, 37.0, 50.5, 99.0, -1.0] {
            queries.push(filtered(vec![Filter::new("n1", op, v)]));
        }
        queries.push(filtered(vec![Filter::new("n2", op, -0.5)]));
        queries.push(filtered(vec![Filter::new("n3", op, 5.0)]));
        queries.push(filtered(vec![Filter::new("n4", op, -0.0)]));
        queries.push(filtered(vec![Filter::new("n1", op, "37")]));
        queries.push(filtered(vec![Filter::new("s1", op, 1.0)]));
        queries.push(filtered(vec![Filter::new("undeclared", op, 1.0)]));
    }
    queries.push(filtered(vec![Filter::new("n1", Op::Ge, 20.0), Filter::new("n1", Op::Lt, 60.0)]));
    queries.push(filtered(vec![Filter::new("n1", Op::Gt, 60.0), Filter::new("n1", Op::Lt, 20.0)]));
    queries.push(filtered(vec![Filter::new("n1", Op::Gt, 37.0), Filter::new("n1", Op::Le, 37.0)]));
    queries.push(filtered(vec![Filter::new("n1", Op::Ge, 37.0), Filter::new("n1", Op::Le, 37.0)]));
    queries.push(filtered(vec![Filter::new("n1", Op::Eq, f64::NAN)]));
    queries.push(filtered(vec![Filter::new("n1", Op::Ne, f64::NAN)]));
    queries
        .push(filtered(vec![Filter::new("s1", Op::Ge, "dust"), Filter::new("s1", Op::Lt, "nuke")]));
    queries
        .push(filtered(vec![Filter::new("s1", Op::Gt, "nuke"), Filter::new("s1", Op::Lt, "dust")]));
    queries.push(ListQuery {
        name_contains: Some("night".into()),
        region: Some("us-east".into()),
        min_free_slots: 1,
        hide_passworded: true,
        filters: vec![
            Filter::new("s1", Op::Ne, "nuke"),
            Filter::new("n1", Op::Ge, 10.0),
            Filter::new("n2", Op::Le, 1.0),
            Filter::new("s2", Op::Eq, "ctf"),
        ],
        ..q()
    });
    queries.push(ListQuery {
        region: Some("eu-west".into()),
        filters: vec![Filter::new("s1", Op::Eq, "inferno"), Filter::new("n1", Op::Lt, 80.0)],
        ..q()
    });
    queries.push(ListQuery { region: Some("mars".into()), ..q() });
    queries.push(ListQuery { min_free_slots: 6, ..q() });
    queries.push(ListQuery::default());
    let mut nonempty = 0;
    for query in &queries {
        nonempty += usize::from(!n.list_all(query, NOW, &ids).await.is_empty());
    }
    assert!(nonempty > queries.len() / 2, "most queries find something ({nonempty})");
    // Unlisted matches never show, whatever the filter.
    for query in &queries {
        assert!(n.list_ids(query, NOW).await.iter().all(|id| id.0 % 11 != 0));
    }
}

async fn list_paging<S: Store>(n: &Nodes<S>) {
    let ids = populate(n).await;
    for size in [1u16, 7, 10, 20] {
        for query in [
            q(),
            filtered(vec![Filter::new("n1", Op::Ge, 30.0)]),
            filtered(vec![Filter::new("s1", Op::Ne, "dust")]),
            ListQuery { region: Some("eu-west".into()), ..q() },
        ] {
            // list_all walks the pages and checks no duplicates, no gaps and `more`.
            let query = ListQuery { page_size: size, ..query };
            let walked = n.list_all(&query, NOW, &ids).await;
            assert!(!walked.is_empty());
            // The order is stable: walking again gives the same sequence.
            assert_eq!(pages(n.b(), &query, NOW).await, walked);
        }
    }
    // A page far beyond the end is empty.
    let far = ListQuery { page: u32::MAX, page_size: 100, ..q() };
    let got = n.b().list(&far, NOW).await.unwrap();
    assert!(got.matches.is_empty() && !got.more);
}

async fn join_slots_and_passwords<S: Store>(n: &Nodes<S>) {
    let mut open = new_match(1);
    open.info.size = 3;
    n.a().create(open).await.unwrap();
    n.a().create(with_password(new_match(2), 42)).await.unwrap();
    // Slots are numbered 1, 2, … whichever node joins.
    assert_eq!(joined_slot(n.a().join(MatchId(1), &ticket(None, 1, NOW)).await.unwrap()), 1);
    assert_eq!(joined_slot(n.b().join(MatchId(1), &ticket(None, 2, NOW)).await.unwrap()), 2);
    // A password given to an open match is ignored.
    let JoinOutcome::Joined { slot: 3, joined } =
        n.a().join(MatchId(1), &ticket(Some(5), 3, NOW)).await.unwrap()
    else {
        panic!("the third joiner gets slot 3");
    };
    assert_eq!(joined.info.players, 3);
    assert_eq!(joined.members.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(joined.members[&2], digest(2));
    assert_eq!(n.b().join(MatchId(1), &ticket(None, 4, NOW)).await.unwrap(), JoinOutcome::Full);
    assert_eq!(n.b().get(MatchId(1), NOW).await.unwrap().unwrap().info.players, 3);
    // Passwords: wrong and missing refused, right accepted.
    let pw = MatchId(2);
    assert_eq!(
        n.b().join(pw, &ticket(Some(41), 1, NOW)).await.unwrap(),
        JoinOutcome::WrongPassword
    );
    assert_eq!(n.b().join(pw, &ticket(None, 1, NOW)).await.unwrap(), JoinOutcome::WrongPassword);
    assert_eq!(
        n.b().get(pw, NOW).await.unwrap().unwrap().info.players,
        0,
        "refusals change nothing"
    );
    assert_eq!(joined_slot(n.b().join(pw, &ticket(Some(42), 1, NOW)).await.unwrap()), 1);
    // No such match; an expired one.
    assert_eq!(n.a().join(MatchId(9), &ticket(None, 1, NOW)).await.unwrap(), JoinOutcome::NotFound);
    let expired = ticket(Some(42), 2, NOW + 60);
    assert_eq!(n.a().join(pw, &expired).await.unwrap(), JoinOutcome::NotFound);
    assert_eq!(
        n.a().join(pw, &ticket(Some(42), 2, NOW + 59)).await.unwrap(),
        JoinOutcome::Joined {
            slot: 2,
            joined: Box::new(n.a().get(pw, NOW).await.unwrap().unwrap())
        },
        "live until its expiry second"
    );
    assert_eq!(n.a().counts(NOW).await.unwrap(), StoreCounts { matches: 2, players: 5 });
    // The free slots lists see follow the joins.
    let joinable = ListQuery { page_size: 100, ..ListQuery::default() };
    n.await_list(&joinable, NOW, &[MatchId(2)]).await;
}

async fn leave_and_drop<S: Store>(n: &Nodes<S>) {
    let mut m = new_match(1);
    m.info.size = 2;
    n.a().create(m).await.unwrap();
    assert_eq!(joined_slot(n.a().join(MatchId(1), &ticket(None, 1, NOW)).await.unwrap()), 1);
    assert_eq!(joined_slot(n.a().join(MatchId(1), &ticket(None, 2, NOW)).await.unwrap()), 2);
    let id = MatchId(1);
    // A wrong token, a wrong slot, no match: nothing leaves.
    assert!(!n.b().leave(id, 1, Some(digest(2)), NOW).await.unwrap());
    assert!(!n.b().leave(id, 3, Some(digest(1)), NOW).await.unwrap());
    assert!(!n.b().leave(MatchId(5), 1, None, NOW).await.unwrap());
    assert_eq!(n.b().get(id, NOW).await.unwrap().unwrap().info.players, 2);
    // The right token.
    assert!(n.b().leave(id, 1, Some(digest(1)), NOW).await.unwrap());
    assert!(!n.b().leave(id, 1, Some(digest(1)), NOW).await.unwrap(), "once");
    let m = n.a().get(id, NOW).await.unwrap().unwrap();
    assert_eq!((m.info.players, m.members.keys().copied().collect::<Vec<_>>()), (1, vec![2]));
    // Slots are not reused: the next joiner gets 3.
    assert_eq!(joined_slot(n.b().join(id, &ticket(None, 3, NOW)).await.unwrap()), 3);
    // The host drops a player: no token needed.
    assert!(n.a().leave(id, 2, None, NOW).await.unwrap());
    let m = n.b().get(id, NOW).await.unwrap().unwrap();
    assert_eq!(m.members.keys().copied().collect::<Vec<_>>(), vec![3]);
    assert_eq!(n.b().counts(NOW).await.unwrap(), StoreCounts { matches: 1, players: 1 });
    // No leaving an expired match.
    assert!(!n.a().leave(id, 3, None, NOW + 60).await.unwrap());
    let joinable = ListQuery { page_size: 100, min_free_slots: 1, ..ListQuery::default() };
    n.await_list(&joinable, NOW, &[id]).await;
}

async fn heartbeat_expiry_and_reap<S: Store>(n: &Nodes<S>) {
    for i in 1..=3 {
        n.a().create(new_match(i)).await.unwrap();
    }
    n.a().join(MatchId(1), &ticket(None, 1, NOW)).await.unwrap();
    n.a().join(MatchId(2), &ticket(None, 1, NOW)).await.unwrap();
    // A heartbeat moves match 1's expiry to NOW + 120.
    let info = n.b().heartbeat(MatchId(1), NOW + 120, NOW + 30).await.unwrap().unwrap();
    assert_eq!(info.expires_unix, NOW + 120);
    assert_eq!(n.a().get(MatchId(1), NOW).await.unwrap().unwrap().info.expires_unix, NOW + 120);
    assert_eq!(n.b().heartbeat(MatchId(9), NOW + 120, NOW).await.unwrap(), None);
    let later = NOW + 60;
    // At NOW + 60 matches 2 and 3 have expired: gone for every call, before any reap.
    let all = ListQuery { page_size: 100, min_free_slots: 0, ..ListQuery::default() };
    n.await_list(&all, NOW + 59, &[MatchId(1), MatchId(2), MatchId(3)]).await;
    n.await_list(&all, later, &[MatchId(1)]).await;
    for node in [n.a(), n.b()] {
        assert!(node.get(MatchId(1), later).await.unwrap().is_some());
        assert_eq!(node.get(MatchId(2), later).await.unwrap(), None);
        assert_eq!(node.find_code(new_match(2).code, later).await.unwrap(), None);
        assert_eq!(
            node.join(MatchId(2), &ticket(None, 2, later)).await.unwrap(),
            JoinOutcome::NotFound
        );
        assert!(!node.leave(MatchId(2), 1, None, later).await.unwrap());
        assert_eq!(node.heartbeat(MatchId(2), later + 60, later).await.unwrap(), None);
        assert_eq!(
            node.update(MatchId(2), Some(true), &BTreeMap::new(), later).await.unwrap(),
            None
        );
        assert!(!node.replace_code(MatchId(2), new_match(20).code, later).await.unwrap());
        assert_eq!(node.counts(later).await.unwrap(), StoreCounts { matches: 1, players: 1 });
    }
    // Heartbeats do not revive an expired match.
    assert_eq!(n.a().get(MatchId(2), NOW).await.unwrap().unwrap().info.expires_unix, NOW + 60);
    // Reaping removes them (from any node, idempotently).
    assert_eq!(n.a().counts(NOW).await.unwrap(), StoreCounts { matches: 3, players: 2 });
    assert_eq!(n.b().reap(later).await.unwrap(), 2);
    assert_eq!(n.a().reap(later).await.unwrap(), 0);
    assert_eq!(
        n.a().get(MatchId(2), NOW).await.unwrap(),
        None,
        "reaped: gone even at an earlier time"
    );
    assert_eq!(n.a().counts(NOW).await.unwrap(), StoreCounts { matches: 1, players: 1 });
    n.await_list(&all, NOW, &[MatchId(1)]).await;
    // Its id and code are free again.
    n.b().create(new_match(2)).await.unwrap();
    assert_eq!(n.a().find_code(new_match(2).code, NOW).await.unwrap(), Some(MatchId(2)));
    assert_eq!(n.a().reap(NOW + 121).await.unwrap(), 2);
    assert_eq!(n.a().counts(NOW).await.unwrap(), StoreCounts::default());
}

async fn update_reindexes<S: Store>(n: &Nodes<S>) {
    let mut m = new_match(1);
    m.info.attributes = attrs(&[("s1", "old".into()), ("n1", 10.into()), ("s2", "kept".into())]);
    n.a().create(m).await.unwrap();
    n.a().create(new_match(2)).await.unwrap();
    let id = MatchId(1);
    let s1 = |v: &str| filtered(vec![Filter::new("s1", Op::Eq, v)]);
    let n1 = |op, v: f64| filtered(vec![Filter::new("n1", op, v)]);
    n.await_list(&s1("old"), NOW, &[id]).await;
    n.await_list(&n1(Op::Lt, 20.0), NOW, &[id]).await;
    let info = n
        .b()
        .update(id, None, &attrs(&[("s1", "new".into()), ("n1", 30.into())]), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        info.attributes,
        attrs(&[("s1", "new".into()), ("n1", 30.into()), ("s2", "kept".into())])
    );
    assert_eq!(n.a().get(id, NOW).await.unwrap().unwrap().info, info);
    // The filters see the new values, not the old.
    n.await_list(&s1("new"), NOW, &[id]).await;
    n.await_list(&s1("old"), NOW, &[]).await;
    n.await_list(&n1(Op::Lt, 20.0), NOW, &[]).await;
    n.await_list(&n1(Op::Gt, 20.0), NOW, &[id]).await;
    n.await_list(&n1(Op::Eq, 30.0), NOW, &[id]).await;
    // On the writing node at once (it reads its own writes).
    assert_eq!(
        n.a()
            .update(id, None, &attrs(&[("n1", 31.into())]), NOW)
            .await
            .unwrap()
            .unwrap()
            .attributes["n1"],
        Value::Num(31.0)
    );
    assert_eq!(pages(n.a(), &n1(Op::Eq, 31.0), NOW).await.len(), 1);
    assert!(pages(n.a(), &n1(Op::Eq, 30.0), NOW).await.is_empty());
    // Hiding and showing.
    let all = q();
    n.b().update(id, Some(false), &BTreeMap::new(), NOW).await.unwrap().unwrap();
    assert!(
        pages(n.b(), &all, NOW).await.iter().all(|m| m.id != id),
        "the updating node hides it at once"
    );
    n.await_list(&all, NOW, &[MatchId(2)]).await;
    n.await_list(&s1("new"), NOW, &[]).await;
    let info = n.b().update(id, Some(true), &BTreeMap::new(), NOW).await.unwrap().unwrap();
    assert!(info.listed);
    assert_eq!(info.attributes["s2"], Value::from("kept"));
    n.await_list(&all, NOW, &[id, MatchId(2)]).await;
    n.await_list(&s1("new"), NOW, &[id]).await;
    assert_eq!(n.a().update(MatchId(9), Some(true), &BTreeMap::new(), NOW).await.unwrap(), None);
}

async fn replace_code<S: Store>(n: &Nodes<S>) {
    n.a().create(new_match(1)).await.unwrap();
    n.a().create(new_match(2)).await.unwrap();
    let old = new_match(1).code;
    let new = JoinCode::from_bits(12_345);
    assert!(n.b().replace_code(MatchId(1), new, NOW).await.unwrap());
    assert_eq!(n.a().find_code(old, NOW).await.unwrap(), None, "the old code finds nothing");
    assert_eq!(n.a().find_code(new, NOW).await.unwrap(), Some(MatchId(1)));
    assert_eq!(n.a().get(MatchId(1), NOW).await.unwrap().unwrap().code, new);
    // Another match's code is taken; its own is fine.
    assert!(matches!(
        n.a().replace_code(MatchId(1), new_match(2).code, NOW).await,
        Err(StoreError::CodeTaken)
    ));
    assert_eq!(
        n.a().find_code(new, NOW).await.unwrap(),
        Some(MatchId(1)),
        "a refusal changes nothing"
    );
    assert!(n.a().replace_code(MatchId(1), new, NOW).await.unwrap());
    assert_eq!(n.b().find_code(new, NOW).await.unwrap(), Some(MatchId(1)));
    assert!(!n.a().replace_code(MatchId(9), JoinCode::from_bits(1), NOW).await.unwrap());
    // The old code is free for a new match.
    let mut third = new_match(3);
    third.code = old;
    n.b().create(third).await.unwrap();
    assert_eq!(n.a().find_code(old, NOW).await.unwrap(), Some(MatchId(3)));
}

async fn destroy_and_counts<S: Store>(n: &Nodes<S>) {
    for i in 1..=3 {
        n.a().create(new_match(i)).await.unwrap();
        for p in 0..i {
            n.a().join(MatchId(i), &ticket(None, u8::try_from(p).unwrap(), NOW)).await.unwrap();
        }
    }
    assert_eq!(n.b().counts(NOW).await.unwrap(), StoreCounts { matches: 3, players: 6 });
    let all = q();
    n.await_list(&all, NOW, &[MatchId(1), MatchId(2), MatchId(3)]).await;
    assert!(n.b().destroy(MatchId(2)).await.unwrap());
    assert!(!n.a().destroy(MatchId(2)).await.unwrap(), "once");
    assert!(!n.a().destroy(MatchId(9)).await.unwrap());
    assert_eq!(n.a().get(MatchId(2), NOW).await.unwrap(), None);
    assert_eq!(n.a().find_code(new_match(2).code, NOW).await.unwrap(), None);
    assert_eq!(n.a().join(MatchId(2), &ticket(None, 9, NOW)).await.unwrap(), JoinOutcome::NotFound);
    assert_eq!(n.a().counts(NOW).await.unwrap(), StoreCounts { matches: 2, players: 4 });
    assert!(
        pages(n.b(), &all, NOW).await.iter().all(|m| m.id != MatchId(2)),
        "the destroying node at once"
    );
    n.await_list(&all, NOW, &[MatchId(1), MatchId(3)]).await;
    // Its code is free again.
    let mut other = new_match(4);
    other.code = new_match(2).code;
    n.a().create(other).await.unwrap();
}

/// A node reads its own writes: a list on the node that wrote shows the write at once, in
/// every configuration (only other nodes' lists may lag).
async fn read_your_writes<S: Store>(n: &Nodes<S>) {
    let writer = n.a();
    for i in 1..=150u64 {
        let mut m = new_match(i);
        m.info.attributes = attrs(&[("n1", Value::Num(f64::from(u32::try_from(i).unwrap())))]);
        writer.create(m).await.unwrap();
        let just = filtered(vec![Filter::new("n1", Op::Eq, f64::from(u32::try_from(i).unwrap()))]);
        let ids = |p: Vec<MatchInfo>| p.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(pages(writer, &just, NOW).await), vec![MatchId(i)], "created {i}");
        let JoinOutcome::Joined { .. } =
            writer.join(MatchId(i), &ticket(None, 1, NOW)).await.unwrap()
        else {
            panic!("join {i}");
        };
        assert_eq!(pages(writer, &just, NOW).await[0].players, 1, "joined {i}");
        let moved = attrs(&[("n1", Value::Num(-1.0))]);
        writer.update(MatchId(i), None, &moved, NOW).await.unwrap().unwrap();
        assert!(pages(writer, &just, NOW).await.is_empty(), "updated {i}");
        writer.heartbeat(MatchId(i), NOW + 30, NOW).await.unwrap().unwrap();
        assert!(
            pages(writer, &q(), NOW + 30).await.iter().all(|m| m.id != MatchId(i)),
            "heartbeat {i}"
        );
        assert!(writer.leave(MatchId(i), 1, None, NOW).await.unwrap());
        let minus = filtered(vec![Filter::new("n1", Op::Eq, -1.0)]);
        assert!(pages(writer, &minus, NOW).await.iter().all(|m| m.players == 0), "left {i}");
        if i % 2 == 0 {
            assert!(writer.destroy(MatchId(i)).await.unwrap());
            assert!(
                pages(writer, &minus, NOW).await.iter().all(|m| m.id != MatchId(i)),
                "destroyed {i}"
            );
        }
    }
    assert_eq!(writer.reap(NOW + 30).await.unwrap(), 75);
    assert!(pages(writer, &q(), NOW).await.is_empty(), "reaped");
}

/// 1,000 joiners race for an 8-slot match (half through each node when there are two):
/// exactly 8 get in, with slots 1 to 8.
async fn race_for_eight_slots<S: Store>(n: Nodes<S>) {
    n.a().create(new_match(1)).await.unwrap();
    let n = Arc::new(n);
    let mut tasks = Vec::new();
    for j in 0..1000u32 {
        let n = Arc::clone(&n);
        tasks.push(tokio::spawn(async move {
            let store = if j % 2 == 0 { n.a() } else { n.b() };
            let t = JoinTicket {
                password: None,
                leave_token: digest(u8::try_from(j % 256).unwrap()),
                now_unix: NOW,
            };
            store.join(MatchId(1), &t).await.unwrap()
        }));
    }
    let mut slots = BTreeSet::new();
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            JoinOutcome::Joined { slot, .. } => assert!(slots.insert(slot), "slot {slot} twice"),
            JoinOutcome::Full => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(slots, (1..=8).collect(), "exactly 8 joined, slots 1 to 8");
    assert_eq!(full, 992);
    let m = n.b().get(MatchId(1), NOW).await.unwrap().unwrap();
    assert_eq!((m.info.players, m.members.len()), (8, 8));
    assert_eq!(n.a().counts(NOW).await.unwrap(), StoreCounts { matches: 1, players: 8 });
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::memory()).await;
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn race_for_eight_slots() {
                super::race_for_eight_slots(super::memory()).await;
            }
        }
        mod redis_one_node {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let nodes = super::redis(1).await;
                    super::$name(&nodes).await;
                    nodes.assert_no_reloads().await;
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn race_for_eight_slots() {
                super::race_for_eight_slots(super::redis(1).await).await;
            }
        }
        mod redis_two_nodes {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let nodes = super::redis(2).await;
                    super::$name(&nodes).await;
                    nodes.assert_no_reloads().await;
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn race_for_eight_slots() {
                super::race_for_eight_slots(super::redis(2).await).await;
            }
        }
    };
}

conformance!(
    create_get_find_code,
    list_filters,
    list_paging,
    join_slots_and_passwords,
    leave_and_drop,
    heartbeat_expiry_and_reap,
    update_reindexes,
    replace_code,
    destroy_and_counts,
    read_your_writes,
);

/// Killing a node loses no match: matches made through node A are all in Redis, and a node
/// started after A is gone gets, lists and joins every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_loses_no_match() {
    let server = RedisServer::start();
    let a = RedisStore::connect(&server.url(), Schema::default()).await.unwrap();
    let b = RedisStore::connect(&server.url(), Schema::default()).await.unwrap();
    let mut ids = Vec::new();
    for i in 1..=50u64 {
        let mut m = new_match(i);
        m.info.attributes = attrs(&[("n1", Value::Num(f64::from(u32::try_from(i).unwrap())))]);
        a.create(m).await.unwrap();
        a.join(MatchId(i), &ticket(None, 1, NOW)).await.unwrap();
        ids.push(MatchId(i));
    }
    a.destroy(MatchId(50)).await.unwrap();
    ids.pop();
    drop(a); // Its follower task is aborted; nothing of it remains.
    let c = RedisStore::connect(&server.url(), Schema::default()).await.unwrap();
    let nodes = Nodes { nodes: vec![c, b], replicated: true, _server: None };
    let c = nodes.a();
    // C lists them at once: it loaded the state when it started.
    let all = q();
    let listed = pages(c, &all, NOW).await;
    assert_eq!(listed.iter().map(|m| m.id).collect::<BTreeSet<_>>(), ids.iter().copied().collect());
    assert!(listed.iter().all(|m| m.players == 1));
    let some = filtered(vec![Filter::new("n1", Op::Le, 10.0)]);
    assert_eq!(pages(c, &some, NOW).await.len(), 10);
    for &id in &ids {
        let m = c.get(id, NOW).await.unwrap().unwrap();
        assert_eq!(c.find_code(m.code, NOW).await.unwrap(), Some(id));
        assert_eq!(joined_slot(c.join(id, &ticket(None, 2, NOW)).await.unwrap()), 2);
    }
    // And the surviving node B sees C's joins.
    let list = nodes.list_all(&all, NOW, &ids).await;
    assert!(list.iter().all(|m| m.players == 2));
    assert_eq!(nodes.b().counts(NOW).await.unwrap(), StoreCounts { matches: 49, players: 98 });
    drop(nodes);
    drop(server);
}

/// A node that missed events (as when it falls behind a trim of the change stream) notices
/// the gap in their numbers and reloads the whole state: a change it never saw an event for
/// reaches its lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_misses_events_reloads() {
    let server = RedisServer::start();
    let a = RedisStore::connect(&server.url(), Schema::default()).await.unwrap();
    let b = RedisStore::connect(&server.url(), Schema::default()).await.unwrap();
    let ab = Nodes { nodes: vec![a, b], replicated: true, _server: None };
    ab.a().create(new_match(1)).await.unwrap();
    ab.a().create(new_match(2)).await.unwrap();
    ab.await_list(&q(), NOW, &[MatchId(1), MatchId(2)]).await;
    // A write whose event is lost: match 1 unlisted, its seq taken, nothing in the stream.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let lost = "redis.call('HSET', KEYS[1], 'listed', '0') return redis.call('INCR', KEYS[2])";
    let _: i64 = redis::cmd("EVAL")
        .arg(lost)
        .arg(2)
        .arg(format!("sturnus:m:{}", MatchId(1)))
        .arg("sturnus:seq")
        .query_async(&mut conn)
        .await
        .unwrap();
    // The next event is one further than the nodes expect: both reload and see the change.
    ab.a().create(new_match(3)).await.unwrap();
    ab.await_list(&q(), NOW, &[MatchId(2), MatchId(3)]).await;
    assert_eq!(ab.b().reloads(), 2);
    let ba = Nodes { nodes: ab.nodes.into_iter().rev().collect(), replicated: true, _server: None };
    ba.await_list(&q(), NOW, &[MatchId(2), MatchId(3)]).await;
    assert_eq!(ba.b().reloads(), 2);
    drop(ba);
}

#[tokio::test]
async fn open_parses_the_store_argument() {
    use sturnus_services::store::{AnyStore, open};
    let store = open("memory", Schema::default()).await.unwrap();
    assert!(matches!(store, AnyStore::Memory(_)));
    assert_eq!(store.kind(), "memory");
    assert!(matches!(open("postgres://x", Schema::default()).await, Err(StoreError::Backend(_))));
    let server = RedisServer::start();
    let store = open(&server.url(), Schema::default()).await.unwrap();
    assert_eq!(store.kind(), "redis");
    store.create(new_match(1)).await.unwrap();
    assert!(store.get(MatchId(1), NOW).await.unwrap().is_some());
    drop(store);
    // A Redis that is not there is an error, not a hang or a panic.
    let port = server.port();
    drop(server);
    assert!(open(&format!("redis://127.0.0.1:{port}"), Schema::default()).await.is_err());
}

//! The services workload (issue 19): the matchmaker's HTTP API under the lobby mix, and the
//! join race, against a running `sturnusd` (`cargo xtask bench-services` starts one per store).
//!
//! - **Lobby mix**: `--matches` open matches (default 100,000) with 5 string and 5 numeric
//!   attributes, then `--threads` closed-loop clients for `--duration-s` seconds doing 70 %
//!   filtered list (page of 20), 20 % join, 5 % create, 5 % heartbeat, each on its own
//!   keep-alive connection with a minimal HTTP/1.1 client (answers' statuses checked, bodies
//!   skipped). Reports requests/s and latency percentiles, overall and per call.
//! - **Join race**: `--racers` joiners (default 1,000), each on its own thread and connection,
//!   released at once at one 8-slot match; reports how many succeeded (8 is the only right
//!   answer) over `--races` rounds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

#[expect(clippy::disallowed_methods, reason = "the load runs for a wall-clock time")]
fn sleep(d: Duration) {
    std::thread::sleep(d);
}

use sturnus_lobby::LobbyClient;
use sturnus_lobby::api::{
    CreateMatch, Created, ErrorKind, Filter, HostMode, JoinRequest, ListQuery, Op, Value,
};

use crate::BenchResult;

/// The lobby mix's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) lobby: String,
    pub(crate) matches: usize,
    pub(crate) threads: usize,
    pub(crate) duration: Duration,
    pub(crate) racers: usize,
    pub(crate) races: usize,
    pub(crate) seed: u64,
}

/// A small PCG-style generator: the workload's choices, not secrets.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let x = self.0;
        (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (x >> 29)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }
}

/// A keep-alive HTTP/1.1 connection with nothing but what the load needs: the request written
/// from reused buffers, the answer's status read and its body skipped by `Content-Length`. The
/// load generator shares the two cores with the service, so it must cost far less per request
/// than the service does (a full HTTP client with JSON parsing costs about as much).
struct Conn {
    stream: std::net::TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(base: &str) -> std::io::Result<Self> {
        let addr = base.trim_start_matches("http://").trim_end_matches('/');
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, out: Vec::with_capacity(1024), buf: vec![0; 64 * 1024] })
    }

    /// Sends one POST and returns the answer's status code.
    fn post(&mut self, path: &str, auth: Option<&str>, body: &[u8]) -> std::io::Result<u16> {
        use std::io::{Read as _, Write as _};
        self.out.clear();
        let _ = write!(
            self.out,
            "POST {path} HTTP/1.1\r\nhost: sturnusd\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(token) = auth {
            let _ = write!(self.out, "authorization: Bearer {token}\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out)?;
        // Read the head, then the rest of the body it announces.
        let mut have = 0;
        let head_end = loop {
            if have == self.buf.len() {
                return Err(std::io::Error::other("an answer's head over 64 KiB"));
            }
            let n = self.stream.read(&mut self.buf[have..])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            have += n;
            if let Some(at) = self.buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(std::io::Error::other)?;
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status line"))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut left = (head_end + length).saturating_sub(have);
        while left > 0 {
            let n = self.stream.read(&mut self.buf[..left.min(64 * 1024)])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            left -= n;
        }
        Ok(status)
    }
}

const REGIONS: [&str; 8] =
    ["eu-west", "eu-north", "us-east", "us-west", "sa", "ap-south", "ap-east", "oc"];
const MODES: [&str; 4] = ["duel", "team", "ffa", "coop"];
const LANGS: [&str; 10] = ["en", "de", "fr", "es", "pt", "ru", "ja", "ko", "zh", "pl"];

fn new_match(rng: &mut Rng, i: usize) -> CreateMatch {
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("s1".into(), Value::from(REGIONS[rng.below(REGIONS.len())]));
    attributes.insert("s2".into(), Value::from(MODES[rng.below(MODES.len())]));
    attributes.insert("s3".into(), Value::from(format!("map{}", rng.below(16))));
    attributes.insert("s4".into(), Value::from(LANGS[rng.below(LANGS.len())]));
    attributes.insert("s5".into(), Value::from(format!("v{}", rng.below(3))));
    attributes.insert("n1".into(), Value::Num((rng.below(3000)) as f64));
    attributes.insert("n2".into(), Value::Num((1 + rng.below(100)) as f64));
    for n in ["n3", "n4", "n5"] {
        attributes.insert(n.into(), Value::Num(rng.below(1_000_000) as f64));
    }
    CreateMatch {
        name: format!("match {i}"),
        size: u16::try_from(8 + rng.below(9)).unwrap_or(8),
        listed: true,
        password: None,
        attributes,
        region: None,
        protocol_id: 0x5354_5552_4e55_5301,
        host: HostMode::Direct { address: "192.0.2.1:7777".parse().expect("an address") },
    }
}

fn filtered_list(rng: &mut Rng) -> ListQuery {
    let skill = rng.below(2500) as f64;
    ListQuery {
        filters: vec![
            Filter::new("s1", Op::Eq, REGIONS[rng.below(REGIONS.len())]),
            Filter::new("n1", Op::Ge, skill),
            Filter::new("n1", Op::Le, skill + 500.0),
        ],
        ..ListQuery::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    List = 0,
    Join = 1,
    Create = 2,
    Heartbeat = 3,
}

const CALLS: [&str; 4] = ["list", "join", "create", "heartbeat"];

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// Preloads `settings.matches` matches over `settings.threads` connections.
fn preload(settings: &Settings) -> BenchResult<Vec<Created>> {
    let next = AtomicUsize::new(0);
    let created = Mutex::new(Vec::with_capacity(settings.matches));
    let failed = Mutex::new(None::<String>);
    std::thread::scope(|scope| {
        for t in 0..settings.threads.min(32) {
            let (next, created, failed) = (&next, &created, &failed);
            scope.spawn(move || {
                let Ok(lobby) = LobbyClient::new(&settings.lobby) else { return };
                let mut rng = Rng(settings.seed ^ ((t as u64 + 1) * 0x9E37));
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= settings.matches {
                        break;
                    }
                    match lobby.create(&new_match(&mut rng, i)) {
                        Ok(c) => mine.push(c),
                        Err(e) => {
                            *failed.lock().expect("lock") = Some(e.to_string());
                            break;
                        }
                    }
                }
                created.lock().expect("lock").extend(mine);
            });
        }
    });
    if let Some(e) = failed.into_inner().map_err(|_| "poisoned")? {
        return Err(format!("preloading failed: {e}").into());
    }
    Ok(created.into_inner().map_err(|_| "poisoned")?)
}

/// Runs the lobby mix and prints one JSON line.
pub(crate) fn lobby_mix(settings: &Settings, store: &str) -> BenchResult<()> {
    let started = crate::now();
    let hosts = preload(settings)?;
    let preload_s = started.elapsed().as_secs_f64();
    let stop = AtomicBool::new(false);
    let errors = AtomicUsize::new(0);
    let latencies: Mutex<[Vec<u32>; 4]> = Mutex::new(Default::default());
    let run_started = crate::now();
    std::thread::scope(|scope| {
        for t in 0..settings.threads {
            let (stop, errors, latencies, hosts) = (&stop, &errors, &latencies, &hosts);
            scope.spawn(move || {
                let Ok(mut conn) = Conn::connect(&settings.lobby) else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut rng = Rng(settings.seed.wrapping_add(1000 + t as u64));
                let mut mine: [Vec<u32>; 4] = Default::default();
                let mut i = settings.matches + t * 1_000_000;
                let empty = b"{}";
                while !stop.load(Ordering::Relaxed) {
                    let roll = rng.below(100);
                    let call = match roll {
                        0..70 => Call::List,
                        70..90 => Call::Join,
                        90..95 => Call::Create,
                        _ => Call::Heartbeat,
                    };
                    // The request's body is made before the clock starts.
                    let (path, auth, body): (String, Option<&str>, Vec<u8>) = match call {
                        Call::List => (
                            "/v1/matches/list".into(),
                            None,
                            serde_json::to_vec(&filtered_list(&mut rng)).unwrap_or_default(),
                        ),
                        Call::Join => {
                            let host = &hosts[rng.below(hosts.len())];
                            (format!("/v1/matches/{}/join", host.info.id), None, empty.to_vec())
                        }
                        Call::Create => {
                            i += 1;
                            let request = new_match(&mut rng, i);
                            (
                                "/v1/matches".into(),
                                None,
                                serde_json::to_vec(&request).unwrap_or_default(),
                            )
                        }
                        Call::Heartbeat => {
                            let host = &hosts[rng.below(hosts.len())];
                            let path = format!("/v1/matches/{}/heartbeat", host.info.id);
                            (path, Some(host.host_token.as_str()), Vec::new())
                        }
                    };
                    let at = crate::now();
                    let ok = match conn.post(&path, auth, &body) {
                        // A full match is a right answer to a join, not a failure.
                        Ok(status) => match call {
                            Call::Join => status == 200 || status == 409,
                            Call::Create => status == 201,
                            _ => status == 200,
                        },
                        Err(_) => {
                            // Start over on a fresh connection.
                            match Conn::connect(&settings.lobby) {
                                Ok(fresh) => conn = fresh,
                                Err(_) => break,
                            }
                            false
                        }
                    };
                    let micros = u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    mine[call as usize].push(micros);
                }
                let mut all = latencies.lock().expect("lock");
                for (all, mine) in all.iter_mut().zip(mine) {
                    all.extend(mine);
                }
            });
        }
        sleep(settings.duration);
        stop.store(true, Ordering::Relaxed);
    });
    let wall = run_started.elapsed().as_secs_f64();
    let mut per = latencies.into_inner().map_err(|_| "poisoned")?;
    let mut all: Vec<u32> = per.iter().flatten().copied().collect();
    all.sort_unstable();
    let mut fields = vec![
        "\"workload\":\"lobby\"".to_owned(),
        format!("\"store\":\"{store}\""),
        format!("\"matches\":{}", settings.matches),
        format!("\"threads\":{}", settings.threads),
        format!("\"preload_s\":{preload_s:.1}"),
        format!("\"requests\":{}", all.len()),
        format!("\"errors\":{}", errors.load(Ordering::Relaxed)),
        format!("\"requests_per_s\":{:.0}", all.len() as f64 / wall),
        format!("\"p50_ms\":{:.2}", percentile(&all, 0.50)),
        format!("\"p99_ms\":{:.2}", percentile(&all, 0.99)),
    ];
    for (name, lat) in CALLS.iter().zip(per.iter_mut()) {
        lat.sort_unstable();
        fields.push(format!(
            "\"{name}\":{{\"n\":{},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
            lat.len(),
            percentile(lat, 0.50),
            percentile(lat, 0.99)
        ));
    }
    println!("{{{}}}", fields.join(","));
    Ok(())
}

/// Runs the join race `settings.races` times and prints one JSON line; an error if any round
/// did not admit exactly 8.
pub(crate) fn join_race(settings: &Settings, store: &str) -> BenchResult<()> {
    let lobby = LobbyClient::new(&settings.lobby)?;
    let mut outcomes = Vec::new();
    for round in 0..settings.races {
        let mut request = new_match(&mut Rng(settings.seed + round as u64), round);
        request.size = 8;
        request.listed = false;
        let created = lobby.create(&request)?;
        let barrier = Arc::new(Barrier::new(settings.racers));
        let joined = AtomicUsize::new(0);
        let full = AtomicUsize::new(0);
        let slots = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..settings.racers {
                let (barrier, joined, full, slots, created) =
                    (Arc::clone(&barrier), &joined, &full, &slots, &created);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        let Ok(racer) = LobbyClient::new(&settings.lobby) else { return };
                        barrier.wait();
                        match racer.join(created.info.id, &JoinRequest::default()) {
                            Ok(j) => {
                                joined.fetch_add(1, Ordering::Relaxed);
                                slots.lock().expect("lock").push(j.slot);
                            }
                            Err(e) if e.kind() == Some(ErrorKind::Full) => {
                                full.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {}
                        }
                    })
                    .expect("a racer thread");
            }
        });
        let mut slots = slots.into_inner().map_err(|_| "poisoned")?;
        slots.sort_unstable();
        let players = lobby.get(created.info.id)?.players;
        outcomes.push((joined.into_inner(), full.into_inner(), slots, players));
    }
    let exact = outcomes.iter().all(|(j, _, slots, players)| {
        *j == 8 && *slots == (1..=8).collect::<Vec<u16>>() && *players == 8
    });
    let joined: Vec<String> = outcomes.iter().map(|o| o.0.to_string()).collect();
    let full: Vec<String> = outcomes.iter().map(|o| o.1.to_string()).collect();
    println!(
        "{{\"workload\":\"join_race\",\"store\":\"{store}\",\"racers\":{},\"slots\":8,\"rounds\":{},\
         \"joined\":[{}],\"full\":[{}],\"exactly_8_every_round\":{exact}}}",
        settings.racers,
        settings.races,
        joined.join(","),
        full.join(",")
    );
    if exact { Ok(()) } else { Err("a join race did not admit exactly 8".into()) }
}

//! The `cubes` workload (issue 18): Glenn Fiedler's "Snapshot Compression" scene — a 30 × 30
//! grid of small cubes and one large "player" cube — synchronised as [`NetworkTransform`]s from
//! a [`ServerObjectManager`] to N [`ClientObjectManager`]s, all in this process, over the
//! testkit's simulated network ([`SimNet`], a netem link each way) in **virtual time**: the
//! same seed gives the same run, datagram for datagram. The only wall-clock figures are the
//! server's update times.
//!
//! The measured timeline (`--duration-s D`): the scene at rest for `0.2 D`; then for `0.6 D`
//! the player cube rolls across the grid (for the first 65 % of that phase) and the cubes it
//! comes near are pushed, hop and tumble until friction stops them; then at rest again for
//! `0.2 D`. Before it, the clients join, every object is spawned and a second passes
//! unmeasured.
//!
//! With more objects (`--objects N`) the grid grows (a square of `N − rollers` cubes) and one
//! player cube rolls per 901 objects, each along its own lane.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sturnus_message::{ClientConfig, NetworkClient, NetworkServer, PlayerId, ServerConfig};
use sturnus_netem::LinkConfig;
use sturnus_object::interpolation::{Interpolate, Pose};
use sturnus_object::transform::{NetworkTransform, TransformConfig};
use sturnus_object::{
    ClientObjectManager, NetId, NetworkBehaviour, ObjectConfig, PrefabId, ServerObjectManager,
    TransformSyncConfig,
};
use sturnus_testkit::SimNet;
use sturnus_testkit::counting::allocations_in;
use sturnus_transport::EndpointConfig;

use crate::BenchResult;
use crate::report::percentile;

const CUBE: PrefabId = PrefabId::of_name("cube");
const PLAYER: PrefabId = PrefabId::of_name("player-cube");

/// Edge of a small cube, of the player cube (metres), and the grid's spacing.
const SMALL: f32 = 0.5;
const LARGE: f32 = 3.0;
const SPACING: f32 = 1.5;
/// A small cube within this distance (horizontal, metres) of a player cube's centre is pushed.
const PUSH_RADIUS: f32 = 2.5;
const GRAVITY: f32 = 9.81;
/// Deceleration of a cube sliding on the ground (m/s²).
const FRICTION: f32 = 7.0;
/// The width of a bandwidth / error window of the plots.
const WINDOW: Duration = Duration::from_millis(100);
/// How many objects are spawned before the clients must have them (see `run`).
const SPAWN_BATCH: usize = 2_000;
/// How long a cube's interpolation is still checked after it stopped.
const AFTER_REST: f64 = 0.5;

/// One run's settings.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) clients: usize,
    pub(crate) objects: usize,
    /// Snapshots (and cube states) per second.
    pub(crate) rate: f64,
    pub(crate) budget_kbps: u32,
    pub(crate) duration_s: f64,
    pub(crate) seed: u64,
    /// The link each way between the server and each client.
    pub(crate) link: LinkConfig,
    /// How the link is described in the JSON line.
    pub(crate) link_name: String,
    /// Where to write the plots, if anywhere.
    pub(crate) plot: Option<PathBuf>,
    /// With a radius (metres), grid interest: each client observes only the objects within it
    /// of its player's position (its roller), and is spawned and despawned the rest as they
    /// come and go. `None`: every client observes every object.
    pub(crate) interest_radius: Option<f32>,
}

impl Plan {
    /// The defaults: Gaffer's 901 cubes at 60 Hz, one client, 256 kbit/s, 10 s, over 50 ms ±
    /// 5 ms and 1 % loss each way.
    pub(crate) fn defaults() -> Self {
        let link = netem_link(100.0, 5.0, 0.01, None);
        Self {
            clients: 1,
            objects: 901,
            rate: 60.0,
            budget_kbps: 256,
            duration_s: 10.0,
            seed: 1,
            link_name: describe_link(&link),
            link,
            plot: None,
            interest_radius: None,
        }
    }
}

/// A netem link: half of `rtt_ms` each way, ± `jitter_ms`, `loss` each way, and an optional
/// rate limit (with netem's default queue).
pub(crate) fn netem_link(
    rtt_ms: f64,
    jitter_ms: f64,
    loss: f64,
    rate_mbit: Option<f64>,
) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_secs_f64(rtt_ms / 2000.0),
        jitter: Duration::from_secs_f64(jitter_ms / 1000.0),
        loss,
        bandwidth: rate_mbit.map(|m| (m * 1e6 / 8.0) as u64),
        ..LinkConfig::perfect()
    }
}

/// `netem 50 ms ± 5 ms 1 % loss each way` (and the rate, if limited).
pub(crate) fn describe_link(link: &LinkConfig) -> String {
    let mut s = format!(
        "netem {} ms ± {} ms {} % loss each way",
        link.latency.as_secs_f64() * 1000.0,
        link.jitter.as_secs_f64() * 1000.0,
        link.loss * 100.0
    );
    if let Some(bytes) = link.bandwidth {
        let _ = write!(s, " {} Mbit/s", bytes as f64 * 8.0 / 1e6);
    }
    s
}

/// The cubes' transform settings: Gaffer's precision (512 values per metre, 9-bit smallest
/// three), a state every snapshot interval.
fn transform_config(interval: Duration) -> TransformConfig {
    TransformConfig::three_d([-256.0, -16.0, -256.0], [256.0, 48.0, 256.0], 1.0 / 512.0)
        .expect("valid bounds")
        .with_send_interval(interval)
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next() >> 40) as f32 / (1_u64 << 24) as f32;
        lo + (hi - lo) * unit
    }
}

/// A small cube's body.
#[derive(Debug, Clone, Copy)]
struct Body {
    pose: Pose,
    velocity: [f32; 3],
    /// Angular velocity (rad/s, world axes).
    spin: [f32; 3],
    moving: bool,
    /// Its pose changed in the last step (it moved, or came to rest there).
    changed: bool,
    /// How hard it is pushed, how high it hops and how fast it spins when pushed.
    push: f32,
    hop: f32,
    spin_speed: f32,
    axis: [f32; 3],
}

/// A player cube rolling along a lane.
#[derive(Debug, Clone, Copy)]
struct Roller {
    z: f32,
    from: f32,
    to: f32,
    pose: Pose,
}

/// The scene: small cubes on a grid and the player cubes, stepped at a fixed rate.
struct Scene {
    cubes: Vec<Body>,
    rollers: Vec<Roller>,
}

fn rotate(q: [f32; 4], spin: [f32; 3], dt: f32) -> [f32; 4] {
    // q' = q + dt/2 · (ω, 0) ⊗ q, normalised.
    let [x, y, z, w] = q;
    let [a, b, c] = spin;
    let h = dt / 2.0;
    let dq = [
        h * (a * w + b * z - c * y),
        h * (b * w + c * x - a * z),
        h * (c * w + a * y - b * x),
        h * (-a * x - b * y - c * z),
    ];
    let r = [x + dq[0], y + dq[1], z + dq[2], w + dq[3]];
    let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
    r.map(|v| v / n)
}

impl Scene {
    fn new(objects: usize, seed: u64) -> Self {
        let mut rng = Rng(seed ^ 0xC0BE_5EED);
        let rollers = (objects / 901).max(1);
        let small = objects.saturating_sub(rollers);
        let side = (small as f64).sqrt().ceil().max(1.0) as usize;
        let half = (side as f32 - 1.0) * SPACING / 2.0;
        let cubes = (0..small)
            .map(|i| {
                let (row, col) = (i / side, i % side);
                let axis = [rng.range(-1.0, 1.0), rng.range(-1.0, 1.0), rng.range(-1.0, 1.0)];
                let n = axis.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-3);
                Body {
                    pose: Pose {
                        position: [
                            col as f32 * SPACING - half,
                            SMALL / 2.0,
                            row as f32 * SPACING - half,
                        ],
                        ..Pose::default()
                    },
                    velocity: [0.0; 3],
                    spin: [0.0; 3],
                    moving: false,
                    changed: false,
                    push: rng.range(3.0, 6.0),
                    hop: rng.range(1.5, 3.5),
                    spin_speed: rng.range(4.0, 10.0),
                    axis: axis.map(|v| v / n),
                }
            })
            .collect();
        let lane = 2.0 * half / rollers as f32;
        let rollers = (0..rollers)
            .map(|r| {
                // A lane through the grid, seeded within its band (off the rows' centres).
                let z = -half + lane * (r as f32 + rng.range(0.3, 0.7));
                let from = -half - 6.0;
                let pose = Pose { position: [from, LARGE / 2.0, z], ..Pose::default() };
                Roller { z, from, to: half + 6.0, pose }
            })
            .collect();
        Self { cubes, rollers }
    }

    /// Moves the rollers to `progress` (0 to 1) of their lanes.
    fn roll(&mut self, progress: f32) {
        for roller in &mut self.rollers {
            let x = roller.from + (roller.to - roller.from) * progress.clamp(0.0, 1.0);
            // Rolling along +x: a turn about −z of the distance over the half edge.
            let angle = (x - roller.from) / (LARGE / 2.0);
            let (s, c) = (angle / 2.0).sin_cos();
            roller.pose.position = [x, LARGE / 2.0, roller.z];
            roller.pose.rotation = [0.0, 0.0, -s, c];
        }
    }

    /// One step of `dt` seconds; `pushing`: the rollers push what they touch.
    fn step(&mut self, dt: f32, pushing: bool) {
        if pushing {
            for roller in &self.rollers {
                let [rx, _, rz] = roller.pose.position;
                for cube in &mut self.cubes {
                    let [x, y, z] = cube.pose.position;
                    let (dx, dz) = (x - rx, z - rz);
                    let d = (dx * dx + dz * dz).sqrt();
                    if !(1e-4..PUSH_RADIUS).contains(&d) {
                        continue;
                    }
                    let dir = [dx / d, dz / d];
                    let outward = cube.velocity[0] * dir[0] + cube.velocity[2] * dir[1];
                    if outward < cube.push {
                        cube.velocity[0] += dir[0] * (cube.push - outward);
                        cube.velocity[2] += dir[1] * (cube.push - outward);
                    }
                    if y <= SMALL / 2.0 + 1e-3 {
                        cube.velocity[1] = cube.hop;
                    }
                    cube.spin = cube.axis.map(|a| a * cube.spin_speed);
                    cube.moving = true;
                }
            }
        }
        for cube in &mut self.cubes {
            cube.changed = cube.moving;
            if !cube.moving {
                continue;
            }
            cube.velocity[1] -= GRAVITY * dt;
            for k in 0..3 {
                cube.pose.position[k] += cube.velocity[k] * dt;
            }
            let ground = SMALL / 2.0;
            let grounded = cube.pose.position[1] <= ground;
            if grounded {
                cube.pose.position[1] = ground;
                cube.velocity[1] =
                    if cube.velocity[1] < -1.0 { -cube.velocity[1] * 0.3 } else { 0.0 };
                let h = (cube.velocity[0].powi(2) + cube.velocity[2].powi(2)).sqrt();
                let slower = (h - FRICTION * dt).max(0.0);
                let k = if h > 0.0 { slower / h } else { 0.0 };
                cube.velocity[0] *= k;
                cube.velocity[2] *= k;
                cube.spin = cube.spin.map(|s| s * (1.0 - 4.0 * dt).max(0.0));
                if slower < 0.05 && cube.velocity[1] == 0.0 {
                    cube.velocity = [0.0; 3];
                    cube.spin = [0.0; 3];
                    cube.moving = false;
                    continue;
                }
            }
            cube.pose.rotation = rotate(cube.pose.rotation, cube.spin, dt);
        }
    }
}

/// One 100 ms window of the timeline.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// Its start, in seconds of the measured timeline.
    at: f64,
    /// Bytes the server put on the wire (all datagrams) and in snapshots, over all clients.
    wire_bytes: u64,
    snapshot_bytes: u64,
    /// Interpolation errors (mm): p50 and p99 of the samples in the window, if any.
    error_p50_mm: Option<f64>,
    error_p99_mm: Option<f64>,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub(crate) clients: usize,
    pub(crate) objects: usize,
    pub(crate) rate: f64,
    pub(crate) budget_kbps: u32,
    pub(crate) seconds: f64,
    pub(crate) seed: u64,
    pub(crate) link: String,
    /// The interest radius, if any.
    pub(crate) interest_radius: Option<f32>,
    pub(crate) kbps_at_rest: f64,
    pub(crate) kbps_rest_after: f64,
    pub(crate) kbps_moving: f64,
    pub(crate) kbps_moving_peak: f64,
    pub(crate) snapshot_kbps_moving: f64,
    pub(crate) kbps_up_moving: f64,
    pub(crate) bits_per_changed_object: Option<f64>,
    pub(crate) cubes_moved: usize,
    pub(crate) update_age_p50_ms: Option<f64>,
    pub(crate) update_age_p99_ms: Option<f64>,
    pub(crate) max_update_age_ms: Option<f64>,
    pub(crate) interp_error_p50_mm: Option<f64>,
    pub(crate) interp_error_p99_mm: Option<f64>,
    pub(crate) interp_rot_error_p99_deg: Option<f64>,
    pub(crate) server_cpu_us_per_client_tick: Option<f64>,
    pub(crate) server_tick_p50_us: Option<f64>,
    pub(crate) server_tick_p99_us: Option<f64>,
    /// The server's update while the scene is at rest (the first rest phase), median.
    pub(crate) server_tick_rest_p50_us: Option<f64>,
    pub(crate) allocs_per_update: Option<f64>,
    pub(crate) client_allocs_per_state: Option<f64>,
    pub(crate) transform_updates_moving: u64,
    pub(crate) snapshots_sent: u64,
    pub(crate) stale_at_end: u64,
    /// At the end, at rest: the largest distance between where a client renders a moved
    /// object and where the server has it.
    pub(crate) rest_error_max_mm: f64,
    pub(crate) rss_kib: Option<u64>,
    windows: Vec<Window>,
}

impl Outcome {
    /// The result line, in the style of the other workloads' (`report.rs`).
    pub(crate) fn to_json(&self) -> String {
        let mut s = String::from("{");
        let mut field = |name: &str, value: String| {
            if s.len() > 1 {
                s.push(',');
            }
            let _ = write!(s, "\"{name}\":{value}");
        };
        let num = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.3}"));
        field("stack", "\"sturnus\"".into());
        field("workload", "\"cubes\"".into());
        field("clients", self.clients.to_string());
        field("objects", self.objects.to_string());
        field("rate_hz", num(Some(self.rate)));
        field("budget_kbps", self.budget_kbps.to_string());
        field("seconds", num(Some(self.seconds)));
        field("seed", self.seed.to_string());
        field("link", format!("\"{}\"", self.link));
        field(
            "interest_radius",
            self.interest_radius.map_or_else(|| "null".to_string(), |r| format!("{r:.1}")),
        );
        field("kbps_at_rest", num(Some(self.kbps_at_rest)));
        field("kbps_rest_after", num(Some(self.kbps_rest_after)));
        field("kbps_moving", num(Some(self.kbps_moving)));
        field("kbps_moving_peak", num(Some(self.kbps_moving_peak)));
        field("snapshot_kbps_moving", num(Some(self.snapshot_kbps_moving)));
        field("kbps_up_moving", num(Some(self.kbps_up_moving)));
        field("bits_per_changed_object", num(self.bits_per_changed_object));
        field("cubes_moved", self.cubes_moved.to_string());
        field("update_age_p50_ms", num(self.update_age_p50_ms));
        field("update_age_p99_ms", num(self.update_age_p99_ms));
        field("max_update_age_ms", num(self.max_update_age_ms));
        field("interp_error_p50_mm", num(self.interp_error_p50_mm));
        field("interp_error_p99_mm", num(self.interp_error_p99_mm));
        field("interp_rot_error_p99_deg", num(self.interp_rot_error_p99_deg));
        field("server_cpu_us_per_client_tick", num(self.server_cpu_us_per_client_tick));
        field("server_tick_p50_us", num(self.server_tick_p50_us));
        field("server_tick_p99_us", num(self.server_tick_p99_us));
        field("server_tick_rest_p50_us", num(self.server_tick_rest_p50_us));
        field("allocs_per_update", num(self.allocs_per_update));
        field("client_allocs_per_state", num(self.client_allocs_per_state));
        field("transform_updates_moving", self.transform_updates_moving.to_string());
        field("snapshots_sent", self.snapshots_sent.to_string());
        field("stale_at_end", self.stale_at_end.to_string());
        field("rest_error_max_mm", num(Some(self.rest_error_max_mm)));
        field("server_rss_kib", self.rss_kib.map_or("null".to_owned(), |k| k.to_string()));
        s.push('}');
        s
    }

    /// A few lines for a human.
    pub(crate) fn summary(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        format!(
            "cubes: {} objects × {} client(s) at {} Hz, budget {} kbit/s, {}\n  \
             downstream per client: {:.2} kbit/s at rest (after the motion {:.2}), {:.1} kbit/s \
             moving (peak 100 ms window {:.1}; snapshots alone {:.1}); upstream moving {:.2}\n  \
             {} cubes moved; {} bits per changed cube; update age p50 {} p99 {} max {}\n  \
             interpolation error p50 {} mm p99 {} mm (rotation p99 {}°); at the end: {} stale, rendered {:.1} mm off at most\n  \
             server: {} µs per client per tick, tick p50 {} µs p99 {} µs (at rest p50 {} µs); allocations per \
             update {} (clients: {} per state)",
            self.objects,
            self.clients,
            self.rate,
            self.budget_kbps,
            self.link,
            self.kbps_at_rest,
            self.kbps_rest_after,
            self.kbps_moving,
            self.kbps_moving_peak,
            self.snapshot_kbps_moving,
            self.kbps_up_moving,
            self.cubes_moved,
            f(self.bits_per_changed_object),
            ms(self.update_age_p50_ms),
            ms(self.update_age_p99_ms),
            ms(self.max_update_age_ms),
            f(self.interp_error_p50_mm),
            f(self.interp_error_p99_mm),
            f(self.interp_rot_error_p99_deg),
            self.stale_at_end,
            self.rest_error_max_mm,
            f(self.server_cpu_us_per_client_tick),
            f(self.server_tick_p50_us),
            f(self.server_tick_p99_us),
            f(self.server_tick_rest_p50_us),
            f(self.allocs_per_update),
            f(self.client_allocs_per_state),
        )
    }
}

/// The server's pose of one cube over time, as stamped in snapshots (whole milliseconds of
/// server time), to compare the clients' interpolation with.
#[derive(Debug, Default)]
struct History {
    states: Vec<(u64, Pose)>,
}

impl History {
    fn push(&mut self, ms: u64, pose: Pose) {
        match self.states.last_mut() {
            Some(last) if last.0 == ms => last.1 = pose,
            _ => self.states.push((ms, pose)),
        }
    }

    /// The server's pose at `ms` (fractional): blended between the two states around it.
    fn at(&self, ms: f64) -> Option<Pose> {
        let i = self.states.partition_point(|(t, _)| (*t as f64) <= ms);
        if i == 0 {
            return None;
        }
        let (t0, p0) = self.states[i - 1];
        match self.states.get(i) {
            None => Some(p0),
            Some(&(t1, p1)) => {
                let f = ((ms - t0 as f64) / (t1 - t0) as f64) as f32;
                Some(p0.interpolate(&p1, f))
            }
        }
    }
}

fn position_error_mm(a: &Pose, b: &Pose) -> f64 {
    let d: f32 = a.position.iter().zip(&b.position).map(|(x, y)| (x - y) * (x - y)).sum();
    f64::from(d.sqrt()) * 1000.0
}

fn rotation_dot(a: &Pose, b: &Pose) -> f64 {
    a.rotation.iter().zip(&b.rotation).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

fn rotation_error_deg(a: &Pose, b: &Pose) -> f64 {
    (2.0 * rotation_dot(a, b).abs().min(1.0).acos()).to_degrees()
}

/// The pose `t` stands for once quantised, as a client holds it (a whole state, as a spawn
/// carries it).
fn quantised(t: &NetworkTransform) -> Pose {
    let mut copy = NetworkTransform::new(*t.config()).at(t.pose());
    let mut bytes = Vec::new();
    let _ = copy.write_full(&mut bytes);
    let _ = copy.read_full(&mut &bytes[..]);
    copy.pose()
}

fn close(a: &Pose, b: &Pose) -> bool {
    position_error_mm(a, b) < 0.1 && rotation_dot(a, b).abs() > 0.99999
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn quantile_us(sorted: &[Duration], q: f64) -> Option<f64> {
    percentile(sorted, q).map(|d| d.as_secs_f64() * 1e6)
}

/// The server, its clients and the network, stepped frame by frame.
struct World {
    net: SimNet,
    server: ServerObjectManager,
    server_addr: SocketAddr,
    clients: Vec<ClientObjectManager>,
    players: Vec<PlayerId>,
    now: Instant,
}

impl World {
    fn new(plan: &Plan, interval: Duration) -> BenchResult<Self> {
        let net = SimNet::new(plan.link.clone(), plan.seed);
        let mut objects = ObjectConfig::default();
        let mut sync = TransformSyncConfig::default();
        sync.interval = interval;
        sync.budget_kbps = plan.budget_kbps;
        objects.transforms = sync;
        let now = net.now();
        let server = NetworkServer::new(ServerConfig::default())?;
        let mut server = ServerObjectManager::with_config(server, objects.clone())?;
        let endpoint = net.endpoint(server.server().channels().endpoint_config());
        let server_addr = endpoint.addr();
        server.start(now, endpoint)?;
        let config = transform_config(interval);
        let mut clients = Vec::with_capacity(plan.clients);
        for _ in 0..plan.clients {
            let client = NetworkClient::new(ClientConfig::default())?;
            let mut client = ClientObjectManager::with_config(client, objects.clone())?;
            client.register_prefab(CUBE, move || NetworkTransform::new(config));
            client.register_prefab(PLAYER, move || NetworkTransform::new(config));
            let endpoint = net.endpoint(EndpointConfig {
                accept_connections: false,
                ..client.client().channels().endpoint_config()
            });
            client.connect(now, endpoint, server_addr)?;
            clients.push(client);
        }
        Ok(Self { net, server, server_addr, clients, players: Vec::new(), now })
    }

    /// One frame: the server, then every client, updates at `now`; returns the wall time
    /// of the server's update and the heap allocations made in it (and in the clients').
    fn update(&mut self) -> BenchResult<(Duration, u64, u64)> {
        let now = self.now;
        let mut result = Ok(());
        let start = crate::now();
        let server_allocs = allocations_in(|| result = self.server.update(now));
        let took = crate::now() - start;
        result?;
        let mut client_allocs = 0;
        for client in &mut self.clients {
            let mut result = Ok(());
            client_allocs += allocations_in(|| result = client.update(now));
            result?;
        }
        Ok((took, server_allocs, client_allocs))
    }

    /// Moves the clock on to `at`.
    fn advance_to(&mut self, at: Instant) {
        self.net.advance_to(at);
        self.now = self.net.now();
    }

    /// Frames until `done` holds (at most `limit` of virtual time).
    fn run_until(
        &mut self,
        frame: Duration,
        limit: Duration,
        mut done: impl FnMut(&mut World) -> bool,
    ) -> BenchResult<bool> {
        let end = self.now + limit;
        while self.now < end {
            self.update()?;
            if done(self) {
                return Ok(true);
            }
            let next = self.now + frame;
            self.advance_to(next);
        }
        Ok(false)
    }

    /// Each client's player on the server, matched by address.
    fn learn_players(&mut self) -> BenchResult<()> {
        let ids: Vec<PlayerId> = self.server.server().players().collect();
        let server = self.server.server_mut();
        let addresses: Vec<_> =
            ids.iter().map(|id| (*id, server.player(*id).and_then(|p| p.address()))).collect();
        self.players = self
            .clients
            .iter()
            .map(|c| {
                let mine = c.client().local_addr();
                addresses.iter().find(|(_, a)| a.is_some() && *a == mine).map(|(id, _)| *id)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("a client's player was not found")?;
        Ok(())
    }

    fn server_ms(&self) -> f64 {
        self.server.server().server_time(self.now).unwrap_or_default().as_secs_f64() * 1000.0
    }

    fn downstream_bytes(&self) -> u64 {
        self.net.sent(self.server_addr).bytes
    }

    fn server_datagrams(&self) -> u64 {
        self.net.sent(self.server_addr).datagrams
    }

    fn upstream(&self) -> (u64, u64) {
        self.clients
            .iter()
            .filter_map(|c| c.client().local_addr())
            .map(|a| self.net.sent(a))
            .fold((0, 0), |(b, d), s| (b + s.bytes, d + s.datagrams))
    }
}

/// The per-cube bookkeeping of the measurement.
#[derive(Debug, Default, Clone, Copy)]
struct Track {
    /// Server time (ms) at which its current motion began.
    motion_start: Option<f64>,
    /// Server time (ms) of the tick it last moved at.
    last_moved: Option<f64>,
    ever_moved: bool,
}

/// Runs the workload.
pub(crate) fn run(plan: &Plan) -> BenchResult<Outcome> {
    if plan.clients == 0 || plan.clients > 200 {
        return Err("--clients must be 1 to 200 (the simulated network's addresses)".into());
    }
    if plan.objects < 2 {
        return Err("--objects must be at least 2 (a player cube and a small one)".into());
    }
    if !(plan.rate >= 1.0 && plan.rate <= 240.0) {
        return Err("--rate must be between 1 and 240 Hz".into());
    }
    if !(plan.duration_s >= 1.0 && plan.duration_s <= 600.0) {
        return Err("--duration-s must be between 1 and 600".into());
    }
    let frame = Duration::from_secs_f64(1.0 / plan.rate);
    let mut world = World::new(plan, frame)?;
    let joined = world.run_until(frame, Duration::from_secs(30), |w| {
        w.clients.iter().all(|c| c.client().is_authenticated())
            && w.server.server().players().filter(|p| w.server.is_ready(*p)).count()
                >= w.clients.len()
    })?;
    if !joined {
        return Err("the clients did not join within 30 s of virtual time".into());
    }
    world.learn_players()?;

    // The scene, spawned: objects 0..rollers are the player cubes.
    let mut scene = Scene::new(plan.objects, plan.seed);
    if let Some(radius) = plan.interest_radius {
        let grid = sturnus_object::interest::GridInterest::<PlayerId, NetId>::new(radius, radius)
            .map_err(|err| format!("--interest-radius: {err}"))?;
        world.server.set_interest(grid);
        // Each player rides a roller: its point of view from the start.
        for (r, player) in world.players.iter().enumerate() {
            let roller = &scene.rollers[r % scene.rollers.len()];
            world.server.set_player_position(*player, roller.pose.position);
        }
    }
    let config = transform_config(frame);
    let mut ids: Vec<NetId> = Vec::with_capacity(plan.objects);
    for roller in &scene.rollers {
        let mut t = NetworkTransform::new(config).at(roller.pose);
        t.set_important(true);
        ids.push(world.server.spawn(PLAYER, t, None)?);
    }
    let rollers = ids.len();
    // In batches: a connection's transport queues at most 4,096 messages (a player it cannot
    // take is sent away as overloaded), so each batch goes out before the next is spawned.
    for batch in scene.cubes.chunks(SPAWN_BATCH) {
        for cube in batch {
            let t = NetworkTransform::new(config).at(cube.pose);
            ids.push(world.server.spawn(CUBE, t, None)?);
        }
        let spawned = world.run_until(frame, Duration::from_secs(60), |w| {
            w.clients.iter().zip(&w.players).all(|(c, player)| {
                // Under interest, what the player observes; else everything.
                let expected = if plan.interest_radius.is_some() {
                    ids.iter().filter(|id| w.server.observers(**id).any(|p| p == *player)).count()
                } else {
                    ids.len()
                };
                c.object_count() >= expected
            })
        })?;
        if !spawned {
            let have: Vec<usize> =
                world.clients.iter().map(ClientObjectManager::object_count).collect();
            return Err(format!(
                "the objects were not spawned within 60 s of virtual time: the clients have \
                 {have:?} of {}",
                ids.len()
            )
            .into());
        }
    }
    // A second unmeasured, for the spawns' acknowledgements and the clocks to settle.
    world.run_until(frame, Duration::from_secs(1), |_| false)?;

    let frames = (plan.duration_s * plan.rate).round() as usize;
    let rest_frames = frames / 5;
    let moving_frames = frames - 2 * rest_frames;
    let roll_frames = ((moving_frames as f64) * 0.65).round().max(1.0) as usize;
    let per_window = ((WINDOW.as_secs_f64() * plan.rate).round() as usize).max(1);
    let clients = plan.clients as f64;

    let mut tracks = vec![Track::default(); scene.cubes.len() + rollers];
    let mut histories: Vec<History> = (0..tracks.len()).map(|_| History::default()).collect();
    let mut ages: Vec<f64> = Vec::new();
    let mut errors: Vec<f64> = Vec::new();
    let mut rot_errors: Vec<f64> = Vec::new();
    let mut window_errors: Vec<f64> = Vec::new();
    let mut windows: Vec<Window> = Vec::new();
    let mut tick_times: Vec<Duration> = Vec::new();
    let mut rest_tick_times: Vec<Duration> = Vec::new();
    let mut moving_server_time = Duration::ZERO;
    let (mut server_allocs, mut client_allocs, mut sim_copies, mut client_copies) = (0, 0, 0, 0);
    let mut window = Window::default();
    let (mut window_wire, mut window_snap) =
        (world.downstream_bytes(), world.server.stats().snapshot_bytes);
    let mut phase_marks: [(u64, u64, u64, (u64, u64)); 4] = Default::default();
    let mark = |w: &World| {
        let s = w.server.stats();
        (w.downstream_bytes(), s.transform_updates, s.transform_update_bits, w.upstream())
    };
    let mark_snap = |w: &World| w.server.stats().snapshot_bytes;
    let mut snap_marks = [0_u64; 2];
    let mut updates_marks = [0_u64; 2];
    let mut states_marks = [0_u64; 2];
    let steady_from = rest_frames + moving_frames / 6;
    let steady_to = rest_frames + roll_frames;

    for k in 0..frames {
        if k == 0 {
            phase_marks[0] = mark(&world);
        }
        if k == rest_frames {
            phase_marks[1] = mark(&world);
            snap_marks[0] = mark_snap(&world);
        }
        if k == rest_frames + moving_frames {
            phase_marks[2] = mark(&world);
            snap_marks[1] = mark_snap(&world);
        }
        if k == steady_from {
            updates_marks[0] = world.server.stats().transform_updates;
            states_marks[0] = world.clients.iter().map(|c| c.stats().transform_states).sum();
        }
        if k == steady_to {
            updates_marks[1] = world.server.stats().transform_updates;
            states_marks[1] = world.clients.iter().map(|c| c.stats().transform_states).sum();
        }
        let moving_phase = (rest_frames..rest_frames + moving_frames).contains(&k);
        // The scene's step, set on the server's transforms.
        let now_ms = world.server_ms();
        let stamp = now_ms.floor() as u64;
        let mut moved_now: Vec<usize> = Vec::new();
        if moving_phase {
            let m = k - rest_frames;
            let rolling = m < roll_frames;
            if rolling {
                scene.roll((m + 1) as f32 / roll_frames as f32);
            }
            scene.step(frame.as_secs_f32(), rolling);
            for (r, roller) in scene.rollers.iter().enumerate() {
                if rolling {
                    moved_now.push(r);
                    set_pose(&mut world.server, ids[r], roller.pose);
                }
            }
            for (i, cube) in scene.cubes.iter().enumerate() {
                if cube.changed {
                    moved_now.push(rollers + i);
                    set_pose(&mut world.server, ids[rollers + i], cube.pose);
                }
            }
            for (r, player) in world.players.iter().enumerate() {
                let roller = &scene.rollers[r % scene.rollers.len()];
                world.server.set_player_position(*player, roller.pose.position);
            }
        }
        for &i in &moved_now {
            let track = &mut tracks[i];
            let pose =
                if i < rollers { scene.rollers[i].pose } else { scene.cubes[i - rollers].pose };
            if track.motion_start.is_none() {
                track.motion_start = Some(now_ms);
                // It stood where it was until now.
                if let Some(&(_, last)) = histories[i].states.last() {
                    histories[i].push(stamp.saturating_sub(1), last);
                }
            }
            track.last_moved = Some(now_ms);
            track.ever_moved = true;
            histories[i].push(stamp, pose);
        }
        // A cube that did not move this tick is at rest: its motion is over.
        for track in &mut tracks {
            if track.motion_start.is_some() && track.last_moved != Some(now_ms) {
                track.motion_start = None;
            }
        }

        let datagrams_before = world.server_datagrams();
        let (_, up_before) = world.upstream();
        let (took, s_allocs, c_allocs) = world.update()?;
        if moving_phase {
            moving_server_time += took;
            tick_times.push(took);
        } else if k < rest_frames {
            rest_tick_times.push(took);
        }
        if (steady_from..steady_to).contains(&k) {
            server_allocs += s_allocs;
            client_allocs += c_allocs;
            sim_copies += world.server_datagrams() - datagrams_before;
            client_copies += world.upstream().1 - up_before;
        }

        // Update age of what moves now, and interpolation error of what moved lately.
        let server_ms = world.server_ms();
        for client in &mut world.clients {
            for (i, track) in tracks.iter().enumerate() {
                if !track.ever_moved {
                    continue;
                }
                let Some(t) = client.get_mut::<NetworkTransform>(ids[i]) else { continue };
                if let Some(start) = track.motion_start.filter(|_| moving_phase) {
                    let last = t.last_update().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
                    ages.push(server_ms - last.max(start));
                }
                let recent =
                    track.last_moved.is_some_and(|at| server_ms - at <= AFTER_REST * 1000.0);
                if recent {
                    let pose = t.sample(world.now);
                    let Some(render) = t.buffer().render_time() else { continue };
                    let Some(truth) = histories[i].at(render.as_secs_f64() * 1000.0) else {
                        continue;
                    };
                    let e = position_error_mm(&pose, &truth);
                    errors.push(e);
                    window_errors.push(e);
                    rot_errors.push(rotation_error_deg(&pose, &truth));
                }
            }
        }

        if (k + 1) % per_window == 0 {
            let wire = world.downstream_bytes();
            let snap = world.server.stats().snapshot_bytes;
            window.at = (k + 1 - per_window) as f64 / plan.rate;
            window.wire_bytes = wire - window_wire;
            window.snapshot_bytes = snap - window_snap;
            let errs = sorted(std::mem::take(&mut window_errors));
            window.error_p50_mm = quantile(&errs, 0.5);
            window.error_p99_mm = quantile(&errs, 0.99);
            windows.push(window);
            window = Window::default();
            (window_wire, window_snap) = (wire, snap);
        }
        let next = world.now + frame;
        world.advance_to(next);
    }
    phase_marks[3] = mark(&world);

    let kbps = |bytes: u64, frames: usize| {
        if frames == 0 {
            0.0
        } else {
            bytes as f64 * 8.0 / (frames as f64 / plan.rate) / 1000.0 / clients
        }
    };
    let [at_rest, moving, after, end] = phase_marks;
    let window_kbps =
        |w: &Window| w.wire_bytes as f64 * 8.0 / WINDOW.as_secs_f64() / 1000.0 / clients;
    let moving_windows = windows
        .iter()
        .filter(|w| {
            let start = rest_frames as f64 / plan.rate;
            w.at >= start && w.at < start + moving_frames as f64 / plan.rate
        })
        .map(window_kbps);
    let updates = after.1 - moving.1;
    let ages = sorted(ages);
    let errors = sorted(errors);
    let rot_errors = sorted(rot_errors);
    let mut tick_sorted = tick_times.clone();
    tick_sorted.sort();
    rest_tick_times.sort();
    let steady_updates = updates_marks[1] - updates_marks[0];
    let steady_states = states_marks[1] - states_marks[0];

    // Every client holds every moved transform where the scene left it (quantised), and
    // renders it there.
    let mut stale_at_end = 0;
    let mut rest_error_max_mm: f64 = 0.0;
    let now = world.now;
    for (i, id) in ids.iter().enumerate() {
        if !tracks[i].ever_moved {
            continue;
        }
        let pose = if i < rollers { scene.rollers[i].pose } else { scene.cubes[i - rollers].pose };
        let want = quantised(&NetworkTransform::new(config).at(pose));
        for (client, player) in world.clients.iter_mut().zip(&world.players) {
            if !world.server.observers(*id).any(|p| p == *player) {
                continue; // under interest, not this client's to hold
            }
            let have = client.get::<NetworkTransform>(*id).map(NetworkTransform::pose);
            if let Some(t) = client.get_mut::<NetworkTransform>(*id) {
                rest_error_max_mm = rest_error_max_mm.max(position_error_mm(&t.sample(now), &want));
            }
            if !have.is_some_and(|p| close(&p, &want)) {
                stale_at_end += 1;
            }
        }
    }

    let outcome = Outcome {
        clients: plan.clients,
        objects: plan.objects,
        rate: plan.rate,
        budget_kbps: plan.budget_kbps,
        seconds: frames as f64 / plan.rate,
        seed: plan.seed,
        link: plan.link_name.clone(),
        interest_radius: plan.interest_radius,
        kbps_at_rest: kbps(moving.0 - at_rest.0, rest_frames),
        kbps_rest_after: kbps(end.0 - after.0, frames - rest_frames - moving_frames),
        kbps_moving: kbps(after.0 - moving.0, moving_frames),
        kbps_moving_peak: moving_windows.fold(0.0, f64::max),
        snapshot_kbps_moving: kbps(snap_marks[1] - snap_marks[0], moving_frames),
        kbps_up_moving: kbps(after.3.0 - moving.3.0, moving_frames),
        bits_per_changed_object: (updates > 0)
            .then(|| (after.2 - moving.2) as f64 / updates as f64),
        cubes_moved: tracks.iter().skip(rollers).filter(|t| t.ever_moved).count(),
        update_age_p50_ms: quantile(&ages, 0.5),
        update_age_p99_ms: quantile(&ages, 0.99),
        max_update_age_ms: ages.last().copied(),
        interp_error_p50_mm: quantile(&errors, 0.5),
        interp_error_p99_mm: quantile(&errors, 0.99),
        interp_rot_error_p99_deg: quantile(&rot_errors, 0.99),
        server_cpu_us_per_client_tick: (!tick_times.is_empty())
            .then(|| moving_server_time.as_secs_f64() * 1e6 / tick_times.len() as f64 / clients),
        server_tick_p50_us: quantile_us(&tick_sorted, 0.5),
        server_tick_p99_us: quantile_us(&tick_sorted, 0.99),
        server_tick_rest_p50_us: quantile_us(&rest_tick_times, 0.5),
        allocs_per_update: (steady_updates > 0)
            .then(|| server_allocs.saturating_sub(sim_copies) as f64 / steady_updates as f64),
        client_allocs_per_state: (steady_states > 0)
            .then(|| client_allocs.saturating_sub(client_copies) as f64 / steady_states as f64),
        transform_updates_moving: updates,
        snapshots_sent: world.server.stats().snapshots_sent,
        stale_at_end,
        rest_error_max_mm,
        rss_kib: crate::probe::rss_kib(),
        windows,
    };
    if let Some(dir) = &plan.plot {
        plot(dir, plan, &outcome, rest_frames, moving_frames)?;
    }
    Ok(outcome)
}

fn set_pose(server: &mut ServerObjectManager, id: NetId, pose: Pose) {
    if let Some(t) = server.get_mut::<NetworkTransform>(id) {
        t.set_pose(pose);
    }
}

/// Writes `cubes-bandwidth.svg` and `cubes-interpolation.svg` into `dir`.
fn plot(
    dir: &std::path::Path,
    plan: &Plan,
    outcome: &Outcome,
    rest_frames: usize,
    moving_frames: usize,
) -> BenchResult<()> {
    use plotters::prelude::*;

    std::fs::create_dir_all(dir)?;
    let clients = plan.clients as f64;
    let end = outcome.seconds;
    let move_start = rest_frames as f64 / plan.rate;
    let move_end = (rest_frames + moving_frames) as f64 / plan.rate;
    let kbps = |bytes: u64| bytes as f64 * 8.0 / WINDOW.as_secs_f64() / 1000.0 / clients;
    let title = format!(
        "{} cubes, {} client(s), {} Hz, {}",
        plan.objects, plan.clients, plan.rate, plan.link_name
    );

    let path = dir.join("cubes-bandwidth.svg");
    let root = SVGBackend::new(&path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let peak = outcome.windows.iter().map(|w| kbps(w.wire_bytes)).fold(0.0, f64::max);
    let top = peak.max(f64::from(plan.budget_kbps)) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Downstream per client, 100 ms windows — {title}"), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart.configure_mesh().x_desc("time (s)").y_desc("kbit/s per client").draw()?;
    let budget = f64::from(plan.budget_kbps);
    chart
        .draw_series(LineSeries::new([(0.0, budget), (end, budget)], RED.stroke_width(1)))?
        .label(format!("budget {} kbit/s", plan.budget_kbps))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    for at in [move_start, move_end] {
        chart.draw_series(LineSeries::new([(at, 0.0), (at, top)], BLACK.mix(0.3)))?;
    }
    chart
        .draw_series(LineSeries::new(
            outcome.windows.iter().map(|w| (w.at, kbps(w.wire_bytes))),
            BLUE.stroke_width(2),
        ))?
        .label("on the wire (every datagram)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            outcome.windows.iter().map(|w| (w.at, kbps(w.snapshot_bytes))),
            GREEN.stroke_width(1),
        ))?
        .label("snapshot messages")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);

    let path = dir.join("cubes-interpolation.svg");
    let root = SVGBackend::new(&path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    // A log scale: quantisation (a millimetre) and a stopped player cube's extrapolation
    // (tens of centimetres) on one plot.
    let floor = 0.01;
    let top = outcome.windows.iter().filter_map(|w| w.error_p99_mm).fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Interpolation error of moving cubes, 100 ms windows — {title}"),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, (floor..top).log_scale())?;
    chart.configure_mesh().x_desc("time (s)").y_desc("position error (mm)").draw()?;
    for at in [move_start, move_end] {
        chart.draw_series(LineSeries::new([(at, floor), (at, top)], BLACK.mix(0.3)))?;
    }
    let series = |pick: fn(&Window) -> Option<f64>| {
        let points = outcome.windows.iter().filter_map(move |w| pick(w).map(|e| (w.at, e)));
        points.map(move |(at, e)| (at, e.max(floor))).collect::<Vec<_>>()
    };
    chart
        .draw_series(LineSeries::new(series(|w| w.error_p99_mm), RED.stroke_width(2)))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(LineSeries::new(series(|w| w.error_p50_mm), BLUE.stroke_width(2)))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run of the default scene: the JSON line has its fields, rest costs less than
    /// motion, every moved cube reached every client, and nothing starved.
    #[test]
    fn a_short_cubes_run_is_sane() {
        let plan = Plan { duration_s: 4.0, clients: 2, ..Plan::defaults() };
        let outcome = run(&plan).unwrap();
        let json = outcome.to_json();
        for name in [
            "\"workload\":\"cubes\"",
            "\"kbps_at_rest\":",
            "\"kbps_moving\":",
            "\"bits_per_changed_object\":",
            "\"budget_kbps\":256",
            "\"update_age_p50_ms\":",
            "\"update_age_p99_ms\":",
            "\"max_update_age_ms\":",
            "\"server_cpu_us_per_client_tick\":",
            "\"allocs_per_update\":",
            "\"interp_error_p50_mm\":",
            "\"interp_error_p99_mm\":",
        ] {
            assert!(json.contains(name), "{name} missing from {json}");
        }
        assert!(outcome.cubes_moved > 10, "only {} cubes moved", outcome.cubes_moved);
        assert!(
            outcome.kbps_at_rest < outcome.kbps_moving,
            "at rest {} ≥ moving {}",
            outcome.kbps_at_rest,
            outcome.kbps_moving
        );
        assert!(outcome.transform_updates_moving > 0);
        assert!(outcome.bits_per_changed_object.is_some_and(|b| b > 0.0));
        assert_eq!(outcome.stale_at_end, 0, "a moved cube never reached a client: {json}");
        // Every moving cube is updated: no age beyond a second at a 256 kbit/s budget.
        assert!(outcome.max_update_age_ms.is_some_and(|a| a < 1000.0), "{json}");
        assert!(outcome.interp_error_p50_mm.is_some());
    }

    /// Under grid interest a client holds only what is near its roller, and each cube it
    /// observes at the end is where the scene left it.
    #[test]
    fn a_short_run_under_interest_holds_the_near_cubes() {
        let plan =
            Plan { duration_s: 4.0, clients: 2, interest_radius: Some(6.0), ..Plan::defaults() };
        let outcome = run(&plan).unwrap();
        let json = outcome.to_json();
        assert!(json.contains("\"interest_radius\":6.0"), "{json}");
        assert_eq!(outcome.stale_at_end, 0, "an observed cube is not where it rests: {json}");
        assert!(outcome.cubes_moved > 10, "only {} cubes moved", outcome.cubes_moved);
    }

    #[test]
    fn the_scene_moves_then_rests() {
        let mut scene = Scene::new(901, 7);
        assert_eq!((scene.rollers.len(), scene.cubes.len()), (1, 900));
        let dt = 1.0 / 60.0;
        for f in 0..240 {
            scene.roll(f as f32 / 239.0);
            scene.step(dt, true);
        }
        let start = Scene::new(901, 7);
        let pushed = scene
            .cubes
            .iter()
            .zip(&start.cubes)
            .filter(|(now, then)| now.pose.position != then.pose.position)
            .count();
        assert!((10..300).contains(&pushed), "{pushed} cubes pushed");
        for _ in 0..600 {
            scene.step(dt, false);
        }
        assert!(scene.cubes.iter().all(|c| !c.moving), "cubes still moving after 10 s");
    }
}

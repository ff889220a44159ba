//! A swarm of drones moving on Lissajous paths, synchronised with `NetworkTransform` and drawn
//! interpolated in the terminal. The server moves every drone each frame but sends each one's
//! state only 10 times a second (`--rate`); a client renders them at 30 frames a second from
//! `NetworkTransform::sample(now)`, a little in the past and blended between states, so they
//! glide. `--raw` draws the newest state received instead (`NetworkTransform::pose()`): the
//! drones then hop from state to state. `--link` sends the client's traffic through the link
//! emulator (both ways), to watch what loss and jitter do: the interpolation delay widens with
//! the jitter measured, and a lost state is bridged by the states on either side of it.
//!
//! ```text
//! cargo run -p sturnus-examples --bin swarm                                   # server + client, one process
//! cargo run -p sturnus-examples --bin swarm -- --link delay=50ms,jitter=20ms,loss=10%
//! cargo run -p sturnus-examples --bin swarm -- --raw --link 4g                # the newest states, not interpolated
//! cargo run -p sturnus-examples --bin swarm -- --server 127.0.0.1:7790        # a server alone
//! cargo run -p sturnus-examples --bin swarm -- --client 127.0.0.1:7790 --link bad
//! ```
//!
//! Each drone is an object with a 2D `NetworkTransform` (`TransformConfig::two_d`: x and y at
//! 1 cm over a 100 × 50 m field, the heading at 12 bits) and a `Drone` behaviour naming its
//! path. Every fourth drone carries a turret that spins on its own: the same object holds a
//! second, child transform (`NetworkTransform::child`, part `TURRET_PART`) that syncs only the
//! angle (`PositionSync::Off`), drawn as `-`, `/`, `|` or `\` beside its drone. The server turns
//! it through `transform_part_mut(id, TURRET_PART)` and a client samples it there too, while
//! `get::<NetworkTransform>` finds the drone's own (root) transform, the object's first.
//!
//! The status lines show what the client sees: snapshots per second, kbit/s received, the
//! interpolation delay (`buffer().delay()`), the jitter measured, late states, how far behind
//! the server's clock the view is, and the interpolation error. The motion is a function of the
//! server's clock, so the client knows where each drone truly was at the moment it renders
//! (`buffer().render_time()`) and measures how far the drawn one is from it.
//!
//! `--headless` draws nothing and prints one JSON line at the end (for scripts and tests);
//! `--frames N` or `--duration-s S` end the run, Ctrl-C too. `--objects N`, `--rate HZ`,
//! `--budget KBPS` (each client's byte budget for snapshots), `--fps N` and `--seed N` (the link
//! emulator's) change the scene.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints what it does")]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sturnus_examples::{conditioned_with, parse_link, udp_client, udp_server};
use sturnus_message::{
    ClientConfig, ClientEvent, NetworkClient, NetworkServer, ServerConfig, driver,
};
use sturnus_netem::LinkConfig;
use sturnus_object::interpolation::Pose;
use sturnus_object::quantize::QuantizeError;
use sturnus_object::transform::{NetworkTransform, PositionSync, TransformConfig};
use sturnus_object::{
    ClientObjectManager, NetId, NetworkBehaviour, ObjectConfig, PrefabId, ServerObjectManager,
    SyncVar,
};
use sturnus_socket::{SocketFactory, UdpSocketFactory};
use sturnus_transport::Host;

const DRONE: PrefabId = PrefabId::of_name("swarm.drone");
/// A drone with a turret: its root transform, then the turret's child transform.
const ARMED_DRONE: PrefabId = PrefabId::of_name("swarm.armed_drone");
/// The part an armed drone's child transform moves: its turret.
const TURRET_PART: u16 = 1;
/// The field, in metres: x in `[0, WIDTH]`, y in `[0, HEIGHT]`.
const WIDTH: f32 = 100.0;
const HEIGHT: f32 = 50.0;
/// The view: columns and rows inside the frame.
const COLS: usize = 78;
const ROWS: usize = 20;
/// Errors are measured once the view has had states for this long (the buffer fills first).
const WARM_UP: Duration = Duration::from_secs(1);

const USAGE: &str = "usage: swarm [--server ADDR | --client ADDR] [--link SPEC] [--raw] \
                     [--headless] [--frames N] [--duration-s S] [--objects N] [--rate HZ] \
                     [--budget KBPS] [--fps N] [--seed N]";

const HELP: &str = "
  (no mode)       a server and a client in one process, over UDP on 127.0.0.1
  --server ADDR   a server alone, listening on ADDR
  --client ADDR   a client alone, drawing the server at ADDR
  --link SPEC     the client's traffic through the link emulator, both ways: a preset
                  (perfect, lan, wifi, 4g, bad), settings (delay=50ms,jitter=10ms,loss=5%,
                  dup=1%,reorder=1%), or a preset and settings (4g,loss=10%)
  --raw           draw the newest state received, not the interpolated pose
  --headless      draw nothing; print one JSON line of what the client saw at the end
  --frames N      end after N frames of the client (or of the server alone)
  --duration-s S  end after S seconds (headless without --frames: 3 s)
  --objects N     drones (default 40; every fourth has a turret)
  --rate HZ       states per second of each transform (default 10)
  --budget KBPS   each client's budget for snapshots (default 256)
  --fps N         frames per second of the view (default 30)
  --seed N        the link emulator's seed (default 1)";

/// Which drone of the scene an object is: its path.
#[derive(Debug, Default, NetworkBehaviour)]
struct Drone {
    #[sync]
    path: SyncVar<u32>,
}

/// Where drone `path` is at `t` seconds of server time, and which way it heads (radians).
fn drone_at(path: u32, t: f64) -> ([f32; 2], f32) {
    let i = f64::from(path);
    let (ax, ay) = (12.0 + (i * 7.0) % 34.0, 5.0 + (i * 5.0) % 18.0);
    let (wx, wy) = (0.25 + 0.06 * (i % 5.0), 0.35 + 0.05 * (i % 7.0));
    let (px, py) = (i * 0.7, i * 1.3);
    let x = 50.0 + ax * (wx * t + px).sin();
    let y = 25.0 + ay * (wy * t + py).sin();
    let (vx, vy) = (ax * wx * (wx * t + px).cos(), ay * wy * (wy * t + py).cos());
    #[expect(clippy::cast_possible_truncation, reason = "metres and radians fit f32")]
    ([x as f32, y as f32], vy.atan2(vx) as f32)
}

/// The angle of drone `path`'s turret at `t` seconds (radians, in `[-π, π]`).
fn turret_at(path: u32, t: f64) -> f32 {
    let turns = (1.5 * t + f64::from(path)) / std::f64::consts::TAU;
    let angle = (turns - turns.round()) * std::f64::consts::TAU;
    #[expect(clippy::cast_possible_truncation, reason = "radians fit f32")]
    {
        angle as f32
    }
}

/// The angle about z of a 2D pose.
fn angle_of(pose: &Pose) -> f32 {
    let [_, _, z, w] = pose.rotation;
    2.0 * z.atan2(w)
}

/// The smallest difference of two angles.
fn angle_between(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(std::f32::consts::TAU);
    d.min(std::f32::consts::TAU - d)
}

fn drone_config(rate: f64) -> Result<TransformConfig, QuantizeError> {
    Ok(TransformConfig::two_d([0.0, 0.0], [WIDTH, HEIGHT], 0.01)?
        .with_send_interval(Duration::from_secs_f64(1.0 / rate)))
}

/// A turret's transform: the angle only (it sits on its drone, whose root transform moves it).
fn turret_config(rate: f64) -> Result<TransformConfig, QuantizeError> {
    Ok(drone_config(rate)?.with_position(PositionSync::Off))
}

enum Mode {
    Local,
    Server(SocketAddr),
    Client(SocketAddr),
}

struct Options {
    mode: Mode,
    link: Option<(String, LinkConfig)>,
    raw: bool,
    headless: bool,
    frames: Option<u64>,
    duration: Option<Duration>,
    objects: u32,
    rate: f64,
    budget: u32,
    fps: u32,
    seed: u64,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        mode: Mode::Local,
        link: None,
        raw: false,
        headless: false,
        frames: None,
        duration: None,
        objects: 40,
        rate: 10.0,
        budget: 256,
        fps: 30,
        seed: 1,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value (try --help)"));
        match arg.as_str() {
            "--server" => o.mode = Mode::Server(value()?.parse().map_err(|e| format!("{e}"))?),
            "--client" => o.mode = Mode::Client(value()?.parse().map_err(|e| format!("{e}"))?),
            "--link" => {
                let spec = value()?;
                o.link = Some((spec.clone(), parse_link(&spec)?));
            }
            "--raw" => o.raw = true,
            "--headless" => o.headless = true,
            "--frames" => o.frames = Some(number(&arg, &value()?)?),
            "--duration-s" => {
                let s: f64 = number(&arg, &value()?)?;
                o.duration = Some(Duration::try_from_secs_f64(s).map_err(|e| format!("{e}"))?);
            }
            "--objects" => o.objects = number(&arg, &value()?)?,
            "--rate" => o.rate = number(&arg, &value()?)?,
            "--budget" => o.budget = number(&arg, &value()?)?,
            "--fps" => o.fps = number(&arg, &value()?)?,
            "--seed" => o.seed = number(&arg, &value()?)?,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !(o.rate > 0.0 && o.rate <= 60.0) {
        return Err("--rate must be above 0 and at most 60".into());
    }
    if o.fps == 0 || o.fps > 240 {
        return Err("--fps must be between 1 and 240".into());
    }
    if o.objects > 4000 {
        return Err("--objects must be at most 4000".into());
    }
    if o.link.is_some() && matches!(o.mode, Mode::Server(_)) {
        return Err("--link conditions a client's traffic: use it with a client".into());
    }
    if o.headless && o.frames.is_none() && o.duration.is_none() {
        o.duration = Some(Duration::from_secs(3));
    }
    Ok(o)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{flag}: bad number {value}"))
}

fn main() -> ExitCode {
    sturnus_examples::init_logging();
    if sturnus_examples::wants_help() {
        println!("{USAGE}\n{HELP}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("swarm: {message}");
            return ExitCode::from(2);
        }
    };
    let outcome = run(&options);
    if !options.headless && !matches!(options.mode, Mode::Server(_)) {
        // Show the cursor again (the view hides it), whether the run ended well or not.
        print!("\x1b[?25h");
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("swarm: {err}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn run(options: &Options) -> Result<(), Error> {
    // Ctrl-C and SIGTERM end the loop; the flag is checked each iteration.
    let interrupted = sturnus_examples::interrupt_flag();
    let stop = || interrupted.is_some_and(|flag| flag.load(Ordering::Relaxed));
    let start = driver::now();
    let mut server = match options.mode {
        Mode::Local => Some(Swarm::start("127.0.0.1:0".parse()?, options, start)?),
        Mode::Server(addr) => Some(Swarm::start(addr, options, start)?),
        Mode::Client(_) => None,
    };
    let server_addr = match (&options.mode, &server) {
        (Mode::Client(addr), _) => *addr,
        (_, Some(swarm)) => swarm.addr,
        (_, None) => return Err("no server".into()),
    };
    let mut view = match options.mode {
        Mode::Server(_) => {
            println!("[server] listening on {server_addr} with {} drones", options.objects);
            None
        }
        _ => Some(View::connect(server_addr, options, start)?),
    };
    let frame = Duration::from_secs_f64(1.0 / f64::from(options.fps));
    let mut next_frame = start;
    let mut next_report = start + Duration::from_secs(1);
    let mut frames = 0_u64;
    loop {
        let now = driver::now();
        let out_of_time = options.duration.is_some_and(|d| now - start >= d);
        let out_of_frames = options.frames.is_some_and(|n| frames >= n);
        if out_of_time || out_of_frames || stop() {
            break;
        }
        if let Some(swarm) = &mut server {
            swarm.update(now)?;
        }
        if let Some(view) = &mut view {
            view.update(now)?;
        }
        if now >= next_frame {
            frames += 1;
            next_frame = (next_frame + frame).max(now);
            if let Some(view) = &mut view {
                view.frame(now);
                if !options.headless {
                    view.draw(options)?;
                }
            }
        }
        if now >= next_report {
            next_report += Duration::from_secs(1);
            if let (Some(swarm), None) = (&mut server, &view) {
                println!("[server] {}", swarm.report(now));
            }
        }
        let timeout =
            next_frame.saturating_duration_since(driver::now()).min(Duration::from_millis(2));
        match (&mut server, &mut view) {
            (Some(swarm), _) => swarm.objects.server_mut().wait(timeout)?,
            (None, Some(view)) => view.objects.client_mut().wait(timeout)?,
            (None, None) => {}
        }
    }
    if let Some(view) = &mut view {
        println!("{}", view.summary(options));
        view.objects.client_mut().disconnect();
        view.objects.update(driver::now())?;
    }
    if let Some(swarm) = &mut server {
        swarm.objects.stop();
    }
    Ok(())
}

/// The server: the drones, moved every frame.
struct Swarm {
    objects: ServerObjectManager,
    addr: SocketAddr,
    /// Each drone, its path, and whether it carries a turret.
    drones: Vec<(NetId, u32, bool)>,
    last_report: (Instant, u64),
}

impl Swarm {
    fn start(bind: SocketAddr, options: &Options, now: Instant) -> Result<Self, Error> {
        let config = ServerConfig::default();
        let transport = udp_server(&config.channels, bind)?;
        let mut object_config = ObjectConfig::default();
        // One snapshot per transform interval: every drone moves, so each has a new state.
        object_config.transforms.interval = Duration::from_secs_f64(1.0 / options.rate);
        object_config.transforms.budget_kbps = options.budget;
        let mut objects =
            ServerObjectManager::with_config(NetworkServer::new(config)?, object_config)?;
        let addr = objects.start(now, transport)?.ok_or("a UDP transport has an address")?;
        let (drone_config, turret_config) =
            (drone_config(options.rate)?, turret_config(options.rate)?);
        let mut drones = Vec::new();
        for path in 0..options.objects {
            let (position, heading) = drone_at(path, 0.0);
            let mut transform = NetworkTransform::new(drone_config);
            transform.set_position([position[0], position[1], 0.0]);
            transform.set_angle(heading);
            let mut drone = Drone::default();
            drone.path.set(path);
            let armed = path % 4 == 0;
            let id = if armed {
                // The root transform first: it is the one `get` finds and the one interest
                // places the object by.
                let mut turret = NetworkTransform::child(turret_config, TURRET_PART);
                turret.set_angle(turret_at(path, 0.0));
                objects.spawn(ARMED_DRONE, (transform, turret, drone), None)?
            } else {
                objects.spawn(DRONE, (transform, drone), None)?
            };
            drones.push((id, path, armed));
        }
        Ok(Self { objects, addr, drones, last_report: (now, 0) })
    }

    /// Moves every drone and turret to where it is at `now`, and runs the manager (which sends
    /// each transform's state at its rate).
    fn update(&mut self, now: Instant) -> Result<(), Error> {
        let t = self.objects.server().server_time(now).unwrap_or_default().as_secs_f64();
        for &(id, path, armed) in &self.drones {
            if let Some(transform) = self.objects.get_mut::<NetworkTransform>(id) {
                let (position, heading) = drone_at(path, t);
                transform.set_position([position[0], position[1], 0.0]);
                transform.set_angle(heading);
            }
            if armed {
                if let Some(turret) = self.objects.transform_part_mut(id, TURRET_PART) {
                    turret.set_angle(turret_at(path, t));
                }
            }
        }
        self.objects.update(now)?;
        while self.objects.poll_event().is_some() {}
        Ok(())
    }

    /// One status line: players, snapshot bytes per second.
    fn report(&mut self, now: Instant) -> String {
        let stats = self.objects.stats();
        let (at, bytes) = self.last_report;
        let seconds = (now - at).as_secs_f64().max(1e-3);
        #[expect(clippy::cast_precision_loss, reason = "a rate to print")]
        let kbps = (stats.snapshot_bytes - bytes) as f64 * 8.0 / 1000.0 / seconds;
        self.last_report = (now, stats.snapshot_bytes);
        format!(
            "{} players · snapshots {:.1} kbit/s out in all · {} snapshots, {} transform states sent",
            self.objects.server().player_count(),
            kbps,
            stats.snapshots_sent,
            stats.transform_updates
        )
    }
}

/// What the view shows of one object this frame.
#[derive(Debug, Clone, Copy)]
struct Shown {
    path: u32,
    position: [f32; 2],
}

/// One frame's interpolation buffer figures, over every transform sampled.
#[derive(Debug, Default)]
struct Figures {
    delay_sum: Duration,
    delay_n: u32,
    jitter: Duration,
    late: u64,
    /// How far behind the server's clock the view is (the first transform's render time).
    behind: Option<Duration>,
    /// Whether any transform has had a state.
    any_state: bool,
}

impl Figures {
    /// Samples `transform` for the frame at `now` and counts its buffer: the pose sampled, the
    /// pose drawn (the newest state received if `raw`), and the server time rendered.
    fn sample(
        &mut self,
        transform: &mut NetworkTransform,
        now: Instant,
        raw: bool,
    ) -> (Pose, Pose, Option<Duration>) {
        // Always sample: it moves the render clock, whichever pose is drawn.
        let sampled = transform.sample(now);
        let shown = if raw { transform.pose() } else { sampled };
        self.any_state |= transform.last_update().is_some();
        let buffer = transform.buffer();
        self.delay_sum += buffer.delay();
        self.delay_n += 1;
        self.jitter = self.jitter.max(buffer.jitter());
        self.late += buffer.late();
        (sampled, shown, buffer.render_time())
    }
}

/// A client: the drones as it draws them, and what it measured.
struct View {
    objects: ClientObjectManager,
    link: Option<String>,
    raw: bool,
    drones: HashMap<NetId, Shown>,
    /// Turrets: the drone each sits on (the same object), and its angle drawn.
    turrets: HashMap<NetId, f32>,
    /// Each drone's last drawn position and the path it has drawn since.
    paths: HashMap<NetId, ([f32; 2], f64)>,
    /// When the first state arrived.
    first_state: Option<Instant>,
    /// Interpolation error: sum, count, largest (metres); turrets' (radians).
    error: (f64, u64, f32),
    turret_error: (f64, u64, f32),
    /// For the rates: when, snapshots and bytes received then; the rates last measured.
    window: (Instant, u64, u64),
    rates: (f64, f64),
    /// This frame's buffer figures: mean delay, largest jitter, late states, behind.
    delay: Duration,
    jitter: Duration,
    late: u64,
    behind: Option<Duration>,
    frames: u64,
    drawn: bool,
}

impl View {
    fn connect(server: SocketAddr, options: &Options, now: Instant) -> Result<Self, Error> {
        let config = ClientConfig::default();
        let mut object_config = ObjectConfig::default();
        object_config.transforms.interval = Duration::from_secs_f64(1.0 / options.rate);
        let mut objects =
            ClientObjectManager::with_config(NetworkClient::new(config.clone())?, object_config)?;
        let (drone, turret) = (drone_config(options.rate)?, turret_config(options.rate)?);
        objects.register_prefab(DRONE, move || (NetworkTransform::new(drone), Drone::default()));
        objects.register_prefab(ARMED_DRONE, move || {
            (
                NetworkTransform::new(drone),
                NetworkTransform::child(turret, TURRET_PART),
                Drone::default(),
            )
        });
        match &options.link {
            None => objects.connect(now, udp_client(&config.channels, server)?, server)?,
            Some((_, link)) => {
                let socket = UdpSocketFactory::default().client_socket(server)?;
                let socket = conditioned_with(socket, link, options.seed)?;
                let host = Host::new(config.channels.endpoint_config(), socket)?;
                objects.connect(now, host, server)?;
            }
        }
        Ok(Self {
            objects,
            link: options.link.as_ref().map(|(spec, _)| spec.clone()),
            raw: options.raw,
            drones: HashMap::new(),
            turrets: HashMap::new(),
            paths: HashMap::new(),
            first_state: None,
            error: (0.0, 0, 0.0),
            turret_error: (0.0, 0, 0.0),
            window: (now, 0, 0),
            rates: (0.0, 0.0),
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            late: 0,
            behind: None,
            frames: 0,
            drawn: false,
        })
    }

    fn update(&mut self, now: Instant) -> Result<(), Error> {
        self.objects.update(now)?;
        while let Some(event) = self.objects.poll_event() {
            if let ClientEvent::Disconnected(reason) = event {
                return Err(format!("disconnected from the server: {reason:?}").into());
            }
        }
        while self.objects.poll_object_event().is_some() {}
        Ok(())
    }

    /// Samples every drone and turret for the frame at `now`, and measures.
    fn frame(&mut self, now: Instant) {
        self.frames += 1;
        let ids: Vec<NetId> = self.objects.objects().collect();
        let server_now = self.objects.client().server_time(now);
        let measuring = self.first_state.is_some_and(|at| now - at >= WARM_UP);
        let mut figures = Figures::default();
        self.drones.clear();
        self.turrets.clear();
        for id in ids {
            let armed = match self.objects.prefab(id) {
                Some(DRONE) => false,
                Some(ARMED_DRONE) => true,
                _ => continue,
            };
            let Some(path) = self.objects.get::<Drone>(id).map(|d| *d.path) else { continue };
            // The drone's own transform: the object's first, its root.
            let Some(transform) = self.objects.get_mut::<NetworkTransform>(id) else { continue };
            let (sampled, shown, render) = figures.sample(transform, now, self.raw);
            if let (Some(server), Some(render)) = (server_now, render) {
                figures.behind.get_or_insert(server.saturating_sub(render));
            }
            let position = [shown.position[0], shown.position[1]];
            self.drones.insert(id, Shown { path, position });
            let moved = self.paths.entry(id).or_insert((position, 0.0));
            let step = f64::from(distance(moved.0, position));
            *moved = (position, moved.1 + step);
            if let Some(t) = render.filter(|_| measuring) {
                let (truth, _) = drone_at(path, t.as_secs_f64());
                let e = distance(truth, [sampled.position[0], sampled.position[1]]);
                add(&mut self.error, e);
            }
            if !armed {
                continue;
            }
            // Its turret: the child transform of the same object.
            let Some(turret) = self.objects.transform_part_mut(id, TURRET_PART) else { continue };
            let (sampled, shown, render) = figures.sample(turret, now, self.raw);
            self.turrets.insert(id, angle_of(&shown));
            if let Some(t) = render.filter(|_| measuring) {
                let e = angle_between(turret_at(path, t.as_secs_f64()), angle_of(&sampled));
                add(&mut self.turret_error, e);
            }
        }
        if figures.any_state && self.first_state.is_none() {
            self.first_state = Some(now);
        }
        self.delay = figures.delay_sum / figures.delay_n.max(1);
        self.jitter = figures.jitter;
        self.late = figures.late;
        self.behind = figures.behind;
        let (at, snapshots, bytes) = self.window;
        if now - at >= Duration::from_secs(1) {
            let received = self.objects.stats().snapshots_received;
            let bytes_in = self.objects.client().connection_stats().map_or(0, |s| s.bytes_received);
            let seconds = (now - at).as_secs_f64();
            #[expect(clippy::cast_precision_loss, reason = "rates to print")]
            {
                self.rates = (
                    (received - snapshots) as f64 / seconds,
                    (bytes_in - bytes) as f64 * 8.0 / 1000.0 / seconds,
                );
            }
            self.window = (now, received, bytes_in);
        }
    }

    /// Draws the field and the status lines over the previous frame.
    fn draw(&mut self, options: &Options) -> Result<(), Error> {
        let mut grid = vec![[b' '; COLS]; ROWS];
        let cell = |p: [f32; 2]| {
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped")]
            let col = ((p[0] / WIDTH * COLS as f32).floor().max(0.0) as usize).min(COLS - 1);
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped")]
            let row =
                (((HEIGHT - p[1]) / HEIGHT * ROWS as f32).floor().max(0.0) as usize).min(ROWS - 1);
            (col, row)
        };
        for (drone, angle) in &self.turrets {
            let Some(shown) = self.drones.get(drone) else { continue };
            let (col, row) = cell(shown.position);
            // The barrel: the neighbouring cell the turret points at.
            let (dx, dy) = (angle.cos().round(), angle.sin().round());
            #[expect(clippy::cast_possible_truncation, reason = "-1, 0 or 1")]
            let (dx, dy) = (dx as isize, dy as isize);
            let glyph = match (dx, dy) {
                (_, 0) => b'-',
                (0, _) => b'|',
                (1, 1) | (-1, -1) => b'/',
                _ => b'\\',
            };
            if let (Some(c), Some(r)) = (col.checked_add_signed(dx), row.checked_add_signed(-dy)) {
                if c < COLS && r < ROWS {
                    grid[r][c] = glyph;
                }
            }
        }
        const GLYPHS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        for shown in self.drones.values() {
            let (col, row) = cell(shown.position);
            grid[row][col] = GLYPHS[shown.path as usize % GLYPHS.len()];
        }
        let mut out = String::new();
        if !self.drawn {
            // Clear the screen and hide the cursor, once.
            out.push_str("\x1b[2J\x1b[?25l");
            self.drawn = true;
        }
        out.push_str("\x1b[H+");
        out.push_str(&"-".repeat(COLS));
        out.push_str("+\x1b[K\n");
        for row in &grid {
            out.push('|');
            out.push_str(std::str::from_utf8(row)?);
            out.push_str("|\x1b[K\n");
        }
        out.push('+');
        out.push_str(&"-".repeat(COLS));
        out.push_str("+\x1b[K\n");
        let mode = if self.raw { "RAW: the newest state received" } else { "interpolated" };
        let link =
            self.link.as_deref().unwrap_or("none (try --link 4g or --link loss=10%,jitter=20ms)");
        let _ = writeln!(
            out,
            "{} drones, {} turrets · {} states/s each · {mode} · link: {link}\x1b[K",
            self.drones.len(),
            self.turrets.len(),
            options.rate,
        );
        let _ = writeln!(out, "{}\x1b[K", self.status());
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }

    /// The status line: rates, the buffer, the error.
    fn status(&self) -> String {
        let ms = |d: Duration| d.as_millis();
        let (snapshots, kbps) = self.rates;
        format!(
            "snapshots {snapshots:.1}/s · {kbps:.1} kbit/s in · delay {} ms · jitter {} ms · \
             late {} · behind {} · error {:.3} m mean, {:.2} max",
            ms(self.delay),
            ms(self.jitter),
            self.late,
            self.behind.map_or("-".into(), |b| format!("{} ms", ms(b))),
            mean(self.error),
            self.error.2,
        )
    }

    /// One JSON line of what this client saw.
    fn summary(&self, options: &Options) -> String {
        let stats = self.objects.stats();
        let connection = self.objects.client().connection_stats();
        let paths: Vec<f64> = self.paths.values().map(|(_, path)| *path).collect();
        #[expect(clippy::cast_precision_loss, reason = "a mean to print")]
        let mean_path = paths.iter().sum::<f64>() / paths.len().max(1) as f64;
        let min_path = paths.iter().copied().fold(f64::INFINITY, f64::min);
        let min_path = if min_path.is_finite() { min_path } else { 0.0 };
        format!(
            "{{\"example\":\"swarm\",\"objects\":{},\"drones_seen\":{},\"turrets_seen\":{},\
             \"frames\":{},\"snapshots\":{},\"snapshots_dropped\":{},\"states\":{},\
             \"bases_missing\":{},\"packets_lost_in\":{},\"bytes_in\":{},\"delay_ms\":{},\
             \"jitter_ms\":{},\"late\":{},\"error_samples\":{},\"mean_error_m\":{:.4},\
             \"max_error_m\":{:.4},\"turret_error_samples\":{},\"mean_turret_error_rad\":{:.4},\
             \"mean_path_m\":{:.2},\"min_path_m\":{:.2},\"raw\":{},\"link\":{}}}",
            options.objects,
            self.drones.len(),
            self.turrets.len(),
            self.frames,
            stats.snapshots_received,
            stats.snapshots_dropped,
            stats.transform_states,
            stats.transform_bases_missing,
            connection.map_or(0, |c| c.packets_lost_in),
            connection.map_or(0, |c| c.bytes_received),
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.late,
            self.error.1,
            mean(self.error),
            self.error.2,
            self.turret_error.1,
            mean(self.turret_error),
            mean_path,
            min_path,
            self.raw,
            self.link.as_ref().map_or("null".into(), |l| format!("{l:?}")),
        )
    }
}

fn distance(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

fn add(acc: &mut (f64, u64, f32), e: f32) {
    acc.0 += f64::from(e);
    acc.1 += 1;
    acc.2 = acc.2.max(e);
}

fn mean(acc: (f64, u64, f32)) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a mean to print")]
    let n = acc.1.max(1) as f64;
    acc.0 / n
}

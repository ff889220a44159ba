#![no_main]
use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

#[expect(clippy::disallowed_methods, reason = "any instant will do as the harness's origin")]
fn origin() -> Instant {
    Instant::now()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let start = *START.get_or_init(origin);
    sturnus_fuzz::EndpointHarness::new(start).feed(data);
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sturnus_fuzz::netcode::NetcodeHarness::new().feed(data));

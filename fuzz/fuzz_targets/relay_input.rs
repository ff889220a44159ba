#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sturnus_fuzz::relay::RelayHarness::new().feed(data));

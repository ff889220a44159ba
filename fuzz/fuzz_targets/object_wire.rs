#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sturnus_fuzz::object::ObjectHarness::new().feed(data));

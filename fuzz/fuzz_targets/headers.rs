//! Fuzz target `headers`: the properties of [`upcache_protocol::props::headers`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upcache_protocol::props::headers(data));

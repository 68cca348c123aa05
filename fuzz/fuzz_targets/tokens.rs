//! Fuzz target `tokens`: the properties of [`upcache_protocol::props::tokens`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upcache_protocol::props::tokens(data));

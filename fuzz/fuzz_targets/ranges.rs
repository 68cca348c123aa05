//! Fuzz target `ranges`: the properties of [`upcache_protocol::props::ranges`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upcache_protocol::props::ranges(data));

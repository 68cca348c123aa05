//! Fuzz target `bodies`: the properties of [`upcache_protocol::props::bodies`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upcache_protocol::props::bodies(data));

//! Fuzz target `tus`: the properties of [`upcache_protocol::props::tus`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upcache_protocol::props::tus(data));
